using Glm.Kernels.Attention;
using Glm.Kernels.Device;
using Glm.Models;
using Glm.Models.Architectures;

namespace Glm.Engine;

/// <summary>Runs a step's forward pass: a model, the worker it was placed on, and one paged KV pool there.</summary>
public interface IModelRunner : IDisposable
{
    ModelConfig Config { get; }
    int NumBlocks { get; }
    int BlockSize { get; }
    long KvBytesPerToken { get; }
    KvCacheDType KvDType { get; }
    void Forward(ForwardBatch batch, Span<float> logits);
    void CopyBlock(int from, int to);

    /// <summary>Whether <see cref="ForwardSample"/> samples on the worker's device (so only token ids come back).</summary>
    bool SamplesOnDevice => false;

    /// <summary>The forward pass with one token drawn per sequence on the device; only when <see cref="SamplesOnDevice"/>.</summary>
    void ForwardSample(ForwardBatch batch, ReadOnlySpan<RowSampling> rows, Span<int> tokens) =>
        throw new NotSupportedException("this runner samples on the host");

    /// <summary>Whether the model's MTP layer drafts (<see cref="ProposeMtpDrafts"/> after each <see cref="Forward"/>).</summary>
    bool DraftsWithMtp => false;

    /// <summary>
    /// After <see cref="Forward"/>: runs the MTP layer over <paramref name="draftBatch"/> (token ids: each row's next
    /// token; row r reads the last forward pass's final hidden state of its row <paramref name="hiddenRows"/>[r]),
    /// writing its KV, and gives each sequence that wants a draft (LogitRows 1) its most likely token.
    /// </summary>
    void ProposeMtpDrafts(ForwardBatch draftBatch, ReadOnlySpan<int> hiddenRows, Span<int> drafts) =>
        throw new NotSupportedException("this runner has no MTP layer");
}

/// <summary>A model plus its worker (CPU, CUDA, …): the worker holds the weights and the KV pool.</summary>
public sealed class ModelRunner : IModelRunner
{
    private readonly CausalLM _model;
    private readonly DeviceKvCache _cache;
    private readonly bool _ownsModel;
    private Tensor? _hidden; // the last forward pass's final hidden states, while the MTP layer may read them
    private float[] _draftLogits = [];

    /// <param name="ownsModel">false when several runners share one loaded model (benchmarks); it is then not disposed here.</param>
    /// <param name="indexerKvDType">glm_moe_dsa's indexer-key stream, when it should differ from <paramref name="kvDType"/></param>
    public ModelRunner(CausalLM model, KvCacheDType kvDType, int numBlocks, int blockSize, bool ownsModel = true, KvCacheDType? indexerKvDType = null)
    {
        _model = model;
        _cache = model.CreateKvCache(kvDType, numBlocks, blockSize, indexerKvDType);
        _ownsModel = ownsModel;
    }

    /// <summary>Blocks that fit a byte budget for this model's cache layout and dtype (the page format is the same on every worker).</summary>
    public static int BlocksForBudget(CausalLM model, KvCacheDType dtype, int blockSize, long bytes, KvCacheDType? indexerDType = null) =>
        (int)Math.Max(1, Math.Min(int.MaxValue, bytes / model.KvBytesPerBlock(dtype, blockSize, indexerDType)));

    public ModelConfig Config => _model.Config;
    public CausalLM Model => _model;
    public int NumBlocks => _cache.NumBlocks;
    public int BlockSize => _cache.BlockSize;
    public long KvBytesPerToken => _cache.BytesPerToken;
    public KvCacheDType KvDType => _cache.DType;

    public void Forward(ForwardBatch batch, Span<float> logits)
    {
        ReleaseHidden();
        if (_model.Mtp is null) _model.Forward(batch, _cache, logits);
        else _hidden = _model.ForwardKeepingHiddenStates(batch, _cache, logits);
    }

    public bool DraftsWithMtp => _model.Mtp is not null;

    public void ProposeMtpDrafts(ForwardBatch draftBatch, ReadOnlySpan<int> hiddenRows, Span<int> drafts)
    {
        if (_hidden is not { } hidden) throw new InvalidOperationException("ProposeMtpDrafts follows a Forward of a model loaded with its MTP layer");
        if (hiddenRows.Length != draftBatch.TokenCount) throw new ArgumentException("one hidden row per draft-batch token", nameof(hiddenRows));
        if (drafts.Length < draftBatch.LogitRows) throw new ArgumentException("one draft per sequence that wants one", nameof(drafts));
        int vocab = _model.VocabSize;
        if (_draftLogits.Length < (long)draftBatch.LogitRows * vocab) _draftLogits = new float[draftBatch.LogitRows * vocab];
        try
        {
            using var previous = _model.Worker.GatherRows(hidden, hiddenRows);
            _model.ForwardMtp(draftBatch, previous, _cache, _draftLogits);
        }
        finally
        {
            ReleaseHidden();
        }
        for (int r = 0; r < draftBatch.LogitRows; r++)
            drafts[r] = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(_draftLogits.AsSpan(r * vocab, vocab));
    }

    private void ReleaseHidden()
    {
        _hidden?.Dispose();
        _hidden = null;
    }

    /// <summary>True on a worker that samples on its device (the CUDA worker); the CPU worker samples on the host.</summary>
    public bool SamplesOnDevice => _model.Worker is IDeviceSampler;

    public void ForwardSample(ForwardBatch batch, ReadOnlySpan<RowSampling> rows, Span<int> tokens) => _model.ForwardSample(batch, _cache, rows, tokens);

    public void CopyBlock(int from, int to) => _cache.CopyBlock(from, to);

    public void Dispose()
    {
        ReleaseHidden();
        _cache.Dispose();
        if (_ownsModel) _model.Dispose();
    }
}
