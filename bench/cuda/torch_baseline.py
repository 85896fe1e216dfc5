"""PyTorch's kernels on the same GPU, in the same run as `Glm.Bench cuda`: the baselines issue 8 names.

Effective weight bandwidth of GEMV (M = 1) for BF16 `matmul`, Int4 tinygemm (`_weight_int4pack_mm`, group 128)
and FP8 `_scaled_mm` (per-channel scales; M padded to 16 where the kernel needs it), plus a device-to-device
copy as the bandwidth ceiling. Weights cycle through copies that outgrow L2, as in decode.
usage: python3 torch_baseline.py
"""
import torch

SHAPES = [(4096, 4096), (4096, 11008), (11008, 4096), (12288, 4096)]
dev = "cuda"


def timed(fn, copies, iters=200):
    for i in range(20):
        fn(copies[i % len(copies)])
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    results = []
    for _ in range(5):
        start.record()
        for i in range(iters):
            fn(copies[i % len(copies)])
        end.record()
        torch.cuda.synchronize()
        results.append(start.elapsed_time(end) / 1e3 / iters)
    return sorted(results)[2]


def n_copies(nbytes):
    return max(2, (256 << 20) // nbytes)


def report(name, n, k, nbytes, seconds):
    print(f"torch {name:<28} {n}x{k}: {seconds * 1e6:7.1f} us, {nbytes / seconds / 1e12:.2f} TB/s effective weight bandwidth")


def main():
    print(f"## PyTorch {torch.__version__} on {torch.cuda.get_device_name()}")
    a = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
    b = torch.empty_like(a)
    s = timed(lambda _: b.copy_(a), [None])
    print(f"device copy 1 GiB: {2 * a.numel() / s / 1e12:.2f} TB/s (read + write)")
    del a, b
    for n, k in SHAPES:
        x = torch.randn(1, k, dtype=torch.bfloat16, device=dev)
        w = [torch.randn(n, k, dtype=torch.bfloat16, device=dev) * 0.05 for _ in range(n_copies(n * k * 2))]
        report("bf16 matmul", n, k, n * k * 2, timed(lambda m: torch.matmul(x, m.t()), w))
        del w
        try:
            group = 128
            packed = []
            for _ in range(n_copies(n * k // 2)):
                q = torch.randint(0, 16, (n, k), dtype=torch.int32, device=dev)
                u8 = (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8)
                packed.append(torch.ops.aten._convert_weight_to_int4pack(u8, 8))
            sz = torch.randn(k // group, n, 2, dtype=torch.bfloat16, device=dev) * 0.01
            nbytes = n * k // 2 + sz.numel() * 2
            report("int4 tinygemm g128", n, k, nbytes, timed(lambda p: torch.ops.aten._weight_int4pack_mm(x, p, group, sz), packed))
            del packed
        except Exception as e:  # the op's signature moves between releases
            print(f"torch int4 tinygemm {n}x{k}: unavailable ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
        try:
            wf8 = [(torch.randn(n, k, device=dev) * 0.05).to(torch.float8_e4m3fn) for _ in range(n_copies(n * k))]
            x16 = torch.randn(16, k, device=dev).to(torch.float8_e4m3fn)
            sa = torch.ones(16, 1, device=dev)
            sb = torch.ones(1, n, device=dev)
            report("fp8 _scaled_mm (M=16)", n, k, n * k + n * 4,
                   timed(lambda m: torch._scaled_mm(x16, m.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16), wf8))
            del wf8
        except Exception as e:
            print(f"torch fp8 _scaled_mm {n}x{k}: unavailable ({type(e).__name__}: {str(e).splitlines()[0][:160]})")


if __name__ == "__main__":
    main()
