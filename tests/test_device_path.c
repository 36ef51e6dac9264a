/* The engine's device code paths, run on a machine without a GPU: a
 * "device" kernel table that is the CPU table with its own allocator and a
 * CPU twin of the CUDA AdamW entry is installed as RT_CUDA
 * (rt_kernels_override), and everything the engine does differently for a
 * device — NF4 weights quantized on the host and uploaded packed
 * (rt_nf4_tensor_to), the optimizer over device buffers (dist/zero1.c:
 * sumsq + adamw entries), checkpoint save/resume through host copies,
 * merging an adapter into an NF4 weight held on the device — must give
 * exactly the CPU's bits. What this cannot see: a host dereference of a
 * device pointer (the fake device's memory is host memory); the GPU run of
 * bench/gpu.sh covers that. */
#include <math.h>

#include "kernels/backend.h"
#include "kernels/nf4.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "tests/cli_util.h"
#include "train/model/adapter.h"
#include "train/data/data.h"
#include "train/finetune.h"
#include "train/model/lora.h"
#include "train/trainer.h"

static rt_kernels fake;
static long live_allocs;

static int fake_count(void) { return 1; }
static void *fake_malloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (p) {
        memset(p, 0xA5, bytes); /* never zeroed for free: callers must zero */
        live_allocs++;
    }
    return p;
}
static void fake_free(void *p) {
    if (p) live_allocs--;
    free(p);
}
/* What kernels/cuda/optim.cu does, on the host. */
static void fake_adamw(int64_t n, const struct rt_adamw_scalars *s, float coef, float *p, float *g,
                       float *m, float *v) {
    for (int64_t i = 0; i < n; i++) {
        if (coef != 1.0f) g[i] *= coef;
        rt_adamw_elem(&p[i], g[i], &m[i], &v[i], s);
    }
}
/* The CPU optimizer's own reduction, so the clip coefficient matches too. */
static double fake_sumsq(int64_t n, const float *x) { return rt_sumsq(x, n); }

static void install_fake(void) {
    fake = rt_kernels_cpu;
    fake.name = "fake-device";
    fake.device_count = fake_count;
    fake.malloc = fake_malloc;
    fake.free = fake_free;
    fake.adamw = fake_adamw;
    fake.sumsq = fake_sumsq;
    rt_kernels_override(RT_CUDA, &fake);
}

static rt_tensor *ce_loss(rt_ctx *ctx, void *user, rt_llama *m, const rt_batch *b, rt_tensor *ids,
                          rt_tensor *pos, rt_tensor *seg, rt_tensor *labels, float denom) {
    (void)user, (void)b;
    return rt_cross_entropy(ctx, rt_llama_forward(ctx, m, ids, pos, seg), labels, denom);
}
static rt_status save_adapter(void *user, rt_llama *m, const char *dir) {
    return rt_adapter_save(m, dir, ((const rt_recipe *)user)->base_model);
}

static char bin[512], tok[512], text[512];

/* One `retort finetune` run in-process (cmd_finetune.c's body, world 1). */
static rt_status finetune(const char *device, const char *out, const char *resume, double *loss) {
    char a_dev[64], a_out[600], a_res[700], a_bin[600], a_tok[600], a_txt[600];
    snprintf(a_dev, sizeof a_dev, "device=%s", device);
    snprintf(a_out, sizeof a_out, "output_dir=%s", out);
    snprintf(a_res, sizeof a_res, "resume_from_checkpoint=%s", resume ? resume : "");
    snprintf(a_bin, sizeof a_bin, "base_model=%s", bin);
    snprintf(a_tok, sizeof a_tok, "tokenizer=%s", tok);
    snprintf(a_txt, sizeof a_txt, "datasets.0.path=%s", text);
    char *argv[] = {"finetune", RETORT_SOURCE_DIR "/recipes/stories260k-qlora-mobydick.yaml",
                    a_dev, a_out, a_bin, a_tok, a_txt, "max_steps=4", "save_steps=2",
                    "micro_batch_size=2", "sequence_len=64", "eval_steps=0", "logging_steps=1",
                    "warmup_steps=1", "max_grad_norm=0.05", a_res};
    int argc = (int)(sizeof argv / sizeof *argv) - (resume ? 0 : 1);
    rt_recipe r;
    RT_TRY(rt_finetune_load_recipe(argc, argv, &r));
    rt_dist d = {.world = 1, .rank = 0, .local_world = 1, .device = RT_CPU};
    rt_device dev;
    rt_llama *m = NULL;
    rt_tokenizer *tk = NULL;
    rt_dataset *train = NULL, *val = NULL;
    rt_status s = rt_finetune_device(&r, &dev);
    if (s == RT_OK) s = rt_dist_use_device(&d, dev);
    if (s == RT_OK) s = rt_finetune_model(&r, &d, dev, &m, &tk);
    if (s == RT_OK) s = rt_data_load(&r, tk, &train, &val);
    rt_train_result res = {0};
    if (s == RT_OK) {
        rt_train_job job = {.recipe = &r, .dist = &d, .device = dev, .model = m, .train = train,
                            .val = val, .loss = ce_loss, .save = save_adapter, .save_user = &r};
        s = rt_train(&job, &res);
    }
    *loss = res.last_loss;
    rt_dataset_free(train);
    rt_dataset_free(val);
    rt_llama_free(m);
    rt_tokenizer_free(tk);
    rt_recipe_free(&r);
    return s;
}

