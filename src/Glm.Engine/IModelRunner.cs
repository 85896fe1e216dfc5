using Glm.Kernels.Attention;
using Glm.Models;
using Glm.Models.Architectures;

namespace Glm.Engine;

/// <summary>Runs a step's forward pass on some worker (CPU here; CUDA behind the same contract).</summary>
public interface IModelRunner : IDisposable
{
    ModelConfig Config { get; }
    int NumBlocks { get; }
    int BlockSize { get; }
    long KvBytesPerToken { get; }
    KvCacheDType KvDType { get; }
    void Forward(ForwardBatch batch, Span<float> logits);
    void CopyBlock(int from, int to);
}

/// <summary>The CPU worker: the model's own forward pass over one paged KV pool.</summary>
public sealed class CpuModelRunner : IModelRunner
{
    private readonly CausalLM _model;
    private readonly PagedKvCache _cache;

    public CpuModelRunner(CausalLM model, KvCacheDType kvDType, int numBlocks, int blockSize)
    {
        _model = model;
        _cache = new PagedKvCache(model.CacheLayout, kvDType, numBlocks, blockSize);
    }

    /// <summary>Blocks that fit a byte budget for this model's cache layout and dtype.</summary>
    public static int BlocksForBudget(CausalLM model, KvCacheDType dtype, int blockSize, long bytes) =>
        (int)Math.Max(1, Math.Min(int.MaxValue, bytes / PagedKvCache.BytesPerBlock(model.CacheLayout, dtype, blockSize)));

    public ModelConfig Config => _model.Config;
    public CausalLM Model => _model;
    public int NumBlocks => _cache.NumBlocks;
    public int BlockSize => _cache.BlockSize;
    public long KvBytesPerToken => _cache.BytesPerToken;
    public KvCacheDType KvDType => _cache.Store.DType;

    public void Forward(ForwardBatch batch, Span<float> logits) => _model.Forward(batch, _cache, logits);

    public void CopyBlock(int from, int to)
    {
        for (int s = 0; s < _cache.BlockSize; s++) _cache.Store.CopySlot((long)from * _cache.BlockSize + s, (long)to * _cache.BlockSize + s);
    }

    public void Dispose()
    {
        _cache.Dispose();
        _model.Dispose();
    }
}
