#!/usr/bin/env bash
# Parses and type-checks every .cu file for both the host and the device side with clang's CUDA front end,
# against declarations of the CUDA API (clang-cuda/), so a syntax or type error in a kernel shows up on a
# machine without nvcc, such as CI. It proves nothing about what the kernels compute: the device check does.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
native="$here/.."
clang="${CLANG:-$(command -v clang++-14 || command -v clang++ || true)}"
if [ -z "$clang" ]; then echo "check-cuda-syntax: no clang++, skipped"; exit 0; fi
for side in --cuda-host-only --cuda-device-only; do
  for f in "$native"/src/*.cu; do
    "$clang" -x cuda --cuda-gpu-arch=sm_80 $side -nocudainc -nocudalib -std=c++17 -fsyntax-only -Wall -Werror \
      -I"$here/clang-cuda" -I"$native/include" "$f"
  done
done
echo "check-cuda-syntax: $(ls "$native"/src/*.cu | wc -l) CUDA sources parse for host and device"
