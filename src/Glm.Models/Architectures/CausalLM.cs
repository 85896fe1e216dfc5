using Glm.Kernels.Attention;
using Glm.Kernels.Device;
using Glm.Models.Loading;

namespace Glm.Models.Architectures;

/// <summary>
/// A loaded GLM-family model: embed_tokens, the decoder layers, the final norm and lm_head, over a paged KV
/// cache. Written once against <see cref="IWorker"/>; the worker it was loaded onto runs every op.
/// </summary>
public sealed class CausalLM : IDisposable
{
    private readonly DeviceWeight _embedTokens;
    private readonly DecoderLayer[] _layers;
    private readonly DeviceVector _norm;
    private readonly DeviceWeight _lmHead;
    private readonly Checkpoint? _checkpoint;
    private readonly IndexSelectionChain? _selections;

    internal CausalLM(IWorker worker, ModelConfig config, DeviceWeight embedTokens, DecoderLayer[] layers, DeviceVector norm, DeviceWeight lmHead, Checkpoint? checkpoint,
        IndexSelectionChain? selections = null, MultiTokenPredictor? mtp = null)
    {
        _selections = selections;
        Mtp = mtp;
        Worker = worker;
        Config = config;
        _embedTokens = embedTokens;
        _layers = layers;
        _norm = norm;
        _lmHead = lmHead;
        _checkpoint = checkpoint;
        CacheLayout = config.IsLatent ? LatentAttention.CacheLayout(config) : GqaAttention.CacheLayout(config);
        // The MTP block keeps its KV in one more layer of the same pages (it shares the sequence's block table).
        if (mtp is not null) CacheLayout = CacheLayout with { Layers = CacheLayout.Layers + 1 };
        if (config.Architecture == Architecture.GlmMoeDsa)
            IndexerCacheLayout = new KvLayout(config.IndexerFull.Count(f => f), 1, config.IndexHeadDim, config.IndexHeadDim, ValueIsKeyPrefix: true);
    }

    /// <summary>glm_moe_dsa's second KV stream: one indexer key a token for each full layer; null for the other architectures.</summary>
    public KvLayout? IndexerCacheLayout { get; }

    public IWorker Worker { get; }
    /// <summary>The MTP layer, when the model was loaded with it for speculative decoding; null otherwise.</summary>
    public MultiTokenPredictor? Mtp { get; }
    public ModelConfig Config { get; }
    public KvLayout CacheLayout { get; }
    public int VocabSize => Config.VocabSize;
    public IReadOnlyList<DecoderLayer> Layers => _layers;
    public DeviceWeight Embedding => _embedTokens;
    public DeviceWeight LmHead => _lmHead;

    /// <summary>
    /// A KV pool for this model on its worker (for glm_moe_dsa, the latent and the indexer keys, paged alike; the
    /// indexer keys in <paramref name="indexerDType"/>, the pool's dtype when null).
    /// </summary>
    public DeviceKvCache CreateKvCache(KvCacheDType dtype, int blocks, int blockSize, KvCacheDType? indexerDType = null)
    {
        var main = Worker.CreateKvCache(CacheLayout, dtype, blocks, blockSize);
        if (IndexerCacheLayout is not { } indexer) return main;
        try { return new DsaKvCache(main, Worker.CreateKvCache(indexer, indexerDType ?? dtype, blocks, blockSize)); }
        catch { main.Dispose(); throw; }
    }

    /// <summary>Pool bytes per block of <paramref name="blockSize"/> tokens, every stream counted (the page format is the same on every worker).</summary>
    public long KvBytesPerBlock(KvCacheDType dtype, int blockSize, KvCacheDType? indexerDType = null) =>
        PagedKvCache.BytesPerBlock(CacheLayout, dtype, blockSize) + (IndexerCacheLayout is { } i ? PagedKvCache.BytesPerBlock(i, indexerDType ?? dtype, blockSize) : 0);

    /// <summary>
    /// Runs one step: writes every token's KV into <paramref name="cache"/> and fills <paramref name="logits"/>
    /// with [batch.LogitRows, vocab] (the last token of each sequence, or every token when batch.AllLogits).
    /// </summary>
    public void Forward(ForwardBatch batch, DeviceKvCache cache, Span<float> logits)
    {
        if (logits.Length < (long)batch.LogitRows * VocabSize) throw new ArgumentException("logits buffer too small", nameof(logits));
        using var normed = FinalHiddenStates(batch, cache);
        Worker.LinearToHost(normed, _lmHead, logits);
    }

