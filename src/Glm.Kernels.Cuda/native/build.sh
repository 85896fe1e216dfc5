#!/usr/bin/env bash
# Builds libglm_cuda.so with nvcc alone, and beside it libglm_cuda_host.so and the kernel check with g++, for
# machines without CMake (CMakeLists.txt is the same build).
# usage: build.sh OUTPUT_DIR [ARCH...]   e.g. build.sh out 90a      (default: 80 86 89 90a); NVCC_FLAGS adds flags
#        build.sh --host-only OUTPUT_DIR  the host library and the kernel check only (no CUDA toolkit)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
host_only=0
if [ "${1:-}" = "--host-only" ]; then host_only=1; shift; fi
out="${1:?output directory}"; shift || true
mkdir -p "$out"
"$here/build-host.sh" "$out"
g++ -std=c++17 -O2 -Wall -Wextra -I"$here/include" "$here/tests/kernel_check.cpp" -ldl -o "$out/glm_kernel_check"
echo "built $out/glm_kernel_check"
[ "$host_only" -eq 1 ] && exit 0
archs=("$@"); [ ${#archs[@]} -gt 0 ] || archs=(80 86 89 90a)
gencode=()
for a in "${archs[@]}"; do gencode+=("-gencode=arch=compute_${a},code=sm_${a}"); done
nvcc -O3 ${NVCC_FLAGS:-} -std=c++17 -lineinfo -shared -Xcompiler -fPIC,-fvisibility=hidden "${gencode[@]}" \
  -I"$here/include" "$here"/src/*.cu -lcublasLt -o "$out/libglm_cuda.so"
echo "built $out/libglm_cuda.so for ${archs[*]}"
