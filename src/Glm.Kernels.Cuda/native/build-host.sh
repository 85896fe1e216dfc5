#!/usr/bin/env bash
# Builds libglm_cuda_host.so (the CUDA ABI in plain C++ over host memory) with g++ alone.
# usage: build-host.sh OUTPUT_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?output directory}"
mkdir -p "$out"
${CXX:-g++} -std=c++17 -O2 -ffp-contract=off -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden \
  -I"$here/include" "$here"/src/host/*.cpp -o "$out/libglm_cuda_host.so"
echo "built $out/libglm_cuda_host.so"
