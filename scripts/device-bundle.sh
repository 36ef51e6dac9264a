#!/usr/bin/env bash
# Builds the device bundle: a CUDA build of retort made HERE (no GPU needed),
# linked to run on the device machine's image, plus the few model and data
# files the GPU checks need (bench/gpu.sh). The device image has the NVIDIA
# driver, CUDA's cuBLAS and PyTorch, but maybe not OpenBLAS, zstd, libyaml,
# cJSON or a compiler that builds retort, so:
#   - zstd and libyaml are linked statically (Debian's -dev packages ship .a);
#   - OpenBLAS (+ libgfortran, libquadmath), libgomp and cJSON are carried as
#     .so files beside the binaries, found through an RPATH of $ORIGIN
#     (DT_RPATH, not RUNPATH, so it also serves the libraries' own needs);
#   - cudart is static inside libretort_cuda.so; cuBLAS (54 MB + 540 MB
#     cuBLASLt) is too big to carry and is taken from the device's CUDA
#     install (bench/gpu.sh puts it on LD_LIBRARY_PATH);
#   - MPI/NCCL are left out (one GPU).
# The bundle is checked with ldd: every library must resolve to the bundle
# directory, a base system library (glibc, libgcc_s, libstdc++) or cuBLAS.
#
#   bash scripts/device-bundle.sh [OUT_DIR]     (default: .device/bundle)
#
# OUT_DIR must be a path git ignores (default: .device/, excluded through
# .git/info/exclude by this script) so the device tool can carry it:
# run(carry=[".device"], command="bash bench/gpu.sh .device/bundle").
# Size: about 45 MiB (the limit for everything that travels is 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${RETORT_SHARED:-../shared}
BUILD=${BUNDLE_BUILD_DIR:-build-bundle}
OUT=${1:-.device/bundle}
ARCH=$(gcc -print-multiarch)
LIBDIR=/usr/lib/$ARCH

exclude=$(git rev-parse --git-path info/exclude)
grep -qx '/.device/' "$exclude" 2>/dev/null || echo '/.device/' >> "$exclude"

# CMake runs link.txt without a shell: $ORIGIN reaches the linker as written.
rpath='-Wl,--disable-new-dtags,-rpath,$ORIGIN'
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DRETORT_CUDA=ON -DRETORT_MPI=OFF \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_SKIP_BUILD_RPATH=ON \
  -DZSTD_LIBRARY="$LIBDIR/libzstd.a" -DYAML_LIBRARY="$LIBDIR/libyaml.a" \
  -DCMAKE_EXE_LINKER_FLAGS="$rpath" -DCMAKE_MODULE_LINKER_FLAGS="$rpath" \
  -DCMAKE_SHARED_LINKER_FLAGS="$rpath" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target retort retort_cuda test_ops test_fault gpu_kernels \
  make_synthetic 2>&1 | grep -E 'error|warning' || true

rm -rf "$OUT"
mkdir -p "$OUT/data"
bins="retort test_ops test_fault gpu_kernels make_synthetic"
for b in $bins libretort_cuda.so; do
  [ -f "$BUILD/$b" ] || { echo "device-bundle: $BUILD/$b was not built" >&2; exit 1; }
  strip --strip-debug -o "$OUT/$b" "$BUILD/$b"
done

# Libraries that are neither base system nor cuBLAS/driver: copied beside.
base='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|libcublas|libcublasLt|libcuda)\.so'
for f in $bins libretort_cuda.so; do
  ldd "$OUT/$f" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  if ! [[ $name =~ $base ]]; then cp -L "$path" "$OUT/$name"; fi
done

# Model, tokenizer, recipe and a 200 KiB slice of the text.
cp "$SHARED/models/stories260K/stories260K.bin" "$SHARED/models/stories260K/tok512.bin" "$OUT/data/"
cp recipes/stories260k-qlora-mobydick.yaml "$OUT/data/"
head -c $((200 * 1024)) "$SHARED/data/moby-dick.txt" | sed '$d' > "$OUT/data/moby-200k.txt"
head -c $((40 * 1024)) "$SHARED/data/moby-dick.txt" | sed '$d' > "$OUT/data/moby-40k.txt"
[ -f "$SHARED/tokenizers/llama2/tokenizer.bin" ] && cp "$SHARED/tokenizers/llama2/tokenizer.bin" "$OUT/data/" || true

# Check: every needed library resolves inside the bundle or to an allowed
# system library; nothing else (cuBLAS may be "not found" here only when
# the machine has no CUDA: the device provides it).
bad=0
for f in $bins libretort_cuda.so; do
  while read -r line; do
    lib=${line%% *}
    where=$(echo "$line" | awk '{print $3}')
    if [[ $lib =~ $base ]]; then continue; fi
    case $where in
      "$(cd "$OUT" && pwd)"/*) ;;
      *) echo "device-bundle: $f: $line (outside the bundle)" >&2; bad=1 ;;
    esac
  done < <(env -u LD_LIBRARY_PATH ldd "$OUT/$f" | awk '$2 == "=>" {print $1, $2, $3}')
done
[ $bad = 0 ] || exit 1
for f in $bins libretort_cuda.so; do
  readelf -d "$OUT/$f" | grep -q 'RPATH.*\$ORIGIN' || { echo "device-bundle: $f lacks RPATH \$ORIGIN" >&2; exit 1; }
done
# The CPU references the GPU run is compared with, computed here (a few
# minutes on 2 cores; REF=0 skips): the eval NLL of the 40 KiB slice and the
# loss curve of bench/gpu.sh's 20 QLoRA steps ("step loss" lines). Any
# x86-64 CPU agrees with them far inside gpu.sh's 1e-3 tolerance.
if [ "${REF:-1}" != 0 ]; then
  D=$OUT/data
  "$OUT/retort" eval --device cpu --model "$D/stories260K.bin" --tokenizer "$D/tok512.bin" \
    --data "$D/moby-40k.txt" --seq-len 256 | grep -o 'nll=[0-9.]*' | cut -d= -f2 > "$D/ref-eval-nll.txt"
  ref_out=$(mktemp -d)
  "$OUT/retort" finetune "$D/stories260k-qlora-mobydick.yaml" --device cpu base_model="$D/stories260K.bin" \
    tokenizer="$D/tok512.bin" datasets.0.path="$D/moby-200k.txt" max_steps=20 eval_steps=0 save_steps=0 \
    logging_steps=1 val_set_size=0.02 output_dir="$ref_out" > "$ref_out/log" 2>&1 \
    || { cat "$ref_out/log" >&2; exit 1; }
  awk '/"loss"/ && !/val_loss/ { match($0, /"step":[0-9]+/); s = substr($0, RSTART + 7, RLENGTH - 7)
       match($0, /"loss":[-0-9.eE+naif]+/); print s, substr($0, RSTART + 7, RLENGTH - 7) }' \
    "$ref_out/metrics.jsonl" > "$D/ref-loss.txt"
  rm -rf "$ref_out"
  echo "device-bundle: CPU references: eval nll $(cat "$D/ref-eval-nll.txt"), $(wc -l < "$D/ref-loss.txt") loss steps"
fi
glibc=$(for f in "$OUT"/*; do objdump -T "$f" 2>/dev/null; done | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
echo "device-bundle: $OUT: $(du -sh "$OUT" | cut -f1), needs $glibc or newer; files:"
ls -la "$OUT" "$OUT/data" | sed 's/^/  /'
