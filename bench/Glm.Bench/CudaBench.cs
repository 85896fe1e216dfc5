using System.Diagnostics;
using Glm.Kernels.Cpu;
using Glm.Kernels.Cuda;
using Glm.Kernels.Formats;

namespace Glm.Bench;

/// <summary>
/// The CUDA kernels on a GPU machine that has no .NET SDK (so no test runner): each kernel against the CPU worker
/// on random inputs of real shapes, then GEMV effective weight bandwidth. Weights cycle through enough copies to
/// outgrow the GPU's L2 (50 MB on an H100), as decode reads every weight once per token.
/// bench/cuda/torch_baseline.py measures PyTorch's kernels and the device copy in the same run.
/// </summary>
public static class CudaBench
{
    private static readonly Random Rng = new(Environment.TickCount);

    public static int Run()
    {
        if (!CudaRuntime.IsAvailable(out string why))
        {
            Console.WriteLine("CUDA not available: " + why);
            return 1;
        }
        Console.WriteLine($"\n## CUDA kernels on {CudaRuntime.DeviceName(0)}: relative error against the CPU worker (float32)");
        LaunchFloor();
        int failures = CheckElementwise();
        foreach (var (n, k) in new[] { (4096, 4096), (4096, 11008), (11008, 4096), (12288, 4096) }) failures += GemvShape(n, k);
        Console.WriteLine(failures == 0 ? "all kernels within bounds" : $"{failures} kernel(s) OUT OF BOUNDS");
        return failures == 0 ? 0 : 2;
    }

    /// <summary>A tiny GEMV timed the same way: the per-call floor of launching from .NET, below which no kernel here can time.</summary>
    private static void LaunchFloor()
    {
        var bits = new ushort[16 * 256];
        using var w = new DeviceBuffer<ushort>(bits);
        using var x = new DeviceBuffer<float>(new float[256]);
        using var y = new DeviceBuffer<float>(16);
        Time("launch floor (gemv bf16 16x256)", bits.Length * 2L, () => CudaKernels.GemvBf16(w, x, y, 16, 256));
    }

