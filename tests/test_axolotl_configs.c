/* axolotl configs run unchanged: two recipes with exactly the key sets of
 * axolotl's examples/llama-3/qlora-1b.yml and examples/openllama-3b/qlora.yml
 * (written here; values sized for stories260K) go through `retort finetune`
 * with no override. Inert keys come back in one note line, bf16/fp16 and the
 * 8-bit/paged optimizers in one note each; an unsupported key that is set is
 * an error naming it; `finetune --help` lists the keys from the parser's table. */
#include <stdbool.h>

#include "tests/cli_util.h"

/* The key set of examples/llama-3/qlora-1b.yml. */
static const char LLAMA3_1B[] =
    "base_model: %s\n"
    "load_in_8bit: false\n"
    "load_in_4bit: true\n"
    "datasets:\n"
    "  - path: %s\n"
    "    type: alpaca\n"
    "dataset_prepared_path: last_run_prepared\n"
    "val_set_size: 0.02\n"
    "output_dir: %s\n"
    "adapter: qlora\n"
    "lora_model_dir:\n"
    "sequence_len: 256\n"
    "sample_packing: true\n"
    "eval_sample_packing: true\n"
    "lora_r: 8\n"
    "lora_alpha: 16\n"
    "lora_dropout: 0.05\n"
    "lora_target_modules:\n"
    "  - gate_proj\n  - down_proj\n  - up_proj\n  - q_proj\n  - v_proj\n  - k_proj\n  - o_proj\n"
    "wandb_project:\nwandb_entity:\nwandb_watch:\nwandb_name:\nwandb_log_model:\n"
    "gradient_accumulation_steps: 2\n"
    "micro_batch_size: 2\n"
    "num_epochs: 0.02\n"
    "optimizer: adamw_bnb_8bit\n"
    "lr_scheduler: cosine\n"
    "learning_rate: 0.002\n"
    "bf16: auto\n"
    "tf32: false\n"
    "gradient_checkpointing: true\n"
    "resume_from_checkpoint:\n"
    "logging_steps: 1\n"
    "attn_implementation: flash_attention_2\n"
    "loss_watchdog_threshold: 50.0\n"
    "loss_watchdog_patience: 3\n"
    "warmup_ratio: 0.1\n"
    "evals_per_epoch: 4\n"
    "saves_per_epoch: 1\n"
    "weight_decay: 0.0\n"
    "special_tokens:\n"
    "  pad_token: \"</s>\"\n";

/* The key set of examples/openllama-3b/qlora.yml (base_model and a tokenizer
 * key aside: stories260K is a llama2.c .bin, so tokenizer_config names its
 * tokenizer). */
static const char OPENLLAMA_3B[] =
    "base_model: %s\n"
    "tokenizer_config: %s\n"
    "model_type: LlamaForCausalLM\n"
    "tokenizer_type: LlamaTokenizer\n"
    "load_in_8bit: false\n"
    "load_in_4bit: true\n"
    "strict: false\n"
    "push_dataset_to_hub:\n"
    "datasets:\n"
    "  - path: %s\n"
    "    type: alpaca\n"
    "dataset_prepared_path:\n"
    "val_set_size: 0.02\n"
    "adapter: qlora\n"
    "lora_model_dir:\n"
    "sequence_len: 256\n"
    "sample_packing: true\n"
    "lora_r: 8\n"
    "lora_alpha: 32\n"
    "lora_dropout: 0.05\n"
    "lora_target_modules:\n"
    "lora_target_linear: true\n"
    "lora_fan_in_fan_out:\n"
    "wandb_project:\nwandb_entity:\nwandb_watch:\nwandb_name:\nwandb_log_model:\n"
    "output_dir: %s\n"
    "gradient_accumulation_steps: 1\n"
    "micro_batch_size: 2\n"
    "num_epochs: 0.01\n"
    "optimizer: paged_adamw_32bit\n"
    "torchdistx_path:\n"
    "lr_scheduler: cosine\n"
    "learning_rate: 0.0002\n"
    "train_on_inputs: false\n"
    "group_by_length: false\n"
    "bf16: false\n"
    "fp16: true\n"
    "tf32: false\n"
    "gradient_checkpointing: true\n"
    "early_stopping_patience:\n"
    "resume_from_checkpoint:\n"
    "local_rank:\n"
    "logging_steps: 1\n"
    "xformers_attention:\n"
    "flash_attention: true\n"
    "gptq_groupsize:\n"
    "gptq_model_v1:\n"
    "warmup_steps: 2\n"
    "evals_per_epoch: 4\n"
    "save_steps:\n"
    "debug:\n"
    "deepspeed:\n"
    "weight_decay: 0.1\n"
    "fsdp:\n"
    "fsdp_config:\n"
    "special_tokens:\n"
    "  bos_token: \"<s>\"\n"
    "  eos_token: \"</s>\"\n"
    "  unk_token: \"<unk>\"\n";

