using Glm.Kernels.Device;

namespace Glm.Models.Architectures;

/// <summary>
/// Pre-norm residual block. glm4 adds post_self_attn_layernorm and post_mlp_layernorm on the branch outputs
/// before they join the residual; the other architectures leave those null.
/// </summary>
public sealed class DecoderLayer(
    IWorker worker, DeviceVector inputLayernorm, IAttention selfAttn, DeviceVector? postSelfAttnLayernorm,
    DeviceVector postAttentionLayernorm, DenseMlp? mlp, MoeBlock? moe, DeviceVector? postMlpLayernorm, float eps) : IDisposable
{
    public IAttention Attention { get; } = selfAttn;
    public DenseMlp? Mlp { get; } = mlp;
    public MoeBlock? Moe { get; } = moe;

    /// <summary>Updates the residual stream <paramref name="hiddenStates"/> in place.</summary>
    public void Forward(Tensor hiddenStates, StepSequences step, DeviceKvCache cache, int layer)
    {
        using (var normed = worker.RmsNorm(hiddenStates, inputLayernorm, eps))
        using (var attention = Attention.Forward(normed, step, cache, layer))
        {
            if (postSelfAttnLayernorm is not null) worker.RmsNormInPlace(attention.WholeRows, postSelfAttnLayernorm, eps);
            worker.Add(hiddenStates, attention);
        }
        using (var normed = worker.RmsNorm(hiddenStates, postAttentionLayernorm, eps))
        using (var mlpOut = Moe is not null ? Moe.Forward(normed) : Mlp!.Forward(normed))
        {
            if (postMlpLayernorm is not null) worker.RmsNormInPlace(mlpOut.WholeRows, postMlpLayernorm, eps);
            worker.Add(hiddenStates, mlpOut);
        }
    }

    /// <summary>Every weight matrix of the layer: attention's, then the MLP's (or the shared expert's and each routed expert's).</summary>
    public IEnumerable<DeviceWeight> Weights()
    {
        foreach (var l in Attention.Linears) yield return l.Weight;
        foreach (var l in (Moe?.Shared ?? Mlp!).Linears) yield return l.Weight;
        if (Moe is not null)
            for (int e = 0; e < Moe.Experts.Count; e++)
                foreach (var w in Moe.Experts.Of(e)) yield return w;
    }

    public void Dispose()
    {
        Attention.Dispose();
        Mlp?.Dispose();
        Moe?.Dispose();
        inputLayernorm.Dispose();
        postSelfAttnLayernorm?.Dispose();
        postAttentionLayernorm.Dispose();
        postMlpLayernorm?.Dispose();
    }
}