    private static float[] Random(int n, float scale = 1f)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(Rng.NextDouble() * 2 - 1) * scale;
        return v;
    }

    private static double RelativeError(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        double maxErr = 0, maxRef = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            maxErr = Math.Max(maxErr, Math.Abs(expected[i] - actual[i]));
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }
        return maxErr / Math.Max(maxRef, 1e-30);
    }

    private static int Report(string what, double error, double bound)
    {
        bool ok = error <= bound;
        Console.WriteLine($"{what,-40} relative error {error:E2} (bound {bound:E0}) {(ok ? "ok" : "FAIL")}");
        return ok ? 0 : 1;
    }

    private static int CheckElementwise()
    {
        int failures = 0;
        int rows = 7, dim = 5120;
        var x = Random(rows * dim, 3);
        var w = Random(dim);
        var expected = new float[rows * dim];
        RmsNorm.ApplyRows(x, rows, w, 1e-5f, expected);
        using (var dx = new DeviceBuffer<float>(x))
        using (var dw = new DeviceBuffer<float>(w))
        using (var dy = new DeviceBuffer<float>(rows * dim))
        {
            CudaKernels.RmsNorm(dx, dw, dy, rows, dim, 1e-5f);
            failures += Report($"rmsnorm {rows}x{dim}", RelativeError(expected, dy.Download()), 1e-5);
        }

        var gate = Random(1 << 20, 6);
        var up = Random(1 << 20);
        var silu = new float[gate.Length];
        Activations.SiluMul(gate, up, silu);
        using (var dg = new DeviceBuffer<float>(gate))
        using (var du = new DeviceBuffer<float>(up))
        using (var dout = new DeviceBuffer<float>(gate.Length))
        {
            CudaKernels.SiluMul(dg, du, dout);
            failures += Report("silu_mul 1M", RelativeError(silu, dout.Download()), 1e-5);
        }

        foreach (var layout in new[] { RopeLayout.Interleaved, RopeLayout.HalfSplit, RopeLayout.InterleavedToHalf })
        {
            const int tokens = 5, heads = 8, headDim = 128, rotary = 64;
            var q = Random(tokens * heads * headDim);
            var positions = new[] { 0, 1, 77, 4095, 200000 };
            var rope = new Rope(rotary, 1e6, layout);
            var rotated = (float[])q.Clone();
            var scratch = new float[rope.ScratchLength];
            for (int t = 0; t < tokens; t++) rope.Apply(rotated.AsSpan(t * heads * headDim, heads * headDim), heads, headDim, positions[t], scratch);
            var invFreq = new float[rotary / 2];
            for (int i = 0; i < invFreq.Length; i++) invFreq[i] = 1f / MathF.Pow(1e6f, 2f * i / rotary);
            using var dq = new DeviceBuffer<float>(q);
            using var dp = new DeviceBuffer<int>(positions);
            using var df = new DeviceBuffer<float>(invFreq);
            CudaKernels.Rope(dq, dp, heads, headDim, rotary, (int)layout, df);
            failures += Report($"rope {layout}", RelativeError(rotated, dq.Download()), 1e-4);
        }
        return failures;
    }

    /// <summary>One GEMV shape: errors of the three formats, then their bandwidth out of L2.</summary>
    private static int GemvShape(int n, int k)
    {
        int failures = 0;
        var w = Random(n * k, 0.05f);
        var x = Random(k);
        var bits = new ushort[w.Length];
        BFloat16.FromFloat(w, bits);
        using var bf16 = Bf16Matrix.FromArray(bits, n, k);
        using var int4 = Int4Matrix.Quantize(w, n, k, 128, true);
        int4.Activations = Int4Activations.Float; // the GPU kernels widen the weights (W4A16)
        using var fp8 = Fp8Matrix.Quantize(w, n, k, Fp8Scaling.PerChannel);
        using var dx = new DeviceBuffer<float>(x);
        using var dy = new DeviceBuffer<float>(n);
        var expected = new float[n];

        var bf16Copies = Copies(() => new DeviceBuffer<ushort>(bits), bits.Length * 2L);
        var int4Codes = Copies(() => new DeviceBuffer<byte>(int4.PackedCodes), int4.PackedCodes.Length);
        using var scales = new DeviceBuffer<float>(int4.Scales);
        using var zeros = new DeviceBuffer<float>(int4.Zeros);
        var fp8Copies = Copies(() => new DeviceBuffer<byte>(fp8.Codes), fp8.Codes.Length);
        using var fp8Scales = new DeviceBuffer<float>(fp8.ScaleGrid);

        MatMul.Multiply(bf16, x, 1, expected);
        CudaKernels.GemvBf16(bf16Copies[0], dx, dy, n, k);
        failures += Report($"gemv bf16 {n}x{k}", RelativeError(expected, dy.Download()), 1e-4);
        MatMul.Multiply(int4, x, 1, expected);
        CudaKernels.GemvInt4(int4Codes[0], scales, zeros, dx, dy, n, k, 128);
        failures += Report($"gemv int4-g128 {n}x{k}", RelativeError(expected, dy.Download()), 1e-4);
        MatMul.Multiply(fp8, x, 1, expected);
        CudaKernels.GemvFp8Channel(fp8Copies[0], fp8Scales, dx, dy, n, k);
        failures += Report($"gemv fp8-channel {n}x{k}", RelativeError(expected, dy.Download()), 1e-4);

        int next = 0;
        Time($"gemv bf16 {n}x{k}", bf16.ByteSize, () => CudaKernels.GemvBf16(bf16Copies[next++ % bf16Copies.Length], dx, dy, n, k));
        Time($"gemv int4-g128 {n}x{k}", int4.ByteSize, () => CudaKernels.GemvInt4(int4Codes[next++ % int4Codes.Length], scales, zeros, dx, dy, n, k, 128));
        Time($"gemv fp8-channel {n}x{k}", fp8.ByteSize, () => CudaKernels.GemvFp8Channel(fp8Copies[next++ % fp8Copies.Length], fp8Scales, dx, dy, n, k));
        foreach (var b in bf16Copies) b.Dispose();
        foreach (var b in int4Codes) b.Dispose();
        foreach (var b in fp8Copies) b.Dispose();
        return failures;
    }

    private static DeviceBuffer<T>[] Copies<T>(Func<DeviceBuffer<T>> make, long bytes) where T : unmanaged
    {
        int count = (int)Math.Max(2, (256L << 20) / Math.Max(bytes, 1));
        var copies = new DeviceBuffer<T>[count];
        for (int i = 0; i < count; i++) copies[i] = make();
        return copies;
    }

    /// <summary>Launches queued back to back, timed to the last one's completion: per-call time and weight bandwidth.</summary>
    private static void Time(string what, long bytes, Action launch)
    {
        for (int i = 0; i < 20; i++) launch();
        CudaRuntime.Synchronize();
        var times = new double[5];
        const int launches = 200;
        for (int r = 0; r < times.Length; r++)
        {
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < launches; i++) launch();
            CudaRuntime.Synchronize();
            times[r] = sw.Elapsed.TotalSeconds / launches;
        }
        Array.Sort(times);
        double s = times[2];
        Console.WriteLine($"{what,-40} {s * 1e6:F1} us, {bytes / s / 1e12:F2} TB/s effective weight bandwidth");
    }
}
