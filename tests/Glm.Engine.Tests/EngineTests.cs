using Glm.Kernels.Attention;
using Glm.Models.Architectures;
using Glm.TestSupport;

namespace Glm.Engine.Tests;

public class EngineTests
{
    private static LlmEngine Start(string arch, KvCacheDType kv, bool prefixCaching, int numBlocks = 256, int blockSize = 4, int maxBatchedTokens = 64)
    {
        var model = ModelLoader.Load(Fixtures.Dir(arch));
        var runner = new ModelRunner(model, kv, numBlocks, blockSize);
        return new LlmEngine(runner, new EngineOptions
        {
            MaxNumSeqs = 16, MaxNumBatchedTokens = maxBatchedTokens, MaxModelLen = 4096, EnablePrefixCaching = prefixCaching,
        }, e => throw new Xunit.Sdk.XunitException("engine fault: " + e));
    }

    private static List<int[]> Prompts(int seed)
    {
        var rng = new Random(seed);
        var shared = Enumerable.Range(0, 20).Select(_ => rng.Next(3, 1000)).ToArray(); // a common prefix exercises the prefix cache
        return Enumerable.Range(0, 16).Select(i =>
        {
            int len = new[] { 1, 3, 7, 17, 33, 70 }[i % 6];
            var own = Enumerable.Range(0, len).Select(_ => rng.Next(3, 1000));
            return (i % 3 == 0 ? shared.Concat(own) : own).ToArray();
        }).ToList();
    }

    /// <summary>A sequence's streamed tokens (the speculative-decoding tests read their outputs with it too).</summary>
    internal static async Task<int[]> Collect(Sequence seq)
    {
        var tokens = new List<int>();
        await foreach (var o in seq.Output.Reader.ReadAllAsync())
            if (o.Token >= 0) tokens.Add(o.Token);
        return tokens.ToArray();
    }

    /// <summary>Each prompt decoded on its own, one request after another: the reference the batched runs are held to.</summary>
    internal static async Task<List<int[]>> OneAtATime(LlmEngine engine, IReadOnlyList<int[]> prompts, Func<int, SamplingParams> sampling)
    {
        var outputs = new List<int[]>();
        for (int i = 0; i < prompts.Count; i++) outputs.Add(await Collect(engine.Submit(prompts[i], sampling(i))));
        return outputs;
    }

    /// <summary>Every prompt submitted at once (continuous batching), each one's tokens in prompt order.</summary>
    internal static Task<int[][]> AllAtOnce(LlmEngine engine, IReadOnlyList<int[]> prompts, Func<int, SamplingParams> sampling) =>
        Task.WhenAll(prompts.Select((p, i) => engine.Submit(p, sampling(i))).ToList().Select(Collect));

    private static readonly SamplingParams Greedy = new() { Temperature = 0, MaxTokens = 12, IgnoreEos = true };

    [Theory]
    [InlineData("glm4_moe", KvCacheDType.Bf16, true)]
    [InlineData("glm4_moe", KvCacheDType.Bf16, false)]
    [InlineData("glm4_moe_lite", KvCacheDType.Bf16, true)]
    [InlineData("glm4", KvCacheDType.F32, true)]
    public async Task BatchedOutputsEqualSoloRuns(string arch, KvCacheDType kv, bool prefixCaching)
    {
        var prompts = Prompts(Environment.TickCount);
        var solo = new List<int[]>();
        using (var engine = Start(arch, kv, prefixCaching))
            foreach (var p in prompts) solo.Add(await Collect(engine.Submit(p, Greedy)));

        using var batched = Start(arch, kv, prefixCaching);
        var first = prompts.Take(8).Select(p => batched.Submit(p, Greedy)).ToList();
        // The rest arrive while the first half is decoding.
        await first[0].Output.Reader.WaitToReadAsync();
        var second = prompts.Skip(8).Select(p => batched.Submit(p, Greedy)).ToList();
        var results = await Task.WhenAll(first.Concat(second).Select(Collect));
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(solo[i], results[i]);

        await WaitIdle(batched);
        Assert.True(batched.PoolIsConsistent(out var problem), problem);
        Assert.Equal(1.0, (double)batched.Stats.FreeBlocks / batched.Stats.TotalBlocks);
        if (prefixCaching) Assert.True(batched.Stats.PrefixHits > 0, "the shared prefix should hit the cache");
    }

    [Fact]
    public async Task PreemptionUnderATinyPoolLosesAndDuplicatesNothing()
    {
        var prompts = Prompts(7);
        var solo = new List<int[]>();
        using (var engine = Start("glm4_moe", KvCacheDType.F32, false))
            foreach (var p in prompts) solo.Add(await Collect(engine.Submit(p, Greedy)));

        // 40 blocks of 4 = 160 slots: far less than 16 sequences need together, more than any one needs.
        using var tiny = Start("glm4_moe", KvCacheDType.F32, true, numBlocks: 40);
        var seqs = prompts.Select(p => tiny.Submit(p, Greedy)).ToList();
        var results = await Task.WhenAll(seqs.Select(Collect));
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(solo[i], results[i]);
        await WaitIdle(tiny);
        Assert.True(tiny.Stats.Preemptions > 0, "the pool was meant to force preemption");
        Assert.True(tiny.PoolIsConsistent(out var problem), problem);
        Assert.Equal(tiny.Stats.TotalBlocks, tiny.Stats.FreeBlocks);
    }

