using Glm.Kernels.Attention;
using Glm.Models.Architectures;
using Glm.Models.Quantization;
using Glm.TestSupport;

namespace Glm.Engine.Tests;

/// <summary>MTP speculative decoding: the same tokens as decoding one at a time, the MTP layer's KV kept in step.</summary>
public class MtpDecodingTests
{
    private static LlmEngine Start(string dir, bool mtp, bool prefixCaching = true, int numBlocks = 256, int maxBatchedTokens = 64, string quantization = "none") =>
        new(new ModelRunner(ModelLoader.Load(dir, ckpt => new QuantizingWeightBuilder(ckpt, QuantizationPolicy.Resolve(quantization)), withMtp: mtp), KvCacheDType.F32, numBlocks, 4), new EngineOptions
        {
            MaxNumSeqs = 8, MaxNumBatchedTokens = maxBatchedTokens, MaxModelLen = 4096, EnablePrefixCaching = prefixCaching, MtpDrafting = mtp,
        }, e => throw new Xunit.Sdk.XunitException("engine fault: " + e));

    private static List<int[]> Prompts()
    {
        var rng = new Random(23);
        var shared = Enumerable.Range(0, 13).Select(_ => rng.Next(3, 1000)).ToArray();
        return Enumerable.Range(0, 7).Select(i =>
        {
            var own = Enumerable.Range(0, new[] { 1, 2, 5, 9, 30, 70, 4 }[i]).Select(_ => rng.Next(3, 1000));
            return (i % 2 == 1 ? shared.Concat(own) : own).ToArray(); // a shared prefix: blocks (and their MTP KV) from the prefix cache
        }).ToList();
    }

    [Theory]
    [InlineData("fp8-int4")]
    [InlineData("int4")]
    public async Task AQuantizedModelDraftsWithItsQuantizedMtpLayerAndKeepsItsOutput(string quantization)
    {
        var prompts = Prompts();
        var greedy = new SamplingParams { Temperature = 0, MaxTokens = 20, IgnoreEos = true };
        List<int[]> expected;
        using (var plain = Start(Fixtures.Dir("glm4_moe"), mtp: false, quantization: quantization)) expected = await EngineTests.OneAtATime(plain, prompts, _ => greedy);
        using var engine = Start(MtpModels.With(Fixtures.Dir("glm4_moe"), MtpKind.HiddenEcho), mtp: true, quantization: quantization);
        var results = await EngineTests.AllAtOnce(engine, prompts, _ => greedy);
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(expected[i], results[i]);
        Assert.True(engine.Stats.SpecAcceptedTokens > 0, "the hidden-echo layer, quantized too, still drafts repeats");
    }

