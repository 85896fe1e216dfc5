using Glm.Kernels.Cpu;
using Glm.Kernels.Formats;

namespace Glm.Kernels.Cuda.Tests;

/// <summary>Runs only where libglm_cuda and an NVIDIA GPU are present; elsewhere skipped with the reason.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    public CudaFactAttribute()
    {
        if (!CudaRuntime.IsAvailable(out string reason)) Skip = "needs an NVIDIA GPU and libglm_cuda: " + reason;
    }
}

public class CudaKernelTests
{
    private readonly Random _rng = new(Environment.TickCount);

    private float[] Random(int n, float scale = 1f) => Enumerable.Range(0, n).Select(_ => (float)(_rng.NextDouble() * 2 - 1) * scale).ToArray();

    private static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double relative)
    {
        double maxErr = 0, maxRef = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            maxErr = Math.Max(maxErr, Math.Abs(expected[i] - actual[i]));
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }
        Assert.True(maxErr <= relative * Math.Max(maxRef, 1e-6), $"max error {maxErr:E2} against max {maxRef:E2}");
    }

    [Fact]
    public void ProbeExplainsWhyCudaIsOrIsNotAvailable()
    {
        bool ok = CudaRuntime.IsAvailable(out string reason);
        Assert.False(string.IsNullOrWhiteSpace(reason));
        if (!ok) Assert.Matches("not found|no CUDA device|not usable|could not be bound", reason);
        else Assert.Contains("CUDA device", reason);
    }

    [CudaFact]
    public void RmsNormMatchesTheCpuWorker()
    {
        int rows = 7, dim = 4096;
        var x = Random(rows * dim, 3);
        var w = Random(dim);
        var expected = new float[rows * dim];
        RmsNorm.ApplyRows(x, rows, w, 1e-5f, expected);
        using var dx = new DeviceBuffer<float>(x);
        using var dw = new DeviceBuffer<float>(w);
        using var dy = new DeviceBuffer<float>(rows * dim);
        CudaKernels.RmsNorm(dx, dw, dy, rows, dim, 1e-5f);
        Close(expected, dy.Download(), 1e-5);
    }

    [CudaFact]
    public void RopeMatchesTheCpuWorkerInEveryLayout()
    {
        foreach (var layout in new[] { RopeLayout.Interleaved, RopeLayout.HalfSplit, RopeLayout.InterleavedToHalf })
        {
            const int tokens = 5, heads = 8, headDim = 128, rotary = 64;
            var x = Random(tokens * heads * headDim);
            var positions = new[] { 0, 1, 77, 4095, 200000 };
            var rope = new Rope(rotary, 1e6, layout);
            var expected = (float[])x.Clone();
            var scratch = new float[rope.ScratchLength];
            for (int t = 0; t < tokens; t++) rope.Apply(expected.AsSpan(t * heads * headDim, heads * headDim), heads, headDim, positions[t], scratch);
            var invFreq = Enumerable.Range(0, rotary / 2).Select(i => 1f / MathF.Pow(1e6f, 2f * i / rotary)).ToArray();
            using var dx = new DeviceBuffer<float>(x);
            using var dp = new DeviceBuffer<int>(positions);
            using var df = new DeviceBuffer<float>(invFreq);
            CudaKernels.Rope(dx, dp, heads, headDim, rotary, (int)layout, df);
            Close(expected, dx.Download(), 1e-4);
        }
    }

    [CudaFact]
    public void GemvKernelsMatchTheCpuWorkerAtRealShapes()
    {
        int n = 4096, k = 11008 / 32 * 32;
        var w = Random(n * k, 0.05f);
        var x = Random(k);
        var bits = new ushort[w.Length];
        BFloat16.FromFloat(w, bits);
        var matrices = (Bf16: Bf16Matrix.FromArray(bits, n, k), Int4: Int4Matrix.Quantize(w, n, k, 128, true), Fp8: Fp8Matrix.Quantize(w, n, k, Fp8Scaling.PerChannel));
        using var dx = new DeviceBuffer<float>(x);
        using var dy = new DeviceBuffer<float>(n);
        var expected = new float[n];

        MatMul.Multiply(matrices.Bf16, x, 1, expected);
        using (var dw = new DeviceBuffer<ushort>(bits)) CudaKernels.GemvBf16(dw, dx, dy, n, k);
        Close(expected, dy.Download(), 1e-4);

        matrices.Int4.Activations = Int4Activations.Float; // the GPU kernel widens the weights (W4A16)
        MatMul.Multiply(matrices.Int4, x, 1, expected);
        using (var codes = new DeviceBuffer<byte>(matrices.Int4.PackedCodes))
        using (var scales = new DeviceBuffer<float>(matrices.Int4.Scales))
        using (var zeros = new DeviceBuffer<float>(matrices.Int4.Zeros))
            CudaKernels.GemvInt4(codes, scales, zeros, dx, dy, n, k, 128);
        Close(expected, dy.Download(), 1e-4);

        MatMul.Multiply(matrices.Fp8, x, 1, expected);
        using (var codes = new DeviceBuffer<byte>(matrices.Fp8.Codes))
        using (var scales = new DeviceBuffer<float>(matrices.Fp8.ScaleGrid))
            CudaKernels.GemvFp8Channel(codes, scales, dx, dy, n, k);
        Close(expected, dy.Download(), 1e-4);
    }
}
