using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;
using Glm.Kernels.Device;

namespace Glm.Models.Architectures;

/// <summary>
/// Multi-head latent attention (DeepSeek-V2 style, glm4_moe_lite). The cache holds one compressed latent per
/// token (normalised kv_lora part, then the roped shared key), and attention runs in latent space: each head's
/// no-RoPE query is absorbed through its slice of kv_b_proj, and its latent output expanded through the value slice.
/// </summary>
public sealed class LatentAttention : IAttention
{
    /// <summary>transformers builds q_a_layernorm and kv_a_layernorm with the RMSNorm default eps, not the config's.</summary>
    public const float LatentNormEps = 1e-6f;

    private readonly IWorker _worker;
    private readonly Linear? _qA, _qProj;
    private readonly DeviceVector? _qANorm;
    private readonly Linear _qB, _kvA, _kvB, _o;
    private readonly DeviceVector _kvANorm;
    private readonly Rope _rope;
    private readonly int _heads, _nope, _ropeDim, _vDim, _rank, _qHeadDim;
    /// <summary>Each head's no-RoPE key block of kv_b_proj, transposed at load (see <see cref="TransposeKeyBlocks"/>).</summary>
    private readonly DeviceWeight _kbTransposed;
    /// <summary>glm_moe_dsa: this layer's own indexer (a "full" layer), or null where it reuses the chain's selection.</summary>
    private LightningIndexer? _indexer;
    private IndexSelectionChain? _selections;

    public LatentAttention(IWorker worker, Linear? qA, DeviceVector? qANorm, Linear qB, Linear kvA, DeviceVector kvANorm, Linear kvB,
        DeviceWeight kbTransposed, Linear o, Rope rope, ModelConfig c, bool qIsDirect)
    {
        _worker = worker;
        if (qIsDirect) _qProj = qB; else { _qA = qA; _qANorm = qANorm; }
        (_qB, _kvA, _kvANorm, _kvB, _kbTransposed, _o, _rope) = (qB, kvA, kvANorm, kvB, kbTransposed, o, rope);
        _heads = c.NumHeads;
        _nope = c.QkNopeHeadDim;
        _ropeDim = c.QkRopeHeadDim;
        _vDim = c.VHeadDim;
        _rank = c.KvLoraRank;
        _qHeadDim = _nope + _ropeDim;
    }

    /// <summary>
    /// Row h·rank + j holds W_kb[h][:, j], so absorbing a query is a dot product per output rather than a
    /// dequantized row per input. Built once on the host at load, from kv_b_proj as stored; BF16 when kv_b is
    /// BF16 (exactly representable), float32 otherwise.
    /// </summary>
    public static WeightMatrix TransposeKeyBlocks(WeightMatrix kvB, ModelConfig c)
    {
        int heads = c.NumHeads, rank = c.KvLoraRank, nope = c.QkNopeHeadDim, vDim = c.VHeadDim;
        var transposed = new float[(long)heads * rank * nope];
        var row = new float[rank];
        for (int h = 0; h < heads; h++)
            for (int d = 0; d < nope; d++)
            {
                kvB.DequantizeRow(h * (nope + vDim) + d, row);
                for (int j = 0; j < rank; j++) transposed[((long)h * rank + j) * nope + d] = row[j];
            }
        if (kvB is not Bf16Matrix) return new F32Matrix(transposed, heads * rank, nope);
        var bits = new ushort[transposed.Length];
        Glm.Kernels.Formats.BFloat16.FromFloat(transposed, bits);
        return Bf16Matrix.FromArray(bits, heads * rank, nope);
    }

    /// <summary>
    /// Makes this layer DeepSeek Sparse Attention (glm_moe_dsa): with an indexer it picks each query's keys and
    /// hands the pick to <paramref name="selections"/>; without one (IndexShare) it attends to the last pick there.
    /// </summary>
    public void UseSparseAttention(LightningIndexer? indexer, IndexSelectionChain selections)
    {
        _indexer = indexer;
        _selections = selections;
    }

    public LightningIndexer? Indexer => _indexer;

