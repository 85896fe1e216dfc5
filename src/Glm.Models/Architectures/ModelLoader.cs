using Glm.Kernels.Cpu;
using Glm.Kernels.Device;
using Glm.Kernels.Device.Cpu;
using Glm.Models.Loading;

namespace Glm.Models.Architectures;

/// <summary>
/// Builds a <see cref="CausalLM"/> from a model directory, checking every tensor's name and shape up front. Each
/// weight is built on the host in its stored (or quantized) format, then placed on the worker, once.
/// </summary>
public static class ModelLoader
{
    /// <param name="progress">called after each decoder layer with (layers done, layers in all)</param>
    /// <param name="worker">where the model runs; the CPU worker when null</param>
    /// <param name="withMtp">also load the MTP layer at index num_hidden_layers (speculative decoding); refused where the checkpoint has none</param>
    public static CausalLM Load(string directory, Func<Checkpoint, WeightBuilder>? builderFactory = null, Action<string>? log = null, Action<int, int>? progress = null,
        IWorker? worker = null, bool withMtp = false)
    {
        var config = ModelConfig.Load(directory);
        var checkpoint = new Checkpoint(directory);
        try
        {
            var builder = builderFactory?.Invoke(checkpoint) ?? new WeightBuilder(checkpoint);
            worker ??= CpuWorker.Instance;
            if (config.Architecture == Architecture.GlmMoeDsa && !worker.SupportsSparseAttention)
                throw new ModelLoadException($"{config.ArchitectureName} needs DeepSeek Sparse Attention (the lightning indexer and sparse attention), which the {worker.Name} worker does not have yet; use --device cpu.");
            if (withMtp) CheckMtp(config, checkpoint);
            var model = new Placer(worker, config, builder).Build(progress, withMtp);
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

    /// <summary>The MTP layer's tensor prefix: the layer after the last decoder layer.</summary>
    public static string MtpPrefix(ModelConfig c) => $"model.layers.{c.NumLayers}";

    private static void CheckMtp(ModelConfig c, Checkpoint checkpoint)
    {
        if (c.Architecture is not (Architecture.Glm4Moe or Architecture.Glm4MoeLite))
            throw new ModelLoadException($"MTP drafting is for glm4_moe and glm4_moe_lite checkpoints; {c.ArchitectureName} has no MTP layer this server runs.");
        if (c.NumNextNPredictLayers < 1)
            throw new ModelLoadException("config.json has no num_nextn_predict_layers: this checkpoint carries no MTP layer to draft with; use the ngram method instead.");
        if (!checkpoint.Contains($"{MtpPrefix(c)}.eh_proj.weight"))
            throw new ModelLoadException($"config.json says num_nextn_predict_layers {c.NumNextNPredictLayers} but the weights hold no {MtpPrefix(c)}.eh_proj.weight " +
                "(a checkpoint stripped of its MTP layer, as the embedded demo model is); use the ngram method instead.");
    }

    /// <summary>Reads each module's tensors through the builder and places them on the worker.</summary>
    private sealed class Placer(IWorker worker, ModelConfig c, WeightBuilder b)
    {
        private readonly IndexSelectionChain? _selections = c.Architecture == Architecture.GlmMoeDsa ? new IndexSelectionChain() : null;
        private int _fullIndexerLayers;
        private DeviceWeight Matrix(string prefix, int rows, int cols) => worker.Place(b.Matrix(prefix, rows, cols));
        private DeviceVector Vector(string name, int length) => worker.Place(b.Vector(name, length));
        private DeviceVector? OptionalVector(string name, int length) => b.OptionalVector(name, length) is { } v ? worker.Place(v) : null;

        private Linear Linear(string prefix, int outF, int inF, bool bias) =>
            new(worker, Matrix(prefix, outF, inF), bias ? Vector(prefix + ".bias", outF) : null);

        public CausalLM Build(Action<int, int>? progress, bool withMtp = false)
        {
            int h = c.HiddenSize;
            var embed = Matrix("model.embed_tokens", c.VocabSize, h);
            bool tied = c.TieWordEmbeddings || !b.Checkpoint.Contains("lm_head.weight");
            var lmHead = tied ? embed : Matrix("lm_head", c.VocabSize, h);
            var layers = new DecoderLayer[c.NumLayers];
            for (int i = 0; i < c.NumLayers; i++)
            {
                layers[i] = Layer(i, c.SparseLayers[i]);
                progress?.Invoke(i + 1, c.NumLayers);
            }
            var mtp = withMtp ? Mtp() : null;
            return new CausalLM(worker, c, embed, layers, Vector("model.norm.weight", h), lmHead, b.Checkpoint, _selections, mtp);
        }

        /// <summary>
        /// The MTP layer: enorm, hnorm, eh_proj and shared_head beside a decoder layer of the model's own kind (MoE
        /// where the checkpoint gives it a router). Its embed_tokens, where a checkpoint repeats it, is the model's.
        /// </summary>
        private MultiTokenPredictor Mtp()
        {
            string p = MtpPrefix(c);
            int h = c.HiddenSize;
            var block = Layer(c.NumLayers, c.NumRoutedExperts > 0 && b.Checkpoint.Contains($"{p}.mlp.gate.weight"));
            var ownHead = b.Checkpoint.Contains($"{p}.shared_head.head.weight") ? Matrix($"{p}.shared_head.head", c.VocabSize, h) : null;
            return new MultiTokenPredictor(worker, Vector($"{p}.enorm.weight", h), Vector($"{p}.hnorm.weight", h), worker.Place(new float[h]),
                Linear($"{p}.eh_proj", h, 2 * h, false), block, Vector($"{p}.shared_head.norm.weight", h), ownHead, c.NumLayers, c.RmsNormEps);
        }

        private DecoderLayer Layer(int i, bool sparse)
        {
            string p = $"model.layers.{i}";
            int h = c.HiddenSize;
            IAttention attention = c.IsLatent ? LatentAttention(p, i) : GqaAttention(p);

            DenseMlp? mlp = null;
            MoeBlock? moe = null;
            if (sparse)
            {
                if (c.NumRoutedExperts % c.NumGroups != 0)
                    throw new ModelLoadException($"n_routed_experts {c.NumRoutedExperts} is not divisible by n_group {c.NumGroups}.");
                var gate = new MoeGate(
                    worker.Place(b.Checkpoint.ReadFloats($"{p}.mlp.gate.weight", c.NumRoutedExperts, h)),
                    OptionalVector($"{p}.mlp.gate.e_score_correction_bias", c.NumRoutedExperts),
                    c.NumRoutedExperts, h, c.NumExpertsPerToken, c.NumGroups, c.TopkGroup, c.NormTopkProb, c.RoutedScalingFactor);
                int n = c.NumRoutedExperts, inter = c.MoeIntermediateSize;
                var gates = new DeviceWeight[n];
                var ups = new DeviceWeight[n];
                var downs = new DeviceWeight[n];
                for (int e = 0; e < n; e++)
                {
                    string ep = $"{p}.mlp.experts.{e}";
                    gates[e] = Matrix($"{ep}.gate_proj", inter, h);
                    ups[e] = Matrix($"{ep}.up_proj", inter, h);
                    downs[e] = Matrix($"{ep}.down_proj", h, inter);
                }
                var shared = SplitMlp($"{p}.mlp.shared_experts", h, c.MoeIntermediateSize * c.NumSharedExperts);
                moe = new MoeBlock(worker, gate, new ExpertSet(gates, ups, downs), shared);
            }
            else if (c.Architecture is Architecture.Glm or Architecture.Glm4)
            {
                mlp = new DenseMlp(worker, Linear($"{p}.mlp.gate_up_proj", 2 * c.IntermediateSize, h, false), Linear($"{p}.mlp.down_proj", h, c.IntermediateSize, false));
            }
            else
            {
                mlp = SplitMlp($"{p}.mlp", h, c.IntermediateSize);
            }

            bool glm4 = c.Architecture == Architecture.Glm4;
            return new DecoderLayer(worker,
                Vector($"{p}.input_layernorm.weight", h), attention,
                glm4 ? Vector($"{p}.post_self_attn_layernorm.weight", h) : null,
                Vector($"{p}.post_attention_layernorm.weight", h), mlp, moe,
                glm4 ? Vector($"{p}.post_mlp_layernorm.weight", h) : null,
                c.RmsNormEps);
        }

        private DenseMlp SplitMlp(string p, int hidden, int inter) =>
            new(worker, Linear($"{p}.gate_proj", inter, hidden, false), Linear($"{p}.up_proj", inter, hidden, false), Linear($"{p}.down_proj", hidden, inter, false));

        private GqaAttention GqaAttention(string p)
        {
            int h = c.HiddenSize, qw = c.NumHeads * c.HeadDim, kw = c.NumKvHeads * c.HeadDim;
            var layout = c.Architecture == Architecture.Glm4Moe ? RopeLayout.HalfSplit : RopeLayout.Interleaved;
            return new GqaAttention(worker,
                Linear($"{p}.self_attn.q_proj", qw, h, c.AttentionBias),
                Linear($"{p}.self_attn.k_proj", kw, h, c.AttentionBias),
                Linear($"{p}.self_attn.v_proj", kw, h, c.AttentionBias),
                Linear($"{p}.self_attn.o_proj", h, qw, false),
                c.UseQkNorm ? Vector($"{p}.self_attn.q_norm.weight", c.HeadDim) : null,
                c.UseQkNorm ? Vector($"{p}.self_attn.k_norm.weight", c.HeadDim) : null,
                new Rope(c.RotaryDim, c.RopeTheta, layout, c.Bf16RopeFrequencies), c);
        }

        private LatentAttention LatentAttention(string p, int layer)
        {
            var attention = PlainLatentAttention(p);
            if (_selections is null) return attention;
            if (c.QLoraRank is not int qRank) throw new ModelLoadException($"{c.ArchitectureName} needs q_lora_rank: the indexer reads the query latent.");
            LightningIndexer? indexer = null;
            if (c.IndexerFull[layer])
            {
                // Shared (IndexShare) layers have no indexer weights; a full one owns the next layer of the indexer-key stream.
                string ip = $"{p}.self_attn.indexer";
                int h = c.HiddenSize, dim = c.IndexHeadDim, heads = c.IndexNumHeads;
                if (c.QkRopeHeadDim > dim) throw new ModelLoadException($"qk_rope_head_dim {c.QkRopeHeadDim} exceeds index_head_dim {dim}.");
                var rope = new Rope(c.QkRopeHeadDim, c.RopeTheta, c.IndexerRopeInterleave ? RopeLayout.Interleaved : RopeLayout.HalfSplit, c.Bf16RopeFrequencies);
                indexer = new LightningIndexer(worker, Linear($"{ip}.wq_b", heads * dim, qRank, false), Linear($"{ip}.wk", dim, h, false),
                    Vector($"{ip}.k_norm.weight", dim), Vector($"{ip}.k_norm.bias", dim), Linear($"{ip}.weights_proj", heads, h, false),
                    rope, heads, dim, c.IndexTopK, _fullIndexerLayers++);
            }
            attention.UseSparseAttention(indexer, _selections);
            return attention;
        }

        private LatentAttention PlainLatentAttention(string p)
        {
            int h = c.HiddenSize, qHead = c.QkNopeHeadDim + c.QkRopeHeadDim;
            var rope = new Rope(c.QkRopeHeadDim, c.RopeTheta, c.RopeInterleave ? RopeLayout.InterleavedToHalf : RopeLayout.HalfSplit, c.Bf16RopeFrequencies);
            var kvA = Linear($"{p}.self_attn.kv_a_proj_with_mqa", c.KvLoraRank + c.QkRopeHeadDim, h, c.AttentionBias);
            var kvANorm = Vector($"{p}.self_attn.kv_a_layernorm.weight", c.KvLoraRank);
            // kv_b_proj is built on the host first: the absorbed key blocks are a transposed copy of it.
            var kvBHost = b.Matrix($"{p}.self_attn.kv_b_proj", c.NumHeads * (c.QkNopeHeadDim + c.VHeadDim), c.KvLoraRank);
            var kbTransposed = worker.Place(Architectures.LatentAttention.TransposeKeyBlocks(kvBHost, c));
            var kvB = new Linear(worker, worker.Place(kvBHost), null);
            var o = Linear($"{p}.self_attn.o_proj", h, c.NumHeads * c.VHeadDim, c.AttentionBias);
            if (c.QLoraRank is int rank)
            {
                var qA = Linear($"{p}.self_attn.q_a_proj", rank, h, c.AttentionBias);
                var qANorm = Vector($"{p}.self_attn.q_a_layernorm.weight", rank);
                var qB = Linear($"{p}.self_attn.q_b_proj", c.NumHeads * qHead, rank, false);
                return new Architectures.LatentAttention(worker, qA, qANorm, qB, kvA, kvANorm, kvB, kbTransposed, o, rope, c, qIsDirect: false);
            }
            var q = Linear($"{p}.self_attn.q_proj", c.NumHeads * qHead, h, false);
            return new Architectures.LatentAttention(worker, null, null, q, kvA, kvANorm, kvB, kbTransposed, o, rope, c, qIsDirect: true);
        }
    }
}
