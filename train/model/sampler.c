#include "train/model/sampler.h"

#include <math.h>
#include <stdlib.h>

rt_sampler *rt_sampler_new(int vocab_size, float temperature, float top_p, uint64_t seed) {
    rt_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->top_p = top_p;
    s->rng_state = seed;
    s->probindex = malloc((size_t)vocab_size * sizeof *s->probindex);
    if (!s->probindex) {
        free(s);
        return NULL;
    }
    return s;
}

void rt_sampler_free(rt_sampler *s) {
    if (!s) return;
    free(s->probindex);
    free(s);
}

/* xorshift64* as run.c's random_u32 / random_f32. */
static uint32_t random_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

static float random_f32(uint64_t *state) { return (float)(random_u32(state) >> 8) / 16777216.0f; }

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void softmax(float *x, int n) {
    float max = x[argmax(x, n)], sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

static int sample_mult(const float *p, int n, float coin) {
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) {
        cdf += p[i];
        if (coin < cdf) return i;
    }
    return n - 1; /* rounding */
}

static int compare_desc(const void *a, const void *b) {
    float pa = ((const struct rt_prob_index *)a)->prob, pb = ((const struct rt_prob_index *)b)->prob;
    return pa > pb ? -1 : pa < pb ? 1 : 0;
}

/* Smallest set of tokens whose cumulative probability exceeds top_p; tokens
 * below (1 - top_p) / (n - 1) cannot be in it and are dropped before the
 * sort, as run.c does. */
static int sample_topp(const float *p, int n, float top_p, struct rt_prob_index *pi, float coin) {
    int n0 = 0;
    const float cutoff = (1.0f - top_p) / (float)(n - 1);
    for (int i = 0; i < n; i++)
        if (p[i] >= cutoff) pi[n0++] = (struct rt_prob_index){p[i], i};
    qsort(pi, (size_t)n0, sizeof *pi, compare_desc);
    float cum = 0.0f;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cum += pi[i].prob;
        if (cum > top_p) {
            last = i;
            break;
        }
    }
    float r = coin * cum, cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += pi[i].prob;
        if (r < cdf) return pi[i].index;
    }
    return pi[last].index;
}

int rt_sampler_sample(rt_sampler *s, float *logits) {
    if (s->temperature == 0.0f) return argmax(logits, s->vocab_size);
    for (int i = 0; i < s->vocab_size; i++) logits[i] /= s->temperature;
    softmax(logits, s->vocab_size);
    float coin = random_f32(&s->rng_state);
    if (s->top_p <= 0 || s->top_p >= 1) return sample_mult(logits, s->vocab_size, coin);
    return sample_topp(logits, s->vocab_size, s->top_p, s->probindex, coin);
}