    /// <summary>The attention's own projections (the indexer's are its own, disposed with it).</summary>
    private IEnumerable<Linear> Projections => new[] { _qA, _qB, _kvA, _kvB, _o }.OfType<Linear>();

    public IEnumerable<Linear> Linears => Projections.Concat(_indexer?.Linears ?? []);

    public static KvLayout CacheLayout(ModelConfig c) =>
        new(c.NumLayers, 1, c.KvLoraRank + c.QkRopeHeadDim, c.KvLoraRank, ValueIsKeyPrefix: true);

    public Tensor Forward(Tensor hiddenStates, StepSequences step, DeviceKvCache cache, int layer)
    {
        int t = hiddenStates.Rows, latentWidth = _rank + _ropeDim;
        using var query = QueryStates(hiddenStates, out var compressedQuery);
        var queryHeads = query.Heads(_heads, _qHeadDim);
        using (compressedQuery)
        {
            // DSA: the indexer reads the query latent and the layer input before attention (a shared layer reuses).
            if (_indexer is not null) _selections!.Set(_indexer.Select(hiddenStates, compressedQuery!.Value, step, (DsaKvCache)cache));
        }
        var mainCache = DsaKvCache.MainOf(cache);

        // compressed_kv = kv_a_proj_with_mqa(x): [kv_lora (normalised) | k_rot (roped)], cached as it is.
        using var latent = _kvA.Forward(hiddenStates);
        var latentKv = latent.Heads(1, latentWidth);
        _worker.RmsNormInPlace(latentKv.Slice(0, _rank), _kvANorm, LatentNormEps);
        _worker.Rope(latentKv.Slice(_rank, _ropeDim), _rope, step);
        _worker.Rope(queryHeads.Slice(_nope, _ropeDim), _rope, step);

        // Per head, the query in latent space: [q_nope absorbed through W_kb (rank) | q_rot (rope dims)].
        using var queryLatent = _worker.Empty(t, _heads * latentWidth);
        var queryLatentHeads = queryLatent.Heads(_heads, latentWidth);
        _worker.HeadsTimesWeight(_kbTransposed, _rank, 0, queryHeads.Slice(0, _nope), queryLatentHeads.Slice(0, _rank));
        _worker.Copy(queryHeads.Slice(_nope, _ropeDim), queryLatentHeads.Slice(_rank, _ropeDim));

        _worker.WriteKv(mainCache, layer, step, latent, null);
        float scale = 1f / MathF.Sqrt(_qHeadDim);
        using var latentOutput = _selections is null
            ? _worker.PagedAttention(mainCache, layer, step, queryLatent, _heads, latentWidth, _heads, scale, _rank)
            : _worker.SparsePagedAttention(mainCache, layer, step, queryLatent, _heads, latentWidth, _heads, scale, _rank, _selections.Current);

        // Expand each head's latent output through its value block of kv_b_proj, then o_proj.
        using var attention = _worker.Empty(t, _heads * _vDim);
        _worker.HeadsTimesWeight(_kvB.Weight, _nope + _vDim, _nope, latentOutput.Heads(_heads, _rank), attention.Heads(_heads, _vDim));
        return _o.Forward(attention);
    }

    /// <summary>
    /// q_proj(x), or q_b_proj(q_a_layernorm(q_a_proj(x))) when the checkpoint has a q LoRA; the normed latent is
    /// handed out when the indexer needs it (the caller disposes it), else freed here.
    /// </summary>
    private Tensor QueryStates(Tensor hiddenStates, out Tensor? compressedQuery)
    {
        compressedQuery = null;
        if (_qProj is not null) return _qProj.Forward(hiddenStates);
        var compressed = _qA!.Forward(hiddenStates);
        _worker.RmsNormInPlace(compressed.WholeRows, _qANorm!, LatentNormEps);
        var query = _qB.Forward(compressed);
        if (_indexer is not null) compressedQuery = compressed;
        else compressed.Dispose();
        return query;
    }

    public void Dispose()
    {
        foreach (var l in Projections) l.Dispose();
        _indexer?.Dispose();
        _kbTransposed.Dispose();
        _qANorm?.Dispose();
        _kvANorm.Dispose();
    }
}
