using System.Text.Json;
using System.Text.Json.Nodes;
using Glm.Kernels.Formats;
using Glm.Models.Loading;

namespace Glm.Models.Synthetic;

/// <summary>
/// Random-weight checkpoints in the released layout, for benchmarks and tests at real layer shapes
/// (GLM-4.7-Flash, GLM-4.5-Air) without downloading them. Weights are BF16 with std 0.02, norms 1.
/// </summary>
public static class SyntheticCheckpoint
{
    /// <summary>GLM-4.7-Flash's layer shapes (from its released config), with the given number of layers.</summary>
    public static JsonObject Glm47FlashConfig(int layers, int vocab = 154880) => new()
    {
        ["architectures"] = new JsonArray("Glm4MoeLiteForCausalLM"), ["model_type"] = "glm4_moe_lite", ["dtype"] = "bfloat16",
        ["vocab_size"] = vocab, ["hidden_size"] = 2048, ["intermediate_size"] = 10240, ["moe_intermediate_size"] = 1536,
        ["num_hidden_layers"] = layers, ["num_attention_heads"] = 20, ["num_key_value_heads"] = 20,
        ["q_lora_rank"] = 768, ["kv_lora_rank"] = 512, ["qk_nope_head_dim"] = 192, ["qk_rope_head_dim"] = 64, ["v_head_dim"] = 256,
        ["n_routed_experts"] = 64, ["n_shared_experts"] = 1, ["num_experts_per_tok"] = 4, ["n_group"] = 1, ["topk_group"] = 1,
        ["norm_topk_prob"] = true, ["routed_scaling_factor"] = 1.8, ["first_k_dense_replace"] = 1, ["rope_interleave"] = true,
        ["rope_theta"] = 1000000.0, ["rms_norm_eps"] = 1e-5, ["attention_bias"] = false, ["tie_word_embeddings"] = false,
        ["max_position_embeddings"] = 202752, ["eos_token_id"] = new JsonArray(154820, 154827, 154829),
    };

    /// <summary>GLM-4.5-Air's layer shapes (from its released config): the first layer dense, the rest MoE with 128 experts, top-8.</summary>
    public static JsonObject Glm45AirConfig(int layers, int vocab = 151552) => new()
    {
        ["architectures"] = new JsonArray("Glm4MoeForCausalLM"), ["model_type"] = "glm4_moe", ["dtype"] = "bfloat16",
        ["vocab_size"] = vocab, ["hidden_size"] = 4096, ["intermediate_size"] = 10944, ["moe_intermediate_size"] = 1408,
        ["num_hidden_layers"] = layers, ["num_attention_heads"] = 96, ["num_key_value_heads"] = 8, ["head_dim"] = 128,
        ["partial_rotary_factor"] = 0.5, ["attention_bias"] = true, ["use_qk_norm"] = false,
        ["n_routed_experts"] = 128, ["n_shared_experts"] = 1, ["num_experts_per_tok"] = 8, ["n_group"] = 1, ["topk_group"] = 1,
        ["norm_topk_prob"] = true, ["routed_scaling_factor"] = 1.0, ["first_k_dense_replace"] = 1,
        ["rope_theta"] = 1000000.0, ["rms_norm_eps"] = 1e-5, ["tie_word_embeddings"] = false,
        ["max_position_embeddings"] = 131072, ["eos_token_id"] = new JsonArray(151329, 151336, 151338),
    };

