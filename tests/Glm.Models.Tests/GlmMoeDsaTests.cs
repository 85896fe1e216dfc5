using System.Text.Json;
using System.Text.Json.Nodes;
using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;
using Glm.Kernels.Device;
using Glm.Kernels.Device.Cpu;
using Glm.Models.Architectures;
using Glm.Models.Inference;
using Glm.Models.Synthetic;

namespace Glm.Models.Tests;

/// <summary>
/// glm_moe_dsa (GLM-5.x) without transformers fixtures: what can be pinned down without the oracle. Within
/// index_topk the model is exactly the dense MLA model (glm4_moe_lite on the same weights); past it, only rows
/// beyond index_topk change; the indexer's pick equals a brute-force reference; IndexShare layers reuse the last
/// full layer's pick; decode one token at a time equals one prefill, through the indexer-key cache.
/// </summary>
public class GlmMoeDsaTests
{
    /// <summary>A tiny GLM-5-shaped config: 4 layers (1 dense, 3 MoE), MLA ranks 32/32, 2 indexer heads of 16.</summary>
    private static JsonObject TinyConfig(int indexTopK, string[]? indexerTypes = null) => new()
    {
        ["architectures"] = new JsonArray("GlmMoeDsaForCausalLM"), ["model_type"] = "glm_moe_dsa", ["dtype"] = "float32",
        ["vocab_size"] = 96, ["hidden_size"] = 64, ["intermediate_size"] = 96, ["moe_intermediate_size"] = 32,
        ["num_hidden_layers"] = 4, ["num_attention_heads"] = 4, ["num_key_value_heads"] = 4, ["head_dim"] = 192,
        ["q_lora_rank"] = 32, ["kv_lora_rank"] = 32, ["qk_nope_head_dim"] = 16, ["qk_rope_head_dim"] = 8, ["v_head_dim"] = 16,
        ["n_routed_experts"] = 8, ["n_shared_experts"] = 1, ["num_experts_per_tok"] = 2, ["n_group"] = 1, ["topk_group"] = 1,
        ["norm_topk_prob"] = true, ["routed_scaling_factor"] = 2.5, ["first_k_dense_replace"] = 1,
        ["index_topk"] = indexTopK, ["index_head_dim"] = 16, ["index_n_heads"] = 2, ["indexer_rope_interleave"] = true, ["rope_interleave"] = true,
        ["rope_parameters"] = new JsonObject { ["rope_theta"] = 10000.0, ["rope_type"] = "default" },
        ["rms_norm_eps"] = 1e-5, ["attention_bias"] = false, ["tie_word_embeddings"] = false, ["max_position_embeddings"] = 512,
        ["eos_token_id"] = new JsonArray(1), ["indexer_types"] = indexerTypes is null ? null : new JsonArray(indexerTypes.Select(t => (JsonNode?)t).ToArray()),
    };

    /// <summary>Writes the checkpoint once per config, and the same weights declared as glm4_moe_lite beside it.</summary>
    private static (string Dsa, string Lite) Checkpoints(JsonObject config, string name)
    {
        string root = Path.Combine(Path.GetTempPath(), "glm-dsa-tests", name + "-" + Environment.ProcessId);
        string dsa = Path.Combine(root, "dsa"), lite = Path.Combine(root, "lite");
        if (!File.Exists(Path.Combine(dsa, "model.safetensors")))
        {
            SyntheticCheckpoint.Write(dsa, config, seed: 7);
            Directory.CreateDirectory(lite);
            File.Copy(Path.Combine(dsa, "model.safetensors"), Path.Combine(lite, "model.safetensors"), overwrite: true);
            var liteConfig = JsonNode.Parse(config.ToJsonString())!.AsObject();
            liteConfig["architectures"] = new JsonArray("Glm4MoeLiteForCausalLM");
            liteConfig["model_type"] = "glm4_moe_lite";
            File.WriteAllText(Path.Combine(lite, "config.json"), liteConfig.ToJsonString());
        }
        return (dsa, lite);
    }

    private static int[] Prompt(int n) => Enumerable.Range(0, n).Select(i => (i * 37 + 11) % 96).ToArray();

    private static float[] AllLogits(CausalLM model, int[] prompt, KvCacheDType kv = KvCacheDType.F32)
    {
        using var runner = new SequenceRunner(model, prompt.Length + 4, kv);
        return runner.Feed(prompt, allLogits: true);
    }