    [Fact]
    public async Task SeededSamplingIsReproducibleWhateverTheBatch()
    {
        var p = new SamplingParams { Temperature = 0.9f, TopP = 0.9f, TopK = 50, Seed = 1234, MaxTokens = 16, IgnoreEos = true };
        var prompt = new[] { 5, 6, 7, 8, 9 };
        using var engine = Start("glm4_moe", KvCacheDType.F32, true);
        var alone = await Collect(engine.Submit(prompt, p));
        var crowd = Prompts(3).Select(x => engine.Submit(x, p with { Seed = 99 })).ToList();
        var again = await Collect(engine.Submit(prompt, p));
        await Task.WhenAll(crowd.Select(Collect));
        Assert.Equal(alone, again);
        var other = await Collect(engine.Submit(prompt, p with { Seed = 4321 }));
        Assert.NotEqual(alone, other);
    }

    [Fact]
    public async Task AbortFreesBlocksAndReportsAbort()
    {
        using var engine = Start("glm4_moe", KvCacheDType.F32, false);
        var seq = engine.Submit(Enumerable.Range(3, 50).ToArray(), Greedy with { MaxTokens = 500 });
        await seq.Output.Reader.WaitToReadAsync();
        engine.Abort(seq);
        var last = FinishReason.None;
        await foreach (var o in seq.Output.Reader.ReadAllAsync()) last = o.Finish;
        Assert.Equal(FinishReason.Abort, last);
        await WaitIdle(engine);
        Assert.Equal(engine.Stats.TotalBlocks, engine.Stats.FreeBlocks);
    }

    [Fact]
    public void PromptsThatCannotFitAreRejectedBeforeQueueing()
    {
        using var engine = Start("glm4_moe", KvCacheDType.F32, false, numBlocks: 8);
        var e = Assert.Throws<AdmissionException>(() => engine.Submit(Enumerable.Range(3, 40).ToArray(), Greedy));
        Assert.Equal(AdmissionFailure.ContextTooLong, e.Kind);
        Assert.Contains("maximum context length is 32 tokens", e.Message);
    }

    [Fact]
    public void AThinkingBudgetForcesTheCloseOnlyOnceSpentAndOnlyWhileThinking()
    {
        const int open = 7, close = 8;
        var budget = new ThinkingBudget(3, open, close, promptOpenedThink: false, inner: null);
        float[] Masked(int[] generated, ref object? state)
        {
            var logits = Enumerable.Range(0, 16).Select(i => (float)i).ToArray();
            budget.Apply(generated, logits, ref state);
            return logits;
        }
        object? s = null;
        Assert.DoesNotContain(float.NegativeInfinity, Masked([1, 2, 3, 4], ref s));       // not thinking: no limit
        object? t = null;
        Assert.DoesNotContain(float.NegativeInfinity, Masked([open, 1, 2], ref t));       // 2 of 3 spent
        var forced = Masked([open, 1, 2, 3], ref t);                                     // 3 spent: only </think>
        Assert.Equal(close, Array.FindIndex(forced, x => !float.IsNegativeInfinity(x)));
        Assert.Single(forced, x => !float.IsNegativeInfinity(x));
        Assert.DoesNotContain(float.NegativeInfinity, Masked([open, 1, 2, 3, close, 5], ref t)); // closed: free again
        object? u = null;
        var opened = new ThinkingBudget(1, open, close, promptOpenedThink: true, inner: null);
        var l = Enumerable.Range(0, 16).Select(i => (float)i).ToArray();
        opened.Apply([4], l, ref u);                                                      // the prompt opened the block
        Assert.Single(l, x => !float.IsNegativeInfinity(x));
    }

    [Fact]
    public async Task SeveralSequencesAreAdmittedAllOrNone()
    {
        var model = ModelLoader.Load(Fixtures.Dir("glm4_moe"));
        using var engine = new LlmEngine(new ModelRunner(model, KvCacheDType.F32, 256, 4),
            new EngineOptions { MaxNumSeqs = 1, MaxWaiting = 2, MaxModelLen = 4096 }, e => throw new Xunit.Sdk.XunitException("engine fault: " + e));
        IReadOnlyList<int> prompt = [3, 4, 5];
        var never = Assert.Throws<AdmissionException>(() => engine.SubmitAll([.. Enumerable.Repeat((prompt, Greedy), 4)]));
        Assert.Equal(AdmissionFailure.TooManySequences, never.Kind);
        Assert.Equal(0, engine.InFlight);

        var running = engine.SubmitAll([(prompt, Greedy with { MaxTokens = 1000 }), (prompt, Greedy with { MaxTokens = 1000 })]);
        Assert.Equal(2, engine.InFlight);
        var full = Assert.Throws<AdmissionException>(() => engine.SubmitAll([(prompt, Greedy), (prompt, Greedy)]));
        Assert.Equal(AdmissionFailure.QueueFull, full.Kind);
        Assert.Equal(2, engine.InFlight); // nothing of the refused request holds a place
        var one = engine.Submit(prompt, Greedy); // the one place left is still there
        Assert.Equal(3, engine.InFlight);
        foreach (var s in running) engine.Abort(s);
        await Collect(one);
        await WaitIdle(engine);
        Assert.Equal(0, engine.InFlight);
    }

