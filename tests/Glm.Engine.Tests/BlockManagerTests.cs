namespace Glm.Engine.Tests;

public class BlockManagerTests
{
    private static Sequence Seq(int length) => new(Enumerable.Range(100, length).ToArray(), new SamplingParams(), 1);

    [Fact]
    public void ForkSharesBlocksAndCopiesTheSharedPartialBlockBeforeWriting()
    {
        var copies = new List<(int From, int To)>();
        var blocks = new BlockManager(8, 4, enablePrefixCaching: false, (from, to) => copies.Add((from, to)));
        var parent = Seq(6); // blocks: one full (4 tokens) and one partial (2 tokens)
        blocks.AllocatePrefix(parent);
        Assert.True(blocks.EnsureCapacity(parent, 6));
        parent.NumComputed = 6;
        Assert.Equal(6, blocks.FreeBlocks);

        var child = Seq(6);
        blocks.Fork(parent, child);
        Assert.Equal(parent.BlockTable, child.BlockTable);
        Assert.Equal(6, blocks.FreeBlocks); // shared, nothing new allocated

        // The child writes token 7 into the shared partial block: it gets a private copy first.
        child.Tokens.Add(1);
        Assert.True(blocks.EnsureCapacity(child, 7));
        Assert.Single(copies);
        Assert.Equal(parent.BlockTable[1], copies[0].From);
        Assert.Equal(child.BlockTable[1], copies[0].To);
        Assert.NotEqual(parent.BlockTable[1], child.BlockTable[1]);
        Assert.Equal(parent.BlockTable[0], child.BlockTable[0]); // the full block stays shared

        blocks.Free(parent);
        blocks.Free(child);
        Assert.Equal(8, blocks.FreeBlocks);
        Assert.True(blocks.AccountingIsExact(out var problem), problem);
    }

    [Fact]
    public void PrefixCacheReusesFullBlocksAndEvictsThemOnlyUnderPressure()
    {
        var blocks = new BlockManager(4, 4, enablePrefixCaching: true);
        var first = Seq(9); // two full blocks + one partial
        blocks.AllocatePrefix(first);
        Assert.True(blocks.EnsureCapacity(first, 9));
        first.NumComputed = 9;
        blocks.RegisterComputedBlocks(first);
        blocks.Free(first);

        var again = Seq(9);
        blocks.AllocatePrefix(again);
        Assert.Equal(8, again.NumCachedTokens); // both full blocks; the last token's block is always computed
        Assert.Equal(8, blocks.PrefixHits);
        blocks.Free(again);

        // A different sequence needing the whole pool evicts the cached blocks.
        var other = new Sequence(Enumerable.Range(5000, 16).ToArray(), new SamplingParams(), 1);
        blocks.AllocatePrefix(other);
        Assert.Equal(0, other.NumCachedTokens);
        Assert.True(blocks.EnsureCapacity(other, 16));
        blocks.Free(other);
        var afterEviction = Seq(9);
        blocks.AllocatePrefix(afterEviction);
        Assert.Equal(0, afterEviction.NumCachedTokens);
        blocks.Free(afterEviction);
        Assert.True(blocks.AccountingIsExact(out var problem), problem);
    }
}

public class SamplerTests
{
    /// <summary>Reference: full sort by (probability desc, id), top-k, top-p on the renormalised head, then the draw.</summary>
    /// <remarks>Probabilities in the sampler's own float arithmetic (scale, shift, MathF.Exp): computed in double they
    /// differ in the last bits, and a draw or a nucleus edge that lands between the two answers made this test flaky.</remarks>
    private static int Reference(float[] logits, float temperature, int topK, float topP, ulong seed)
    {
        float invT = 1f / temperature;
        var scaled = logits.Select(l => l * invT).ToArray();
        float max = scaled.Max();
        var probs = scaled.Select(l => (double)MathF.Exp(l - max)).ToArray();
        var order = Enumerable.Range(0, logits.Length).OrderByDescending(i => (float)probs[i]).ThenBy(i => i).ToList();
        int candidates = topK > 0 ? Math.Min(topK, order.Count) : order.Count;
        double mass = order.Take(candidates).Sum(i => (double)(float)probs[i]), cumulative = 0;
        for (int k = 0; k < candidates && topP < 1; k++)
        {
            cumulative += (float)probs[order[k]];
            if (cumulative >= topP * mass) { candidates = k + 1; break; }
        }
        double total = order.Take(candidates).Sum(i => (double)(float)probs[i]);
        double u = new SplitMix64(seed).NextDouble() * total;
        for (int k = 0; k < candidates; k++) { u -= (float)probs[order[k]]; if (u < 0) return order[k]; }
        return order[candidates - 1];
    }

    [Theory]
    [InlineData(1.0f, 0, 0.9f)]
    [InlineData(0.7f, 40, 1.0f)]
    [InlineData(1.3f, 50, 0.8f)]
    [InlineData(2.0f, 0, 0.99f)]
    public void TopKAndTopPMatchAFullSortReference(float temperature, int topK, float topP)
    {
        var rng = new Random(Environment.TickCount);
        var sampler = new Sampler();
        for (int trial = 0; trial < 15; trial++)
        {
            var logits = Enumerable.Range(0, 20000).Select(_ => (float)(rng.NextDouble() * 12 - 6)).ToArray();
            ulong seed = (ulong)rng.NextInt64();
            var seq = new Sequence([1, 2, 3], new SamplingParams { Temperature = temperature, TopK = topK, TopP = topP }, seed);
            var (token, _, _) = sampler.Sample(seq, logits, []);
            Assert.Equal(Reference(logits, temperature, topK, topP, seed), token);
        }
    }
}