    [Fact]
    public void ConfigFieldsOfTheReleasesParse()
    {
        ModelConfig Parse(JsonObject o)
        {
            using var doc = JsonDocument.Parse(o.ToJsonString());
            return ModelConfig.Parse(doc.RootElement);
        }
        var glm5 = Parse(SyntheticCheckpoint.Glm5Config(78));
        Assert.Equal(Architecture.GlmMoeDsa, glm5.Architecture);
        Assert.All(glm5.IndexerFull, Assert.True); // GLM-5 / 5.1: an indexer on every layer
        Assert.Equal((2048, 128, 32, 64, 64), (glm5.IndexTopK, glm5.IndexHeadDim, glm5.IndexNumHeads, glm5.HeadDim, glm5.RotaryDim));
        Assert.Equal(3, glm5.SparseLayers.TakeWhile(s => !s).Count());

        // GLM-5.2 / 5.3: index_topk_freq 4, offset 3 give the 21 full layers 0, 1, 2, 6, 10, …, 74.
        var glm52 = Parse(SyntheticCheckpoint.Glm5Config(78, indexShare: true));
        int[] full = Enumerable.Range(0, 78).Where(l => glm52.IndexerFull[l]).ToArray();
        Assert.Equal(new[] { 0, 1, 2 }.Concat(Enumerable.Range(0, 18).Select(k => 6 + 4 * k)).ToArray(), full);
        Assert.Equal(8e6, glm52.RopeTheta);

        var explicitTypes = SyntheticCheckpoint.Glm5Config(4);
        explicitTypes["indexer_types"] = new JsonArray("full", "shared", "full", "shared");
        explicitTypes["head_dim"] = 192; // GLM-5.2's config.json says 192; transformers overwrites it with the rope width
        var e = Parse(explicitTypes);
        Assert.Equal([true, false, true, false], e.IndexerFull);
        Assert.Equal(64, e.HeadDim);

        var pattern = SyntheticCheckpoint.Glm5Config(4);
        pattern["index_topk_pattern"] = "FSSF";
        Assert.Equal([true, false, false, true], Parse(pattern).IndexerFull);
        pattern["index_topk_pattern"] = "SFFF";
        Assert.Contains("first layer", Assert.Throws<ModelLoadException>(() => Parse(pattern)).Message);
    }

    [Fact]
    public void WithinIndexTopKTheModelIsExactlyDenseMla()
    {
        var (dsa, lite) = Checkpoints(TinyConfig(indexTopK: 64), "dense");
        using var sparse = ModelLoader.Load(dsa);
        using var dense = ModelLoader.Load(lite);
        var prompt = Prompt(24);
        Assert.Equal(AllLogits(dense, prompt), AllLogits(sparse, prompt));
        Assert.Equal(SequenceRunner.Greedy(dense, prompt, 8), SequenceRunner.Greedy(sparse, prompt, 8));
    }

    [Fact]
    public void PastIndexTopKOnlyTheRowsBeyondItChange()
    {
        const int topK = 5;
        var (dsa, lite) = Checkpoints(TinyConfig(indexTopK: topK), "sparse");
        using var sparse = ModelLoader.Load(dsa);
        using var dense = ModelLoader.Load(lite);
        var prompt = Prompt(20);
        float[] a = AllLogits(dense, prompt), b = AllLogits(sparse, prompt);
        int vocab = sparse.VocabSize;
        for (int row = 0; row < prompt.Length; row++)
        {
            var rowA = a.AsSpan(row * vocab, vocab).ToArray();
            var rowB = b.AsSpan(row * vocab, vocab).ToArray();
            if (row < topK) Assert.Equal(rowA, rowB); // a query at position p < index_topk still sees all p + 1 keys
            else Assert.NotEqual(rowA, rowB);
        }
    }

    [Fact]
    public void DecodingOneTokenAtATimeEqualsOnePrefillThroughTheIndexerKeyCache()
    {
        var (dsa, _) = Checkpoints(TinyConfig(indexTopK: 4), "decode");
        using var model = ModelLoader.Load(dsa);
        var prompt = Prompt(14);
        var whole = AllLogits(model, prompt);
        using var runner = new SequenceRunner(model, prompt.Length);
        int vocab = model.VocabSize;
        for (int i = 0; i < prompt.Length; i++)
        {
            var step = runner.Feed(prompt.AsSpan(i, 1));
            var expected = whole.AsSpan(i * vocab, vocab).ToArray();
            for (int v = 0; v < vocab; v++) Assert.True(Math.Abs(expected[v] - step[v]) <= 1e-5f * Math.Max(1, Math.Abs(expected[v])), $"position {i}, logit {v}: {step[v]} against {expected[v]}");
        }
    }

