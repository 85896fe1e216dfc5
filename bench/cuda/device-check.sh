#!/usr/bin/env bash
# The device check, on a GPU machine with nvcc, PyTorch and transformers but no .NET and no network. From the
# repository root, with artifacts/gpu.tar.xz carried (bench/cuda/prepare-device-check.sh makes it):
#   bash bench/cuda/device-check.sh            everything goes to $OUT (default ./device-check-out)
# 1. builds libglm_cuda.so (sm_90a), libglm_cuda_host.so and the kernel check;
# 2. checks every kernel against the host build at real shapes (native/tests/kernel_check.cpp);
# 3. runs every fixture model through `complete --device cuda` against `--device cpu` and transformers' ids;
# 4. serves the demo model with `serve --device cuda` and compares its probes with transformers' greedy ids;
# 5. times the engine on Flash- and Air-shaped synthetic checkpoints in each weight format, beside
#    transformers and PyTorch's kernels on the same machine.
# Each step is time-boxed so the whole stays within DEVICE_CHECK_SECONDS (default 330); what did not fit says so.
# DEVICE_CHECK_DRY_RUN=1 runs the plumbing on a machine without a GPU: the host build stands in for the CUDA one.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
OUT="${OUT:-$root/device-check-out}"
mkdir -p "$OUT"
budget="${DEVICE_CHECK_SECONDS:-330}"
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
left() { echo $(( budget - $(elapsed) )); }
say() { echo "[$(elapsed)s] $*" | tee -a "$OUT/summary.txt"; }
status=0
fail() { say "FAIL: $*"; status=1; }

work=/tmp/glm-device-check
rm -rf "$work" && mkdir -p "$work"
say "device check on $(hostname); budget ${budget}s"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || say "nvidia-smi: not available"

# --- 1. build ---------------------------------------------------------------------------------------------------
tar -C "$work" -xJf artifacts/gpu.tar.xz || { fail "artifacts/gpu.tar.xz missing (run bench/cuda/prepare-device-check.sh and carry it)"; exit 1; }
app="$work/gpu"
native="$work/native"
if [ "${DEVICE_CHECK_DRY_RUN:-0}" = 1 ]; then
  bash src/Glm.Kernels.Cuda/native/build.sh --host-only "$native" > "$OUT/build.txt" 2>&1 || { fail "host build"; exit 1; }
  cp "$native/libglm_cuda_host.so" "$native/libglm_cuda.so"
  say "DRY RUN: the host build stands in for libglm_cuda.so"
else
  bash src/Glm.Kernels.Cuda/native/build.sh "$native" 90a > "$OUT/build.txt" 2>&1 || { fail "build (see build.txt)"; tail -30 "$OUT/build.txt"; exit 1; }
fi
cp "$native/libglm_cuda.so" "$native/libglm_cuda_host.so" "$app/"
say "built: $(ls "$native" | tr '\n' ' ')"
server="$app/glm-server"
bench="$app/Glm.Bench"

# --- 2. kernels -------------------------------------------------------------------------------------------------
quick=""; [ "${DEVICE_CHECK_DRY_RUN:-0}" = 1 ] && quick="--quick"
if timeout 120 "$native/glm_kernel_check" "$native" $quick > "$OUT/kernel-check.txt" 2>&1; then say "kernels: $(tail -1 "$OUT/kernel-check.txt")"
else fail "kernels: $(grep -c '^FAIL' "$OUT/kernel-check.txt") failed (kernel-check.txt)"; grep '^FAIL' "$OUT/kernel-check.txt" | head -20 | tee -a "$OUT/summary.txt"; fi
[ "${DEVICE_CHECK_DRY_RUN:-0}" = 1 ] || timeout 60 "$bench" cuda > "$OUT/gemv-kernels.txt" 2>&1 || fail "Glm.Bench cuda (gemv-kernels.txt)"

# --- 3. fixture models: complete --device cuda against cpu and transformers ---------------------------------------
for arch in glm glm4 glm4_moe glm4_moe_lite; do
  python3 - "$arch" "$server" > "$OUT/fixture-$arch.txt" 2>&1 <<'PY'
