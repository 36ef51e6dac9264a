// retort — CUDA NF4 dequantization of a row range (the nf4_dequant_rows entry
// of kernels/kernels.h; format: kernels/nf4.h, bitsandbytes'
// kDequantizeBlockwise): out[e - r0*cols] = code[nibble e] * absmax[e / blocksize].
//
// The packed bytes are device memory, but an rt_nf4_state and its arrays are
// HOST memory (kernels/nf4.h). So the block scales are prepared on the host
// with rt_nf4_absmax (the same function the CPU path uses, so the fp32 scales
// and therefore every dequantized value are bit-identical to the CPU's) and
// kept on the device in a cache keyed by the state's address.
//
// Cache validity: a state can be freed and another one created at the same
// address (tests/op_cases_a.c builds one per call in the arena), so an entry
// also records the state's sizes, array addresses and a 64-bit fingerprint of
// its scale arrays; any difference rebuilds the entry. The fingerprint costs
// one pass over n_blocks bytes (1/32 of the packed weight with double
// quantization) per call, far less than the dequantization itself.
// Entries live until the process ends (a few bytes per block of every
// quantized weight seen: ~1/16 of the packed weights' size).
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/cuda_internal.h"
#include "kernels/nf4.h"

using namespace rt_cuda;

namespace {

struct Nf4Code {
    float v[16];
};

struct CacheEntry {
    int64_t n = 0, n_blocks = 0;
    int blocksize = 0;
    bool double_quant = false;
    const void *absmax = nullptr, *absmax_q = nullptr, *nested = nullptr;
    uint64_t fingerprint = 0;
    float *scales = nullptr; // device, [n_blocks]
};

std::mutex cache_mu;
std::unordered_map<const rt_nf4_state *, CacheEntry> cache;

// FNV-1a over whole 8-byte words (then the tail bytes), mixed with splitmix's
// finaliser: a cheap fingerprint, not a cryptographic hash.
uint64_t fnv_bytes(uint64_t h, const void *p, size_t bytes) {
    const unsigned char *b = (const unsigned char *)p;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = (h ^ w) * 0x100000001B3ull;
        h ^= h >> 29;
    }
    for (; i < bytes; i++) h = (h ^ b[i]) * 0x100000001B3ull;
    return h;
}

uint64_t fingerprint(const rt_nf4_state *st) {
    uint64_t h = 0xCBF29CE484222325ull;
    h = fnv_bytes(h, st->code, sizeof st->code); // not a scale, but hashed for safety
    if (!st->double_quant) return fnv_bytes(h, st->absmax, (size_t)st->n_blocks * sizeof(float));
    const int64_t n_nested = (st->n_blocks + st->nested_blocksize - 1) / st->nested_blocksize;
    h = fnv_bytes(h, st->absmax_q, (size_t)st->n_blocks);
    h = fnv_bytes(h, st->nested_absmax, (size_t)n_nested * sizeof(float));
    h = fnv_bytes(h, &st->nested_offset, sizeof st->nested_offset);
    return fnv_bytes(h, st->nested_code, sizeof st->nested_code);
}

// The device scales of st (uploading them if the cache has none or a stale
// copy); NULL with the message set on failure.
const float *device_scales(const rt_nf4_state *st) {
    const uint64_t fp = fingerprint(st);
    std::lock_guard<std::mutex> lock(cache_mu);
    CacheEntry &e = cache[st];
    if (e.scales && e.n == st->n && e.n_blocks == st->n_blocks && e.blocksize == st->blocksize &&
        e.double_quant == st->double_quant && e.absmax == st->absmax &&
        e.absmax_q == st->absmax_q && e.nested == st->nested_absmax && e.fingerprint == fp)
        return e.scales;
    if (e.scales && e.n_blocks < st->n_blocks) {
        RT_CUDA_CHECK(cudaFree(e.scales));
        e.scales = nullptr;
    }
    e.n_blocks = 0; // invalid until filled
    if (!e.scales && cudaMalloc(&e.scales, (size_t)st->n_blocks * sizeof(float)) != cudaSuccess) {
        e.scales = nullptr;
        rt_cuda_oom("NF4 block scales", (size_t)st->n_blocks * sizeof(float));
        return nullptr;
    }
    std::vector<float> host((size_t)st->n_blocks);
    rt_nf4_absmax(st, host.data());
    // cudaMemcpy from pageable memory returns once the data is staged, so
    // `host` may go out of scope right after.
    if (cudaMemcpy(e.scales, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice) !=
        cudaSuccess) {
        rt_fault_record("CUDA", "NF4 scales upload", __FILE__, __LINE__,
                        cudaGetErrorString(cudaGetLastError()));
        return nullptr;
    }
    e.n = st->n;
    e.n_blocks = st->n_blocks;
    e.blocksize = st->blocksize;
    e.double_quant = st->double_quant;
    e.absmax = st->absmax;
    e.absmax_q = st->absmax_q;
    e.nested = st->nested_absmax;
    e.fingerprint = fp;
    return e.scales;
}

// Element e of the weight: nibble e of the packed bytes (element 2j in the
// HIGH nibble of byte j), times its block's scale: one fp32 multiply, as on
// the CPU (kernels/cpu/nf4.c dequant_range).
__global__ void nf4_dequant_kernel(const uint8_t *packed, Nf4Code code, const float *scales,
                                   int blocksize, int64_t e0, int64_t n, float *out) {
    RT_GRID_STRIDE(i, n) {
        const int64_t e = e0 + i;
        const uint8_t byte = packed[e >> 1];
        const int idx = (e & 1) ? (byte & 15) : (byte >> 4);
        out[i] = code.v[idx] * scales[e / blocksize];
    }
}

} // namespace

void rt_cuda_nf4_dequant_rows(const uint8_t *packed, const struct rt_nf4_state *st, int64_t cols,
                              int64_t r0, int64_t r1, float *out) {
    const int64_t e0 = r0 * cols, n = (r1 - r0) * cols;
    if (n <= 0) return;
    if (!st || st->blocksize <= 0 || st->n_blocks <= 0 || r1 * cols > st->n) {
        RT_CUDA_FAIL("cuda nf4 dequant: rows [%lld, %lld) x %lld outside the weight",
                  (long long)r0, (long long)r1, (long long)cols);
        return;
    }
    const float *scales = device_scales(st);
    if (!scales) return;
    Nf4Code code;
    memcpy(code.v, st->code, sizeof code.v);
    nf4_dequant_kernel<<<grid_for(n), kThreads>>>(packed, code, scales, st->blocksize, e0, n, out);
    RT_CUDA_LAUNCHED();
}