    private static async Task WaitIdle(LlmEngine engine)
    {
        for (int i = 0; i < 200 && (engine.Stats.Running > 0 || engine.Stats.Waiting > 0 || engine.InFlight > 0); i++) await Task.Delay(10);
        await Task.Delay(50); // let the loop publish a fresh snapshot
    }
}

/// <summary>Prompt-lookup speculative decoding: the same tokens as decoding one at a time, fewer steps.</summary>
public class SpeculativeDecodingTests
{
    private static LlmEngine Start(string arch, NgramProposer? speculation, bool prefixCaching = true, int numBlocks = 256) =>
        new(new ModelRunner(ModelLoader.Load(Fixtures.Dir(arch)), KvCacheDType.F32, numBlocks, 4), new EngineOptions
        {
            MaxNumSeqs = 8, MaxNumBatchedTokens = 64, MaxModelLen = 4096, EnablePrefixCaching = prefixCaching, Speculation = speculation,
        }, e => throw new Xunit.Sdk.XunitException("engine fault: " + e));

    /// <summary>Prompts that repeat themselves, as an agent's do (a quoted file, an echoed list): drafts get accepted.</summary>
    private static List<int[]> RepetitivePrompts()
    {
        var rng = new Random(17);
        return Enumerable.Range(0, 6).Select(i =>
        {
            var phrase = Enumerable.Range(0, 5 + i).Select(_ => rng.Next(3, 1000)).ToArray();
            return Enumerable.Repeat(phrase, 3 + i % 2).SelectMany(p => p).Concat(phrase.Take(2)).ToArray();
        }).ToList();
    }


    public static TheoryData<string, float> Cases() => new() { { "glm4_moe", 0f }, { "glm4_moe_lite", 0f }, { "glm4", 0f }, { "glm", 0f }, { "glm4_moe", 0.3f }, { "glm4_moe_lite", 0.6f } };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task SpeculativeOutputIsTokenIdenticalToDecodingOneAtATime(string arch, float temperature)
    {
        var prompts = RepetitivePrompts();
        SamplingParams Params(int i) => new() { Temperature = temperature, MaxTokens = 24, IgnoreEos = true, Seed = (ulong)(40 + i) };
        List<int[]> expected;
        using (var plain = Start(arch, null)) expected = await EngineTests.OneAtATime(plain, prompts, Params);

        using var engine = Start(arch, new NgramProposer(4, minN: 1, maxN: 3));
        var results = await EngineTests.AllAtOnce(engine, prompts, Params);
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(expected[i], results[i]);
        var stats = engine.Stats;
        Assert.True(stats.SpecDraftTokens > 0, "the repetitive prompts should produce drafts");
        if (temperature == 0) Assert.True(stats.SpecAcceptedTokens > 0, "a tiny random model still repeats some of its input");
        while (engine.Stats.Running + engine.Stats.Waiting > 0) await Task.Delay(10);
        Assert.True(engine.PoolIsConsistent(out var problem), problem);
    }

    [Fact]
    public async Task SpeculationUnderATinyPoolStillLosesAndDuplicatesNothing()
    {
        var prompts = RepetitivePrompts();
        var greedy = new SamplingParams { Temperature = 0, MaxTokens = 20, IgnoreEos = true };
        List<int[]> expected;
        using (var plain = Start("glm4_moe", null, prefixCaching: false)) expected = await EngineTests.OneAtATime(plain, prompts, _ => greedy);
        using var engine = Start("glm4_moe", new NgramProposer(6), prefixCaching: false, numBlocks: 40);
        var results = await EngineTests.AllAtOnce(engine, prompts, _ => greedy);
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(expected[i], results[i]);
    }

    [Fact]
    public void TheProposerFindsTheLatestEarlierOccurrenceOfTheLongestSuffix()
    {
        var p = new NgramProposer(3, minN: 1, maxN: 3);
        Assert.Equal([7, 8, 9], p.Propose([1, 2, 3, 7, 8, 9, 5, 2, 3], 10)!);  // "2 3" seen before, followed by 7 8 9 (limit 3)
        Assert.Equal([4], p.Propose([1, 2, 3, 4, 9, 2, 3], 1)!);              // limited to one token
        Assert.Equal([6, 2], p.Propose([5, 6, 1, 5, 6, 2, 9, 5], 2)!);        // only "5" recurs: its latest earlier place is followed by 6 2
        Assert.Equal([9, 7], p.Propose([3, 9, 1, 3, 9, 7, 1, 3], 2)!);        // the longest suffix first: "1 3" (then 9 7), not "3" (then 9 1)
        Assert.Null(p.Propose([1, 2, 3, 4], 4));                              // nothing repeats
    }
}
