// retort — CUDA causal grouped-query attention, forward and backward: our own
// flash-style kernels (FP32, CUDA cores; no cuDNN). Semantics and layouts:
// kernels/kernels.h; reference behaviour: kernels/cpu/attention.c.
//
//   q, out, dq [B,Tq,H,Dh]; k, v, dk, dv [B,Tk,Hkv,Dh]; lse [B,H,Tq]; seg [B,T].
//   Query head h reads kv head h / (H/Hkv); query i (absolute position
//   Tk-Tq+i) sees key j iff j <= Tk-Tq+i and (no seg, or seg[j] == seg[i])
//   and (window 0, or Tk-Tq+i - j < window).
//
// Neither direction materialises the score matrix. Work unit: one warp per
// row (a query row in the forward and dQ kernels, a key row in the dK/dV
// kernel), 8 rows per block sharing (batch, head); the block stages 32 rows
// of the other side (K/V, or Q/dO) at a time in shared memory, one per lane:
//   - lane l computes the score of its staged row with the warp's row
//     (a Dh-long dot product from shared memory, rows padded to Dh+1 floats
//     so the 32 lanes hit 32 different banks);
//   - the warp then accumulates the 32 staged rows into its Dh-vector held in
//     registers, lane l owning dims l, l+32, ... (Dh <= 256: 8 per lane),
//     each weight broadcast with __shfl_sync.
// Forward: online softmax (Milakov & Gimelshein 2018; FlashAttention) with a
// running max m and sum l per row; lse = m + log l. Backward: the
// FlashAttention-2 equations (Dao 2023, Algorithm 2), probabilities recomputed
// from the saved lse:
//   P_ij = exp(s_ij - lse_i),  D_i = dO_i . O_i,  dP_ij = dO_i . V_j,
//   dS_ij = scale P_ij (dP_ij - D_i),  dQ_i += dS_ij K_j,
//   dK_j += dS_ij Q_i,  dV_j += P_ij dO_i,
// as three kernels: D (one warp per row), dQ (rows = queries, staged keys),
// dK/dV (rows = keys, staged queries of every head of the group). Each output
// element is owned by one warp, so the backward needs no atomics and is
// deterministic.
//
// This is the straightforward FP32 design, not a tensor-core kernel: correct
// for any shapes with Dh <= 256, but several times slower than cuDNN / FA2 on
// an H100. A tensor-core (bf16) path belongs to the mixed-precision step.
#include <math.h>

#include "kernels/cuda/cuda_internal.h"

using namespace rt_cuda;

