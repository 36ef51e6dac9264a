/* retort — op test rows for embedding, matmul, linear (f32 and NF4), add,
 * mul, scale, rmsnorm, rope, silu, swiglu, dropout, reshape, permute,
 * slice and checkpoint (harness: tests/op_cases.h, tests/test_ops.c).
 *
 * The references are naive loops written from each op's definition
 * (accumulating in double), independent of kernels/cpu. Integer inputs
 * (ids, positions) are fixed arrays shared by build and ref.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/nf4.h"
#include "tests/op_cases.h"

/* ---- embedding ---- */

static const int32_t emb_ids[6] = {3, 0, 10, 3, 7, 3}; /* id 3 three times: dW accumulates */

static rt_tensor *build_embedding(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *ids = rt_from_i32(ctx, emb_ids, 2, (int64_t[]){2, 3});
    return rt_embedding(ctx, in[0], ids);
}
static void ref_embedding(const float *const *in, float *out) {
    for (int i = 0; i < 6; i++)
        for (int d = 0; d < 5; d++) out[i * 5 + d] = in[0][emb_ids[i] * 5 + d];
}

/* ---- matmul ---- */

/* C_i = op(A_i) op(B_i); a broadcast b (bcast) is the same matrix for every i. */
static void ref_matmul(const float *a, const float *b, int batch, int M, int N, int K, bool ta,
                       bool tb, bool bcast, float *c) {
    for (int i = 0; i < batch; i++) {
        const float *ai = a + i * M * K, *bi = b + (bcast ? 0 : i * K * N);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double s = 0;
                for (int k = 0; k < K; k++)
                    s += (double)(ta ? ai[k * M + m] : ai[m * K + k]) *
                         (tb ? bi[n * K + k] : bi[k * N + n]);
                c[(i * M + m) * N + n] = (float)s;
            }
    }
}

#define MATMUL_CASE(tag, TA, TB, BATCH, M, N, K, BC)                                            \
    static rt_tensor *build_mm_##tag(rt_ctx *ctx, rt_tensor **in) {                             \
        return rt_matmul(ctx, in[0], in[1], TA, TB);                                           \
    }                                                                                          \
    static void ref_mm_##tag(const float *const *in, float *out) {                              \
        ref_matmul(in[0], in[1], BATCH, M, N, K, TA, TB, BC, out);                             \
    }
MATMUL_CASE(nn, false, false, 1, 3, 7, 5, false)
MATMUL_CASE(nt, false, true, 1, 3, 7, 5, false)
MATMUL_CASE(tn, true, false, 1, 3, 7, 5, false)
MATMUL_CASE(tt, true, true, 1, 3, 7, 5, false)
MATMUL_CASE(bnn, false, false, 2, 3, 4, 5, false)
MATMUL_CASE(btt, true, true, 2, 3, 4, 5, false)
MATMUL_CASE(b4, false, true, 4, 3, 2, 5, false)
MATMUL_CASE(bcnn, false, false, 2, 3, 4, 5, true)
MATMUL_CASE(bcnt, false, true, 2, 3, 4, 5, true)
MATMUL_CASE(bctn, true, false, 3, 3, 4, 5, true)

/* ---- linear ---- */

static void ref_linear(const float *x, const float *w, const float *bias, int rows, int in, int out,
                       float *y) {
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int i = 0; i < in; i++) s += (double)x[r * in + i] * w[o * in + i];
            y[r * out + o] = (float)s;
        }
}

static rt_tensor *build_linear(rt_ctx *ctx, rt_tensor **in) { return rt_linear(ctx, in[0], in[1], in[2]); }
static rt_tensor *build_linear_nobias(rt_ctx *ctx, rt_tensor **in) {
    return rt_linear(ctx, in[0], in[1], NULL);
}
static void ref_linear_bias(const float *const *in, float *out) { ref_linear(in[0], in[1], in[2], 6, 5, 7, out); }
static void ref_linear_nobias(const float *const *in, float *out) { ref_linear(in[0], in[1], NULL, 3, 13, 5, out); }

/* LoRA linear: x [2,3,5], W [7,5], h [2,3,4] (r = 4), lora_B [7,4], scaling 1.5;
 * reference y = x W^T + 1.5 h B^T in double. */