    public static TheoryData<string, float, MtpKind> Cases() => new()
    {
        { "glm4_moe", 0f, MtpKind.Random }, { "glm4_moe", 0f, MtpKind.EmbeddingEcho }, { "glm4_moe", 0f, MtpKind.HiddenEcho },
        { "glm4_moe_lite", 0f, MtpKind.Random }, { "glm4_moe_lite", 0f, MtpKind.EmbeddingEcho }, { "glm4_moe_lite", 0f, MtpKind.HiddenEcho },
        { "glm4_moe", 0.7f, MtpKind.HiddenEcho }, { "glm4_moe_lite", 0.5f, MtpKind.Random },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task MtpOutputIsTokenIdenticalToDecodingOneAtATime(string arch, float temperature, MtpKind kind)
    {
        var prompts = Prompts();
        SamplingParams Params(int i) => new() { Temperature = temperature, MaxTokens = 24 + i, IgnoreEos = true, Seed = (ulong)(70 + i) };
        List<int[]> expected;
        using (var plain = Start(Fixtures.Dir(arch), mtp: false)) expected = await EngineTests.OneAtATime(plain, prompts, Params);

        using var engine = Start(MtpModels.With(Fixtures.Dir(arch), kind), mtp: true);
        var results = await EngineTests.AllAtOnce(engine, prompts, Params);
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(expected[i], results[i]);
        var stats = engine.Stats;
        Assert.True(stats.SpecDraftTokens > 0, "every decoding step after the first should carry an MTP draft");
        if (kind != MtpKind.Random && temperature == 0) Assert.True(stats.SpecAcceptedTokens > 0, "the echo layers draft repeats, which a tiny random model makes");
        while (engine.Stats.Running + engine.Stats.Waiting > 0) await Task.Delay(10);
        Assert.True(engine.PoolIsConsistent(out var problem), problem);
    }

    [Fact]
    public async Task MtpUnderATinyPoolWithSmallChunksStillLosesAndDuplicatesNothing()
    {
        var prompts = Prompts();
        var greedy = new SamplingParams { Temperature = 0, MaxTokens = 20, IgnoreEos = true };
        List<int[]> expected;
        using (var plain = Start(Fixtures.Dir("glm4_moe"), mtp: false, prefixCaching: false)) expected = await EngineTests.OneAtATime(plain, prompts, _ => greedy);
        using var engine = Start(MtpModels.With(Fixtures.Dir("glm4_moe"), MtpKind.HiddenEcho), mtp: true, prefixCaching: false, numBlocks: 30, maxBatchedTokens: 13);
        var results = await EngineTests.AllAtOnce(engine, prompts, _ => greedy);
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(expected[i], results[i]);
        Assert.True(engine.Stats.Preemptions > 0, "30 blocks of 4 should not hold seven sequences at once");
    }

    /// <summary>
    /// The MTP layer's draft after the model is fed all of <paramref name="tokens"/> but the last in chunks of the
    /// given sizes, the MTP layer following each chunk; the last token stands for the one sampled after them.
    /// </summary>
    private static (int Draft, float[] Logits) DraftAfter(CausalLM model, int[] tokens, int[] chunks)
    {
        var cache = model.CreateKvCache(KvCacheDType.F32, 32, 4);
        try
        {
            var blocks = Enumerable.Range(0, 32).ToList();
            var logits = new float[model.VocabSize];
            var draftLogits = new float[model.VocabSize];
            int at = 0;
            foreach (int n in chunks)
            {
                var batch = new ForwardBatch(tokens[at..(at + n)], [new SequenceInput(0, n, at, blocks)]);
                using var hidden = model.ForwardKeepingHiddenStates(batch, cache, logits);
                // Position p reads h_p and the token after it; only the final position drafts.
                int end = at + n;
                bool last = end == tokens.Length - 1;
                model.ForwardMtp(new ForwardBatch(tokens[(at + 1)..(end + 1)], [new SequenceInput(0, n, at, blocks, last ? 1 : 0)]), hidden, cache, draftLogits);
                at = end;
            }
            return (System.Numerics.Tensors.TensorPrimitives.IndexOfMax(draftLogits), draftLogits);
        }
        finally
        {
            cache.Dispose();
        }
    }

    [Theory]
    [InlineData("glm4_moe")]
    [InlineData("glm4_moe_lite")]
    public void TheMtpLayersKvFollowsTheSequenceHoweverItIsChunked(string arch)
    {
        using var model = ModelLoader.Load(MtpModels.With(Fixtures.Dir(arch), MtpKind.Random), withMtp: true);
        var rng = new Random(3);
        var tokens = Enumerable.Range(0, 12).Select(_ => rng.Next(3, model.VocabSize)).ToArray();
        // The last token is the "sampled" one: the MTP layer reads it at the final position, the main model never does.
        var (_, whole) = DraftAfter(model, tokens, [11]);
        foreach (var chunks in new[] { new[] { 1, 10 }, [4, 4, 3], [10, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1] })
        {
            var (_, chunked) = DraftAfter(model, tokens, chunks);
            float scale = whole.Max(MathF.Abs);
            for (int i = 0; i < whole.Length; i++) Assert.True(MathF.Abs(whole[i] - chunked[i]) <= 1e-4f * scale, $"chunks [{string.Join(",", chunks)}]: logit {i} {chunked[i]} vs {whole[i]}");
        }
    }

    [Theory]
    [InlineData("glm4_moe")]
    [InlineData("glm4_moe_lite")]
    public async Task TheEngineDraftsWhatTheMtpLayerGivesOverTheWholeSequence(string arch)
    {
        // Greedy, so each step's draft is fixed by the tokens so far: the draft made after a prefill of all of them.
        // Replaying the outputs against those drafts gives the acceptances the engine must count, one by one; a
        // draft read from the wrong hidden row or MTP KV left stale by a rejected draft changes them.
        string dir = MtpModels.With(Fixtures.Dir(arch), MtpKind.HiddenEcho);
        var prompts = Prompts();
        var greedy = new SamplingParams { Temperature = 0, MaxTokens = 24, IgnoreEos = true };
        using var engine = Start(dir, mtp: true);
        var outputs = await EngineTests.AllAtOnce(engine, prompts, _ => greedy);
        using var model = ModelLoader.Load(dir, withMtp: true);
        long drafted = 0, accepted = 0;
        for (int i = 0; i < prompts.Count; i++)
        {
            var all = prompts[i].Concat(outputs[i]).ToArray();
            for (int known = 1; known < outputs[i].Length - 1;)
            {
                int draft = DraftAfter(model, all[..(prompts[i].Length + known)], [prompts[i].Length + known - 1]).Draft;
                drafted++;
                if (draft == outputs[i][known]) { accepted++; known += 2; }
                else known += 1;
            }
        }
        Assert.True(accepted > 0, "the hidden-echo layer should draft some repeats");
        Assert.Equal((drafted, accepted), (engine.Stats.SpecDraftTokens, engine.Stats.SpecAcceptedTokens));
    }

    [Fact]
    public void AsVllmThePositionZeroEmbeddingIsZeroed()
    {
        // The echo layer drafts the token it is given, except at position 0, where vLLM zeroes the embedding: then
        // the residual stream is zero, so are the logits, and the draft is token 0.
        using var model = ModelLoader.Load(MtpModels.With(Fixtures.Dir("glm4_moe"), MtpKind.EmbeddingEcho), withMtp: true);
        Assert.Equal(0, DraftAfter(model, [17, 345], [1]).Draft);
        Assert.All(DraftAfter(model, [17, 345], [1]).Logits, l => Assert.Equal(0f, l));
        Assert.Equal(345, DraftAfter(model, [17, 29, 345], [2]).Draft);
        Assert.Equal(345, DraftAfter(model, [17, 29, 345], [1, 1]).Draft);
    }

    [Fact]
    public void ACheckpointWithoutAnMtpLayerIsRefusedWithTheReason()
    {
        var e = Assert.Throws<Glm.Models.ModelLoadException>(() => ModelLoader.Load(Fixtures.DemoModel, withMtp: true));
        Assert.Contains("no model.layers.4.eh_proj.weight", e.Message);
        Assert.Contains("ngram", e.Message);
        using var runner = new ModelRunner(ModelLoader.Load(Fixtures.Dir("glm4_moe")), KvCacheDType.F32, 16, 4);
        Assert.Contains("MTP layer", Assert.Throws<ArgumentException>(() => new LlmEngine(runner, new EngineOptions { MtpDrafting = true })).Message);
    }
}
