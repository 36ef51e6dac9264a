/* retort — the kernel table: the arithmetic behind every op, per device.
 *
 * Kernels see raw pointers and sizes, never tensors or the tape (nothing
 * below autograd/ points back up). All float kernels are f32 in and out with
 * f32 accumulation unless a comment says otherwise; tensors are row-major
 * contiguous. Backward kernels ACCUMULATE into their gradient outputs
 * (dst += ...), because a tensor used twice receives two contributions.
 *
 * kernels/cpu fills rt_kernels_cpu (OpenBLAS + OpenMP); kernels/cuda fills
 * the CUDA table inside the separately loaded backend module
 * (kernels/backend.h) when the build has CUDA. A NULL entry means "this device
 * has no kernel for it yet" and the op reports that as an error.
 *
 * Adding an op touches six places: its row in RT_OPS and its declaration in
 * autograd/ops.h, its kernel signatures here, the CPU kernel (+ its line in
 * kernels/cpu/table.c), the CUDA kernel (+ kernels/cuda/table.cu), the op's
 * own autograd/op_*.c (forward and backward side by side), and one row in
 * tests/op_cases_*.c.
 */
#ifndef RT_KERNELS_H
#define RT_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


#ifdef __cplusplus
extern "C" {
#endif

struct rt_nf4_state;     /* kernels/nf4.h */
struct rt_adamw_scalars; /* optim/adamw.h */

typedef enum { RT_ROPE_HF = 0, RT_ROPE_INTERLEAVED = 1 } rt_rope_layout;

typedef struct rt_kernels {
    const char *name;
    /* Devices of this kind the process can use now (0: none, e.g. no GPU or
     * no driver); the CPU reports 1. */
    int (*device_count)(void);

    /* ---- memory (bytes) ---- */
    void *(*malloc)(size_t bytes);          /* NULL on OOM */
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);     /* same device */
    void (*upload)(void *dst, const void *host, size_t bytes);  /* host -> device */
    void (*download)(void *host, const void *src, size_t bytes);/* device -> host */
    /* dtype conversion of n elements (f32 <-> bf16/f16). */
    void (*convert)(int64_t n, const void *src, int src_dtype, void *dst, int dst_dtype);

    /* ---- elementwise, with row broadcasting: b has nb elements and is
     *      repeated along a (n % nb == 0; nb == n means no broadcast) ---- */
    void (*add)(int64_t n, int64_t nb, const float *a, const float *b, float *out);
    void (*mul)(int64_t n, int64_t nb, const float *a, const float *b, float *out);
    void (*scale)(int64_t n, float alpha, const float *x, float *out);    /* out = alpha*x */
    void (*axpy)(int64_t n, float alpha, const float *x, float *y);       /* y += alpha*x */
    /* out[c] += sum_r x[r*cols+c] * (y ? y[r*cols+c] : 1)  — reduces a
     * broadcast operand's gradient */
    void (*sum_rows)(int64_t rows, int64_t cols, const float *x, const float *y, float *out);
    /* out[i] += g[i] * b[i % nb] */
    void (*mul_acc)(int64_t n, int64_t nb, const float *g, const float *b, float *out);

    /* ---- GEMM: for each batch i < batch,
     *   C_i = alpha * op(A_i) @ op(B_i) + beta * C_i,
     * op(A_i) is [M,K] (A_i stored [M,K], or [K,M] when ta), op(B_i) is
     * [K,N] (stored [K,N], or [N,K] when tb), C_i is [M,N]; X_i = X + i*strideX
     * (stride 0 broadcasts one matrix over the batch). ---- */
    void (*gemm)(int64_t batch, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t strideA, const float *B, int64_t strideB, float beta,
                 float *C, int64_t strideC);

    /* ---- embedding over a table W[V, dim]: out[i,:] = W[ids[i],:]; backward
     *   dW[ids[i],:] += dout[i,:]. An id outside [0, V) never reads or writes
     *   outside W: its output row is NaN and its gradient dropped (the CPU
     *   op rejects such ids before the kernel; the CUDA kernel records the
     *   first one as a device fault, kernels/fault.h). ---- */
    void (*embedding)(int64_t n, int64_t dim, int64_t V, const int32_t *ids, const float *W,
                      float *out);
    void (*embedding_bwd)(int64_t n, int64_t dim, int64_t V, const int32_t *ids,
                          const float *dout, float *dW);

    /* ---- RMSNorm over the last dim: y = x * rstd * w, rstd = 1/sqrt(mean(x^2)+eps)
     *      (Zhang & Sennrich 2019; HF LlamaRMSNorm). rstd[rows] saved for backward. ---- */
    void (*rmsnorm)(int64_t rows, int64_t dim, const float *x, const float *w, float eps,
                    float *y, float *rstd);
    void (*rmsnorm_bwd)(int64_t rows, int64_t dim, const float *x, const float *w,
                        const float *rstd, const float *dy, float *dx, float *dw);

    /* ---- RoPE (Su et al. 2021) on x[B,T,H,Dh] with positions pos[B*T]:
     *   angle(p, i) = p * theta^(-2i/Dh), i < Dh/2, pairs (i, i+Dh/2) for
     *   RT_ROPE_HF (rotate-half) or (2i, 2i+1) for RT_ROPE_INTERLEAVED (llama2.c).
     *   inverse rotates by -angle (the backward). out may equal x. ---- */
    void (*rope)(int64_t B, int64_t T, int64_t H, int64_t Dh, const float *x, const int32_t *pos,
                 float theta, int layout, bool inverse, float *out);

    /* ---- activations ---- */
    void (*silu)(int64_t n, const float *x, float *y);
    void (*silu_bwd)(int64_t n, const float *x, const float *dy, float *dx);
    /* y = silu(gate) * up (Shazeer 2020) */
    void (*swiglu)(int64_t n, const float *gate, const float *up, float *y);
    void (*swiglu_bwd)(int64_t n, const float *gate, const float *up, const float *dy,
                       float *dgate, float *dup);
    /* y = gelu_tanh(gate) * up (GeGLU, Gemma's MLP; gelu_tanh(x) =
     * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), kernels/cpu/geglu.c) */
    void (*geglu)(int64_t n, const float *gate, const float *up, float *y);
    void (*geglu_bwd)(int64_t n, const float *gate, const float *up, const float *dy,
                      float *dgate, float *dup);

    /* ---- softmax / log-softmax over the last dim (rows x cols) ---- */
    void (*softmax)(int64_t rows, int64_t cols, const float *x, float *y);
    void (*softmax_bwd)(int64_t rows, int64_t cols, const float *y, const float *dy, float *dx);
    void (*log_softmax)(int64_t rows, int64_t cols, const float *x, float *y);
    void (*log_softmax_bwd)(int64_t rows, int64_t cols, const float *y, const float *dy, float *dx);

    /* ---- causal scaled-dot-product attention with grouped-query heads
     *   q[B,Tq,H,Dh], k,v[B,Tk,Hkv,Dh] (H % Hkv == 0, query head h reads kv head
     *   h / (H/Hkv)), out[B,Tq,H,Dh]; query i sits at position Tk-Tq+i and sees keys
     *   j <= Tk-Tq+i; with seg (i32 [B,T], only when Tq == Tk) also only keys with
     *   seg[j] == seg[i] (packed samples); with window > 0 also only keys
     *   j > Tk-Tq+i - window (sliding-window attention: the query and the
     *   window-1 keys before it, as transformers' sliding_window_overlay and
     *   llama.cpp's LLAMA_SWA_TYPE_STANDARD). scale = 1/sqrt(Dh).
     *   lse[B,H,Tq] = logsumexp of the scaled scores, saved for backward. ---- */
    void (*attention)(int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t Dh,
                      const float *q, const float *k, const float *v, const int32_t *seg,
                      int64_t window, float *out, float *lse);
    void (*attention_bwd)(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t Dh,
                          const float *q, const float *k, const float *v, const int32_t *seg,
                          int64_t window, const float *out, const float *lse, const float *dout,
                          float *dq, float *dk, float *dv);

    /* ---- dropout (inverted: kept values scaled by 1/(1-p)); the mask of
     *   element i is a pure function of (seed, i) so backward and activation
     *   recomputation regenerate it instead of storing it. ---- */
    void (*dropout)(int64_t n, float p, uint64_t seed, const float *x, float *y);

    /* ---- cross-entropy over logits[N,V] with labels[N] (ignore_index rows
     *   contribute nothing): nll[i] = lse_i - x[i,label_i] (0 for ignored);
     *   lse[N] saved. Backward: dx[i,:] += g * (softmax(x_i) - onehot(label_i)). ---- */
    void (*cross_entropy)(int64_t N, int64_t V, const float *logits, const int32_t *labels,
                          int32_t ignore_index, float *nll, float *lse);
    void (*cross_entropy_bwd)(int64_t N, int64_t V, const float *logits, const int32_t *labels,
                              int32_t ignore_index, const float *lse, float g, float *dlogits);

    /* ---- KL(p_t || q_s) per row at temperature T, p_t = softmax(t/T),
     *   q_s = softmax(s/T): kl[i] = sum_v p_t (log p_t - log q_s); rows with
     *   mask[i] == 0 give 0 (mask may be NULL). Backward w.r.t. s:
     *   ds[i,:] += g_i * (q_s - p_t) / T. ---- */
    void (*kl_div)(int64_t N, int64_t V, const float *s, const float *t, float T,
                   const uint8_t *mask, float *kl);
    void (*kl_div_bwd)(int64_t N, int64_t V, const float *s, const float *t, float T,
                       const uint8_t *mask, float g, float *ds);

    /* ---- permute a contiguous tensor of up to 4 dims: out dim d is in dim perm[d] ---- */
    void (*permute)(int ndim, const int64_t *shape, const int *perm, const float *x, float *out);

    /* ---- NF4 (kernels/nf4.h): dequantize rows [r0,r1) of a [rows,cols]
     *   NF4 weight into out[(r1-r0)*cols] f32. ---- */
    void (*nf4_dequant_rows)(const uint8_t *packed, const struct rt_nf4_state *st, int64_t cols,
                             int64_t r0, int64_t r1, float *out);

    /* ---- knowledge distillation (autograd/op_kd.c; formulas and the top-k
     *   "rest" bucket: kernels/cpu/kd.c and rt_kd_loss in autograd/ops.h).
     *   kind: 0 forward KL(p||q), 1 reverse KL(q||p), 2 generalized JSD_beta
     *   (the values of rt_kd_kind; JSD with beta 0 / 1 is computed as forward /
     *   reverse KL). With a = 1/T: q = softmax(a*s) over s[N,V] (student) and
     *   p = softmax(a*t) over t[N,V] (full) or p = exp(logp) at ids (top-k,
     *   ids i32 [N,K] distinct per row, in [0,V), logp f32 [N,K] already at T).
     *   Forward writes D_i (no T^2 factor; 0 for rows with mask[i] == 0, mask
     *   may be NULL) to loss[N]. Backward: ds[i,:] += g * dD_i/ds_i (which
     *   includes the 1/T of the chain rule). Per-row sums in double. ---- */
    void (*kd_loss)(int64_t N, int64_t V, const float *s, const float *t, float T, int kind,
                    float beta, const uint8_t *mask, float *loss);
    void (*kd_loss_bwd)(int64_t N, int64_t V, const float *s, const float *t, float T, int kind,
                        float beta, const uint8_t *mask, float g, float *ds);
    void (*kd_topk_loss)(int64_t N, int64_t V, int64_t K, const float *s, const int32_t *ids,
                         const float *logp, float T, int kind, float beta, const uint8_t *mask,
                         float *loss);
    void (*kd_topk_loss_bwd)(int64_t N, int64_t V, int64_t K, const float *s, const int32_t *ids,
                             const float *logp, float T, int kind, float beta,
                             const uint8_t *mask, float g, float *ds);
    /* top-K of each row of t[N,V] (1 <= K <= V): ids[N,K] in descending order
     *   of t, ties by lower id, and logp[N,K] = log softmax(t/T) at those ids. */
    void (*kd_topk)(int64_t N, int64_t V, int64_t K, const float *t, float T, int32_t *ids,
                    float *logp);

    /* ---- optimizer: AdamW over n elements of the flat buffers (formula:
     *   optim/adamw.h; s is host memory). g[i] is first multiplied by
     *   clip_coef in place unless clip_coef == 1 (rt_clip_scale), then
     *   rt_adamw_elem updates p, m, v. NULL on the CPU, whose optimizer is
     *   optim/adamw.c itself. ---- */
    void (*adamw)(int64_t n, const struct rt_adamw_scalars *s, float clip_coef, float *p,
                  float *g, float *m, float *v);

    /* ---- waits for every kernel launched so far (timing, fault checks);
     *   a failure is a device fault. NULL on the CPU (synchronous). ---- */
    void (*synchronize)(void);

    /* ---- reductions for the optimizer and logging ---- */
    double (*sumsq)(int64_t n, const float *x);        /* sum x^2 in f64 */
    bool (*all_finite)(int64_t n, const float *x);

    /* ---- optional (NULL: the caller does without) ---- */
    /* Faults in the pages of [p, p + bytes) of fresh memory, in parallel
     * (the activation arena calls it as its chunks are first used). */
    void (*prefault)(void *p, size_t bytes);

    /* ---- fused chains (optional: NULL makes the op call the separate
     *   kernels above; results are the same). "set" outputs are overwritten
     *   and may be uninitialised, the others accumulate. ----
     * add_rmsnorm: s = x + d (the residual stream), then y = rmsnorm(s) * w
     *   and rstd[rows] as rmsnorm; backward: g = ds + d rmsnorm/ds (dy), ds
     *   (the residual's own gradient) may be NULL; dx and dd get g, either may
     *   be NULL; dw is rmsnorm_bwd's (called apart). */
    void (*add_rmsnorm)(int64_t rows, int64_t dim, const float *x, const float *d, const float *w,
                        float eps, float *s, float *y, float *rstd);
    void (*add_rmsnorm_bwd)(int64_t rows, int64_t dim, const float *s, const float *w,
                            const float *rstd, const float *dy, const float *ds, float *dx,
                            bool set_dx, float *dd, bool set_dd);
    /* rope of q [B,T,Hq,Dh] and k [B,T,Hk,Dh] at the same positions in one
     *   pass (angles once per token); either may be NULL; qo/ko set or += */
    void (*rope_qk)(int64_t B, int64_t T, int64_t Hq, int64_t Hk, int64_t Dh, const float *q,
                    const float *k, const int32_t *pos, float theta, int layout, bool inverse,
                    bool set, float *qo, float *ko);
    /* swiglu_bwd with dgate, dup (both non-NULL) overwritten */
    void (*swiglu_bwd_set)(int64_t n, const float *gate, const float *up, const float *dy,
                           float *dgate, float *dup);
} rt_kernels;

extern const rt_kernels rt_kernels_cpu;

/* The table for a device (rt_device from autograd/tensor.h as int, so this
 * header needs nothing above it); NULL (message set) when the build lacks
 * that device. The CUDA table lives in a module loaded on this first call
 * (kernels/backend.h). */
const rt_kernels *rt_kernels_for(int device);
/* How many devices of that kind this process can use (0 if the build lacks
 * the backend or the machine the hardware). */
int rt_device_count(int device);

#ifdef __cplusplus
}
#endif
#endif
