#!/usr/bin/env bash
# Run here (with .NET) before a device check: publishes the server and the bench self-contained for linux-x64
# into one folder (they share the runtime's files) and packs it as artifacts/gpu.tar.xz, small enough for the
# device tool's carry (64 MiB). Then: run bench/cuda/device-check.sh on the GPU machine, carrying that file.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=artifacts/gpu
rm -rf "$out" artifacts/gpu.tar.xz
for project in src/Glm.Server/Glm.Server.csproj bench/Glm.Bench/Glm.Bench.csproj; do
  dotnet publish "$project" -c Release -r linux-x64 --self-contained -p:TreatWarningsAsErrors=false -p:InvariantGlobalization=true -o "$out" >/dev/null
done
tar -C artifacts -cJf artifacts/gpu.tar.xz gpu
ls -la artifacts/gpu.tar.xz
