"""retort's chat-template families render as the real Jinja templates do.

The real templates come from where users get them, read at test time (no
copies in the repository): the chat_template of ../shared/tokenizers/{llama3,
qwen3}/tokenizer_config.json, and the Hugging Face templates that llama.cpp
vendors for its own tests (vendor/llama.cpp/models/templates/*.jinja in the
llama-cpp-python sdist pinned in requirements.txt, kept in the wheel cache by
run.sh). Each is rendered by transformers (render_jinja_template, as
apply_chat_template does) and by `retort tokenize --chat` from a tokenizer
directory whose tokenizer_config.json carries that template (so retort's
recognition is tested too); the tokenizer is Llama 3's or Qwen3's with the
family's markers added as special tokens where it lacks them. Several
multi-turn conversations, with and without a system message, with and without
the generation prompt. Text and ids must be equal; where the template refuses
a conversation (raise_exception) or retort refuses the template, retort must
exit 2 with a message — a different rendering is a failure.
"""
import json
import subprocess
import tarfile

import pytest

from conftest import CACHE, RETORT, SHARED, record

SDIST = "llama_cpp_python-0.3.36"
FROM_SDIST = {  # template file -> base tokenizer
    "google-gemma-2-2b-it.jinja": "llama3",
    "microsoft-Phi-3.5-mini-instruct.jinja": "llama3",
    "meta-llama-Llama-3.1-8B-Instruct.jinja": "llama3",
    "meta-llama-Llama-3.2-3B-Instruct.jinja": "llama3",
    "meta-llama-Llama-3.3-70B-Instruct.jinja": "llama3",
    "Qwen-Qwen2.5-7B-Instruct.jinja": "qwen3",
    "Qwen-Qwen3-0.6B.jinja": "qwen3",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": "llama3",
}
MARKERS = ["<start_of_turn>", "<end_of_turn>", "<bos>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
           "<|endoftext|>", "[INST]", "[/INST]", "<s>", "</s>"]

CONVS = [
    ([{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi, how can I help?"}], False),
    ([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a whale."},
      {"role": "assistant", "content": "Moby Dick."}, {"role": "user", "content": " And a ship? "},
      {"role": "assistant", "content": "The Pequod.\n"}], False),
    ([{"role": "user", "content": "Call me Ishmael."}, {"role": "assistant", "content": "Hello, Ishmael."},
      {"role": "user", "content": "Some years ago..."}], True),
    ([{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Colour of the whale?"}],
     True),
]


def templates(work):
    """(name, jinja source, base tokenizer name)."""
    out = []
    for base in ("llama3", "qwen3"):
        cfg = json.loads((SHARED / "tokenizers" / base / "tokenizer_config.json").read_text())
        if isinstance(cfg.get("chat_template"), str):
            out.append(("%s tokenizer_config.json" % base, cfg["chat_template"], base))
    sdist = CACHE / "wheels" / (SDIST + ".tar.gz")
    if sdist.exists():
        with tarfile.open(sdist) as tf:
            for fn, base in FROM_SDIST.items():
                m = tf.extractfile("%s/vendor/llama.cpp/models/templates/%s" % (SDIST, fn))
                out.append((fn, m.read().decode("utf-8"), base))
    return out


def tokenizer_dir(work, name, src, base):
    """A tokenizer directory: base's tokenizer.json with the markers it lacks
    added as special tokens, and a tokenizer_config.json carrying src."""
    from tokenizers import AddedToken, Tokenizer
    d = work / ("chat-" + "".join(c if c.isalnum() else "_" for c in name))
    d.mkdir(exist_ok=True)
    tk = Tokenizer.from_file(str(SHARED / "tokenizers" / base / "tokenizer.json"))
    tk.add_special_tokens([AddedToken(m, special=True, normalized=False) for m in MARKERS
                           if m in src and tk.token_to_id(m) is None])
    tk.save(str(d / "tokenizer.json"))
    cfg = json.loads((SHARED / "tokenizers" / base / "tokenizer_config.json").read_text())
    cfg = {k: cfg[k] for k in ("bos_token", "eos_token", "add_bos_token") if k in cfg}
    cfg["chat_template"] = src
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d, tk, cfg


def jinja_render(src, msgs, gen, cfg):
    from transformers.utils.chat_template_utils import render_jinja_template
    tok = lambda v: v.get("content") if isinstance(v, dict) else v
    r = render_jinja_template(conversations=[msgs], chat_template=src, add_generation_prompt=gen,
                              bos_token=tok(cfg.get("bos_token")) or "", eos_token=tok(cfg.get("eos_token")) or "")
    r = r[0] if isinstance(r, tuple) else r
    return r[0] if isinstance(r, list) else r


def retort_chat(d, msgs, gen, text):
    flags = ["--chat"] + (["--text"] if text else []) + (["--add-generation-prompt"] if gen else [])
    p = subprocess.run([str(RETORT), "tokenize", "--tokenizer", str(d), *flags],
                       input=(json.dumps(msgs) + "\n").encode(), capture_output=True)
    out = p.stdout.decode("utf-8")
    return p.returncode, out[:-1] if out.endswith("\n") else out, p.stderr.decode(errors="replace")


def test_chat_templates_render_as_jinja(work):
    pytest.importorskip("jinja2")
    tmpls = templates(work)
    if not any(t[0].endswith(".jinja") for t in tmpls):
        pytest.skip("%s.tar.gz not in %s/wheels (run.sh fetches it when PyPI is reachable)" % (SDIST, CACHE))
    failures, summary = [], []
    for name, src, base in tmpls:
        d, tk, cfg = tokenizer_dir(work, name, src, base)
        same = refused = 0
        for msgs, gen in CONVS:
            try:
                want = jinja_render(src, msgs, gen, cfg)
            except Exception as e:  # the template refuses this conversation
                want, why = None, str(e)
            rc, got, err = retort_chat(d, msgs, gen, text=True)
            if want is None or rc != 0:
                if rc == 2 and err.strip():
                    refused += 1
                    summary.append("%s: retort refuses (%s); template: %s" % (
                        name, err.strip().splitlines()[-1][:100], "refuses" if want is None else "renders"))
                    continue
                failures.append("%s %s: template %s, retort exit %d %s" % (
                    name, [m["role"] for m in msgs], "refuses: " + why if want is None else "renders", rc, err))
                continue
            if got != want:
                failures.append("%s %s gen=%s:\n  jinja : %r\n  retort: %r" % (
                    name, [m["role"] for m in msgs], gen, want, got))
                continue
            rc, ids, err = retort_chat(d, msgs, gen, text=False)
            want_ids = tk.encode(want, add_special_tokens=False).ids
            got_ids = [int(x) for x in ids.split()] if rc == 0 else None
            if got_ids != want_ids:
                failures.append("%s %s gen=%s: ids differ: retort %s\n  tokenizers %s" % (
                    name, [m["role"] for m in msgs], gen, got_ids, want_ids))
                continue
            same += 1
        summary.append("%s: %d of %d conversations identical (text and ids), %d refused" % (
            name, same, len(CONVS), refused))
    print("\n".join(summary))
    try:
        record("chat templates: %d real templates x %d conversations, silent differences" % (len(tmpls), len(CONVS)),
               len(failures), 0, "convs")
    except AssertionError as e:
        raise AssertionError("%s\n%s\n%s" % (e, "\n".join(failures[:12]), "\n".join(summary))) from None