static bool has(const char *path, const char *what) {
    char *s = rt_slurp(path, NULL);
    bool ok = s && strstr(s, what);
    if (!ok) fprintf(stderr, "%s lacks \"%s\":\n%s\n", path, what, s ? s : "(unreadable)");
    free(s);
    return ok;
}

static int count_lines_with(const char *path, const char *what) {
    char *s = rt_slurp(path, NULL);
    int n = 0;
    for (char *p = s; p && (p = strstr(p, what)); p += strlen(what)) n++;
    free(s);
    return n;
}

int main(void) {
    char bin[600], tok[600], data[600], cfg[4096], p1[600], p2[600], out1[600], out2[600];
    snprintf(bin, sizeof bin, "%s", rt_test_shared("models/stories260K/stories260K.bin"));
    snprintf(tok, sizeof tok, "%s", rt_test_shared("models/stories260K/tok512.bin"));
    snprintf(data, sizeof data, "%s", rt_test_shared("data/sotu-openings.alpaca.jsonl"));
    snprintf(p1, sizeof p1, "%s", rt_tmp("llama3-qlora-1b.yml"));
    snprintf(p2, sizeof p2, "%s", rt_tmp("openllama-qlora.yml"));
    snprintf(out1, sizeof out1, "%s", rt_tmp("out1"));
    snprintf(out2, sizeof out2, "%s", rt_tmp("out2"));
    const char *err = rt_tmp("err.txt");

    /* A llama2.c .bin needs its tokenizer named: axolotl's tokenizer_config
     * key, added to this config as to the second. */
    int n = snprintf(cfg, sizeof cfg, LLAMA3_1B, bin, data, out1);
    char with_tok[4400];
    snprintf(with_tok, sizeof with_tok, "tokenizer_config: %s\n%.*s", tok, n, cfg);
    rt_spit(p1, with_tok, strlen(with_tok));
    int rc = rt_run(NULL, err, "finetune %s", p1);
    CHECK(rc == 0, "llama-3 qlora-1b key set runs unchanged (exit %d)", rc);
    CHECK(count_lines_with(err, "retort: note: accepted, no effect here") == 1 && has(err, "dataset_prepared_path") &&
              has(err, "attn_implementation"), "inert keys in one note line");
    CHECK(has(err, "bf16: auto on the CPU: training runs in f32"), "bf16 note");
    CHECK(has(err, "optimizer adamw_bnb_8bit runs as retort's AdamW"), "8-bit optimizer note");
    char p[700];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", out1);
    char *ad = rt_slurp(p, NULL);
    CHECK(ad != NULL, "adapter written: %s", p);
    free(ad);
    /* adapter_config.json: lora_dropout as written in the recipe, an absolute
     * base_model_name_or_path, peft_version and revision. */
    snprintf(p, sizeof p, "%s/adapter_config.json", out1);
    CHECK(has(p, "\"lora_dropout\":\t0.05,") && has(p, "\"base_model_name_or_path\":\t\"/") &&
              has(p, "\"peft_version\":") && has(p, "\"revision\":\tnull"),
          "adapter_config.json fields");
    /* A PEFT feature retort lacks is an error naming it when the adapter loads. */
    static const char *const feats[][2] = {{"\"use_dora\":\tfalse", "\"use_dora\": true"},
                                           {"\"rank_pattern\":\t{\n\t}", "\"rank_pattern\": {\"q_proj\": 4}"},
                                           {"\"modules_to_save\":\tnull", "\"modules_to_save\": [\"lm_head\"]"},
                                           {"\"bias\":\t\"none\"", "\"bias\": \"all\""},
                                           {"\"fan_in_fan_out\":\tfalse", "\"fan_in_fan_out\": true"},
                                           {"\"layers_to_transform\":\tnull", "\"layers_to_transform\": [0]"}};
    static const char *const named[] = {"DoRA", "rank_pattern", "modules_to_save", "bias", "fan_in_fan_out",
                                        "layers_to_transform"};
    char *cfgtext = rt_slurp(p, NULL);
    for (int k = 0; cfgtext && k < 6; k++) {
        char *at = strstr(cfgtext, feats[k][0]);
        CHECK(at != NULL, "adapter_config.json has %s", feats[k][0]);
        if (!at) continue;
        char edited[8192];
        snprintf(edited, sizeof edited, "%.*s%s%s", (int)(at - cfgtext), cfgtext, feats[k][1],
                 at + strlen(feats[k][0]));
        char cp[2048];
        snprintf(cp, sizeof cp, "mkdir -p %s/bad && cp %s/adapter_model.safetensors %s/bad/", out1, out1, out1);
        CHECK(system(cp) == 0, "copy adapter");
        snprintf(cp, sizeof cp, "%s/bad/adapter_config.json", out1);
        rt_spit(cp, edited, strlen(edited));
        rc = rt_run(NULL, err, "merge --model %s --tokenizer %s --adapter %s/bad --out %s/merged", bin, tok, out1,
                    out1);
        CHECK(rc == 2 && has(err, named[k]) && has(err, "adapter_config.json"), "adapter with %s: exit 2 (%d)",
              named[k], rc);
    }
    free(cfgtext);
    snprintf(p, sizeof p, "%s/recipe.yaml", out1);
    CHECK(has(p, "optimizer: adamw") && has(p, "lora_target_modules:"), "effective recipe written");

    snprintf(cfg, sizeof cfg, OPENLLAMA_3B, bin, tok, data, out2);
    rt_spit(p2, cfg, strlen(cfg));
    rc = rt_run(NULL, err, "finetune %s", p2);
    CHECK(rc == 0, "openllama-3b qlora key set runs unchanged (exit %d)", rc);
    CHECK(count_lines_with(err, "retort: note: accepted") == 1 && has(err, "model_type") &&
              has(err, "tokenizer_type") && has(err, "flash_attention"), "openllama inert keys");
    CHECK(has(err, "fp16 on the CPU: training runs in f32") && has(err, "paged_adamw_32bit"), "fp16 and paged notes");
    snprintf(p, sizeof p, "%s/recipe.yaml", out2);
    CHECK(has(p, "lora_target_modules: all-linear"), "lora_target_linear: all-linear");

    /* Unsupported keys that are set: an error naming the key and what to use. */
    char bad[4800];
    snprintf(bad, sizeof bad, "%sdeepspeed: deepspeed_configs/zero3.json\n", cfg);
    char *dsl = strstr(bad, "deepspeed:\n");
    if (dsl) memmove(dsl, dsl + 11, strlen(dsl + 11) + 1); /* drop the empty one */
    rt_spit(p2, bad, strlen(bad));
    rc = rt_run(NULL, err, "finetune %s", p2);
    CHECK(rc == 2 && has(err, "deepspeed") && has(err, "mpirun") && has(err, p2), "deepspeed set: exit 2 (%d)", rc);
    rc = rt_run(NULL, err, "finetune %s load_in_8bit=true", p1);
    CHECK(rc == 2 && has(err, "load_in_8bit"), "load_in_8bit=true override: exit 2 (%d)", rc);
    snprintf(bad, sizeof bad, "%speft_use_dora: true\n", with_tok);
    rt_spit(p2, bad, strlen(bad));
    rc = rt_run(NULL, err, "finetune %s", p2);
    CHECK(rc == 2 && has(err, "peft_use_dora") && has(err, "DoRA"), "peft_use_dora: exit 2 (%d)", rc);
    rc = rt_run(NULL, err, "finetune %s group_by_length=true", p1);
    CHECK(rc == 2 && has(err, "group_by_length"), "group_by_length true: exit 2");
    rc = rt_run(NULL, err, "finetune %s special_tokens.pad_token='<|pad|>'", p1);
    CHECK(rc == 2 && has(err, "special_tokens.pad_token") && has(err, "<|pad|>"), "unknown special token: exit 2");
    /* axolotl would make "<s>" the EOS; retort keeps the tokenizer's own, so another one is an error */
    rc = rt_run(NULL, err, "finetune %s special_tokens.eos_token='<s>'", p1);
    CHECK(rc == 2 && has(err, "special_tokens.eos_token") && has(err, "not the EOS"), "eos_token not the EOS: exit 2");

    /* finetune --help: keys with type and default from the parser's table. */
    const char *out = rt_tmp("help.txt");
    rc = rt_run(out, NULL, "finetune --help");
    CHECK(rc == 0 && has(out, "lora_r ") && has(out, "an integer >= 1 [8]") && has(out, "one of false, true, auto") &&
              has(out, "peft_use_rslora") && has(out, "rank of the LoRA"),
          "finetune --help lists keys with type, default and meaning");
    return rt_test_summary();
}
