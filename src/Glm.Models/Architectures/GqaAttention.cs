using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;

namespace Glm.Models.Architectures;

/// <summary>Grouped-query attention with biased q/k/v, optional per-head QK-norm and partial RoPE (glm, glm4, glm4_moe).</summary>
public sealed class GqaAttention : IAttention
{
    private readonly Linear _q, _k, _v, _o;
    private readonly float[]? _qNorm, _kNorm;
    private readonly float _eps;
    private readonly Rope _rope;
    private readonly int _heads, _kvHeads, _headDim;

    public GqaAttention(Linear q, Linear k, Linear v, Linear o, float[]? qNorm, float[]? kNorm, Rope rope, ModelConfig c)
    {
        (_q, _k, _v, _o, _qNorm, _kNorm, _rope) = (q, k, v, o, qNorm, kNorm, rope);
        _eps = c.RmsNormEps;
        _heads = c.NumHeads;
        _kvHeads = c.NumKvHeads;
        _headDim = c.HeadDim;
    }

    public IEnumerable<Linear> Linears => [_q, _k, _v, _o];

    public static KvLayout CacheLayout(ModelConfig c) => new(c.NumLayers, c.NumKvHeads, c.HeadDim, c.HeadDim, false);

    public void Forward(ReadOnlySpan<float> x, ForwardBatch batch, AttentionSequence[] sequences, KvStore cache, int layer, Span<float> output)
    {
        int t = batch.TokenCount, qw = _heads * _headDim, kw = _kvHeads * _headDim;
        using var q = new Pooled<float>((long)t * qw);
        using var k = new Pooled<float>((long)t * kw);
        using var v = new Pooled<float>((long)t * kw);
        _q.Forward(x, t, q.Span);
        _k.Forward(x, t, k.Span);
        _v.Forward(x, t, v.Span);
        Span<float> ropeScratch = stackalloc float[_rope.ScratchLength];
        for (int i = 0; i < t; i++)
        {
            var qi = q.Span.Slice(i * qw, qw);
            var ki = k.Span.Slice(i * kw, kw);
            if (_qNorm is not null) RmsNorm.ApplyRows(qi, _heads, _qNorm, _eps, qi);
            if (_kNorm is not null) RmsNorm.ApplyRows(ki, _kvHeads, _kNorm, _eps, ki);
            _rope.Apply(qi, _heads, _headDim, batch.Positions[i], ropeScratch);
            _rope.Apply(ki, _kvHeads, _headDim, batch.Positions[i], ropeScratch);
        }
        foreach (var s in sequences)
            for (int i = 0; i < s.Count; i++)
                cache.Write(layer, s.Slots[s.FirstPosition + i], k.Span.Slice((s.Start + i) * kw, kw), v.Span.Slice((s.Start + i) * kw, kw));

        using var attn = new Pooled<float>((long)t * qw);
        PagedAttention.Forward(cache, layer, sequences, q.Array, _heads, _headDim, _heads / _kvHeads, 1f / MathF.Sqrt(_headDim), attn.Array, _headDim);
        _o.Forward(attn.Span, t, output);
    }

    public void Dispose()
    {
        foreach (var l in Linears) l.Dispose();
    }
}