    /// <summary>
    /// <see cref="Forward"/>, also handing back every token's final hidden state (after model.norm, [tokens,
    /// hidden], the caller disposes it): what the MTP layer reads. The logits are the same bits as Forward's.
    /// </summary>
    public Tensor ForwardKeepingHiddenStates(ForwardBatch batch, DeviceKvCache cache, Span<float> logits)
    {
        if (logits.Length < (long)batch.LogitRows * VocabSize) throw new ArgumentException("logits buffer too small", nameof(logits));
        var all = FinalHiddenStates(batch, cache, allRows: true);
        try
        {
            using var last = Worker.GatherRows(all, batch.LogitRowIndices());
            Worker.LinearToHost(last, _lmHead, logits);
            return all;
        }
        catch
        {
            all.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The MTP layer's draft logits ([draftBatch.LogitRows, vocab]) after a forward pass: see <see cref="MultiTokenPredictor.Forward"/>.
    /// </summary>
    public void ForwardMtp(ForwardBatch draftBatch, Tensor previousHidden, DeviceKvCache cache, Span<float> logits)
    {
        if (Mtp is null) throw new InvalidOperationException("the model was loaded without its MTP layer");
        foreach (int id in draftBatch.TokenIds)
            if ((uint)id >= (uint)VocabSize) throw new ArgumentOutOfRangeException(nameof(draftBatch), $"token id {id} is outside the vocabulary (0..{VocabSize - 1})");
        Mtp.Forward(draftBatch, previousHidden, cache, _embedTokens, _lmHead, logits);
    }

    /// <summary>
    /// The same forward pass, sampled where the logits are: one token per logit row (a row per sequence), drawn
    /// by the worker (<see cref="IDeviceSampler"/>), so only ids come back to the host.
    /// </summary>
    public void ForwardSample(ForwardBatch batch, DeviceKvCache cache, ReadOnlySpan<RowSampling> rows, Span<int> tokens)
    {
        if (Worker is not IDeviceSampler sampler) throw new NotSupportedException($"the {Worker.Name} worker does not sample on its device");
        if (rows.Length != batch.LogitRows) throw new ArgumentException("one sampling setting per logit row", nameof(rows));
        using var normed = FinalHiddenStates(batch, cache);
        using var logits = Worker.Linear(normed, _lmHead);
        sampler.SampleToHost(logits, rows, tokens);
    }

    /// <summary>Every decoder layer over the batch, then the final norm of the rows whose logits are wanted (of every row when <paramref name="allRows"/>).</summary>
    private Tensor FinalHiddenStates(ForwardBatch batch, DeviceKvCache cache, bool allRows = false)
    {
        foreach (int id in batch.TokenIds)
            if ((uint)id >= (uint)VocabSize) throw new ArgumentOutOfRangeException(nameof(batch), $"token id {id} is outside the vocabulary (0..{VocabSize - 1})");
        using var step = Worker.PrepareStep(DsaKvCache.MainOf(cache), batch.StepSequences(), batch.Positions);

        using var hiddenStates = Worker.Embedding(_embedTokens, batch.TokenIds);
        try
        {
            for (int l = 0; l < _layers.Length; l++) _layers[l].Forward(hiddenStates, step, cache, l);
        }
        finally
        {
            _selections?.Clear(); // a selection lives for one forward pass
        }

        if (allRows) return Worker.RmsNorm(hiddenStates, _norm, Config.RmsNormEps);
        // Only the rows whose logits are wanted go through the final norm and lm_head.
        using var last = Worker.GatherRows(hiddenStates, batch.LogitRowIndices());
        return Worker.RmsNorm(last, _norm, Config.RmsNormEps);
    }

    /// <summary>Every weight matrix once (a tied LM head is the embedding).</summary>
    public IEnumerable<DeviceWeight> AllWeights()
    {
        yield return _embedTokens;
        if (!ReferenceEquals(_lmHead, _embedTokens)) yield return _lmHead;
        foreach (var layer in _layers)
            foreach (var w in layer.Weights()) yield return w;
        if (Mtp is not null)
            foreach (var w in Mtp.Weights()) yield return w;
    }

    /// <summary>Bytes of weights by storage format, for the startup summary.</summary>
    public IReadOnlyDictionary<string, long> WeightBytesByFormat() =>
        AllWeights().GroupBy(w => w.Format).ToDictionary(g => g.Key, g => g.Sum(w => w.ByteSize));

    public long ParameterCount() => AllWeights().Sum(w => (long)w.Rows * w.Cols);

    public void Dispose()
    {
        foreach (var l in _layers) l.Dispose();
        Mtp?.Dispose();
        _embedTokens.Dispose();
        if (!ReferenceEquals(_lmHead, _embedTokens)) _lmHead.Dispose();
        _norm.Dispose();
        _checkpoint?.Dispose();
    }
}
