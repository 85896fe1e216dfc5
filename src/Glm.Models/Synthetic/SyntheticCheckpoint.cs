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
        var w = new SafetensorsWriter();
        var rng = new Random(seed);
        int h = c.HiddenSize;
        void Matrix(string name, int rows, int cols) => w.Add(name, "BF16", [rows, cols], (long)rows * cols * 2, s => WriteRandom(s, (long)rows * cols, rng));
        void Norm(string name, int n) => w.AddBf16(name, [n], Enumerable.Repeat(BFloat16.FromFloat(1f), n).ToArray());

        Matrix("model.embed_tokens.weight", c.VocabSize, h);
        for (int l = 0; l < c.NumLayers; l++)
        {
            string p = $"model.layers.{l}";
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
                if (c.Architecture == Architecture.GlmMoeDsa && c.IndexerFull[l])
                {
                    // Only full layers carry an indexer; IndexShare layers have none in the checkpoint.
                    string ip = $"{p}.self_attn.indexer";
                    Matrix($"{ip}.wq_b.weight", c.IndexNumHeads * c.IndexHeadDim, c.QLoraRank.Value);
                    Matrix($"{ip}.wk.weight", c.IndexHeadDim, h);
                    Norm($"{ip}.k_norm.weight", c.IndexHeadDim);
                    w.AddBf16($"{ip}.k_norm.bias", [c.IndexHeadDim], new ushort[c.IndexHeadDim]);
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
                    w.AddBf16($"{p}.self_attn.q_proj.bias", [qw], new ushort[qw]);
                    w.AddBf16($"{p}.self_attn.k_proj.bias", [kw], new ushort[kw]);
                    w.AddBf16($"{p}.self_attn.v_proj.bias", [kw], new ushort[kw]);
                }
                Matrix($"{p}.self_attn.o_proj.weight", h, qw);
            }
            if (c.SparseLayers[l])
            {
                Matrix($"{p}.mlp.gate.weight", c.NumRoutedExperts, h);
                w.AddF32($"{p}.mlp.gate.e_score_correction_bias", [c.NumRoutedExperts], new float[c.NumRoutedExperts]);
                for (int e = 0; e < c.NumRoutedExperts; e++) Mlp($"{p}.mlp.experts.{e}", c.MoeIntermediateSize);
                Mlp($"{p}.mlp.shared_experts", c.MoeIntermediateSize * c.NumSharedExperts);
            }
            else Mlp($"{p}.mlp", c.IntermediateSize);
        }
        Norm("model.norm.weight", h);
        Matrix("lm_head.weight", c.VocabSize, h);
        w.Save(Path.Combine(directory, "model.safetensors"));

        void Mlp(string p, int inter)
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
