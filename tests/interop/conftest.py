"""Shared fixtures of the interop tests (tests/interop/run.sh runs them).

Each check runs retort (the built binary, $RETORT_BIN) to write a file, reads
that file with the tool its users read it with, and compares numbers. Every
comparison is recorded with `record(check, max_error, tolerance)`, which
asserts it and puts it in the table printed at the end (also written to
$RETORT_INTEROP_TABLE). A check retort cannot do yet skips with the reason.
"""
import functools
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
RETORT = Path(os.environ.get("RETORT_BIN", ROOT / "build" / "retort"))
SHARED = Path(os.environ.get("RETORT_SHARED", ROOT.parent / "shared")).resolve()
CACHE = Path(os.environ.get("RETORT_CACHE", Path.home() / ".cache" / "retort"))
STORIES_BIN = SHARED / "models" / "stories260K" / "stories260K.bin"
STORIES_TOK = SHARED / "models" / "stories260K" / "tok512.bin"
MOBY = SHARED / "data" / "moby-dick.txt"

_RESULTS = []  # (check, max_error, tolerance, ok)


def retort(*args, stdin=None, cwd=None):
    """Runs retort; returns its stdout (bytes). Fails the test with retort's
    stderr when it exits non-zero."""
    cmd = [str(RETORT)] + [str(a) for a in args]
    p = subprocess.run(cmd, input=stdin, capture_output=True, cwd=cwd or ROOT)
    if p.returncode != 0:
        pytest.fail("%s exited %d:\n%s" % (" ".join(cmd), p.returncode,
                                             p.stderr.decode(errors="replace")[-4000:]))
    return p.stdout


@functools.lru_cache(maxsize=None)
def retort_commands():
    """The command names `retort --help` lists."""
    out = subprocess.run([str(RETORT), "--help"], capture_output=True, text=True)
    text = out.stdout + out.stderr
    return frozenset(re.findall(r"^  ([a-z][a-z0-9-]*)\s", text, flags=re.M))


def require_command(name, why):
    if name not in retort_commands():
        pytest.skip("retort has no `%s` command yet (%s)" % (name, why))


@functools.lru_cache(maxsize=None)
def retort_reads_gguf():
    """Whether this retort takes .gguf models: `retort --help` names GGUF
    (the `export` command comes with the GGUF reader, issue #12)."""
    out = subprocess.run([str(RETORT), "--help"], capture_output=True, text=True)
    return "gguf" in (out.stdout + out.stderr).lower()


def smollm2_gguf():
    """SmolLM2-135M-Instruct's GGUF as scripts/get-models.sh leaves it in
    $RETORT_CACHE; skips the test (saying why) when it is absent or retort
    cannot read GGUF."""
    found = sorted(CACHE.glob("SmolLM2-135M*.gguf"))
    if not found:
        pytest.skip("no SmolLM2-135M GGUF in %s (scripts/get-models.sh fetches it)" % CACHE)
    if not retort_reads_gguf():
        pytest.skip("this retort cannot read GGUF models yet (issue #12)")
    return found[0]


def read_logits(path):
    """A file written by `retort eval --dump-logits` (train/evaluate.h):
    returns (ids int32 [rows], pos int32 [rows], logits float32 [rows, V])."""
    raw = Path(path).read_bytes()
    assert raw[:8] == b"RTLOGIT1", "%s: not a retort logits file" % path
    vocab = int(np.frombuffer(raw, "<i8", 1, 8)[0])
    rec = np.dtype([("id", "<i4"), ("pos", "<i4"), ("logits", "<f4", (vocab,))])
    body = raw[16:]
    assert len(body) % rec.itemsize == 0, "%s: truncated" % path
    r = np.frombuffer(body, rec)
    return r["id"].copy(), r["pos"].copy(), r["logits"].copy()


def retort_eval_logits(tmp, model, data, seq_len, adapter=None, tokenizer=None, name="logits"):
    """retort eval --dump-logits on `data`: (ids, pos, logits)."""
    out = Path(tmp) / ("%s.bin" % name)
    args = ["eval", "--model", model, "--data", data, "--seq-len", seq_len, "--dump-logits", out]
    if adapter:
        args += ["--adapter", adapter]
    if tokenizer:
        args += ["--tokenizer", tokenizer]
    retort(*args)
    return read_logits(out)