namespace {

constexpr int kRows = 8;             // warps (rows) per block
constexpr int kTile = 32;            // staged rows per step: one per lane
constexpr int kMaxDh = 256;          // register budget: kPerLane dims per lane
constexpr int kPerLane = kMaxDh / 32;
constexpr unsigned kFull = 0xffffffffu;

struct Shape {
    int64_t B, Tq, Tk, H, Hkv, Dh, group;
    float scale;
    int64_t window; // sliding window (keys a query sees); 0: none
};

// Key j is inside the sliding window of the query at absolute position i.
__device__ inline bool in_window(const Shape &sh, int64_t i, int64_t j) {
    return sh.window <= 0 || i - j < sh.window;
}

__device__ inline float warp_sum(float v) { return warp_allreduce(v, Sum()); }
__device__ inline float warp_max(float v) { return warp_allreduce(v, Max()); }

// dot(a, b) over Dh floats, one lane's serial loop (a, b in shared memory).
__device__ inline float dot_dh(const float *a, const float *b, int64_t Dh) {
    float s = 0.0f;
    for (int64_t d = 0; d < Dh; d++) s += a[d] * b[d];
    return s;
}

// Stages rows [r0, r0+32) of a [rows_total] sequence into tile[32][Dh+1]
// (rows past the end are zero). row_off(r) is the element offset of row r.
template <typename RowOff>
__device__ inline void stage(float *tile, const float *src, int64_t r0, int64_t rows_total,
                             int64_t Dh, RowOff row_off) {
    const int64_t ld = Dh + 1;
    for (int64_t e = threadIdx.x; e < kTile * Dh; e += blockDim.x) {
        const int64_t r = e / Dh, d = e % Dh;
        tile[r * ld + d] = r0 + r < rows_total ? src[row_off(r0 + r) + d] : 0.0f;
    }
}

// ---- forward ----------------------------------------------------------------------

// grid (ceil(Tq/8), H, B); dynamic smem: K tile, V tile [32][Dh+1], q rows [8][Dh].
__global__ void attn_fwd_kernel(Shape sh, const float *q, const float *k, const float *v,
                                const int32_t *seg, float *out, float *lse) {
    extern __shared__ float smem[];
    const int64_t Dh = sh.Dh, ld = Dh + 1;
    float *Ks = smem, *Vs = Ks + kTile * ld, *Qs = Vs + kTile * ld;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t b = blockIdx.z, h = blockIdx.y, kh = h / sh.group;
    const int64_t i = (int64_t)blockIdx.x * kRows + warp, off = sh.Tk - sh.Tq;
    const bool valid = i < sh.Tq;
    const int64_t last = off + i; // keys 0..last are causally visible to row i
    const int64_t i_hi = (int64_t)blockIdx.x * kRows + kRows - 1;
    const int64_t block_last = off + (i_hi < sh.Tq ? i_hi : sh.Tq - 1);

    float *qw = Qs + warp * Dh;
    const int64_t qrow = ((b * sh.Tq + i) * sh.H + h) * Dh;
    if (valid)
        for (int64_t d = lane; d < Dh; d += 32) qw[d] = q[qrow + d];
    const int32_t seg_i = valid && seg ? seg[b * sh.Tk + last] : 0;
    auto kv_off = [&](int64_t j) { return ((b * sh.Tk + j) * sh.Hkv + kh) * Dh; };

    float o[kPerLane];
#pragma unroll
    for (int u = 0; u < kPerLane; u++) o[u] = 0.0f;
    float m = -INFINITY, l = 0.0f;

    for (int64_t j0 = 0; j0 <= block_last; j0 += kTile) {
        __syncthreads(); // the previous tile is consumed
        stage(Ks, k, j0, sh.Tk, Dh, kv_off);
        stage(Vs, v, j0, sh.Tk, Dh, kv_off);
        __syncthreads();
        if (!valid || j0 > last) continue; // warp-uniform
        const int64_t j = j0 + lane;
        float s = -INFINITY;
        if (j <= last && in_window(sh, last, j) && (!seg || seg[b * sh.Tk + j] == seg_i))
            s = sh.scale * dot_dh(qw, Ks + lane * ld, Dh);
        const float bm = warp_max(s);
        if (bm == -INFINITY) continue; // every key of the tile is masked for this row
        const float mn = fmaxf(m, bm);
        const float c = expf(m - mn); // 0 on the first visible tile (m = -inf)
        const float p = expf(s - mn); // 0 for masked keys
        l = l * c + warp_sum(p);
#pragma unroll
        for (int u = 0; u < kPerLane; u++) o[u] *= c;
        for (int jj = 0; jj < kTile; jj++) {
            const float pj = __shfl_sync(kFull, p, jj);
            if (pj == 0.0f) continue; // warp-uniform (broadcast value)
            const float *vr = Vs + jj * ld;
#pragma unroll
            for (int u = 0; u < kPerLane; u++) {
                const int64_t d = lane + 32 * u;
                if (d < Dh) o[u] += pj * vr[d];
            }
        }
        m = mn;
    }
    if (!valid) return;
    // Key `last` itself is always visible (same segment as itself), so l >= 1.
    const float inv = 1.0f / l;
#pragma unroll
    for (int u = 0; u < kPerLane; u++) {
        const int64_t d = lane + 32 * u;
        if (d < Dh) out[qrow + d] = o[u] * inv;
    }
    if (lane == 0) lse[(b * sh.H + h) * sh.Tq + i] = m + logf(l);
}

// ---- backward ---------------------------------------------------------------------

// D[b,h,i] = dO_i . O_i, one warp per row; layout [B,H,T] like lse.
__global__ void attn_delta_kernel(Shape sh, const float *out, const float *dout, float *D) {
    const int64_t rows = sh.B * sh.Tq * sh.H;
    const int64_t w0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int64_t nw = ((int64_t)gridDim.x * blockDim.x) >> 5;
    const int lane = threadIdx.x & 31;
    for (int64_t row = w0; row < rows; row += nw) { // row = (b*T + i)*H + h
        float s = 0.0f;
        for (int64_t d = lane; d < sh.Dh; d += 32) s += dout[row * sh.Dh + d] * out[row * sh.Dh + d];
        s = warp_sum(s);
        const int64_t h = row % sh.H, bi = row / sh.H, b = bi / sh.Tq, i = bi % sh.Tq;
        if (lane == 0) D[(b * sh.H + h) * sh.Tq + i] = s;
    }
}

// dQ: grid (ceil(T/8), H, B); smem: K, V tiles [32][Dh+1], q and dO rows [8][Dh].
__global__ void attn_dq_kernel(Shape sh, const float *q, const float *k, const float *v,
                               const int32_t *seg, const float *lse, const float *D,
                               const float *dout, float *dq) {
    extern __shared__ float smem[];
    const int64_t Dh = sh.Dh, ld = Dh + 1, T = sh.Tq;
    float *Ks = smem, *Vs = Ks + kTile * ld, *Qs = Vs + kTile * ld, *Gs = Qs + kRows * Dh;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t b = blockIdx.z, h = blockIdx.y, kh = h / sh.group;
    const int64_t i = (int64_t)blockIdx.x * kRows + warp;
    const bool valid = i < T;
    const int64_t i_hi = (int64_t)blockIdx.x * kRows + kRows - 1;
    const int64_t block_last = i_hi < T ? i_hi : T - 1;

    float *qw = Qs + warp * Dh, *gw = Gs + warp * Dh;
    const int64_t qrow = ((b * T + i) * sh.H + h) * Dh;
    if (valid)
        for (int64_t d = lane; d < Dh; d += 32) qw[d] = q[qrow + d], gw[d] = dout[qrow + d];
    const float lse_i = valid ? lse[(b * sh.H + h) * T + i] : 0.0f;
    const float D_i = valid ? D[(b * sh.H + h) * T + i] : 0.0f;
    const int32_t seg_i = valid && seg ? seg[b * T + i] : 0;
    auto kv_off = [&](int64_t j) { return ((b * T + j) * sh.Hkv + kh) * Dh; };

    float acc[kPerLane];
#pragma unroll
    for (int u = 0; u < kPerLane; u++) acc[u] = 0.0f;

    for (int64_t j0 = 0; j0 <= block_last; j0 += kTile) {
        __syncthreads();
        stage(Ks, k, j0, T, Dh, kv_off);
        stage(Vs, v, j0, T, Dh, kv_off);
        __syncthreads();
        if (!valid || j0 > i) continue; // warp-uniform
        const int64_t j = j0 + lane;
        float ds = 0.0f;
        if (j <= i && in_window(sh, i, j) && (!seg || seg[b * T + j] == seg_i)) {
            const float p = expf(sh.scale * dot_dh(qw, Ks + lane * ld, Dh) - lse_i);
            const float dp = dot_dh(gw, Vs + lane * ld, Dh);
            ds = sh.scale * p * (dp - D_i);
        }
        for (int jj = 0; jj < kTile; jj++) {
            const float dsj = __shfl_sync(kFull, ds, jj);
            if (dsj == 0.0f) continue;
            const float *kr = Ks + jj * ld;
#pragma unroll
            for (int u = 0; u < kPerLane; u++) {
                const int64_t d = lane + 32 * u;
                if (d < Dh) acc[u] += dsj * kr[d];
            }
        }
    }
    if (!valid) return;
#pragma unroll
    for (int u = 0; u < kPerLane; u++) {
        const int64_t d = lane + 32 * u;
        if (d < Dh) dq[qrow + d] += acc[u];
    }
}

// dK, dV: grid (ceil(T/8), Hkv, B); a warp owns key row j of kv head kh and
// walks the queries i >= j of every query head of the group.
// smem: Q, dO tiles [32][Dh+1], lse and D of the tile [32] each, k and v rows [8][Dh].
__global__ void attn_dkdv_kernel(Shape sh, const float *q, const float *k, const float *v,
                                 const int32_t *seg, const float *lse, const float *D,
                                 const float *dout, float *dk, float *dv) {
    extern __shared__ float smem[];
    const int64_t Dh = sh.Dh, ld = Dh + 1, T = sh.Tq;
    float *Qt = smem, *Gt = Qt + kTile * ld, *Lt = Gt + kTile * ld, *Dt = Lt + kTile;
    float *Kw = Dt + kTile, *Vw = Kw + kRows * Dh;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t b = blockIdx.z, kh = blockIdx.y;
    const int64_t j_first = (int64_t)blockIdx.x * kRows, j = j_first + warp;
    const bool valid = j < T;

    float *kw = Kw + warp * Dh, *vw = Vw + warp * Dh;
    const int64_t krow = ((b * T + j) * sh.Hkv + kh) * Dh;
    if (valid)
        for (int64_t d = lane; d < Dh; d += 32) kw[d] = k[krow + d], vw[d] = v[krow + d];
    const int32_t seg_j = valid && seg ? seg[b * T + j] : 0;

    float acc_k[kPerLane], acc_v[kPerLane];
#pragma unroll
    for (int u = 0; u < kPerLane; u++) acc_k[u] = 0.0f, acc_v[u] = 0.0f;

    for (int64_t h = kh * sh.group; h < (kh + 1) * sh.group; h++) {
        auto q_off = [&](int64_t i) { return ((b * T + i) * sh.H + h) * Dh; };
        for (int64_t i0 = j_first; i0 < T; i0 += kTile) {
            __syncthreads();
            stage(Qt, q, i0, T, Dh, q_off);
            stage(Gt, dout, i0, T, Dh, q_off);
            if (threadIdx.x < kTile) {
                const int64_t i = i0 + threadIdx.x;
                Lt[threadIdx.x] = i < T ? lse[(b * sh.H + h) * T + i] : 0.0f;
                Dt[threadIdx.x] = i < T ? D[(b * sh.H + h) * T + i] : 0.0f;
            }
            __syncthreads();
            if (!valid) continue;
            const int64_t i = i0 + lane;
            float p = 0.0f, ds = 0.0f;
            if (i < T && i >= j && in_window(sh, i, j) && (!seg || seg[b * T + i] == seg_j)) {
                p = expf(sh.scale * dot_dh(Qt + lane * ld, kw, Dh) - Lt[lane]);
                const float dp = dot_dh(Gt + lane * ld, vw, Dh);
                ds = sh.scale * p * (dp - Dt[lane]);
            }
            for (int ii = 0; ii < kTile; ii++) {
                const float pi = __shfl_sync(kFull, p, ii), dsi = __shfl_sync(kFull, ds, ii);
                if (pi == 0.0f && dsi == 0.0f) continue;
                const float *qr = Qt + ii * ld, *gr = Gt + ii * ld;
#pragma unroll
                for (int u = 0; u < kPerLane; u++) {
                    const int64_t d = lane + 32 * u;
                    if (d < Dh) {
                        acc_v[u] += pi * gr[d];
                        acc_k[u] += dsi * qr[d];
                    }
                }
            }
        }
    }
    if (!valid) return;
#pragma unroll
    for (int u = 0; u < kPerLane; u++) {
        const int64_t d = lane + 32 * u;
        if (d < Dh) {
            if (dk) dk[krow + d] += acc_k[u];
            if (dv) dv[krow + d] += acc_v[u];
        }
    }
}

bool check_shape(const char *what, int64_t B, int64_t Tq, int64_t H, int64_t Hkv, int64_t Dh) {
    if (Dh < 1 || Dh > kMaxDh || Hkv < 1 || H % Hkv != 0) {
        RT_CUDA_FAIL("cuda %s: head dim %lld (1..%d supported), %lld heads, %lld kv heads",
                  what, (long long)Dh, kMaxDh, (long long)H, (long long)Hkv);
        return false;
    }
    if (B > 65535 || H > 65535 || (Tq + kRows - 1) / kRows > 0x7fffffff) {
        RT_CUDA_FAIL("cuda %s: batch %lld x heads %lld x length %lld exceeds the grid",
                  what, (long long)B, (long long)H, (long long)Tq);
        return false;
    }
    return true;
}

} // namespace

