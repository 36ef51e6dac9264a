/* retort — the distillation losses (rt_kd_loss) and the teacher top-k
 * (rt_kd_topk); definitions, references and the top-k "rest" bucket are
 * documented at rt_kd_loss in autograd/ops.h, the arithmetic in
 * kernels/cpu/kd.c.
 *
 * Like rt_kl_div (op_loss.c), the per-row divergences come from a kernel on
 * the ctx device and are summed on the host; labels become a u8 row mask,
 * and denom <= 0 means the number of rows that count. Teacher ids are checked
 * on the host too (range, and distinctness within a row): a repeated id
 * would count its teacher mass twice and a stray one would read outside the
 * student's row, and both can come from a corrupt teacher-logit cache.
 */
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"

static bool check_f32(rt_ctx *ctx, const char *what, const rt_tensor *x) {
    if (x->dtype == RT_F32 && x->device == ctx->device && x->ndim >= 1 && x->shape[x->ndim - 1] > 0)
        return true;
    char s[64];
    rt_ctx_fail(ctx, RT_EINTERNAL, "kd_loss: %s must be f32 [..., n] on %s, got %s %s %s", what,
                rt_device_name(ctx->device), rt_dtype_name(x->dtype), rt_device_name(x->device),
                rt_shape_str(x, s, sizeof s));
    return false;
}

/* u8 row mask on the device from i32 labels (NULL labels: *mask = NULL, all
 * N rows count). false + ctx error on a bad label tensor or value. */
static bool label_mask(rt_ctx *ctx, const rt_tensor *labels, int64_t N, int64_t V, rt_tensor **mask,
                       int64_t *count) {
    *mask = NULL;
    *count = N;
    if (!labels) return true;
    if (labels->dtype != RT_I32 || labels->device != ctx->device || rt_numel(labels) != N) {
        char s[64];
        rt_ctx_fail(ctx, RT_EINTERNAL,
                    "kd_loss: labels must be i32 on %s with %lld elements, got %s %s",
                    rt_device_name(ctx->device), (long long)N, rt_dtype_name(labels->dtype),
                    rt_shape_str(labels, s, sizeof s));
        return false;
    }
    int32_t *h = rt_arena_alloc_host(ctx->arena, (size_t)N * sizeof *h + 1);
    uint8_t *hm = rt_arena_alloc_host(ctx->arena, (size_t)N + 1);
    *mask = rt_new(ctx, RT_U8, 1, &N);
    if (!h || !hm || !*mask) {
        rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
        return false;
    }
    ctx->k->download(h, labels->data, (size_t)N * sizeof *h);
    *count = 0;
    for (int64_t i = 0; i < N; i++) {
        if (h[i] != RT_IGNORE_INDEX && (h[i] < 0 || h[i] >= V)) {
            rt_ctx_fail(ctx, RT_EINPUT,
                        "kd_loss: label %d at row %lld is outside the vocabulary [0, %lld) "
                        "(tokenizer and model disagree?)",
                        (int)h[i], (long long)i, (long long)V);
            return false;
        }
        hm[i] = h[i] != RT_IGNORE_INDEX;
        *count += hm[i];
    }
    ctx->k->upload((*mask)->data, hm, (size_t)N);
    return true;
}

