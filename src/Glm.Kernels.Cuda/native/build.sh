#!/usr/bin/env bash
# Builds libglm_cuda.so with nvcc alone, for machines without CMake (CMakeLists.txt is the same build).
# usage: build.sh OUTPUT_DIR [ARCH...]   e.g. build.sh out 90a      (default: 80 86 89 90a); NVCC_FLAGS adds flags
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?output directory}"; shift || true
archs=("$@"); [ ${#archs[@]} -gt 0 ] || archs=(80 86 89 90a)
gencode=()
for a in "${archs[@]}"; do gencode+=("-gencode=arch=compute_${a},code=sm_${a}"); done
mkdir -p "$out"
nvcc -O3 ${NVCC_FLAGS:-} -std=c++17 -lineinfo -shared -Xcompiler -fPIC,-fvisibility=hidden "${gencode[@]}" \
  -I"$here/include" "$here"/src/*.cu -lcublasLt -o "$out/libglm_cuda.so"
echo "built $out/libglm_cuda.so for ${archs[*]}"
