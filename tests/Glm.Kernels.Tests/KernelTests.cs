using Glm.Kernels.Cpu;
using Glm.Kernels.Formats;

namespace Glm.Kernels.Tests;

/// <summary>SIMD kernels against float64 scalar references on random data (a fresh seed each run, printed on failure).</summary>
public class KernelTests
{
    private readonly int _seed = Environment.TickCount;

    [Theory]
    [InlineData(1)]
    [InlineData(31)]
    [InlineData(32)]
    [InlineData(100)]
    [InlineData(4096)]
    public unsafe void DotProductsMatchTheScalarReference(int n)
    {
        var rng = new Random(_seed);
        var x = ScalarReference.Random(rng, n);
        var w = ScalarReference.Random(rng, n);
        var bf = new ushort[n];
        BFloat16.FromFloat(w, bf);
        var wRounded = new float[n];
        BFloat16.ToFloat(bf, wRounded);
        fixed (float* px = x) fixed (float* pw = w) fixed (ushort* pb = bf)
        {
            double refF32 = ScalarReference.Dot(x, w), refBf16 = ScalarReference.Dot(x, wRounded);
            double scale = Math.Max(1, Math.Sqrt(n));
            Assert.True(Math.Abs(Dot.F32(px, pw, n) - refF32) / scale < 1e-5, $"seed {_seed}");
            Assert.True(Math.Abs(Dot.Bf16(px, pb, n) - refBf16) / scale < 1e-5, $"seed {_seed}");
        }
    }

    [Theory]
    [InlineData(1, 64, 48)]
    [InlineData(5, 257, 130)]
    [InlineData(16, 1024, 512)]
    [InlineData(6, 96, 9000)] // x wider than L1
    public void MatMulMatchesTheScalarReferenceForEveryFormat(int m, int n, int k)
    {
        var rng = new Random(_seed);
        var x = ScalarReference.Random(rng, m * k);
        var w = ScalarReference.Random(rng, n * k, 0.1f);
        var bits = new ushort[w.Length];
        BFloat16.FromFloat(w, bits);
        var rounded = new float[w.Length];
        BFloat16.ToFloat(bits, rounded);
        foreach (var (matrix, reference) in new (WeightMatrix, float[])[] { (new F32Matrix(w, n, k), w), (Bf16Matrix.FromArray(bits, n, k), rounded) })
        {
            var y = new float[m * n];
            MatMul.Multiply(matrix, x, m, y);
            double err = ScalarReference.RelativeError(y, ScalarReference.MatMul(x, m, reference, n, k));
            Assert.True(err < 1e-5, $"{matrix.Format}: relative error {err:E2} (seed {_seed})");
        }
    }

    /// <summary>
    /// Batch invariance: a row gives the same bits alone as inside a batch, whatever the thread split, for both BF16
    /// kernel families where the machine has them (the AVX-512 tiles of 4 x 2 and their remainders, the 8-lane
    /// kernels), at widths with and without a half step and a scalar tail, and odd row counts (a last unpaired row).
    /// Both families agree with each other to float rounding.
    /// </summary>
    [Theory]
    [InlineData(701, 300)]
    [InlineData(97, 1040)]
    [InlineData(65, 1045)]
    [InlineData(33, 7000)] // x wider than L1: decode takes weight rows in pairs
    public unsafe void MatMulRowsDoNotDependOnTheBatch(int n, int k)
    {
        var rng = new Random(_seed);
        var bits = new ushort[n * k];
        BFloat16.FromFloat(ScalarReference.Random(rng, n * k), bits);
        var w = Bf16Matrix.FromArray(bits, n, k);
        var x = ScalarReference.Random(rng, 9 * k);
        var families = System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? new[] { true, false } : new[] { false };
        var outputs = new List<float[]>();
        foreach (bool tiled in families)
        {
            w.Tiled = tiled;
            ScalarReference.AssertRowsIndependentOfBatch(w, x, 9);
            var y = new float[9 * n];
            MatMul.Multiply(w, x, 9, y);
            fixed (float* px = x)
                for (int r = 0; r < n; r += 7) Assert.Equal(y[r], w.DotRow(r, px));
            outputs.Add(y);
        }
        for (int i = 0; i < outputs[0].Length; i++)
            Assert.True(Math.Abs(outputs[0][i] - outputs[^1][i]) <= 1e-5f * (1 + Math.Abs(outputs[^1][i])), $"[{i}] tiled {outputs[0][i]} vs 8-lane {outputs[^1][i]} (seed {_seed})");
    }