    [Fact]
    public void TheOfficialFp8LayoutLoadsAsItIsStored()
    {
        // As the GLM-5-FP8 releases: block-128 E4M3 with weight_scale_inv everywhere but the embeddings, the LM
        // head, the routers and the indexer's weights_proj, which stay BF16.
        var (dsa, _) = Checkpoints(TinyConfig(indexTopK: 4, ["full", "shared", "full", "shared"]), "fp8");
        string policyPath = Path.Combine(Directory.CreateTempSubdirectory().FullName, "policy.json");
        File.WriteAllText(policyPath, """{"name":"glm5-fp8","rules":[{"pattern":"^(model\\.embed_tokens|lm_head)$","format":"keep"},{"pattern":"\\.mlp\\.gate$","format":"keep"},{"pattern":"\\.indexer\\.weights_proj$","format":"keep"},{"pattern":".*","format":"fp8","scaling":"block"}]}""");
        var policy = Glm.Models.Quantization.QuantizationPolicy.FromJsonFile(policyPath);
        string exported = PreQuantizedLoadingTests.Export(dsa, "fp8-block", policy);
        using var onLoad = ModelLoader.Load(dsa, ckpt => new Glm.Models.Quantization.QuantizingWeightBuilder(ckpt, policy));
        using var stored = ModelLoader.Load(exported);
        Assert.Equal(onLoad.AllWeights().Select(w => w.Format), stored.AllWeights().Select(w => w.Format));
        var indexer = ((LatentAttention)stored.Layers[0].Attention).Indexer!;
        Assert.Equal(["fp8-e4m3-block128x128", "fp8-e4m3-block128x128", "bf16"], indexer.Linears.Select(l => l.Weight.Format));
        var prompt = Prompt(12);
        Assert.Equal(AllLogits(onLoad, prompt), AllLogits(stored, prompt));
    }

    [Fact]
    public void TheCheckingWorkerRunsTheSparseOpsOnBothSides()
    {
        var (dsa, _) = Checkpoints(TinyConfig(indexTopK: 4, ["full", "shared", "full", "shared"]), "checking");
        var checking = new CheckingWorker(CpuWorker.Instance, new FaultyCpuWorker("none"), tolerance: 0);
        using var model = ModelLoader.Load(dsa, worker: checking);
        using var plain = ModelLoader.Load(dsa);
        var prompt = Prompt(12);
        Assert.Equal(SequenceRunner.Greedy(plain, prompt, 6, KvCacheDType.Int4), SequenceRunner.Greedy(model, prompt, 6, KvCacheDType.Int4));
        Assert.True(checking.OpsChecked > 100);
    }

    [Fact]
    public void AWorkerWithoutSparseAttentionRefusesTheModelAtLoad()
    {
        var (dsa, _) = Checkpoints(TinyConfig(indexTopK: 4), "refuse");
        var e = Assert.Throws<ModelLoadException>(() => ModelLoader.Load(dsa, worker: new NoSparseWorker()));
        Assert.Contains("GlmMoeDsaForCausalLM needs DeepSeek Sparse Attention", e.Message);
    }

    private sealed class NoSparseWorker : CpuWorker
    {
        public override bool SupportsSparseAttention => false;
    }

    [Fact]
    public void TheKvPoolCountsTheIndexerKeysOfFullLayersOnly()
    {
        var (dsa, _) = Checkpoints(TinyConfig(indexTopK: 4, ["full", "shared", "full", "shared"]), "pool");
        using var model = ModelLoader.Load(dsa);
        Assert.Equal(new KvLayout(2, 1, 16, 16, true), model.IndexerCacheLayout);
        using var cache = model.CreateKvCache(KvCacheDType.Bf16, 4, 16);
        // MLA latent 32 + 8 values on 4 layers, indexer key 16 values on 2 layers, BF16.
        Assert.Equal(4 * 40 * 2 + 2 * 16 * 2, cache.BytesPerToken);
        Assert.Equal(cache.BytesPerToken * 16, model.KvBytesPerBlock(KvCacheDType.Bf16, 16));

        // The indexer keys in a dtype of their own (--indexer-kv-cache-dtype): Int4 latent, BF16 keys.
        using var mixed = model.CreateKvCache(KvCacheDType.Int4, 4, 16, indexerDType: KvCacheDType.Bf16);
        Assert.Equal(4 * KvStore.RecordBytes(KvCacheDType.Int4, 40) + 2 * 16 * 2, mixed.BytesPerToken);
        Assert.Equal(KvCacheDType.Bf16, ((DsaKvCache)mixed).IndexerKeys.DType);
        Assert.Equal(mixed.BytesPerToken * 16, model.KvBytesPerBlock(KvCacheDType.Int4, 16, KvCacheDType.Bf16));
    }

