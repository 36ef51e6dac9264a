/* retort — LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large
 * Language Models") around a frozen linear layer, as Hugging Face PEFT does:
 *
 *   y = x W^T + b + scaling * (dropout(x) A^T) B^T
 *
 * W [out, in] is frozen (f32, or NF4 for QLoRA — Dettmers et al. 2023); A
 * [r, in] and B [out, r] are trainable f32 parameters in the model's flat
 * parameter store. scaling = lora_alpha / r, or lora_alpha / sqrt(r) with
 * rsLoRA (Kalajdzievski 2023). Init as PEFT: A kaiming-uniform(a = sqrt(5)),
 * i.e. U(-1/sqrt(in), 1/sqrt(in)); B zeros, so training starts at the base.
 * Every projection the model has is an rt_lora_linear; one without an
 * adapter has lora_A == NULL, so which modules get LoRA is data.
 */
#ifndef RT_LORA_H
#define RT_LORA_H

#include "autograd/ops.h"

/* The largest rank retort accepts from a recipe or an adapter_config.json
 * (a file's "r" is checked against this before anything is allocated, and
 * against the model by rt_llama_add_lora: at most the longer side of the
 * largest targeted layer). */
#define RT_LORA_MAX_R 65536

typedef struct rt_lora_linear {
    rt_tensor *weight;   /* [out, in], frozen; f32 or RT_NF4 */
    rt_tensor *bias;     /* [out] frozen, or NULL */
    rt_tensor *lora_A;   /* [r, in] trainable, or NULL (no adapter) */
    rt_tensor *lora_B;   /* [out, r] trainable */
    float scaling;
    float dropout;       /* lora_dropout, applied to x on the adapter path only */
} rt_lora_linear;

/* x [..., in] -> [..., out]. */
rt_tensor *rt_lora_forward(rt_ctx *ctx, const rt_lora_linear *l, rt_tensor *x);

float rt_lora_scaling(float lora_alpha, int r, bool use_rslora);

/* A ~ U(-1/sqrt(in), 1/sqrt(in)) from a generator seeded with `seed`, B = 0.
 * A and B must be host-visible (CPU) or are filled through an upload. */
void rt_lora_init(rt_lora_linear *l, uint64_t seed);

/* W + scaling * B A into out [out, in] f32 (host memory), from the
 * dequantized weight when W is NF4. For `retort merge` and tests. */
rt_status rt_lora_merged_weight(const rt_lora_linear *l, float *out);

#endif