static rt_tensor *build_linear_lora(rt_ctx *ctx, rt_tensor **in) {
    return rt_linear_lora(ctx, in[0], in[1], in[2], in[3], 1.5f);
}
static void ref_linear_lora(const float *const *in, float *out) {
    for (int r = 0; r < 6; r++)
        for (int o = 0; o < 7; o++) {
            double s = 0.0, t = 0.0;
            for (int i = 0; i < 5; i++) s += (double)in[0][r * 5 + i] * in[1][o * 5 + i];
            for (int i = 0; i < 4; i++) t += (double)in[2][r * 4 + i] * in[3][o * 4 + i];
            out[r * 7 + o] = (float)(s + 1.5 * t);
        }
}

/* NF4 weight [5, 13] (65 elements: blocks of 32, the last partial), double
 * quantized. build quantizes input 1 into a frozen NF4 tensor whose state
 * lives in the arena (copied from the malloc'd one, which is freed). */
#define NF4_OUT 5
#define NF4_IN 13
#define NF4_BLOCK 32

static void *arena_dup(rt_ctx *ctx, const void *src, size_t bytes) {
    void *p = src ? rt_arena_alloc_host(ctx->arena, bytes) : NULL;
    if (p) memcpy(p, src, bytes);
    return p;
}

static rt_tensor *build_linear_nf4(rt_ctx *ctx, rt_tensor **in) {
    const int64_t n = NF4_OUT * NF4_IN;
    float w[NF4_OUT * NF4_IN];
    uint8_t packed[(NF4_OUT * NF4_IN + 1) / 2];
    rt_nf4_state st;
    rt_to_host(ctx, in[1], w);
    if (rt_nf4_quantize(w, n, NF4_BLOCK, true, packed, &st) != RT_OK)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
    rt_nf4_state *ast = rt_arena_alloc_host(ctx->arena, sizeof *ast);
    rt_tensor *wq = rt_new(ctx, RT_NF4, 2, (int64_t[]){NF4_OUT, NF4_IN});
    if (ast && wq) {
        *ast = st;
        ast->absmax = arena_dup(ctx, st.absmax, (size_t)st.n_blocks * sizeof(float));
        ast->absmax_q = arena_dup(ctx, st.absmax_q, (size_t)st.n_blocks);
        ast->nested_absmax = arena_dup(ctx, st.nested_absmax,
                                       (size_t)((st.n_blocks + 255) / 256) * sizeof(float));
        ctx->k->upload(wq->data, packed, sizeof packed);
        wq->nf4 = ast;
        wq->name = "nf4 test weight";
    }
    rt_nf4_state_free(&st);
    return ast && wq ? rt_linear(ctx, in[0], wq, in[2]) : NULL;
}
static void ref_linear_nf4(const float *const *in, float *out) {
    const int64_t n = NF4_OUT * NF4_IN;
    float wd[NF4_OUT * NF4_IN];
    uint8_t packed[(NF4_OUT * NF4_IN + 1) / 2];
    rt_nf4_state st;
    if (rt_nf4_quantize(in[1], n, NF4_BLOCK, true, packed, &st) != RT_OK) {
        for (int i = 0; i < 3 * NF4_OUT; i++) out[i] = NAN;
        return;
    }
    rt_nf4_dequantize(packed, &st, wd);
    rt_nf4_state_free(&st);
    ref_linear(in[0], wd, in[2], 3, NF4_IN, NF4_OUT, out);
}

/* ---- add / mul / scale ---- */

static rt_tensor *build_add(rt_ctx *ctx, rt_tensor **in) { return rt_add(ctx, in[0], in[1]); }
static rt_tensor *build_add_self(rt_ctx *ctx, rt_tensor **in) { return rt_add(ctx, in[0], in[0]); }
static rt_tensor *build_mul(rt_ctx *ctx, rt_tensor **in) { return rt_mul(ctx, in[0], in[1]); }
static rt_tensor *build_mul_self(rt_ctx *ctx, rt_tensor **in) { return rt_mul(ctx, in[0], in[0]); }
static rt_tensor *build_scale(rt_ctx *ctx, rt_tensor **in) { return rt_scale(ctx, in[0], -2.5f); }

