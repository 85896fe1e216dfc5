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
}

/// <summary>A model plus its worker (CPU, CUDA, …): the worker holds the weights and the KV pool.</summary>
public sealed class ModelRunner : IModelRunner
{
    private readonly CausalLM _model;
    private readonly DeviceKvCache _cache;
    private readonly bool _ownsModel;

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

    public void Forward(ForwardBatch batch, Span<float> logits) => _model.Forward(batch, _cache, logits);

    /// <summary>True on a worker that samples on its device (the CUDA worker); the CPU worker samples on the host.</summary>
    public bool SamplesOnDevice => _model.Worker is IDeviceSampler;

    public void ForwardSample(ForwardBatch batch, ReadOnlySpan<RowSampling> rows, Span<int> tokens) => _model.ForwardSample(batch, _cache, rows, tokens);

    public void CopyBlock(int from, int to) => _cache.CopyBlock(from, to);

    public void Dispose()
    {
        _cache.Dispose();
        if (_ownsModel) _model.Dispose();
    }
}
