#!/usr/bin/env python3
"""Checks retort's layering from its #include "..." lines (run by scripts/test.sh).

A module is a .c/.cu file with the .h (and private _internal.h) of its stem, so the check
sees module dependencies (llama.c calling adapter.c while adapter.c calls
llama.c is a cycle even when no header includes itself). It fails on
  - any cycle between modules, and
  - an include that points up the room order
        kernels < autograd < optim, dist < train/formats
        < train/tokenizer, train/model, train/data < train (the job) < train/cli
    (rooms of one tier may include each other as long as there is no cycle).
tests/ and bench/ may include anything.

With a build directory (check_layout.py [TOP] [BUILD]) it also checks the
calls: the object files of retort_core give, through nm, which file defines
each symbol and which files use it, and a cycle between file groups (files of
one room sharing a stem before the first '_', e.g. tokenizer_load.c and
tokenizer.c) is a fault too: a header that declares another file's function
hides such a cycle from the include graph. Exit 1 with one line per fault.
"""
import subprocess
import os
import re
import sys

TIER = {
    "kernels": 0, "autograd": 1, "optim": 2, "dist": 2, "train/formats": 3,
    "train/tokenizer": 4, "train/model": 4, "train/data": 4, "train": 5, "train/cli": 6,
}
# Deliberate exceptions, each with its reason.
ALLOWED_UP = {
    # The dataset list is a section of the recipe (rt_recipe_dataset); recipe.h
    # is a leaf (it includes only kernels/error.h), so this edge cannot close a cycle.
    ("train/data", "train/recipe"),
    # The CUDA AdamW kernel runs optim/adamw.h's per-element formula (an RT_HD
    # inline), so the device and the CPU step compute the same bits.
    ("kernels", "optim/adamw"),
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def room(path):
    d = os.path.dirname(path)
    while d and d not in TIER:
        d = os.path.dirname(d)
    return d or None


def module(path):
    """foo.c, foo.h and the private foo_internal.h are one module."""
    stem = os.path.splitext(path)[0]
    return stem[:-len("_internal")] if stem.endswith("_internal") else stem


def find_cycles(graph):
    faults, colour, stack = [], {}, []

    def visit(m):
        colour[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if colour.get(d) == 1:
                faults.append("cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            elif d in graph and not colour.get(d):
                visit(d)
        stack.pop()
        colour[m] = 2

    for m in sorted(graph):
        if not colour.get(m):
            visit(m)
    return faults


def call_graph(build):
    """{group: groups it calls} from retort_core's objects (nm)."""
    objdir = os.path.join(build, "CMakeFiles", "retort_core.dir")
    defined, used = {}, {}
    for dirpath, _, files in os.walk(objdir):
        for f in files:
            if not f.endswith(".o"):
                continue
            src = os.path.relpath(os.path.join(dirpath, f), objdir)[:-2]   # x/y.c
            d, stem = os.path.split(os.path.splitext(src)[0])
            group = os.path.join(d, stem.split("_")[0])
            out = subprocess.run(["nm", os.path.join(dirpath, f)], capture_output=True,
                                 text=True, check=True).stdout
            for line in out.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] in "TDBR":
                    defined[parts[2]] = group
                elif len(parts) == 2 and parts[0] == "U":
                    used.setdefault(group, set()).add(parts[1])
    return {g: {defined[u] for u in syms if u in defined and defined[u] != g}
            for g, syms in used.items()}


def main(top, build=None):
    graph = {}
    for base in ("kernels", "autograd", "optim", "dist", "train"):
        for dirpath, _, files in os.walk(os.path.join(top, base)):
            for f in files:
                if not f.endswith((".c", ".h", ".cu", ".cuh")):
                    continue
                path = os.path.relpath(os.path.join(dirpath, f), top)
                with open(os.path.join(top, path), encoding="utf-8") as fh:
                    incs = INCLUDE.findall(fh.read())
                deps = graph.setdefault(module(path), set())
                for inc in incs:
                    if not os.path.exists(os.path.join(top, inc)):
                        inc = os.path.normpath(os.path.join(os.path.dirname(path), inc))
                    if module(inc) != module(path):
                        deps.add(module(inc))
    faults = []
    for m, deps in sorted(graph.items()):
        for d in sorted(deps):
            rm, rd = room(m), room(d)
            if rm in TIER and rd in TIER and TIER[rd] > TIER[rm] and (rm, d) not in ALLOWED_UP:
                faults.append(f"layering: {m} ({rm}) includes {d} ({rd}), which is above it")
    faults += find_cycles(graph)
    if build:
        faults += ["calls: " + f for f in find_cycles(call_graph(build))]
    for f in faults:
        print(f)
    print(f"check_layout: {len(graph)} modules, {len(faults)} faults")
    return 1 if faults else 0


if __name__ == "__main__":
    top = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    sys.exit(main(os.path.abspath(top), sys.argv[2] if len(sys.argv) > 2 else None))
