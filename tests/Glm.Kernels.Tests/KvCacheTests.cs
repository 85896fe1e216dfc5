using Glm.Kernels.Attention;

namespace Glm.Kernels.Tests;

public class KvCacheTests
{
    private readonly int _seed = Environment.TickCount;

    public static TheoryData<KvCacheDType, int> Cases()
    {
        var d = new TheoryData<KvCacheDType, int>();
        foreach (var t in new[] { KvCacheDType.F32, KvCacheDType.Bf16, KvCacheDType.Fp8, KvCacheDType.Int4 })
            foreach (int dim in new[] { 16, 40, 128, 576 }) d.Add(t, dim);
        return d;
    }

    /// <summary>
    /// The grouped-query entry points (one record decode for every query head of a KV head) against the one-head
    /// ones, and keys scored eight records at a time against one record alone, bit for bit: head counts 1 to 12, dims with and without a tail past the last run of 32, and a latent
    /// cache whose value is the key's 512-value prefix.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    [InlineData(KvCacheDType.Int4, 96)]
    public void MultiHeadKernelsGiveEachHeadTheOneHeadBits(KvCacheDType dtype, int dim)
    {
        var rng = new Random(_seed);
        bool latent = dim == 576;
        int valueDim = latent ? 512 : dim, tokens = 37;
        using var store = KvStore.Create(dtype, new KvLayout(1, 2, dim, latent ? 512 : dim, latent), tokens);
        for (int t = 0; t < tokens; t++)
            store.Write(0, t, ScalarReference.Random(rng, 2 * dim, 3f), latent ? [] : ScalarReference.Random(rng, 2 * dim, 3f));
        var slots = Enumerable.Range(0, tokens).Select(t => (long)(tokens - 1 - t)).ToArray(); // out of order, as pages are
        foreach (int count in new[] { 1, 3, 4, 5, 12 }) // Int4 takes heads three at a time: 5 = 3 + 2
        {
            var queries = ScalarReference.Random(rng, count * dim, 2f);
            int stride = tokens + 5;
            var together = new float[count * stride];
            store.ScoresForHeads(0, 1, slots, queries, count, 0.3f, together, stride);
            var probs = ScalarReference.Random(rng, count * stride, 1f);
            var sums = ScalarReference.Random(rng, count * valueDim, 1f);
            var aloneSums = sums.ToArray();
            store.AccumulateValuesForHeads(0, 1, slots, probs, stride, count, sums);
            for (int h = 0; h < count; h++)
            {
                var alone = new float[tokens];
                store.Scores(0, 1, slots, queries.AsSpan(h * dim, dim), 0.3f, alone);
                Assert.True(alone.AsSpan().SequenceEqual(together.AsSpan(h * stride, tokens)), $"{dtype} dim {dim}, {count} heads: head {h}'s scores differ (seed {_seed})");
                // Keys are scored eight records at a time: the same bits as one record alone.
                var one = new float[1];
                for (int t = 0; t < tokens; t++)
                {
                    store.Scores(0, 1, slots.AsSpan(t, 1), queries.AsSpan(h * dim, dim), 0.3f, one);
                    Assert.Equal(one[0], alone[t]);
                }
                store.AccumulateValues(0, 1, slots, probs.AsSpan(h * stride, tokens), aloneSums.AsSpan(h * valueDim, valueDim));
            }
            Assert.True(aloneSums.AsSpan().SequenceEqual(sums), $"{dtype} dim {dim}, {count} heads: weighted values differ (seed {_seed})");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void StoredVectorsDecodeWithinTheFormatsBoundAndKernelsMatchFloat64(KvCacheDType dtype, int dim)
    {
        var rng = new Random(_seed);
        using var store = KvStore.Create(dtype, new KvLayout(1, 2, dim, dim, false), 8);
        var keys = ScalarReference.Random(rng, 2 * dim, 3f);
        var values = ScalarReference.Random(rng, 2 * dim, 3f);
        store.Write(0, 5, keys, values);
        var decoded = new float[dim];
        store.ReadKey(0, 5, 1, decoded);
        var original = keys.AsSpan(dim, dim);
        float absMax = 0;
        foreach (float v in original) absMax = Math.Max(absMax, Math.Abs(v));
        for (int i = 0; i < dim; i++)
        {
            // Int4 ranges are per group of 64 values.
            var group = original.Slice(i / 64 * 64, Math.Min(64, dim - i / 64 * 64));
            float min = float.MaxValue, max = float.MinValue;
            foreach (float v in group) { min = Math.Min(min, v); max = Math.Max(max, v); }
            double bound = dtype switch
            {
                KvCacheDType.F32 => 0,
                KvCacheDType.Bf16 => Math.Abs(original[i]) / 256,
                KvCacheDType.Fp8 => Math.Max(Math.Abs(original[i]) / 16, absMax / 448 / 1024),
                _ => (max - min) / 15 / 2 * 1.01 + (Math.Abs(min) + (max - min)) * 1e-3, // half a step, plus FP16 rounding of scale and minimum
            };
            Assert.True(Math.Abs(decoded[i] - original[i]) <= bound + 1e-7, $"{dtype} dim {dim} [{i}]: {original[i]} → {decoded[i]} (seed {_seed})");
        }

        // The attention inner loops against float64 on the decoded values.
        var q = ScalarReference.Random(rng, dim);
        var scores = new float[1];
        store.Scores(0, 1, [5L], q, 0.5f, scores);
        double expected = ScalarReference.Dot(q, decoded) * 0.5;
        Assert.True(Math.Abs(scores[0] - expected) <= 1e-5 * Math.Max(1, Math.Abs(expected)) * Math.Sqrt(dim), $"{dtype}: score {scores[0]} vs {expected}");
        var output = new float[dim];
        store.WeightedValues(0, 0, [5L], [0.75f], output);
        var v0 = new float[dim];
        var tmpStore = KvStore.Create(dtype, new KvLayout(1, 1, dim, dim, false), 1);
        tmpStore.Write(0, 0, values.AsSpan(0, dim), values.AsSpan(0, dim));
        tmpStore.ReadKey(0, 0, 0, v0);
        tmpStore.Dispose();
        for (int i = 0; i < dim; i++) Assert.True(Math.Abs(output[i] - 0.75 * v0[i]) <= 1e-6 * Math.Max(1, Math.Abs(v0[i])), $"{dtype}: value {i}");
    }

    [Theory]
    [InlineData(KvCacheDType.F32)]
    [InlineData(KvCacheDType.Bf16)]
    [InlineData(KvCacheDType.Fp8)]
    [InlineData(KvCacheDType.Int4)]
    public void LatentCachesReadTheirValueAsAPrefixOfTheKey(KvCacheDType dtype)
    {
        // MLA: 576 stored values (512 latent + 64 RoPE); attention reads the first 512 as the value.
        var rng = new Random(_seed);
        using var store = KvStore.Create(dtype, new KvLayout(1, 1, 576, 512, ValueIsKeyPrefix: true), 4);
        var key = ScalarReference.Random(rng, 576, 2f);
        store.Write(0, 2, key, default);
        var decoded = new float[576];
        store.ReadKey(0, 2, 0, decoded);
        var value = new float[512];
        store.WeightedValues(0, 0, [2L], [1f], value);
        for (int i = 0; i < 512; i++) Assert.True(Math.Abs(value[i] - decoded[i]) <= 1e-6 * Math.Max(1, Math.Abs(decoded[i])), $"{dtype} [{i}]: {value[i]} vs {decoded[i]}");
    }

    [Fact]
    public void Int4KvIsMoreThanThreeAndAHalfTimesSmallerThanBf16AtHeadDim128()
    {
        var layout = new KvLayout(1, 8, 128, 128, false);
        using var bf16 = KvStore.Create(KvCacheDType.Bf16, layout, 1);
        using var int4 = KvStore.Create(KvCacheDType.Int4, layout, 1);
        using var fp8 = KvStore.Create(KvCacheDType.Fp8, layout, 1);
        double ratio = (double)bf16.BytesPerTokenPerLayer / int4.BytesPerTokenPerLayer;
        Assert.True(ratio >= 3.5, $"int4 is only {ratio:F2}x smaller");
        Assert.True((double)bf16.BytesPerTokenPerLayer / fp8.BytesPerTokenPerLayer >= 1.9);
    }

    [Fact]
    public void PagedAttentionOverScatteredBlocksEqualsNaiveAttention()
    {
        var rng = new Random(_seed);
        const int heads = 4, kvHeads = 2, dim = 32, context = 37, blockSize = 4;
        using var cache = new PagedKvCache(new KvLayout(1, kvHeads, dim, dim, false), KvCacheDType.F32, 20, blockSize);
        var blockTable = Enumerable.Range(0, 20).OrderBy(_ => rng.Next()).Take((context + blockSize - 1) / blockSize).ToList();
        var slots = new long[context];
        cache.SlotsFor(blockTable, slots);
        var k = new float[context][];
        var v = new float[context][];
        for (int t = 0; t < context; t++)
        {
            k[t] = ScalarReference.Random(rng, kvHeads * dim);
            v[t] = ScalarReference.Random(rng, kvHeads * dim);
            cache.Store.Write(0, slots[t], k[t], v[t]);
        }
        var q = ScalarReference.Random(rng, 2 * heads * dim); // two query tokens: positions 35 and 36
        var output = new float[2 * heads * dim];
        PagedAttention.Forward(cache.Store, 0, [new AttentionSequence(0, 2, context - 2, slots)], q, heads, dim, heads / kvHeads, 0.2f, output, dim);
        for (int token = 0; token < 2; token++)
            for (int h = 0; h < heads; h++)
            {
                int kvh = h / (heads / kvHeads), ctx = context - 1 + token;
                var s = new double[ctx];
                for (int t = 0; t < ctx; t++) s[t] = 0.2 * ScalarReference.Dot(q.AsSpan((token * heads + h) * dim, dim), k[t].AsSpan(kvh * dim, dim));
                double m = s.Max(), z = s.Sum(x => Math.Exp(x - m));
                for (int d = 0; d < dim; d++)
                {
                    double expected = 0;
                    for (int t = 0; t < ctx; t++) expected += Math.Exp(s[t] - m) / z * v[t][kvh * dim + d];
                    Assert.Equal(expected, output[(token * heads + h) * dim + d], 1e-5);
                }
            }
    }
}