def torch_logits(model, ids, pos):
    """The logits of a transformers/PEFT model on retort's windows: the rows
    are cut into windows where pos restarts at 0, each run as one sequence."""
    import torch
    starts = list(np.flatnonzero(pos == 0)) + [len(ids)]
    outs = []
    with torch.no_grad():
        for a, b in zip(starts[:-1], starts[1:]):
            assert (pos[a:b] == np.arange(b - a)).all()
            x = torch.tensor(ids[a:b], dtype=torch.long)[None]
            outs.append(model(input_ids=x).logits[0].float().numpy())
    return np.concatenate(outs)


def rel_err(got, ref):
    """max |got - ref| / max |ref| (the error relative to the largest logit)."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30))


def record(check, err, tol, unit="rel"):
    """Puts one comparison in the table and asserts err <= tol."""
    ok = bool(err <= tol)
    _RESULTS.append((check, err, tol, unit, ok))
    assert ok, "%s: max error %.3g > tolerance %.3g (%s)" % (check, err, tol, unit)


# ---- shared inputs: real text and the files retort writes ---------------------

@pytest.fixture(scope="session")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("interop")


@pytest.fixture(scope="session")
def text_file(work):
    """The first 2,000 characters of Moby-Dick ("CHAPTER 1. Loomings." on)."""
    text = MOBY.read_text(encoding="utf-8")
    p = work / "moby.txt"
    p.write_text(text[:2000], encoding="utf-8")
    return p


@pytest.fixture(scope="session")
def stories_hf(work):
    """stories260K as an HF directory, by `retort convert llama2c`."""
    out = work / "stories260K-hf"
    retort("convert", "llama2c", STORIES_BIN, "--tokenizer", STORIES_TOK, "--out", out)
    return out


@pytest.fixture(scope="session")
def retort_adapter(work):
    """A LoRA adapter trained 10 steps by `retort finetune` (the QLoRA
    recipe on Moby-Dick, rank 8 on every projection)."""
    out = work / "retort-adapter"
    retort("finetune", ROOT / "recipes" / "stories260k-qlora-mobydick.yaml", "max_steps=10",
           "eval_steps=0", "logging_steps=5", "val_set_size=0.01", "output_dir=%s" % out, cwd=ROOT)
    assert (out / "adapter_model.safetensors").exists()
    return out


def pytest_terminal_summary(terminalreporter):
    rows = [(check, "%.3g" % err, "%.3g" % tol, unit + ("" if ok else "  FAILED"))
            for check, err, tol, unit, ok in _RESULTS]
    for kind, label in (("skipped", "SKIPPED"), ("xfailed", "XFAIL")):
        for rep in terminalreporter.stats.get(kind, []):
            if kind == "skipped":
                reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
            else:
                reason = getattr(rep, "wasxfail", "")
            rows.append((rep.nodeid.split("::")[-1], label, "-", reason.replace("Skipped: ", "")))
    w = max([len(r[0]) for r in rows] + [len("interop check")])
    lines = ["%-*s %10s %10s  %s" % (w, "interop check", "max error", "tolerance", "")]
    lines += ["%-*s %10s %10s  %s" % ((w,) + r) for r in rows]
    terminalreporter.write_sep("=", "interop table")
    for line in lines:
        terminalreporter.write_line(line)
    path = os.environ.get("RETORT_INTEROP_TABLE")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def smollm2_adapter(work):
    """(adapter dir, text file): a rank-4 LoRA trained 3 steps by `retort
    finetune` on SmolLM2-135M loaded from its GGUF (f32, no NF4, so that the
    base every reader sees is exactly the dequantized GGUF), and 600
    characters of Moby-Dick to evaluate on. Skips without the GGUF."""
    gguf = smollm2_gguf()
    out = work / "smollm2-adapter"
    recipe = work / "smollm2.yaml"
    recipe.write_text("\n".join([
        "base_model: %s" % gguf,
        "adapter: lora",
        "lora_r: 4",
        "lora_alpha: 8",
        "lora_dropout: 0.0",
        "lora_target_modules: all-linear",
        "datasets:",
        "  - path: %s" % MOBY,
        "    type: text",
        "val_set_size: 4",
        "sequence_len: 64",
        "micro_batch_size: 2",
        "max_steps: 3",
        "learning_rate: 2.0e-3",
        "lr_scheduler: constant",
        "optimizer: adamw",
        "output_dir: %s" % out,
        "seed: 42",
    ]) + "\n")
    retort("finetune", recipe, cwd=work)
    text = work / "smollm2.txt"
    text.write_text(MOBY.read_text(encoding="utf-8")[3000:3600], encoding="utf-8")
    return out, text