    /// <summary>GLM-5's layer shapes (glm_moe_dsa, from the released config), with the given number of layers; IndexShare as GLM-5.2 when <paramref name="indexShare"/>.</summary>
    public static JsonObject Glm5Config(int layers, bool indexShare = false, int vocab = 154880)
    {
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("GlmMoeDsaForCausalLM"), ["model_type"] = "glm_moe_dsa", ["dtype"] = "bfloat16",
            ["vocab_size"] = vocab, ["hidden_size"] = 6144, ["intermediate_size"] = 12288, ["moe_intermediate_size"] = 2048,
            ["num_hidden_layers"] = layers, ["num_attention_heads"] = 64, ["num_key_value_heads"] = 64, ["head_dim"] = 64,
            ["q_lora_rank"] = 2048, ["kv_lora_rank"] = 512, ["qk_nope_head_dim"] = 192, ["qk_rope_head_dim"] = 64, ["v_head_dim"] = 256,
            ["n_routed_experts"] = 256, ["n_shared_experts"] = 1, ["num_experts_per_tok"] = 8, ["n_group"] = 1, ["topk_group"] = 1,
            ["norm_topk_prob"] = true, ["routed_scaling_factor"] = 2.5, ["first_k_dense_replace"] = Math.Min(3, layers - 1),
            ["index_topk"] = 2048, ["index_head_dim"] = 128, ["index_n_heads"] = 32, ["indexer_rope_interleave"] = true, ["rope_interleave"] = true,
            ["rope_parameters"] = new JsonObject { ["rope_theta"] = indexShare ? 8000000.0 : 1000000.0, ["rope_type"] = "default" },
            ["rms_norm_eps"] = 1e-5, ["attention_bias"] = false, ["tie_word_embeddings"] = false,
            ["max_position_embeddings"] = indexShare ? 1048576 : 202752, ["eos_token_id"] = new JsonArray(154820, 154827, 154829),
        };
        if (indexShare)
        {
            config["index_topk_freq"] = 4;
            config["index_skip_topk_offset"] = 3;
        }
        return config;
    }

    /// <summary>Writes config.json and model.safetensors for a glm4_moe, glm4_moe_lite or glm_moe_dsa config.</summary>
    public static void Write(string directory, JsonObject configJson, int seed = 1)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "config.json"), configJson.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        using var doc = JsonDocument.Parse(configJson.ToJsonString());
        var c = ModelConfig.Parse(doc.RootElement);
        var w = new TensorWriter(new SafetensorsWriter(), new Random(seed), null);
        w.Matrix("model.embed_tokens.weight", c.VocabSize, c.HiddenSize);
        for (int l = 0; l < c.NumLayers; l++) w.Layer(c, l, c.SparseLayers[l]);
        w.Norm("model.norm.weight", c.HiddenSize);
        w.Matrix("lm_head.weight", c.VocabSize, c.HiddenSize);
        w.Writer.Save(Path.Combine(directory, "model.safetensors"));
    }

    /// <summary>
    /// Adds an MTP layer at index num_hidden_layers to a model directory, as GLM-4.5+ releases carry it (enorm,
    /// hnorm, eh_proj, shared_head.norm and shared_head.head, and a decoder layer, MoE where the model has experts),
    /// in a file of its own (mtp.safetensors; the index, where there is one, names it) and sets
    /// num_nextn_predict_layers to 1. Random BF16 weights (std 0.02, norms 1) unless <paramref name="values"/>
    /// gives a tensor's values by name.
    /// </summary>
    public static void AddMtpLayer(string directory, int seed = 1, IReadOnlyDictionary<string, float[]>? values = null)
    {
        string configPath = Path.Combine(directory, "config.json");
        var configJson = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        configJson["num_nextn_predict_layers"] = 1;
        File.WriteAllText(configPath, configJson.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        using var doc = JsonDocument.Parse(configJson.ToJsonString());
        var c = ModelConfig.Parse(doc.RootElement);
        var w = new TensorWriter(new SafetensorsWriter(), new Random(seed), values);
        int h = c.HiddenSize;
        string p = $"model.layers.{c.NumLayers}";
        w.Norm($"{p}.enorm.weight", h);
        w.Norm($"{p}.hnorm.weight", h);
        w.Matrix($"{p}.eh_proj.weight", h, 2 * h);
        w.Norm($"{p}.shared_head.norm.weight", h);
        w.Matrix($"{p}.shared_head.head.weight", c.VocabSize, h);
        w.Layer(c, c.NumLayers, sparse: c.NumRoutedExperts > 0);
        if (values is not null)
            foreach (var name in values.Keys)
                if (!w.Names.Contains(name)) throw new ArgumentException($"the MTP layer has no tensor '{name}'", nameof(values));
        w.Writer.Save(Path.Combine(directory, "mtp.safetensors"));

        string indexPath = Path.Combine(directory, "model.safetensors.index.json");
        if (File.Exists(indexPath))
        {
            var index = JsonNode.Parse(File.ReadAllText(indexPath))!.AsObject();
            var map = index["weight_map"]!.AsObject();
            foreach (var name in w.Names) map[name] = "mtp.safetensors";
            File.WriteAllText(indexPath, index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
    }

    /// <summary>One checkpoint's tensors in the released names: random BF16 unless given values.</summary>
    private sealed class TensorWriter(SafetensorsWriter writer, Random rng, IReadOnlyDictionary<string, float[]>? values)
    {
        public SafetensorsWriter Writer { get; } = writer;
        public List<string> Names { get; } = [];

        public void Matrix(string name, int rows, int cols)
        {
            Names.Add(name);
            if (Given(name, (long)rows * cols) is { } v) Writer.AddBf16(name, [rows, cols], v);
            else Writer.Add(name, "BF16", [rows, cols], (long)rows * cols * 2, s => WriteRandom(s, (long)rows * cols, rng));
        }

        public void Norm(string name, int n) => Bf16(name, n, 1f);

        public void Bf16(string name, int n, float fill)
        {
            Names.Add(name);
            Writer.AddBf16(name, [n], Given(name, n) ?? Enumerable.Repeat(BFloat16.FromFloat(fill), n).ToArray());
        }

        private ushort[]? Given(string name, long count)
        {
            if (values is null || !values.TryGetValue(name, out var v)) return null;
            if (v.LongLength != count) throw new ArgumentException($"'{name}' takes {count} values, given {v.Length}");
            return v.Select(BFloat16.FromFloat).ToArray();
        }

        /// <summary>Decoder layer <paramref name="l"/>: attention of the config's kind, then a dense MLP or the MoE block.</summary>
        public void Layer(ModelConfig c, int l, bool sparse)
        {
            string p = $"model.layers.{l}";
            int h = c.HiddenSize;
            Norm($"{p}.input_layernorm.weight", h);
            Norm($"{p}.post_attention_layernorm.weight", h);
            if (c.IsLatent)
            {
                int qHead = c.QkNopeHeadDim + c.QkRopeHeadDim;
                Matrix($"{p}.self_attn.q_a_proj.weight", c.QLoraRank!.Value, h);
                Norm($"{p}.self_attn.q_a_layernorm.weight", c.QLoraRank.Value);
                Matrix($"{p}.self_attn.q_b_proj.weight", c.NumHeads * qHead, c.QLoraRank.Value);
                Matrix($"{p}.self_attn.kv_a_proj_with_mqa.weight", c.KvLoraRank + c.QkRopeHeadDim, h);
                Norm($"{p}.self_attn.kv_a_layernorm.weight", c.KvLoraRank);
                Matrix($"{p}.self_attn.kv_b_proj.weight", c.NumHeads * (c.QkNopeHeadDim + c.VHeadDim), c.KvLoraRank);
                Matrix($"{p}.self_attn.o_proj.weight", h, c.NumHeads * c.VHeadDim);
                if (c.Architecture == Architecture.GlmMoeDsa && l < c.NumLayers && c.IndexerFull[l])
                {
                    // Only full layers carry an indexer; IndexShare layers have none in the checkpoint.
                    string ip = $"{p}.self_attn.indexer";
                    Matrix($"{ip}.wq_b.weight", c.IndexNumHeads * c.IndexHeadDim, c.QLoraRank.Value);
                    Matrix($"{ip}.wk.weight", c.IndexHeadDim, h);
                    Norm($"{ip}.k_norm.weight", c.IndexHeadDim);
                    Bf16($"{ip}.k_norm.bias", c.IndexHeadDim, 0f);
                    Matrix($"{ip}.weights_proj.weight", c.IndexNumHeads, h);
                }
            }
            else
            {
                int qw = c.NumHeads * c.HeadDim, kw = c.NumKvHeads * c.HeadDim;
                Matrix($"{p}.self_attn.q_proj.weight", qw, h);
                Matrix($"{p}.self_attn.k_proj.weight", kw, h);
                Matrix($"{p}.self_attn.v_proj.weight", kw, h);
                if (c.AttentionBias)
                {
                    Bf16($"{p}.self_attn.q_proj.bias", qw, 0f);
                    Bf16($"{p}.self_attn.k_proj.bias", kw, 0f);
                    Bf16($"{p}.self_attn.v_proj.bias", kw, 0f);
                }
                if (c.UseQkNorm)
                {
                    Norm($"{p}.self_attn.q_norm.weight", c.HeadDim);
                    Norm($"{p}.self_attn.k_norm.weight", c.HeadDim);
                }
                Matrix($"{p}.self_attn.o_proj.weight", h, qw);
            }
            if (sparse)
            {
                Matrix($"{p}.mlp.gate.weight", c.NumRoutedExperts, h);
                Names.Add($"{p}.mlp.gate.e_score_correction_bias");
                Writer.AddF32($"{p}.mlp.gate.e_score_correction_bias", [c.NumRoutedExperts], new float[c.NumRoutedExperts]);
                for (int e = 0; e < c.NumRoutedExperts; e++) Mlp($"{p}.mlp.experts.{e}", h, c.MoeIntermediateSize);
                Mlp($"{p}.mlp.shared_experts", h, c.MoeIntermediateSize * c.NumSharedExperts);
            }
            else Mlp($"{p}.mlp", h, c.IntermediateSize);
        }

        private void Mlp(string p, int h, int inter)
        {
            Matrix($"{p}.gate_proj.weight", inter, h);
            Matrix($"{p}.up_proj.weight", inter, h);
            Matrix($"{p}.down_proj.weight", h, inter);
        }
    }

    private static void WriteRandom(Stream s, long count, Random rng)
    {
        // Uniform with std 0.02; written in chunks so multi-GB tensors never sit in memory.
        var chunk = new ushort[1 << 16];
        float range = 0.02f * MathF.Sqrt(3);
        for (long done = 0; done < count; done += chunk.Length)
        {
            int n = (int)Math.Min(chunk.Length, count - done);
            for (int i = 0; i < n; i++) chunk[i] = BFloat16.FromFloat((float)(rng.NextDouble() * 2 - 1) * range);
            s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(chunk.AsSpan(0, n)));
        }
    }
}
