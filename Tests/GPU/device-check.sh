#!/usr/bin/env bash
# The one prepared device check of the CUDA backend, for a GPU machine with the NVIDIA driver, CUDA, PyTorch and
# nvcc but no Swift. It runs the carried static release binary (.bin/hprune, built where Swift is with
#   swift build -c release --static-swift-stdlib && cp .build/release/hprune .bin/hprune)
# through: the start-up self-check (hprune backends), the conformance suite (hprune selftest --full), the kernel
# benchmark and the model benchmark against PyTorch, each under a time limit, all inside 8 minutes.
# Output: $OUT/device-check/*.txt|json, and $OUT/device-check/summary.txt with one line per step.
# Prepare .bin/ with Tests/GPU/prepare-bin.sh (it also copies the non-glibc shared libraries into .bin/lib).
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${HPRUNE_BIN:-$root/.bin/hprune}"
if [ ! -x "$bin" ] && [ -f "$root/.bin/hprune.gz" ]; then   # prepare-bin.sh carries it gzipped
    bin="${TMPDIR:-/tmp}/hprune-device-check"
    gunzip -c "$root/.bin/hprune.gz" > "$bin" && chmod +x "$bin"
fi
out="${OUT:-$root/.device-check}/device-check"
py="${PYTHON:-python3}"
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
start=$(date +%s)

# NVRTC, nvJitLink and cuBLASLt: the toolkit's, else the ones PyTorch's wheels brought.
extra="$("$py" - <<'PY' 2>/dev/null
import glob, os, site
dirs = set()
for s in site.getsitepackages() + [site.getusersitepackages()]:
    for pat in ("nvidia/*/lib/libnvrtc.so*", "nvidia/*/lib/libnvJitLink.so*", "nvidia/*/lib/libcublasLt.so*"):
        dirs.update(os.path.dirname(p) for p in glob.glob(os.path.join(s, pat)))
print(":".join(sorted(dirs)))
PY
)"
export HPRUNE_CUDA_LIBS="${HPRUNE_CUDA_LIBS:-}:/usr/local/cuda/lib64:$extra"
export HPRUNE_KERNEL_CACHE="$out/kernel-cache"
export LD_LIBRARY_PATH="$root/.bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

step() {   # step NAME SECONDS COMMAND... : runs it, keeps stdout/stderr, records rc and time
    local name="$1" limit="$2"; shift 2
    local t0=$(date +%s)
    timeout "$limit" "$@" > "$out/$name.out" 2> "$out/$name.err"
    local rc=$?
    echo "$name rc=$rc seconds=$(( $(date +%s) - t0 ))" | tee -a "$summary"
    return 0
}

{
    echo "date: $(date -u)"; uname -a
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | head -3
    nvcc --version 2>&1 | tail -1
    "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" 2>&1
    echo "HPRUNE_CUDA_LIBS=$HPRUNE_CUDA_LIBS"
    ldd "$bin" 2>&1
} > "$out/machine.txt" 2>&1

[ -x "$bin" ] || { echo "missing $bin: prepare it with Tests/GPU/prepare-bin.sh where Swift is" | tee -a "$summary"; exit 1; }
step backends        120 "$bin" backends --json              # opens the GPU, compiles the kernels, start-up self-check
step selftest-full   120 "$bin" selftest --backend cuda --full --json
step bench-kernels    90 "$bin" bench kernels --backend cuda --json --compare-torch "$py"
step bench-model     120 "$bin" bench model --backend cuda --json --compare-torch "$py" --iterations 3 --layers 6
echo "total seconds=$(( $(date +%s) - start ))" | tee -a "$summary"