    /// <summary>The vectorized softmax and SiLU·up against float64, across stretch edges, with the output in place.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(255)]
    [InlineData(700)]
    public void SoftmaxAndSiluMulMatchTheirDefinitions(int n)
    {
        var rng = new Random(_seed);
        var x = ScalarReference.Random(rng, n, 20f);
        var p = x.ToArray();
        Activations.Softmax(p);
        double max = x.Max(), sum = x.Sum(v => Math.Exp(v - max));
        for (int i = 0; i < n; i++)
        {
            double expected = Math.Exp(x[i] - max) / sum;
            // x − max is rounded to float first: its relative error is ulp-sized, and exp turns it into |x − max| as much.
            double bound = expected * (1e-6 + 1.2e-7 * Math.Abs(x[i] - max));
            Assert.True(Math.Abs(p[i] - expected) <= bound + 1e-30, $"softmax [{i}] {p[i]} vs {expected} (seed {_seed})");
        }
        var up = ScalarReference.Random(rng, n, 3f);
        var gate = x.ToArray();
        Activations.SiluMul(gate, up, gate);
        for (int i = 0; i < n; i++)
        {
            double expected = x[i] / (1 + Math.Exp(-(double)x[i])) * up[i];
            Assert.True(Math.Abs(gate[i] - expected) <= 1e-6 * Math.Abs(expected) + 1e-30, $"silu·up [{i}] {gate[i]} vs {expected} (seed {_seed})");
        }
    }

    [Fact]
    public void RmsNormMatchesItsDefinition()
    {
        var rng = new Random(_seed);
        var x = ScalarReference.Random(rng, 333, 3);
        var weight = ScalarReference.Random(rng, 333);
        var y = new float[333];
        RmsNorm.Apply(x, weight, 1e-5f, y);
        double ms = x.Sum(v => (double)v * v) / x.Length;
        var expected = x.Select((v, i) => v / Math.Sqrt(ms + 1e-5) * weight[i]).ToArray();
        Assert.True(ScalarReference.RelativeError(y, expected) < 1e-6);
    }

    [Theory]
    [InlineData(RopeLayout.Interleaved)]
    [InlineData(RopeLayout.HalfSplit)]
    [InlineData(RopeLayout.InterleavedToHalf)]
    public void RopeRotatesTheRightPairsAndLeavesThePassThroughDims(RopeLayout layout)
    {
        const int headDim = 16, rotary = 8, position = 37;
        var rope = new Rope(rotary, 10000, layout);
        var rng = new Random(_seed);
        var x = ScalarReference.Random(rng, 2 * headDim);
        var y = (float[])x.Clone();
        rope.Apply(y, 2, headDim, position, new float[rope.ScratchLength]);
        for (int h = 0; h < 2; h++)
        {
            int o = h * headDim;
            for (int i = 0; i < rotary / 2; i++)
            {
                double angle = position * Math.Pow(10000, -2.0 * i / rotary);
                (int a, int b, int outA, int outB) = layout switch
                {
                    RopeLayout.Interleaved => (2 * i, 2 * i + 1, 2 * i, 2 * i + 1),
                    RopeLayout.HalfSplit => (i, i + rotary / 2, i, i + rotary / 2),
                    _ => (2 * i, 2 * i + 1, i, i + rotary / 2),
                };
                Assert.Equal(x[o + a] * Math.Cos(angle) - x[o + b] * Math.Sin(angle), y[o + outA], 1e-4);
                Assert.Equal(x[o + b] * Math.Cos(angle) + x[o + a] * Math.Sin(angle), y[o + outB], 1e-4);
            }
            for (int d = rotary; d < headDim; d++) Assert.Equal(x[o + d], y[o + d]);
        }
    }

