#!/usr/bin/env bash
# Fetches NVRTC, nvJitLink and the CUDA driver / cuBLASLt headers from NVIDIA's PyPI wheels into .whl/ (ignored),
# so the CUDA kernel compile check and the header signature check run on machines without a GPU or CUDA toolkit.
# Usage: Tests/GPU/fetch-nvrtc.sh [DIR]   then   export HPRUNE_NVRTC=DIR/lib HPRUNE_CUDA_INCLUDE=DIR/include
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${1:-$root/.whl}"
pip="${PIP:-pip}"
if [ -f "$dir/lib/libnvrtc.so.12" ] && [ -f "$dir/lib/libnvJitLink.so.12" ] && [ -f "$dir/include/cuda.h" ] \
   && { [ -f "$dir/include/cublasLt.h" ] || [ "${HPRUNE_SKIP_CUBLAS:-0}" = 1 ]; }; then
    echo "export HPRUNE_NVRTC=$dir/lib HPRUNE_CUDA_INCLUDE=$dir/include"   # already fetched
    exit 0
fi
mkdir -p "$dir/lib" "$dir/include" "$dir/download"
# CUDA 12.x wheels: libnvrtc.so.12 + libnvrtc-builtins, libnvJitLink.so.12, cuda.h (runtime wheel), cublasLt.h.
"$pip" download --quiet --no-deps -d "$dir/download" \
    "nvidia-cuda-nvrtc-cu12>=12.4" "nvidia-nvjitlink-cu12>=12.4" "nvidia-cuda-runtime-cu12>=12.4"
unzip -q -o -j "$dir"/download/nvidia_cuda_nvrtc_cu12-*.whl 'nvidia/cuda_nvrtc/lib/libnvrtc.so.*' \
    'nvidia/cuda_nvrtc/lib/libnvrtc-builtins.so.*' 'nvidia/cuda_nvrtc/include/nvrtc.h' -d "$dir/lib"
unzip -q -o -j "$dir"/download/nvidia_nvjitlink_cu12-*.whl 'nvidia/nvjitlink/lib/*' 'nvidia/nvjitlink/include/*' -d "$dir/lib"
mv "$dir"/lib/*.h "$dir/include/"
unzip -q -o -j "$dir"/download/nvidia_cuda_runtime_cu12-*.whl 'nvidia/cuda_runtime/include/cuda.h' \
    'nvidia/cuda_runtime/include/library_types.h' \
    -d "$dir/include"
# cuBLASLt: only the header is needed here (the wheel is ~580 MB; skip with HPRUNE_SKIP_CUBLAS=1).
if [ "${HPRUNE_SKIP_CUBLAS:-0}" != 1 ] && [ ! -f "$dir/include/cublasLt.h" ]; then
    "$pip" download --quiet --no-deps -d "$dir/download" "nvidia-cublas-cu12>=12.4"
    unzip -q -o -j "$dir"/download/nvidia_cublas_cu12-*.whl 'nvidia/cublas/include/cublasLt.h' \
        'nvidia/cublas/include/cublas_api.h' -d "$dir/include"
    rm -f "$dir"/download/nvidia_cublas_cu12-*.whl
fi
rm -rf "$dir/download"
# libnvrtc loads libnvrtc-builtins.so.12.N by its full name from the same folder.
ls "$dir/lib"
echo "export HPRUNE_NVRTC=$dir/lib HPRUNE_CUDA_INCLUDE=$dir/include"
