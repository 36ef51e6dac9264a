/* retort — next-token sampling as llama2.c's run.c does it, so that a seed
 * gives the same text: temperature 0 is argmax; otherwise softmax of
 * logits / temperature, then nucleus (top-p) sampling when 0 < top_p < 1
 * (Holtzman et al. 2019) or plain multinomial sampling, with a coin from
 * run.c's xorshift64* generator. */
#ifndef RT_SAMPLER_H
#define RT_SAMPLER_H

#include <stdint.h>

typedef struct {
    int vocab_size;
    float temperature, top_p;
    uint64_t rng_state;
    /* scratch: [vocab_size] (index, prob) pairs for top-p; owned */
    struct rt_prob_index { float prob; int index; } *probindex;
} rt_sampler;

/* NULL on OOM. */
rt_sampler *rt_sampler_new(int vocab_size, float temperature, float top_p, uint64_t seed);
void rt_sampler_free(rt_sampler *s);
/* Picks a token from logits[vocab_size] (modified in place). */
int rt_sampler_sample(rt_sampler *s, float *logits);

#endif