    [Fact]
    public void Bf16RoundsToNearestEven()
    {
        Assert.Equal(0x3F80, BFloat16.FromFloat(1f));
        Assert.Equal(0x3F80, BFloat16.FromFloat(BitConverter.Int32BitsToSingle(0x3F808000))); // tie → even
        Assert.Equal(0x3F82, BFloat16.FromFloat(BitConverter.Int32BitsToSingle(0x3F818000))); // tie → even (up)
        Assert.Equal(0x3F81, BFloat16.FromFloat(BitConverter.Int32BitsToSingle(0x3F808001)));
        Assert.True(float.IsNaN(BFloat16.ToFloat(BFloat16.FromFloat(float.NaN))));
        var rng = new Random(_seed);
        for (int i = 0; i < 10000; i++)
        {
            float v = (float)(rng.NextDouble() * 2000 - 1000);
            float r = BFloat16.ToFloat(BFloat16.FromFloat(v));
            Assert.True(Math.Abs(r - v) <= Math.Abs(v) * (1.0 / 256) + 1e-30, $"{v} → {r}");
        }
    }

    [Fact]
    public void Fp8E4M3DecodesEveryCodeAndEncodesToTheNearest()
    {
        Assert.Equal(448f, Fp8E4M3.ToFloat(0x7E));
        Assert.Equal(-448f, Fp8E4M3.ToFloat(0xFE));
        Assert.True(float.IsNaN(Fp8E4M3.ToFloat(0x7F)));
        Assert.Equal(1f / 512, Fp8E4M3.ToFloat(0x01)); // smallest subnormal
        Assert.Equal(1f / 64, Fp8E4M3.ToFloat(0x08));  // smallest normal
        for (int code = 0; code < 256; code++)
        {
            float v = Fp8E4M3.ToFloat((byte)code);
            if (float.IsNaN(v)) continue;
            byte back = Fp8E4M3.FromFloat(v);
            Assert.True(back == code || (v == 0 && (back & 0x7F) == 0), $"code {code:X2} ({v}) re-encodes as {back:X2}");
            Assert.Equal(BitConverter.SingleToInt32Bits(v), BitConverter.SingleToInt32Bits(Fp8E4M3.Decode1((byte)code))); // the table-free decode, bit for bit
        }
        // Every float encodes to the nearest representable value (ties to even), saturating at ±448.
        var finite = Enumerable.Range(0, 256).Select(c => Fp8E4M3.ToFloat((byte)c)).Where(f => !float.IsNaN(f)).Distinct().OrderBy(f => f).ToArray();
        var rng = new Random(_seed);
        for (int i = 0; i < 20000; i++)
        {
            float v = (float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-12, 10)));
            float got = Fp8E4M3.ToFloat(Fp8E4M3.FromFloat(v));
            float clamped = Math.Clamp(v, -448f, 448f);
            double best = finite.Min(f => Math.Abs(f - clamped));
            Assert.True(Math.Abs(got - clamped) <= best + 1e-12, $"{v} → {got}, nearest is {best} away (seed {_seed})");
        }
        Assert.Equal(448f, Fp8E4M3.ToFloat(Fp8E4M3.FromFloat(1e6f)));
    }

    /// <summary>The in-register decoders against the table for every finite code, both signs, subnormals included.</summary>
    [Fact]
    public unsafe void Fp8E4M3RegisterDecodersMatchTheTable()
    {
        var codes = Enumerable.Range(0, 256).Where(c => (c & 0x7F) != 0x7F).Select(c => (byte)c).ToArray();
        byte* buffer = stackalloc byte[16];
        for (int start = 0; start < codes.Length; start += 16)
        {
            for (int j = 0; j < 16; j++) buffer[j] = codes[Math.Min(start + j, codes.Length - 1)];
            if (System.Runtime.Intrinsics.X86.Avx2.IsSupported)
            {
                var lo = Fp8E4M3.Decode8(buffer);
                var hi = Fp8E4M3.Decode8(buffer + 8);
                for (int j = 0; j < 8; j++)
                {
                    Assert.Equal(Fp8E4M3.ToFloat(buffer[j]), lo[j]);
                    Assert.Equal(Fp8E4M3.ToFloat(buffer[j + 8]), hi[j]);
                }
            }
            if (System.Runtime.Intrinsics.X86.Avx512F.IsSupported)
            {
                var all = Fp8E4M3.Decode16(buffer);
                for (int j = 0; j < 16; j++) Assert.Equal(Fp8E4M3.ToFloat(buffer[j]), all[j]);
            }
        }
    }
}
