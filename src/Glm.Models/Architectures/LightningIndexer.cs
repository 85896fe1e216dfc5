using Glm.Kernels.Cpu;
using Glm.Kernels.Device;

namespace Glm.Models.Architectures;

/// <summary>
/// DeepSeek Sparse Attention's lightning indexer (transformers' GlmMoeDsaIndexer): a query per head from the
/// query latent, one LayerNorm'd key per token (cached as the second KV stream), both with interleaved RoPE on
/// their first qk_rope_head_dim dims; each query then scores every earlier key as Σ_h w_h·ReLU(q_h·k·d^-½), with
/// w = weights_proj(x)·heads^-½, and keeps the top index_topk positions.
/// </summary>
public sealed class LightningIndexer(IWorker worker, Linear wqB, Linear wk, DeviceVector kNormWeight, DeviceVector kNormBias, Linear weightsProj,
    Rope rope, int heads, int headDim, int topK, int cacheLayer) : IDisposable
{
    /// <summary>transformers builds k_norm as nn.LayerNorm(index_head_dim, eps=1e-6).</summary>
    public const float KeyNormEps = 1e-6f;

    public IEnumerable<Linear> Linears => [wqB, wk, weightsProj];

    /// <param name="x">the layer's normed input</param>
    /// <param name="queryLatent">q_a_layernorm(q_a_proj(x)), the MLA query latent</param>
    public TokenSelection Select(Tensor x, Tensor queryLatent, StepSequences step, DsaKvCache cache)
    {
        using var queries = wqB.Forward(queryLatent);
        var queryHeads = queries.Heads(heads, headDim);
        worker.Rope(queryHeads.Slice(0, rope.RotaryDim), rope, step);

        using var keys = wk.Forward(x);
        worker.LayerNorm(keys.WholeRows, kNormWeight, kNormBias, KeyNormEps, keys.WholeRows);
        worker.Rope(keys.Heads(1, headDim).Slice(0, rope.RotaryDim), rope, step);
        worker.WriteKv(cache.IndexerKeys, cacheLayer, step, keys, null);

        using var weights = weightsProj.Forward(x);
        return worker.IndexerTopK(cache.IndexerKeys, cacheLayer, step, queries, weights, heads, headDim,
            1f / MathF.Sqrt(headDim), 1f / MathF.Sqrt(heads), topK);
    }

    public void Dispose()
    {
        foreach (var l in Linears) l.Dispose();
        kNormWeight.Dispose();
        kNormBias.Dispose();
    }
}

/// <summary>
/// The selection of the last full layer within one forward pass, which IndexShare ("shared") layers reuse
/// (transformers threads it from layer to layer as prev_topk_indices). Cleared at the end of every forward.
/// </summary>
public sealed class IndexSelectionChain
{
    private TokenSelection? _current;

    public TokenSelection Current => _current ?? throw new InvalidOperationException("a shared indexer layer ran before any full one");

    public void Set(TokenSelection selection)
    {
        _current?.Dispose();
        _current = selection;
    }

    public void Clear()
    {
        _current?.Dispose();
        _current = null;
    }
}