static int cmp_i32(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* Every row of ids[N, K] lies in [0, V) without repeats. */
static bool check_ids(rt_ctx *ctx, const rt_tensor *ids, int64_t N, int64_t K, int64_t V) {
    int32_t *h = rt_arena_alloc_host(ctx->arena, (size_t)(N * K) * sizeof *h + 1);
    int32_t *row = rt_arena_alloc_host(ctx->arena, (size_t)K * sizeof *row + 1);
    if (!h || !row) {
        rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
        return false;
    }
    ctx->k->download(h, ids->data, (size_t)(N * K) * sizeof *h);
    for (int64_t i = 0; i < N; i++) {
        memcpy(row, h + i * K, (size_t)K * sizeof *row);
        qsort(row, (size_t)K, sizeof *row, cmp_i32);
        for (int64_t j = 0; j < K; j++) {
            if (row[j] < 0 || row[j] >= V) {
                rt_ctx_fail(ctx, RT_EINPUT,
                            "kd_loss: teacher id %d at row %lld is outside the student's "
                            "vocabulary [0, %lld) (teacher cache from another tokenizer?)",
                            (int)row[j], (long long)i, (long long)V);
                return false;
            }
            if (j > 0 && row[j] == row[j - 1]) {
                rt_ctx_fail(ctx, RT_EINPUT,
                            "kd_loss: teacher id %d appears twice in the top-%lld of row %lld "
                            "(corrupt teacher cache?)",
                            (int)row[j], (long long)K, (long long)i);
                return false;
            }
        }
    }
    return true;
}

/* in: student, teacher, teacher_ids (NULL: full), labels (unused here).
 * saved[0]: row mask or NULL. f: T, 1/denom, beta. i[0]: kind. */
static void kd_loss_backward(rt_ctx *ctx, rt_node *n) {
    rt_tensor *s = n->in[0], *t = n->in[1], *ids = n->in[2], *ds = rt_grad(ctx, s);
    if (!ds) return;
    const int64_t V = s->shape[s->ndim - 1], N = rt_numel(s) / V;
    const float T = n->f[0];
    float g = 0.0f;
    ctx->k->download(&g, n->out->grad->data, sizeof g);
    g *= T * T * n->f[1]; /* loss = T^2 * inv * sum_rows D */
    const uint8_t *mask = n->saved[0] ? n->saved[0]->data : NULL;
    if (ids)
        ctx->k->kd_topk_loss_bwd(N, V, t->shape[t->ndim - 1], s->data, ids->data, t->data, T,
                                 (int)n->i[0], n->f[2], mask, g, ds->data);
    else
        ctx->k->kd_loss_bwd(N, V, s->data, t->data, T, (int)n->i[0], n->f[2], mask, g, ds->data);
}

rt_tensor *rt_kd_loss(rt_ctx *ctx, rt_tensor *student, rt_tensor *teacher, rt_tensor *teacher_ids,
                      rt_tensor *labels, rt_kd_kind kind, float beta, float temperature,
                      float denom) {
    if (!student || !teacher) return NULL;
    if (!check_f32(ctx, "student", student) || !check_f32(ctx, "teacher", teacher)) return NULL;
    const int64_t V = student->shape[student->ndim - 1], N = rt_numel(student) / V;
    const int64_t K = teacher->shape[teacher->ndim - 1];
    char a[64], b[64];
    if (!teacher_ids && !rt_same_shape(student, teacher))
        return rt_ctx_fail(ctx, RT_EINTERNAL,
                           "kd_loss: student %s and teacher logits %s differ in shape",
                           rt_shape_str(student, a, sizeof a), rt_shape_str(teacher, b, sizeof b));
    if (teacher_ids) {
        if (teacher_ids->dtype != RT_I32 || teacher_ids->device != ctx->device ||
            !rt_same_shape(teacher_ids, teacher))
            return rt_ctx_fail(ctx, RT_EINTERNAL,
                               "kd_loss: teacher ids must be i32 on %s shaped like the teacher "
                               "log-probs %s, got %s %s",
                               rt_device_name(ctx->device), rt_shape_str(teacher, a, sizeof a),
                               rt_dtype_name(teacher_ids->dtype),
                               rt_shape_str(teacher_ids, b, sizeof b));
        if (rt_numel(teacher) / K != N || K > V)
            return rt_ctx_fail(ctx, RT_EINTERNAL,
                               "kd_loss: top-k teacher %s does not fit student %s (need the same "
                               "number of rows and k <= V)",
                               rt_shape_str(teacher, a, sizeof a),
                               rt_shape_str(student, b, sizeof b));
    }
    if (kind != RT_KD_FORWARD_KL && kind != RT_KD_REVERSE_KL && kind != RT_KD_JSD)
        return rt_ctx_fail(ctx, RT_EINPUT, "kd_loss: unknown divergence kind %d", (int)kind);
    if (!(temperature > 0))
        return rt_ctx_fail(ctx, RT_EINPUT, "kd_loss: temperature must be > 0, got %g",
                           (double)temperature);
    if (kind == RT_KD_JSD && !(beta >= 0 && beta <= 1))
        return rt_ctx_fail(ctx, RT_EINPUT, "kd_loss: jsd beta must lie in [0, 1], got %g",
                           (double)beta);
    const bool topk = teacher_ids != NULL;
    if (topk ? !ctx->k->kd_topk_loss || !ctx->k->kd_topk_loss_bwd
             : !ctx->k->kd_loss || !ctx->k->kd_loss_bwd)
        return rt_ctx_fail(ctx, RT_EINTERNAL, "kd_loss: no %s kernel", ctx->k->name);
    /* The kernels compute these endpoints the same way; resolving them here
     * keeps one code path per kind. */
    if (kind == RT_KD_JSD && beta == 0.0f) kind = RT_KD_FORWARD_KL;
    if (kind == RT_KD_JSD && beta == 1.0f) kind = RT_KD_REVERSE_KL;

    rt_tensor *mask;
    int64_t count;
    if (!label_mask(ctx, labels, N, V, &mask, &count)) return NULL;
    if (topk && !check_ids(ctx, teacher_ids, N, K, V)) return NULL;
    const double d = denom > 0 ? denom : (double)count;
    const float inv = d > 0 ? (float)(1.0 / d) : 0.0f;

    rt_tensor *rows = rt_new(ctx, RT_F32, 1, &N), *loss = rt_new(ctx, RT_F32, 0, NULL);
    float *h = rt_arena_alloc_host(ctx->arena, (size_t)N * sizeof *h + 1);
    if (!rows || !loss || !h) return rt_ctx_fail(ctx, RT_EINTERNAL, "%s", rt_error_message());
    const uint8_t *m = mask ? mask->data : NULL;
    if (topk)
        ctx->k->kd_topk_loss(N, V, K, student->data, teacher_ids->data, teacher->data, temperature,
                             (int)kind, beta, m, rows->data);
    else
        ctx->k->kd_loss(N, V, student->data, teacher->data, temperature, (int)kind, beta, m,
                        rows->data);
    ctx->k->download(h, rows->data, (size_t)N * sizeof *h);
    double sum = 0.0;
    for (int64_t i = 0; i < N; i++) sum += h[i];
    const float value = (float)(sum * temperature * temperature * inv);
    ctx->k->upload(loss->data, &value, sizeof value);

    /* Backward never asks for the teacher's gradient, so it gets none even
     * if it requires one. */
    rt_node *n = rt_record(ctx, "kd_loss", kd_loss_backward, loss, 4,
                           (rt_tensor *[]){student, teacher, teacher_ids, labels});
    if (n) {
        n->saved[0] = mask;
        n->f[0] = temperature;
        n->f[1] = inv;
        n->f[2] = beta;
        n->i[0] = kind;
    }
    return loss;
}

rt_status rt_kd_topk(rt_ctx *ctx, rt_tensor *teacher_logits, int k, float temperature,
                     rt_tensor **ids, rt_tensor **logp) {
    *ids = *logp = NULL;
    rt_tensor *t = teacher_logits;
    char s[64];
    if (!t || t->dtype != RT_F32 || t->device != ctx->device || t->ndim < 1 ||
        t->shape[t->ndim - 1] <= 0) {
        if (!t) return rt_errorf(RT_EINTERNAL, "kd_topk: no teacher logits");
        return rt_errorf(RT_EINTERNAL,
                         "kd_topk: teacher logits must be f32 [..., V] on %s, got %s %s %s",
                         rt_device_name(ctx->device), rt_dtype_name(t->dtype),
                         rt_device_name(t->device), rt_shape_str(t, s, sizeof s));
    }
    const int64_t V = t->shape[t->ndim - 1], N = rt_numel(t) / V;
    if (k < 1 || k > V)
        return rt_errorf(RT_EINPUT, "kd_topk: k = %d must lie in [1, V = %lld]", k, (long long)V);
    if (!(temperature > 0))
        return rt_errorf(RT_EINPUT, "kd_topk: temperature must be > 0, got %g",
                         (double)temperature);
    if (!ctx->k->kd_topk) return rt_errorf(RT_EINTERNAL, "kd_topk: no %s kernel", ctx->k->name);
    int64_t shape[RT_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[t->ndim - 1] = k;
    rt_tensor *i_out = rt_new(ctx, RT_I32, t->ndim, shape),
              *l_out = rt_new(ctx, RT_F32, t->ndim, shape);
    if (!i_out || !l_out) return RT_EINTERNAL; /* rt_new set the message */
    ctx->k->kd_topk(N, V, k, t->data, temperature, i_out->data, l_out->data);
    *ids = i_out;
    *logp = l_out;
    return RT_OK;
}