static void ref_binary(const float *a, const float *b, int n, int nb, bool mul, float *out) {
    for (int i = 0; i < n; i++) out[i] = mul ? a[i] * b[i % nb] : a[i] + b[i % nb];
}
static void ref_add_same(const float *const *in, float *out) { ref_binary(in[0], in[1], 105, 105, false, out); }
static void ref_add_row(const float *const *in, float *out) { ref_binary(in[0], in[1], 105, 7, false, out); }
static void ref_add_self(const float *const *in, float *out) { ref_binary(in[0], in[0], 35, 35, false, out); }
static void ref_mul_same(const float *const *in, float *out) { ref_binary(in[0], in[1], 105, 105, true, out); }
static void ref_mul_rows(const float *const *in, float *out) { ref_binary(in[0], in[1], 105, 35, true, out); }
static void ref_mul_self(const float *const *in, float *out) { ref_binary(in[0], in[0], 35, 35, true, out); }
static void ref_scale(const float *const *in, float *out) {
    for (int i = 0; i < 21; i++) out[i] = -2.5f * in[0][i];
}

/* ---- rmsnorm ---- */

static void ref_rmsnorm(const float *x, const float *w, int rows, int dim, double eps, float *y) {
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int c = 0; c < dim; c++) ss += (double)x[r * dim + c] * x[r * dim + c];
        double rs = 1.0 / sqrt(ss / dim + eps);
        for (int c = 0; c < dim; c++) y[r * dim + c] = (float)(x[r * dim + c] * rs * w[c]);
    }
}
static rt_tensor *build_rmsnorm(rt_ctx *ctx, rt_tensor **in) { return rt_rmsnorm(ctx, in[0], in[1], 1e-5f); }
static rt_tensor *build_rmsnorm_eps(rt_ctx *ctx, rt_tensor **in) { return rt_rmsnorm(ctx, in[0], in[1], 0.1f); }
static void ref_rmsnorm_3x13(const float *const *in, float *out) { ref_rmsnorm(in[0], in[1], 3, 13, 1e-5, out); }
static void ref_rmsnorm_2x3x7(const float *const *in, float *out) { ref_rmsnorm(in[0], in[1], 6, 7, 0.1, out); }

/* ---- rope ---- */

static const int32_t rope_pos_a[6] = {0, 1, 2, 5, 7, 11};
static const int32_t rope_pos_b[5] = {0, 3, 1, 4, 100};

/* Rotation of pair (i0, i1) by p * theta^(-2i/Dh) (RoFormer eq. 34). */
static void ref_rope(const float *x, const int32_t *pos, int BT, int H, int Dh, double theta,
                     bool interleaved, float *out) {
    for (int t = 0; t < BT; t++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Dh / 2; i++) {
                double ang = pos[t] * pow(theta, -2.0 * i / Dh);
                int i0 = interleaved ? 2 * i : i, i1 = interleaved ? 2 * i + 1 : i + Dh / 2;
                const float *xv = x + (t * H + h) * Dh;
                float *o = out + (t * H + h) * Dh;
                o[i0] = (float)(xv[i0] * cos(ang) - xv[i1] * sin(ang));
                o[i1] = (float)(xv[i1] * cos(ang) + xv[i0] * sin(ang));
            }
}
static rt_tensor *build_rope_hf(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *pos = rt_from_i32(ctx, rope_pos_a, 2, (int64_t[]){2, 3});
    return rt_rope(ctx, in[0], pos, 10000.0f, RT_ROPE_HF);
}
static void ref_rope_hf(const float *const *in, float *out) {
    ref_rope(in[0], rope_pos_a, 6, 2, 6, 10000.0, false, out);
}
static rt_tensor *build_rope_il(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *pos = rt_from_i32(ctx, rope_pos_b, 2, (int64_t[]){1, 5});
    return rt_rope(ctx, in[0], pos, 500000.0f, RT_ROPE_INTERLEAVED);
}
static void ref_rope_il(const float *const *in, float *out) {
    ref_rope(in[0], rope_pos_b, 5, 3, 4, 500000.0, true, out);
}

/* ---- silu / swiglu ---- */