void rt_cuda_attention(int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t Dh,
                       const float *q, const float *k, const float *v, const int32_t *seg,
                       int64_t window, float *out, float *lse) {
    if (B <= 0 || Tq <= 0 || H <= 0) return;
    if (!check_shape("attention", B, Tq, H, Hkv, Dh)) return;
    if (Tq != Tk) seg = nullptr; // segments are defined for full sequences only
    const Shape sh = {B, Tq, Tk, H, Hkv, Dh, H / Hkv, (float)(1.0 / sqrt((double)Dh)), window};
    const size_t smem = (size_t)(2 * kTile * (Dh + 1) + kRows * Dh) * sizeof(float);
    if (!allow_smem((const void *)attn_fwd_kernel, smem)) return;
    const dim3 grid((unsigned)((Tq + kRows - 1) / kRows), (unsigned)H, (unsigned)B);
    attn_fwd_kernel<<<grid, kRows * 32, smem>>>(sh, q, k, v, seg, out, lse);
    RT_CUDA_LAUNCHED();
}

void rt_cuda_attention_bwd(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t Dh,
                           const float *q, const float *k, const float *v, const int32_t *seg,
                           int64_t window, const float *out, const float *lse, const float *dout, float *dq,
                           float *dk, float *dv) {
    if (B <= 0 || T <= 0 || H <= 0 || (!dq && !dk && !dv)) return;
    if (!check_shape("attention backward", B, T, H, Hkv, Dh)) return;
    const Shape sh = {B, T, T, H, Hkv, Dh, H / Hkv, (float)(1.0 / sqrt((double)Dh)), window};
    float *D = (float *)scratch((size_t)(B * H * T) * sizeof(float));
    if (!D) return;
    attn_delta_kernel<<<grid_for(B * T * H * 32), kThreads>>>(sh, out, dout, D);
    RT_CUDA_LAUNCHED();
    const unsigned row_blocks = (unsigned)((T + kRows - 1) / kRows);
    if (dq) {
        const size_t smem = (size_t)(2 * kTile * (Dh + 1) + 2 * kRows * Dh) * sizeof(float);
        if (!allow_smem((const void *)attn_dq_kernel, smem)) return;
        attn_dq_kernel<<<dim3(row_blocks, (unsigned)H, (unsigned)B), kRows * 32, smem>>>(
            sh, q, k, v, seg, lse, D, dout, dq);
        RT_CUDA_LAUNCHED();
    }
    if (dk || dv) {
        const size_t smem =
            (size_t)(2 * kTile * (Dh + 1) + 2 * kTile + 2 * kRows * Dh) * sizeof(float);
        if (!allow_smem((const void *)attn_dkdv_kernel, smem)) return;
        attn_dkdv_kernel<<<dim3(row_blocks, (unsigned)Hkv, (unsigned)B), kRows * 32, smem>>>(
            sh, q, k, v, seg, lse, D, dout, dk, dv);
        RT_CUDA_LAUNCHED();
    }
}