    /// <summary>Records which selections the indexer made and which each sparse attention used.</summary>
    private sealed class SelectionSpy : CpuWorker
    {
        public readonly List<(int CacheLayer, TokenSelection Selection)> Made = [];
        public readonly List<(int Layer, TokenSelection Selection)> Used = [];

        public override TokenSelection IndexerTopK(DeviceKvCache keys, int layer, StepSequences step, Tensor queries, Tensor headWeights, int heads, int headDim,
            float scale, float weightScale, int topK)
        {
            var s = base.IndexerTopK(keys, layer, step, queries, headWeights, heads, headDim, scale, weightScale, topK);
            Made.Add((layer, s));
            return s;
        }

        public override Tensor SparsePagedAttention(DeviceKvCache cache, int layer, StepSequences step, Tensor queries, int heads, int headDim,
            int queriesPerKvHead, float scale, int valueDim, TokenSelection selection)
        {
            Used.Add((layer, selection));
            return base.SparsePagedAttention(cache, layer, step, queries, heads, headDim, queriesPerKvHead, scale, valueDim, selection);
        }
    }

    [Fact]
    public void IndexShareLayersReuseTheLastFullLayersSelection()
    {
        var (dsa, _) = Checkpoints(TinyConfig(indexTopK: 4, ["full", "shared", "full", "shared"]), "share");
        var spy = new SelectionSpy();
        using var model = ModelLoader.Load(dsa, worker: spy);
        Assert.Null(((LatentAttention)model.Layers[1].Attention).Indexer); // no indexer weights in the checkpoint for shared layers
        AllLogits(model, Prompt(10));
        Assert.Equal([0, 1], spy.Made.Select(m => m.CacheLayer));
        Assert.Equal([0, 1, 2, 3], spy.Used.Select(u => u.Layer));
        Assert.Same(spy.Made[0].Selection, spy.Used[0].Selection);
        Assert.Same(spy.Made[0].Selection, spy.Used[1].Selection);
        Assert.Same(spy.Made[1].Selection, spy.Used[2].Selection);
        Assert.Same(spy.Made[1].Selection, spy.Used[3].Selection);
    }

    [Fact]
    public void TheIndexersPickEqualsABruteForceReference()
    {
        var worker = CpuWorker.Instance;
        const int heads = 3, dim = 16, topK = 6, blockSize = 4;
        var layout = new KvLayout(1, 1, dim, dim, true);
        using var cache = worker.CreateKvCache(layout, KvCacheDType.F32, 16, blockSize);
        var rng = new Random(3);
        float R() => (float)(rng.NextDouble() * 2 - 1);
        // One sequence of 30 positions over shuffled blocks, all written in one step, queries at every position.
        int n = 30;
        var table = Enumerable.Range(0, 16).OrderBy(_ => rng.Next()).Take((n + blockSize - 1) / blockSize).ToArray();
        var seqs = new List<StepSequence> { new(0, n, 0, table) };
        int[] positions = Enumerable.Range(0, n).ToArray();
        var keys = Enumerable.Range(0, n * dim).Select(_ => R()).ToArray();
        var queries = Enumerable.Range(0, n * heads * dim).Select(_ => R()).ToArray();
        var weights = Enumerable.Range(0, n * heads).Select(_ => R()).ToArray();
        using var step = worker.PrepareStep(cache, seqs, positions);
        using var k = worker.Empty(n, dim);
        using var q = worker.Empty(n, heads * dim);
        using var w = worker.Empty(n, heads);
        keys.CopyTo(CpuWorker.Data(k));
        queries.CopyTo(CpuWorker.Data(q));
        weights.CopyTo(CpuWorker.Data(w));
        worker.WriteKv(cache, 0, step, k, null);
        float scale = 1f / MathF.Sqrt(dim), weightScale = 1f / MathF.Sqrt(heads);
        using var selection = worker.IndexerTopK(cache, 0, step, q, w, heads, dim, scale, weightScale, topK);
        var picked = (int[]?[])selection.Native;
        for (int t = 0; t < n; t++)
        {
            if (t + 1 <= topK) { Assert.Null(picked[t]); continue; }
            var score = new double[t + 1];
            for (int j = 0; j <= t; j++)
                for (int h = 0; h < heads; h++)
                {
                    double dot = 0;
                    for (int d = 0; d < dim; d++) dot += queries[(t * heads + h) * dim + d] * keys[j * dim + d];
                    score[j] += weights[t * heads + h] * weightScale * Math.Max(0, dot * scale);
                }
            var expected = Enumerable.Range(0, t + 1).OrderByDescending(j => score[j]).ThenBy(j => j).Take(topK).Order().ToArray();
            Assert.Equal(expected, picked[t]);
        }
    }
}