static void check_training(void) {
    char cpu[512], dev[512], res[512], path_a[600], path_b[600], ck[600];
    snprintf(cpu, sizeof cpu, "%s", rt_tmp("cpu"));
    snprintf(dev, sizeof dev, "%s", rt_tmp("dev"));
    snprintf(res, sizeof res, "%s", rt_tmp("dev-resumed"));
    double l_cpu = NAN, l_dev = NAN, l_res = NAN;
    rt_status s = finetune("cpu", cpu, NULL, &l_cpu);
    CHECK(s == RT_OK, "cpu run: %s", rt_error_message());
    s = finetune("cuda", dev, NULL, &l_dev);
    CHECK(s == RT_OK, "device run: %s", rt_error_message());
    CHECK(l_cpu == l_dev && isfinite(l_dev), "device loss %.9g == cpu loss %.9g", l_dev, l_cpu);
    snprintf(path_a, sizeof path_a, "%s/adapter_model.safetensors", cpu);
    snprintf(path_b, sizeof path_b, "%s/adapter_model.safetensors", dev);
    CHECK(rt_same_file(path_a, path_b), "device adapter is the CPU's, bit for bit");
    snprintf(path_a, sizeof path_a, "%s/checkpoint-2/trainer_state-rank0.bin", cpu);
    snprintf(path_b, sizeof path_b, "%s/checkpoint-2/trainer_state-rank0.bin", dev);
    CHECK(rt_same_file(path_a, path_b), "device checkpoint (downloaded params + moments) is the CPU's");
    /* Resume on the device from the device's checkpoint: uploads the state. */
    snprintf(ck, sizeof ck, "%s/checkpoint-2", dev);
    s = finetune("cuda", res, ck, &l_res);
    CHECK(s == RT_OK, "device resume: %s", rt_error_message());
    CHECK(l_res == l_dev, "resumed loss %.9g == uninterrupted %.9g", l_res, l_dev);
    snprintf(path_a, sizeof path_a, "%s/adapter_model.safetensors", res);
    snprintf(path_b, sizeof path_b, "%s/adapter_model.safetensors", dev);
    CHECK(rt_same_file(path_a, path_b), "resumed adapter equals the uninterrupted one");
    printf("device path: 4 QLoRA steps on the fake device: loss %.6f (cpu %.6f), resume %.6f\n",
           l_dev, l_cpu, l_res);
}

/* NF4 on the device: the packed codes uploaded, the state on the host; the
 * LoRA merge downloads the codes (train/lora.c). */
static void check_nf4_upload(void) {
    rt_llama_opts o = {.device = RT_CUDA, .load_in_4bit = true, .nf4_blocksize = 64,
                       .double_quant = true, .lora_r = 4, .lora_alpha = 8, .seed = 7,
                       .pad_multiple = 64};
    rt_llama_opts oc = o;
    oc.device = RT_CPU;
    rt_llama *m = NULL, *mc = NULL;
    CHECK(rt_llama_load(bin, &o, &m) == RT_OK, "NF4 load on the device: %s", rt_error_message());
    CHECK(rt_llama_load(bin, &oc, &mc) == RT_OK, "NF4 load on the CPU: %s", rt_error_message());
    if (!m || !mc) goto done;
    const rt_tensor *w = m->layers[0].proj[0].weight, *wc = mc->layers[0].proj[0].weight;
    CHECK(w->dtype == RT_NF4 && w->device == RT_CUDA && w->nf4 && w->nf4->double_quant,
          "q_proj is NF4 (double-quant state kept) on the device");
    CHECK(memcmp(w->data, wc->data, rt_nbytes(wc)) == 0, "uploaded codes are the CPU's");
    int64_t n = rt_numel(wc);
    float *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
    CHECK(rt_lora_merged_weight(&m->layers[0].proj[0], a) == RT_OK &&
              rt_lora_merged_weight(&mc->layers[0].proj[0], b) == RT_OK,
          "merge: %s", rt_error_message());
    CHECK(memcmp(a, b, (size_t)n * sizeof *a) == 0, "merged NF4 weight from the device equals the CPU's");
    free(a);
    free(b);
done:
    rt_llama_free(m);
    rt_llama_free(mc);
}

int main(void) {
    snprintf(bin, sizeof bin, "%s", rt_test_shared("models/stories260K/stories260K.bin"));
    snprintf(tok, sizeof tok, "%s", rt_test_shared("models/stories260K/tok512.bin"));
    /* 24 KiB of Moby-Dick: enough rows for 4 steps of 2 x 64 and a held-out set. */
    size_t len = 0;
    char *moby = rt_slurp(rt_test_shared("data/moby-dick.txt"), &len);
    if (!moby) {
        SKIP("../shared/data/moby-dick.txt not found");
        return rt_test_summary();
    }
    snprintf(text, sizeof text, "%s", rt_tmp("moby24k.txt"));
    rt_spit(text, moby, len < 24576 ? len : 24576);
    free(moby);
    install_fake();
    check_nf4_upload();
    check_training();
    rt_kernels_override(RT_CUDA, NULL);
    CHECK(live_allocs == 0, "every device allocation freed (%ld live)", live_allocs);
    return rt_test_summary();
}
