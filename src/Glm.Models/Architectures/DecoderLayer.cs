using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;

namespace Glm.Models.Architectures;

/// <summary>
/// Pre-norm residual block. glm4 adds post_self_attn_layernorm and post_mlp_layernorm on the branch outputs
/// before they join the residual; the other architectures leave those null.
/// </summary>
public sealed class DecoderLayer(
    float[] inputNorm, IAttention attention, float[]? postSelfAttnNorm,
    float[] postAttentionNorm, DenseMlp? mlp, MoeBlock? moe, float[]? postMlpNorm, float eps) : IDisposable
{
    public IAttention Attention { get; } = attention;
    public DenseMlp? Mlp { get; } = mlp;
    public MoeBlock? Moe { get; } = moe;

    public void Forward(Span<float> hidden, ForwardBatch batch, AttentionSequence[] sequences, KvStore cache, int layer)
    {
        int t = batch.TokenCount, h = inputNorm.Length;
        using var normed = new Pooled<float>((long)t * h);
        using var branch = new Pooled<float>((long)t * h);

        RmsNorm.ApplyRows(hidden, t, inputNorm, eps, normed.Span);
        Attention.Forward(normed.Span, batch, sequences, cache, layer, branch.Span);
        if (postSelfAttnNorm is not null) RmsNorm.ApplyRows(branch.Span, t, postSelfAttnNorm, eps, branch.Span);
        Add(hidden, branch.Span);

        RmsNorm.ApplyRows(hidden, t, postAttentionNorm, eps, normed.Span);
        if (Moe is not null) Moe.Forward(normed.Span, t, branch.Span);
        else Mlp!.Forward(normed.Span, t, branch.Span);
        if (postMlpNorm is not null) RmsNorm.ApplyRows(branch.Span, t, postMlpNorm, eps, branch.Span);
        Add(hidden, branch.Span);
    }

    private static void Add(Span<float> into, ReadOnlySpan<float> x) =>
        System.Numerics.Tensors.TensorPrimitives.Add(into[..x.Length], x, into);

    public void Dispose()
    {
        Attention.Dispose();
        Mlp?.Dispose();
        Moe?.Dispose();
    }
}
