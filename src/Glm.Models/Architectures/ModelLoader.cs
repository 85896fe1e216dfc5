using Glm.Kernels.Cpu;
using Glm.Models.Loading;

namespace Glm.Models.Architectures;

/// <summary>Builds a <see cref="CausalLM"/> from a model directory, checking every tensor's name and shape up front.</summary>
public static class ModelLoader
{
    /// <param name="progress">called after each decoder layer with (layers done, layers in all)</param>
    public static CausalLM Load(string directory, Func<Checkpoint, WeightBuilder>? builderFactory = null, Action<string>? log = null, Action<int, int>? progress = null)
    {
        var config = ModelConfig.Load(directory);
        var checkpoint = new Checkpoint(directory);
        try
        {
            var builder = builderFactory?.Invoke(checkpoint) ?? new WeightBuilder(checkpoint);
            var model = Build(config, builder, progress);
            var unused = checkpoint.Unused();
            if (unused.Count > 0)
                log?.Invoke($"Skipped {unused.Count} checkpoint tensors the forward pass does not use (e.g. {string.Join(", ", unused.Take(3))}).");
            return model;
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    private static CausalLM Build(ModelConfig c, WeightBuilder b, Action<int, int>? progress)
    {
        int h = c.HiddenSize;
        var embed = b.Matrix("model.embed_tokens", c.VocabSize, h);
        bool tied = c.TieWordEmbeddings || !b.Checkpoint.Contains("lm_head.weight");
        var lmHead = tied ? embed : b.Matrix("lm_head", c.VocabSize, h);
        var layers = new DecoderLayer[c.NumLayers];
        for (int i = 0; i < c.NumLayers; i++)
        {
            layers[i] = BuildLayer(c, b, i);
            progress?.Invoke(i + 1, c.NumLayers);
        }
        return new CausalLM(c, embed, layers, b.Vector("model.norm.weight", h), lmHead, b.Checkpoint);
    }

    private static Linear Linear(WeightBuilder b, string prefix, int outF, int inF, bool bias) =>
        new(b.Matrix(prefix, outF, inF), bias ? b.Vector(prefix + ".bias", outF) : null);

    private static DecoderLayer BuildLayer(ModelConfig c, WeightBuilder b, int i)
    {
        string p = $"model.layers.{i}";
        int h = c.HiddenSize;
        IAttention attention = c.Architecture == Architecture.Glm4MoeLite ? BuildLatentAttention(c, b, p) : BuildGqaAttention(c, b, p);

        DenseMlp? mlp = null;
        MoeBlock? moe = null;
        if (c.SparseLayers[i])
        {
            var router = new MoeRouter(
                b.Checkpoint.ReadFloats($"{p}.mlp.gate.weight", c.NumRoutedExperts, h),
                b.OptionalVector($"{p}.mlp.gate.e_score_correction_bias", c.NumRoutedExperts), c);
            var experts = new DenseMlp[c.NumRoutedExperts];
            for (int e = 0; e < experts.Length; e++) experts[e] = SplitMlp(b, $"{p}.mlp.experts.{e}", h, c.MoeIntermediateSize);
            var shared = SplitMlp(b, $"{p}.mlp.shared_experts", h, c.MoeIntermediateSize * c.NumSharedExperts);
            moe = new MoeBlock(router, experts, shared, h);
        }
        else if (c.Architecture is Architecture.Glm or Architecture.Glm4)
        {
            mlp = new DenseMlp(Linear(b, $"{p}.mlp.gate_up_proj", 2 * c.IntermediateSize, h, false), Linear(b, $"{p}.mlp.down_proj", h, c.IntermediateSize, false));
        }
        else
        {
            mlp = SplitMlp(b, $"{p}.mlp", h, c.IntermediateSize);
        }

        bool glm4 = c.Architecture == Architecture.Glm4;
        return new DecoderLayer(
            b.Vector($"{p}.input_layernorm.weight", h), attention,
            glm4 ? b.Vector($"{p}.post_self_attn_layernorm.weight", h) : null,
            b.Vector($"{p}.post_attention_layernorm.weight", h), mlp, moe,
            glm4 ? b.Vector($"{p}.post_mlp_layernorm.weight", h) : null,
            c.RmsNormEps);
    }

    private static DenseMlp SplitMlp(WeightBuilder b, string p, int hidden, int inter) =>
        new(Linear(b, $"{p}.gate_proj", inter, hidden, false), Linear(b, $"{p}.up_proj", inter, hidden, false), Linear(b, $"{p}.down_proj", hidden, inter, false));

    private static GqaAttention BuildGqaAttention(ModelConfig c, WeightBuilder b, string p)
    {
        int h = c.HiddenSize, qw = c.NumHeads * c.HeadDim, kw = c.NumKvHeads * c.HeadDim;
        var layout = c.Architecture == Architecture.Glm4Moe ? RopeLayout.HalfSplit : RopeLayout.Interleaved;
        return new GqaAttention(
            Linear(b, $"{p}.self_attn.q_proj", qw, h, c.AttentionBias),
            Linear(b, $"{p}.self_attn.k_proj", kw, h, c.AttentionBias),
            Linear(b, $"{p}.self_attn.v_proj", kw, h, c.AttentionBias),
            Linear(b, $"{p}.self_attn.o_proj", h, qw, false),
            c.UseQkNorm ? b.Vector($"{p}.self_attn.q_norm.weight", c.HeadDim) : null,
            c.UseQkNorm ? b.Vector($"{p}.self_attn.k_norm.weight", c.HeadDim) : null,
            new Rope(c.RotaryDim, c.RopeTheta, layout, c.Bf16RopeFrequencies), c);
    }

    private static LatentAttention BuildLatentAttention(ModelConfig c, WeightBuilder b, string p)
    {
        int h = c.HiddenSize, qHead = c.QkNopeHeadDim + c.QkRopeHeadDim;
        var rope = new Rope(c.QkRopeHeadDim, c.RopeTheta, c.RopeInterleave ? RopeLayout.InterleavedToHalf : RopeLayout.HalfSplit, c.Bf16RopeFrequencies);
        var kvA = Linear(b, $"{p}.self_attn.kv_a_proj_with_mqa", c.KvLoraRank + c.QkRopeHeadDim, h, c.AttentionBias);
        var kvANorm = b.Vector($"{p}.self_attn.kv_a_layernorm.weight", c.KvLoraRank);
        var kvB = Linear(b, $"{p}.self_attn.kv_b_proj", c.NumHeads * (c.QkNopeHeadDim + c.VHeadDim), c.KvLoraRank, false);
        var o = Linear(b, $"{p}.self_attn.o_proj", h, c.NumHeads * c.VHeadDim, c.AttentionBias);
        if (c.QLoraRank is int rank)
        {
            var qA = Linear(b, $"{p}.self_attn.q_a_proj", rank, h, c.AttentionBias);
            var qANorm = b.Vector($"{p}.self_attn.q_a_layernorm.weight", rank);
            var qB = Linear(b, $"{p}.self_attn.q_b_proj", c.NumHeads * qHead, rank, false);
            return new LatentAttention(qA, qANorm, qB, kvA, kvANorm, kvB, o, rope, c, qIsDirect: false);
        }
        var q = Linear(b, $"{p}.self_attn.q_proj", c.NumHeads * qHead, h, false);
        return new LatentAttention(null, null, q, kvA, kvANorm, kvB, o, rope, c, qIsDirect: true);
    }
}
