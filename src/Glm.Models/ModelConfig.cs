using System.Text.Json;

namespace Glm.Models;

/// <summary>The fields of a Hugging Face config.json that the GLM forward passes use.</summary>
public sealed record ModelConfig
{
    public required Architecture Architecture { get; init; }
    public required string ArchitectureName { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required float RmsNormEps { get; init; }
    public required double RopeTheta { get; init; }
    public required double PartialRotaryFactor { get; init; }
    public required bool AttentionBias { get; init; }
    public required bool TieWordEmbeddings { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public required int[] EosTokenIds { get; init; }
    public bool UseQkNorm { get; init; }
    /// <summary>The checkpoint's dtype ("bfloat16", "float32", …) from config.json's dtype or torch_dtype.</summary>
    public string DType { get; init; } = "bfloat16";
    /// <summary>transformers rounds RoPE frequencies to the checkpoint dtype; we follow it to match its outputs.</summary>
    public bool Bf16RopeFrequencies => DType is "bfloat16";

    // MoE (glm4_moe, glm4_moe_lite)
    public int NumRoutedExperts { get; init; }
    public int NumSharedExperts { get; init; }
    public int NumExpertsPerToken { get; init; }
    public int MoeIntermediateSize { get; init; }
    public int NumGroups { get; init; } = 1;
    public int TopkGroup { get; init; } = 1;
    public bool NormTopkProb { get; init; } = true;
    public float RoutedScalingFactor { get; init; } = 1f;
    /// <summary>Per layer: true where the MLP is a MoE block.</summary>
    public required bool[] SparseLayers { get; init; }

    // MLA (glm4_moe_lite)
    public int? QLoraRank { get; init; }
    public int KvLoraRank { get; init; }
    public int QkNopeHeadDim { get; init; }
    public int QkRopeHeadDim { get; init; }
    public int VHeadDim { get; init; }
    public bool RopeInterleave { get; init; }

    /// <summary>Multi-head latent attention: glm4_moe_lite and glm_moe_dsa.</summary>
    public bool IsLatent => Architecture is Architecture.Glm4MoeLite or Architecture.GlmMoeDsa;

    public int RotaryDim => IsLatent
        ? QkRopeHeadDim
        : (int)(HeadDim * PartialRotaryFactor);

    // DSA (glm_moe_dsa)
    /// <summary>Keys each query attends to past the first index_topk positions (2048 in every release).</summary>
    public int IndexTopK { get; init; }
    public int IndexHeadDim { get; init; }
    public int IndexNumHeads { get; init; }
    /// <summary>Per layer: true where the layer has its own indexer ("full"), false where it reuses the last full layer's selection ("shared").</summary>
    public bool[] IndexerFull { get; init; } = [];
    /// <summary>The indexer's RoPE pairs (x0,x1),(x2,x3)… (every release: true; vLLM reads it, transformers hard-codes it).</summary>
    public bool IndexerRopeInterleave { get; init; } = true;
    /// <summary>The multi-token-prediction layers after the decoder (their weights are reported unused until speculative decoding uses them).</summary>
    public int NumNextNPredictLayers { get; init; }

    public static ModelConfig Load(string modelDirectory)
    {
        string path = Path.Combine(modelDirectory, "config.json");
        if (!Directory.Exists(modelDirectory)) throw new ModelLoadException($"Model directory '{modelDirectory}' does not exist.");
        if (!File.Exists(path)) throw new ModelLoadException($"No config.json in '{modelDirectory}': not a Hugging Face model directory.");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var config = Parse(doc.RootElement);
            int[]? generationEos = LoadGenerationEos(modelDirectory);
            return generationEos is null ? config : config with { EosTokenIds = generationEos };
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{path} is not valid JSON: {e.Message}", e);
        }
    }

    private static int[]? LoadGenerationEos(string dir)
    {
        string path = Path.Combine(dir, "generation_config.json");
        if (!File.Exists(path)) return null;
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.TryGetProperty("eos_token_id", out var eos) ? ReadIds(eos) : null;
    }

    private static int[] ReadIds(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Number => [e.GetInt32()],
        JsonValueKind.Array => e.EnumerateArray().Select(x => x.GetInt32()).ToArray(),
        _ => [],
    };

    public static ModelConfig Parse(JsonElement root)
    {
        string archName = root.TryGetProperty("architectures", out var archs) && archs.ValueKind == JsonValueKind.Array && archs.GetArrayLength() > 0
            ? archs[0].GetString() ?? ""
            : "";
        Architecture arch = archName switch
        {
            "GlmForCausalLM" => Architecture.Glm,
            "Glm4ForCausalLM" => Architecture.Glm4,
            "Glm4MoeForCausalLM" => Architecture.Glm4Moe,
            "Glm4MoeLiteForCausalLM" => Architecture.Glm4MoeLite,
            "GlmMoeDsaForCausalLM" => Architecture.GlmMoeDsa,
            "" => throw new ModelLoadException("config.json has no 'architectures' entry."),
            _ => throw new ModelLoadException(
                $"Unsupported architecture '{archName}'. Supported: GlmForCausalLM, Glm4ForCausalLM, Glm4MoeForCausalLM, Glm4MoeLiteForCausalLM, GlmMoeDsaForCausalLM."),
        };

        int Int(string name) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number
            ? v.GetInt32()
            : throw new ModelLoadException($"config.json is missing the integer '{name}' required by {archName}.");
        int IntOr(string name, int fallback) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : fallback;
        double DoubleOr(string name, double fallback) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : fallback;
        bool BoolOr(string name, bool fallback) => root.TryGetProperty(name, out var v) && (v.ValueKind is JsonValueKind.True or JsonValueKind.False) ? v.GetBoolean() : fallback;

        // transformers 5 nests RoPE settings under rope_parameters; released checkpoints keep them top level.
        double ropeTheta = DoubleOr("rope_theta", 10000);
        bool latent = arch is Architecture.Glm4MoeLite or Architecture.GlmMoeDsa;
        double partial = DoubleOr("partial_rotary_factor", latent ? 1.0 : 0.5);
        foreach (var key in new[] { "rope_parameters", "rope_scaling" })
        {
            if (root.TryGetProperty(key, out var rp) && rp.ValueKind == JsonValueKind.Object)
            {
                if (rp.TryGetProperty("rope_theta", out var t) && t.ValueKind == JsonValueKind.Number) ropeTheta = t.GetDouble();
                if (rp.TryGetProperty("partial_rotary_factor", out var p) && p.ValueKind == JsonValueKind.Number) partial = p.GetDouble();
                if (rp.TryGetProperty("rope_type", out var rt) && rt.GetString() is { } type && type != "default")
                    throw new ModelLoadException($"RoPE type '{type}' is not supported yet (only 'default').");
            }
        }

        int hidden = Int("hidden_size"), heads = Int("num_attention_heads"), layers = Int("num_hidden_layers");
        bool moe = arch is Architecture.Glm4Moe or Architecture.Glm4MoeLite or Architecture.GlmMoeDsa;
        var sparse = new bool[layers];
        if (moe)
        {
            if (root.TryGetProperty("mlp_layer_types", out var types) && types.ValueKind == JsonValueKind.Array)
            {
                if (types.GetArrayLength() != layers) throw new ModelLoadException("config.json: mlp_layer_types must have one entry per layer.");
                for (int i = 0; i < layers; i++) sparse[i] = types[i].GetString() == "sparse";
            }
            else
            {
                int firstDense = IntOr("first_k_dense_replace", arch == Architecture.GlmMoeDsa ? 3 : 1);
                for (int i = 0; i < layers; i++) sparse[i] = i >= firstDense;
            }
        }

        // MLA's head_dim is the rope width (transformers overwrites a checkpoint's head_dim with it; GLM-5.2's says 192).
        int headDim = latent ? Int("qk_rope_head_dim") : IntOr("head_dim", hidden / heads);
        if (root.TryGetProperty("head_dim", out var hd) && hd.ValueKind == JsonValueKind.Null) headDim = hidden / heads;

        bool dsa = arch == Architecture.GlmMoeDsa;
        var indexerFull = dsa ? IndexerTypes(root, layers) : [];

        return new ModelConfig
        {
            Architecture = arch,
            ArchitectureName = archName,
            VocabSize = Int("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = Int("intermediate_size"),
            NumLayers = layers,
            NumHeads = heads,
            NumKvHeads = IntOr("num_key_value_heads", heads),
            HeadDim = headDim,
            RmsNormEps = (float)DoubleOr("rms_norm_eps", 1e-5),
            RopeTheta = ropeTheta,
            PartialRotaryFactor = partial,
            AttentionBias = BoolOr("attention_bias", !latent),
            TieWordEmbeddings = BoolOr("tie_word_embeddings", false),
            MaxPositionEmbeddings = IntOr("max_position_embeddings", 4096),
            EosTokenIds = root.TryGetProperty("eos_token_id", out var eos) ? ReadIds(eos) : [],
            UseQkNorm = BoolOr("use_qk_norm", false),
            DType = root.TryGetProperty("dtype", out var dt) && dt.ValueKind == JsonValueKind.String ? dt.GetString()!
                : root.TryGetProperty("torch_dtype", out var tdt) && tdt.ValueKind == JsonValueKind.String ? tdt.GetString()! : "bfloat16",
            NumRoutedExperts = moe ? Int("n_routed_experts") : 0,
            NumSharedExperts = moe ? IntOr("n_shared_experts", 1) : 0,
            NumExpertsPerToken = moe ? Int("num_experts_per_tok") : 0,
            MoeIntermediateSize = moe ? Int("moe_intermediate_size") : 0,
            NumGroups = IntOr("n_group", 1),
            TopkGroup = IntOr("topk_group", 1),
            NormTopkProb = BoolOr("norm_topk_prob", true),
            RoutedScalingFactor = (float)DoubleOr("routed_scaling_factor", 1.0),
            SparseLayers = sparse,
            QLoraRank = root.TryGetProperty("q_lora_rank", out var ql) && ql.ValueKind == JsonValueKind.Number ? ql.GetInt32() : null,
            KvLoraRank = latent ? Int("kv_lora_rank") : 0,
            QkNopeHeadDim = latent ? Int("qk_nope_head_dim") : 0,
            QkRopeHeadDim = latent ? Int("qk_rope_head_dim") : 0,
            VHeadDim = latent ? Int("v_head_dim") : 0,
            RopeInterleave = BoolOr("rope_interleave", true),
            IndexTopK = dsa ? IntOr("index_topk", 2048) : 0,
            IndexHeadDim = dsa ? IntOr("index_head_dim", 128) : 0,
            IndexNumHeads = dsa ? IntOr("index_n_heads", 32) : 0,
            IndexerFull = indexerFull,
            IndexerRopeInterleave = BoolOr("indexer_rope_interleave", true),
            NumNextNPredictLayers = IntOr("num_nextn_predict_layers", 0),
        };

        bool[] IndexerTypes(JsonElement config, int count)
        {
            // As transformers' GlmMoeDsaConfig: an explicit indexer_types list, else index_topk_pattern ("F"/"S"
            // per layer), else full where max(l - offset + 1, 0) % freq == 0 (defaults freq 1, offset 2: all full).
            var full = new bool[count];
            if (config.TryGetProperty("indexer_types", out var types) && types.ValueKind == JsonValueKind.Array)
            {
                if (types.GetArrayLength() != count) throw new ModelLoadException("config.json: indexer_types must have one entry per layer.");
                for (int i = 0; i < count; i++)
                    full[i] = types[i].GetString() switch
                    {
                        "full" => true,
                        "shared" => false,
                        var t => throw new ModelLoadException($"config.json: indexer_types[{i}] is '{t}' (expected full or shared)."),
                    };
            }
            else if (config.TryGetProperty("index_topk_pattern", out var pattern) && pattern.ValueKind == JsonValueKind.String)
            {
                string text = pattern.GetString()!;
                if (text.Length != count || text.Any(ch => ch is not ('F' or 'S')))
                    throw new ModelLoadException("config.json: index_topk_pattern must hold one F or S per layer.");
                for (int i = 0; i < count; i++) full[i] = text[i] == 'F';
            }
            else
            {
                int freq = IntOr("index_topk_freq", 1), offset = IntOr("index_skip_topk_offset", 2);
                if (freq < 1) throw new ModelLoadException("config.json: index_topk_freq must be at least 1.");
                for (int i = 0; i < count; i++) full[i] = Math.Max(i - offset + 1, 0) % freq == 0;
            }
            if (count > 0 && !full[0]) throw new ModelLoadException("config.json: the first layer must have its own indexer (a shared layer reuses an earlier one).");
            return full;
        }
    }
}