import json, subprocess, sys
arch, server = sys.argv[1], sys.argv[2]
cases = json.load(open(f"tests/fixtures/{arch}/expected.json"))["cases"]
bad = 0
for i, case in enumerate(cases):
    ids = {}
    for device in ("cpu", "cuda"):
        r = subprocess.run([server, "complete", "--model", f"tests/fixtures/{arch}", "--prompt-ids", ",".join(map(str, case["prompt"])),
                            "--max-tokens", str(len(case["greedy"])), "--temperature", "0", "--ignore-eos", "--kv-cache-dtype", "f32",
                            "--device", device], capture_output=True, text=True, timeout=60)
        ids[device] = json.loads(r.stdout)["token_ids"] if r.returncode == 0 else "error: " + r.stderr[-400:]
    ok = ids["cuda"] == ids["cpu"] == case["greedy"]
    bad += not ok
    print(("ok  " if ok else "BAD ") + f"case {i}: transformers {case['greedy']} cpu {ids['cpu']} cuda {ids['cuda']}")
print(f"{arch}: {len(cases) - bad}/{len(cases)} cases identical on cuda, cpu and transformers")
sys.exit(1 if bad else 0)
PY
  if [ $? -eq 0 ]; then say "fixture $arch: $(tail -1 "$OUT/fixture-$arch.txt")"; else fail "fixture $arch: $(tail -1 "$OUT/fixture-$arch.txt")"; fi
done

# --- 4. the demo model's probes through serve --device cuda --------------------------------------------------------
port=18123
"$server" serve --device cuda --port $port --kv-cache-memory 268435456 > "$OUT/serve.txt" 2>&1 &
pid=$!
python3 - $port > "$OUT/serve-probes.txt" 2>&1 <<'PY'
import json, sys, time, urllib.request
port = sys.argv[1]
base = f"http://127.0.0.1:{port}"
for _ in range(600):
    try:
        if urllib.request.urlopen(base + "/health", timeout=2).status == 200: break
    except Exception: time.sleep(0.2)
probes = json.load(open("models/glm-demo/expected_probes.json"))
bad = 0
for p in probes:
    body = {"model": "glm-demo", "prompt": p["prompt_ids"], "max_tokens": len(p["greedy_ids"]), "temperature": 0, "return_token_ids": True,
            "ignore_eos": True, "skip_special_tokens": False}
    req = urllib.request.Request(base + "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    got = json.load(urllib.request.urlopen(req, timeout=60))["choices"][0].get("token_ids")
    ok = got == p["greedy_ids"]
    bad += not ok
    print(("ok  " if ok else "BAD ") + repr(p["user"]) + ("" if ok else f": expected {p['greedy_ids']} got {got}"))
print(f"demo probes on serve --device cuda: {len(probes) - bad}/{len(probes)} equal transformers' greedy ids")
sys.exit(1 if bad else 0)
PY
if [ $? -eq 0 ]; then say "$(tail -1 "$OUT/serve-probes.txt")"; else fail "$(tail -1 "$OUT/serve-probes.txt") (serve-probes.txt, serve.txt)"; fi
kill $pid 2>/dev/null; wait $pid 2>/dev/null
grep -E "GPU|KV cache|Model " "$OUT/serve.txt" | head -5 | tee -a "$OUT/summary.txt"

# --- 5. speed, beside PyTorch and transformers --------------------------------------------------------------------
if [ "${DEVICE_CHECK_DRY_RUN:-0}" = 1 ]; then
  say "DRY RUN: the speed section needs a GPU; skipped"
else
  timeout 60 python3 bench/cuda/torch_baseline.py > "$OUT/torch-kernels.txt" 2>&1 || say "torch_baseline.py did not finish (torch-kernels.txt)"
  for shape in flash air; do
    remaining=$(left)
    if [ "$remaining" -lt 60 ]; then say "speed $shape: skipped, ${remaining}s left"; continue; fi
    ckpt="$work/ckpt-$shape"
    timeout $(( remaining - 20 )) "$bench" cudamodel --shape $shape --layers 2 --dir "$ckpt" --formats bf16,int4,fp8-int4,fp8 --kv int4 \
      --budget-seconds $(( remaining * 2 / 3 )) > "$OUT/speed-$shape.txt" 2>&1 || say "speed $shape: cut off (speed-$shape.txt)"
    cat "$OUT/speed-$shape.txt" | grep "^|" | tee -a "$OUT/summary.txt"
    remaining=$(left)
    if [ "$remaining" -gt 30 ] && [ -f "$ckpt/model.safetensors" ]; then
      timeout $(( remaining - 10 )) python3 bench/cuda/transformers_baseline.py "$ckpt" > "$OUT/transformers-$shape.txt" 2>&1 || say "transformers $shape: cut off"
      grep "^|" "$OUT/transformers-$shape.txt" | tee -a "$OUT/summary.txt"
    fi
  done
fi
say "done in $(elapsed)s; status $status"
exit $status
