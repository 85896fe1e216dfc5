using Glm.Kernels.Cpu;
using Glm.Kernels.Device;
using Glm.Kernels.Device.Cpu;
using Glm.Kernels.Formats;

namespace Glm.Kernels.Tests;

/// <summary>
/// The CPU worker's ops that batch or share out work differently by the number of tokens and threads (the MoE
/// experts, heads x weight) give every token the bits it gets alone, on one thread, so prefill, decode and
/// speculative verification agree exactly.
/// </summary>
public class CpuWorkerBatchingTests
{
    private readonly int _seed = Environment.TickCount;
    private static readonly CpuWorker Worker = CpuWorker.Instance;

    public static TheoryData<string> Formats() => new() { "f32", "bf16", "int4-g64" };

    private static WeightMatrix Make(string format, Random rng, int rows, int cols)
    {
        var w = ScalarReference.Random(rng, rows * cols, 0.1f);
        switch (format)
        {
            case "f32": return new F32Matrix(w, rows, cols);
            case "bf16":
                var bits = new ushort[w.Length];
                BFloat16.FromFloat(w, bits);
                return Bf16Matrix.FromArray(bits, rows, cols);
            default: return Int4Matrix.Quantize(w, rows, cols, 64, symmetric: true);
        }
    }

    private static Tensor Upload(float[] values, int rows, int cols)
    {
        var t = Worker.Empty(rows, cols);
        values.CopyTo(CpuWorker.Data(t));
        return t;
    }

    /// <summary>
    /// 40 tokens through 16 experts top-4: with two threads the experts are shared out among them, with one each
    /// matrix runs whole; both equal each token alone through its chosen experts, summed in ascending expert order.
    /// </summary>
    [Theory]
    [MemberData(nameof(Formats))]
    public void MoeExpertsGiveEachTokenItsBitsAloneForAnyThreadCount(string format)
    {
        var rng = new Random(_seed);
        int experts = 16, hidden = 256, inter = 128, topK = 4, tokens = 40;
        var gate = new MoeGate(Worker.Place(ScalarReference.Random(rng, experts * hidden, 0.2f)), null, experts, hidden, topK, 1, 1, true, 2.5f);
        var set = new ExpertSet(
            Enumerable.Range(0, experts).Select(_ => Worker.Place(Make(format, rng, inter, hidden))).ToArray(),
            Enumerable.Range(0, experts).Select(_ => Worker.Place(Make(format, rng, inter, hidden))).ToArray(),
            Enumerable.Range(0, experts).Select(_ => Worker.Place(Make(format, rng, hidden, inter))).ToArray());
        var x = ScalarReference.Random(rng, tokens * hidden);

        // Each token alone: its route, then its experts one matrix at a time, in ascending expert order.
        var expected = new float[tokens * hidden];
        for (int t = 0; t < tokens; t++)
        {
            using var row = Upload(x[(t * hidden)..((t + 1) * hidden)], 1, hidden);
            using var routing = Worker.MoeRoute(row, gate);
            using var alone = Worker.MoeExperts(row, routing, set);
            CpuWorker.Data(alone).CopyTo(expected.AsSpan(t * hidden, hidden));
        }
        int threads = MatMul.Threads;
        try
        {
            foreach (int n in new[] { 1, 2 })
            {
                MatMul.Threads = n;
                using var all = Upload(x, tokens, hidden);
                using var routing = Worker.MoeRoute(all, gate);
                using var output = Worker.MoeExperts(all, routing, set);
                var actual = CpuWorker.Data(output).ToArray();
                for (int i = 0; i < expected.Length; i++)
                    Assert.True(BitConverter.SingleToInt32Bits(actual[i]) == BitConverter.SingleToInt32Bits(expected[i]),
                        $"{format}, {n} threads, token {i / hidden} [{i % hidden}]: {actual[i]:R} batched vs {expected[i]:R} alone (seed {_seed})");
            }
        }
        finally { MatMul.Threads = threads; }
        set.Dispose();
    }

    /// <summary>
    /// Heads x weight (MLA's absorbed projections) over 37 tokens, heads strided inside wider rows and a row offset
    /// into each head's block of weight rows, equals the same op one token at a time.
    /// </summary>
    [Theory]
    [MemberData(nameof(Formats))]
    public void HeadsTimesWeightOverManyTokensEqualsOneTokenAtATime(string format)
    {
        var rng = new Random(_seed);
        int heads = 5, width = 128, rowsPerHead = 48, rowOffset = 16, outWidth = 32, tokens = 37;
        using var weight = Worker.Place(Make(format, rng, heads * rowsPerHead, width));
        int xCols = heads * (width + 8) + 3, yCols = heads * (outWidth + 4) + 5; // strided heads, an offset column
        var x = ScalarReference.Random(rng, tokens * xCols);
        Heads XHeads(Tensor t) => new(t, heads, width + 8, 3, width);
        Heads YHeads(Tensor t) => new(t, heads, outWidth + 4, 5, outWidth);

        using var all = Upload(x, tokens, xCols);
        using var yAll = Worker.Empty(tokens, yCols);
        CpuWorker.Data(yAll).Clear();
        Worker.HeadsTimesWeight(weight, rowsPerHead, rowOffset, XHeads(all), YHeads(yAll));
        var batched = CpuWorker.Data(yAll).ToArray();
        for (int t = 0; t < tokens; t++)
        {
            using var one = Upload(x[(t * xCols)..((t + 1) * xCols)], 1, xCols);
            using var yOne = Worker.Empty(1, yCols);
            CpuWorker.Data(yOne).Clear();
            Worker.HeadsTimesWeight(weight, rowsPerHead, rowOffset, XHeads(one), YHeads(yOne));
            var alone = CpuWorker.Data(yOne).ToArray();
            for (int c = 0; c < yCols; c++)
                Assert.True(BitConverter.SingleToInt32Bits(batched[t * yCols + c]) == BitConverter.SingleToInt32Bits(alone[c]),
                    $"{format}, token {t} [{c}]: {batched[t * yCols + c]:R} batched vs {alone[c]:R} alone (seed {_seed})");
        }
    }
}
