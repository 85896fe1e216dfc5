using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;
using Glm.Models.Loading;

namespace Glm.Models.Architectures;

/// <summary>A loaded GLM-family model: embeddings, decoder layers, final norm and LM head, over a paged KV cache.</summary>
public sealed class CausalLM : IDisposable
{
    private readonly WeightMatrix _embed;
    private readonly DecoderLayer[] _layers;
    private readonly float[] _finalNorm;
    private readonly WeightMatrix _lmHead;
    private readonly Checkpoint? _checkpoint;

    internal CausalLM(ModelConfig config, WeightMatrix embed, DecoderLayer[] layers, float[] finalNorm, WeightMatrix lmHead, Checkpoint? checkpoint)
    {
        Config = config;
        _embed = embed;
        _layers = layers;
        _finalNorm = finalNorm;
        _lmHead = lmHead;
        _checkpoint = checkpoint;
        CacheLayout = config.Architecture == Architecture.Glm4MoeLite ? LatentAttention.CacheLayout(config) : GqaAttention.CacheLayout(config);
    }

    public ModelConfig Config { get; }
    public KvLayout CacheLayout { get; }
    public int VocabSize => Config.VocabSize;
    public IReadOnlyList<DecoderLayer> Layers => _layers;
    public WeightMatrix Embedding => _embed;
    public WeightMatrix LmHead => _lmHead;

    /// <summary>
    /// Runs one step: writes every token's KV into <paramref name="cache"/> and fills <paramref name="logits"/>
    /// with [batch.LogitRows, vocab] (the last token of each sequence, or every token when batch.AllLogits).
    /// </summary>
    public void Forward(ForwardBatch batch, PagedKvCache cache, Span<float> logits)
    {
        if (logits.Length < (long)batch.LogitRows * VocabSize) throw new ArgumentException("logits buffer too small", nameof(logits));
        var sequences = new AttentionSequence[batch.Sequences.Count];
        for (int s = 0; s < sequences.Length; s++)
        {
            var seq = batch.Sequences[s];
            var slots = System.Buffers.ArrayPool<long>.Shared.Rent(seq.ContextLength); // slot of each position; returned below
            cache.SlotsFor(seq.BlockTable, slots.AsSpan(0, seq.ContextLength));
            sequences[s] = new AttentionSequence(seq.Start, seq.Count, seq.FirstPosition, slots);
        }
        try
        {
            ForwardLayers(batch, cache, sequences, logits);
        }
        finally
        {
            foreach (var s in sequences) System.Buffers.ArrayPool<long>.Shared.Return(s.Slots);
        }
    }

    private void ForwardLayers(ForwardBatch batch, PagedKvCache cache, AttentionSequence[] sequences, Span<float> logits)
    {
        int t = batch.TokenCount, h = Config.HiddenSize;

        using var hidden = new Pooled<float>((long)t * h);
        for (int i = 0; i < t; i++)
        {
            int id = batch.TokenIds[i];
            if ((uint)id >= (uint)VocabSize) throw new ArgumentOutOfRangeException(nameof(batch), $"token id {id} is outside the vocabulary (0..{VocabSize - 1})");
            _embed.DequantizeRow(id, hidden.Span.Slice(i * h, h));
        }
        for (int l = 0; l < _layers.Length; l++) _layers[l].Forward(hidden.Span, batch, sequences, cache.Store, l);

        int rows = batch.LogitRows;
        using var final = new Pooled<float>((long)rows * h);
        for (int r = 0; r < rows; r++)
        {
            int token = batch.AllLogits ? r : batch.Sequences[r].Start + batch.Sequences[r].Count - 1;
            RmsNorm.Apply(hidden.Span.Slice(token * h, h), _finalNorm, Config.RmsNormEps, final.Span.Slice(r * h, h));
        }
        MatMul.Multiply(_lmHead, final.Span, rows, logits);
    }

    /// <summary>Every weight matrix once (a tied LM head is the embedding).</summary>
    public IEnumerable<WeightMatrix> AllWeights()
    {
        yield return _embed;
        if (!ReferenceEquals(_lmHead, _embed)) yield return _lmHead;
        foreach (var layer in _layers)
        {
            var mlps = layer.Moe is null ? [layer.Mlp!] : layer.Moe.Experts.Append(layer.Moe.Shared);
            foreach (var l in layer.Attention.Linears.Concat(mlps.SelectMany(m => m.Linears))) yield return l.Weight;
        }
    }

    /// <summary>Bytes of weights by storage format, for the startup summary.</summary>
    public IReadOnlyDictionary<string, long> WeightBytesByFormat() =>
        AllWeights().GroupBy(w => w.Format).ToDictionary(g => g.Key, g => g.Sum(w => w.ByteSize));

    public long ParameterCount() => AllWeights().Sum(w => (long)w.Rows * w.Cols);

    public void Dispose()
    {
        foreach (var l in _layers) l.Dispose();
        _embed.Dispose();
        if (!ReferenceEquals(_lmHead, _embed)) _lmHead.Dispose();
        _checkpoint?.Dispose();
    }
}