static double ref_silu1(double x) { return x / (1.0 + exp(-x)); }
static rt_tensor *build_silu(rt_ctx *ctx, rt_tensor **in) { return rt_silu(ctx, in[0]); }
static void ref_silu(const float *const *in, float *out) {
    for (int i = 0; i < 39; i++) out[i] = (float)ref_silu1(in[0][i]);
}
static rt_tensor *build_swiglu(rt_ctx *ctx, rt_tensor **in) { return rt_swiglu(ctx, in[0], in[1]); }
static void ref_swiglu(const float *const *in, float *out) {
    for (int i = 0; i < 35; i++) out[i] = (float)(ref_silu1(in[0][i]) * in[1][i]);
}

/* ---- dropout ----
 * The documented stream: element i of a call at counter c keeps x iff the
 * top 24 bits of output number c+i (0-based) of a splitmix64 generator
 * seeded with ctx->seed, read as a fraction in [0, 1), are >= p. Written
 * here from the splitmix64 reference (Vigna, splitmix64.c: state +=
 * golden, then the finaliser), not from the kernel. */
#define DROP_SEED 0x5eedull
#define DROP_COUNTER 1000ull
#define DROP_P 0.3f

/* output number k of splitmix64 seeded with `seed` */
static uint64_t ref_splitmix(uint64_t seed, uint64_t k) {
    uint64_t state = seed;
    state += (k + 1) * 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static rt_tensor *build_dropout(rt_ctx *ctx, rt_tensor **in) {
    ctx->training = true;
    ctx->seed = DROP_SEED;
    ctx->rng_counter = DROP_COUNTER;
    return rt_dropout(ctx, in[0], DROP_P);
}
static void ref_dropout(const float *const *in, float *out) {
    for (uint64_t i = 0; i < 91; i++) {
        uint64_t h = ref_splitmix(DROP_SEED, DROP_COUNTER + i);
        double u = (double)(h >> 40) / 16777216.0;
        out[i] = u < DROP_P ? 0.0f : (float)(in[0][i] / (1.0 - DROP_P));
    }
}

/* ---- reshape / permute / slice ---- */

static rt_tensor *build_reshape(rt_ctx *ctx, rt_tensor **in) {
    return rt_reshape(ctx, in[0], 2, (int64_t[]){3, 20});
}
static void ref_copy60(const float *const *in, float *out) { memcpy(out, in[0], 60 * sizeof(float)); }
/* reshape feeding another op, and the input used twice */
static rt_tensor *build_reshape_mul(rt_ctx *ctx, rt_tensor **in) {
    rt_tensor *a = rt_reshape(ctx, in[0], 2, (int64_t[]){15, 4});
    rt_tensor *b = rt_reshape(ctx, in[0], 3, (int64_t[]){3, 5, 4});
    rt_tensor *b2 = rt_reshape(ctx, b, 2, (int64_t[]){15, 4});
    return rt_mul(ctx, rt_scale(ctx, a, 3.0f), b2);
}
static void ref_reshape_mul(const float *const *in, float *out) {
    for (int i = 0; i < 60; i++) out[i] = 3.0f * in[0][i] * in[0][i];
}

static void ref_permute(const float *x, int ndim, const int64_t *shape, const int *perm, float *out) {
    int64_t s[4] = {1, 1, 1, 1}, st[4], os[4] = {1, 1, 1, 1}, ost[4] = {0, 0, 0, 0};
    for (int d = 0; d < ndim; d++) s[d] = shape[d];
    st[ndim - 1] = 1;
    for (int d = ndim - 2; d >= 0; d--) st[d] = st[d + 1] * s[d + 1];
    for (int d = 0; d < ndim; d++) {
        os[d] = s[perm[d]];
        ost[d] = st[perm[d]];
    }
    int64_t o = 0;
    for (int64_t a = 0; a < os[0]; a++)
        for (int64_t b = 0; b < os[1]; b++)
            for (int64_t c = 0; c < os[2]; c++)
                for (int64_t d = 0; d < os[3]; d++)
                    out[o++] = x[a * ost[0] + b * ost[1] + c * ost[2] + d * ost[3]];
}
static const int perm_a[3] = {2, 0, 1}, perm_b[4] = {0, 2, 1, 3}, perm_c[2] = {1, 0};
static rt_tensor *build_permute_a(rt_ctx *ctx, rt_tensor **in) { return rt_permute(ctx, in[0], perm_a); }
static rt_tensor *build_permute_b(rt_ctx *ctx, rt_tensor **in) { return rt_permute(ctx, in[0], perm_b); }
static rt_tensor *build_permute_c(rt_ctx *ctx, rt_tensor **in) { return rt_permute(ctx, in[0], perm_c); }
static void ref_permute_a(const float *const *in, float *out) {
    ref_permute(in[0], 3, (int64_t[]){2, 3, 4}, perm_a, out);
}
static void ref_permute_b(const float *const *in, float *out) {
    ref_permute(in[0], 4, (int64_t[]){2, 3, 5, 3}, perm_b, out);
}
static void ref_permute_c(const float *const *in, float *out) {
    ref_permute(in[0], 2, (int64_t[]){3, 7}, perm_c, out);
}

static rt_tensor *build_slice(rt_ctx *ctx, rt_tensor **in) { return rt_slice(ctx, in[0], 1, 3); }
static void ref_slice(const float *const *in, float *out) { memcpy(out, in[0] + 6, 18 * sizeof(float)); }
/* two overlapping slices of one tensor, combined */
static rt_tensor *build_slice2(rt_ctx *ctx, rt_tensor **in) {
    return rt_mul(ctx, rt_slice(ctx, in[0], 0, 4), rt_slice(ctx, in[0], 3, 4));
}
static void ref_slice2(const float *const *in, float *out) {
    for (int i = 0; i < 12; i++) out[i] = in[0][i] * in[0][9 + i];
}

/* ---- checkpoint: a residual block x + linear(silu(rmsnorm(x, w)), W, b) ----
 * Its parameters are inputs 1..3, so the harness checks the checkpointed
 * gradients w.r.t. x and every weight against finite differences; test_ops.c
 * also compares them with the same block run without checkpointing. */
typedef struct { rt_tensor *w, *W, *b; } ckpt_block;

static rt_tensor *ckpt_block_fn(rt_ctx *ctx, void *user, rt_tensor *x) {
    ckpt_block *p = user;
    rt_tensor *h = rt_silu(ctx, rt_rmsnorm(ctx, x, p->w, 1e-5f));
    return rt_add(ctx, x, rt_linear(ctx, h, p->W, p->b));
}
static rt_tensor *build_checkpoint(rt_ctx *ctx, rt_tensor **in) {
    ckpt_block *p = rt_arena_alloc_host(ctx->arena, sizeof *p);
    if (!p) return rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
    *p = (ckpt_block){in[1], in[2], in[3]};
    /* These weights are arena leaves, not rt_params: allocate their
     * gradients now, or the first allocation would happen inside the
     * recompute, whose scratch checkpoint_backward releases. */
    for (int i = 1; i < 4; i++) rt_grad(ctx, in[i]);
    return rt_checkpoint(ctx, ckpt_block_fn, p, in[0]);
}
static void ref_checkpoint(const float *const *in, float *out) {
    enum { R = 3, D = 7 };
    float h[R * D], l[R * D];
    ref_rmsnorm(in[0], in[1], R, D, 1e-5, h);
    for (int i = 0; i < R * D; i++) h[i] = (float)ref_silu1(h[i]);
    ref_linear(h, in[2], in[3], R, D, D, l);
    for (int i = 0; i < R * D; i++) out[i] = in[0][i] + l[i];
}

/* ---- the table ---- */

#define IN1(a0, a1) .n_in = 1, .ndim = {2}, .shape = {{a0, a1}}, .diff = {true}
#define IN2(d0, d1, ...) .n_in = 2, .ndim = {d0, d1}, .shape = {__VA_ARGS__}, .diff = {true, true}

const rt_op_case rt_op_cases_a[] = {
    {RT_OP_EMBEDDING, "embedding V11 D5, ids [2,3] with a repeated id", IN1(11, 5),
     .build = build_embedding, .ref = ref_embedding},

    {RT_OP_MATMUL, "matmul [3,5] @ [5,7]", IN2(2, 2, {3, 5}, {5, 7}), .build = build_mm_nn, .ref = ref_mm_nn},
    {RT_OP_MATMUL, "matmul [3,5] @ [7,5]^T", IN2(2, 2, {3, 5}, {7, 5}), .build = build_mm_nt, .ref = ref_mm_nt},
    {RT_OP_MATMUL, "matmul [5,3]^T @ [5,7]", IN2(2, 2, {5, 3}, {5, 7}), .build = build_mm_tn, .ref = ref_mm_tn},
    {RT_OP_MATMUL, "matmul [5,3]^T @ [7,5]^T", IN2(2, 2, {5, 3}, {7, 5}), .build = build_mm_tt, .ref = ref_mm_tt},
    {RT_OP_MATMUL, "matmul batched [2,3,5] @ [2,5,4]", IN2(3, 3, {2, 3, 5}, {2, 5, 4}),
     .build = build_mm_bnn, .ref = ref_mm_bnn},
    {RT_OP_MATMUL, "matmul batched [2,5,3]^T @ [2,4,5]^T", IN2(3, 3, {2, 5, 3}, {2, 4, 5}),
     .build = build_mm_btt, .ref = ref_mm_btt},
    {RT_OP_MATMUL, "matmul 4-D [2,2,3,5] @ [2,2,2,5]^T", IN2(4, 4, {2, 2, 3, 5}, {2, 2, 2, 5}),
     .build = build_mm_b4, .ref = ref_mm_b4},
    {RT_OP_MATMUL, "matmul broadcast b [2,3,5] @ [5,4]", IN2(3, 2, {2, 3, 5}, {5, 4}),
     .build = build_mm_bcnn, .ref = ref_mm_bcnn},
    {RT_OP_MATMUL, "matmul broadcast b [2,3,5] @ [4,5]^T", IN2(3, 2, {2, 3, 5}, {4, 5}),
     .build = build_mm_bcnt, .ref = ref_mm_bcnt},
    {RT_OP_MATMUL, "matmul broadcast b [3,5,3]^T @ [5,4]", IN2(3, 2, {3, 5, 3}, {5, 4}),
     .build = build_mm_bctn, .ref = ref_mm_bctn},

    {RT_OP_LINEAR, "linear x [2,3,5], W [7,5], bias [7]", .n_in = 3, .ndim = {3, 2, 1},
     .shape = {{2, 3, 5}, {7, 5}, {7}}, .diff = {true, true, true}, .build = build_linear,
     .ref = ref_linear_bias},
    {RT_OP_LINEAR, "linear x [3,13], W [5,13], no bias", IN2(2, 2, {3, 13}, {5, 13}),
     .build = build_linear_nobias, .ref = ref_linear_nobias},
    {RT_OP_LINEAR, "linear x [3,13], frozen NF4 W [5,13] (block 32, double quant), bias [5]",
     .n_in = 3, .ndim = {2, 2, 1}, .shape = {{3, 13}, {5, 13}, {5}}, .diff = {true, false, true},
     .build = build_linear_nf4, .ref = ref_linear_nf4},

    {RT_OP_LINEAR_LORA, "linear_lora x [2,3,5], W [7,5], h [2,3,4], lora_B [7,4], scaling 1.5",
     .n_in = 4, .ndim = {3, 2, 3, 2}, .shape = {{2, 3, 5}, {7, 5}, {2, 3, 4}, {7, 4}},
     .diff = {true, true, true, true}, .build = build_linear_lora, .ref = ref_linear_lora},

    {RT_OP_ADD, "add [3,5,7] + [3,5,7]", IN2(3, 3, {3, 5, 7}, {3, 5, 7}), .build = build_add, .ref = ref_add_same},
    {RT_OP_ADD, "add [3,5,7] + [7] (row broadcast)", IN2(3, 1, {3, 5, 7}, {7}), .build = build_add, .ref = ref_add_row},
    {RT_OP_ADD, "add x + x, x [5,7]", IN1(5, 7), .build = build_add_self, .ref = ref_add_self},
    {RT_OP_MUL, "mul [3,5,7] * [3,5,7]", IN2(3, 3, {3, 5, 7}, {3, 5, 7}), .build = build_mul, .ref = ref_mul_same},
    {RT_OP_MUL, "mul [3,5,7] * [5,7] (broadcast)", IN2(3, 2, {3, 5, 7}, {5, 7}), .build = build_mul, .ref = ref_mul_rows},
    {RT_OP_MUL, "mul x * x, x [5,7]", IN1(5, 7), .build = build_mul_self, .ref = ref_mul_self},
    {RT_OP_SCALE, "scale [3,7] by -2.5", IN1(3, 7), .build = build_scale, .ref = ref_scale},

    {RT_OP_RMSNORM, "rmsnorm [3,13], eps 1e-5", IN2(2, 1, {3, 13}, {13}), .build = build_rmsnorm,
     .ref = ref_rmsnorm_3x13},
    {RT_OP_RMSNORM, "rmsnorm [2,3,7], eps 0.1, weight in [0.5,2]", IN2(3, 1, {2, 3, 7}, {7}),
     .build = build_rmsnorm_eps, .ref = ref_rmsnorm_2x3x7, .lo = 0.5f, .hi = 2.0f},

    {RT_OP_ROPE, "rope HF [2,3,2,6], theta 1e4", .n_in = 1, .ndim = {4}, .shape = {{2, 3, 2, 6}},
     .diff = {true}, .build = build_rope_hf, .ref = ref_rope_hf},
    {RT_OP_ROPE, "rope interleaved [1,5,3,4], theta 5e5, pos up to 100", .n_in = 1, .ndim = {4},
     .shape = {{1, 5, 3, 4}}, .diff = {true}, .build = build_rope_il, .ref = ref_rope_il},

    {RT_OP_SILU, "silu [3,13], inputs in [-4,4]", IN1(3, 13), .build = build_silu, .ref = ref_silu,
     .lo = -4, .hi = 4},
    {RT_OP_SWIGLU, "swiglu [5,7], inputs in [-3,3]", IN2(2, 2, {5, 7}, {5, 7}), .build = build_swiglu,
     .ref = ref_swiglu, .lo = -3, .hi = 3},

    {RT_OP_DROPOUT, "dropout [7,13], p 0.3, training", IN1(7, 13), .build = build_dropout,
     .ref = ref_dropout},

    {RT_OP_RESHAPE, "reshape [3,4,5] -> [3,20]", .n_in = 1, .ndim = {3}, .shape = {{3, 4, 5}},
     .diff = {true}, .build = build_reshape, .ref = ref_copy60},
    {RT_OP_RESHAPE, "reshape x twice (one of them chained), 3x * x", .n_in = 1, .ndim = {3},
     .shape = {{3, 4, 5}}, .diff = {true}, .build = build_reshape_mul, .ref = ref_reshape_mul},
    {RT_OP_PERMUTE, "permute [2,3,4] by (2,0,1)", .n_in = 1, .ndim = {3}, .shape = {{2, 3, 4}},
     .diff = {true}, .build = build_permute_a, .ref = ref_permute_a},
    {RT_OP_PERMUTE, "permute [2,3,5,3] by (0,2,1,3)", .n_in = 1, .ndim = {4},
     .shape = {{2, 3, 5, 3}}, .diff = {true}, .build = build_permute_b, .ref = ref_permute_b},
    {RT_OP_PERMUTE, "permute [3,7] by (1,0)", IN1(3, 7), .build = build_permute_c, .ref = ref_permute_c},
    {RT_OP_SLICE, "slice rows [1,4) of [5,3,2]", .n_in = 1, .ndim = {3}, .shape = {{5, 3, 2}},
     .diff = {true}, .build = build_slice, .ref = ref_slice},
    {RT_OP_SLICE, "slice rows [0,4) * rows [3,7) of [7,3]", IN1(7, 3), .build = build_slice2,
     .ref = ref_slice2},

    {RT_OP_CHECKPOINT, "checkpoint x [3,7] + linear(silu(rmsnorm(x)))", .n_in = 4,
     .ndim = {2, 1, 2, 1}, .shape = {{3, 7}, {7}, {7, 7}, {7}}, .diff = {true, true, true, true},
     .build = build_checkpoint, .ref = ref_checkpoint},
};
const int rt_n_op_cases_a = (int)(sizeof rt_op_cases_a / sizeof rt_op_cases_a[0]);
