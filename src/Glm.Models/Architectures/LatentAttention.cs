using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;

namespace Glm.Models.Architectures;

/// <summary>
/// Multi-head latent attention (DeepSeek-V2 style, glm4_moe_lite). The cache holds one compressed latent per
/// token (normalised kv_lora part, then the roped shared key), and attention runs in latent space: each head's
/// no-RoPE query is absorbed through its slice of kv_b_proj, and its latent output expanded through the value slice.
/// </summary>
public sealed class LatentAttention : IAttention
{
    /// <summary>transformers builds q_a_layernorm and kv_a_layernorm with the RMSNorm default eps, not the config's.</summary>
    private const float LatentNormEps = 1e-6f;

    private readonly Linear? _qA, _qProj;
    private readonly float[]? _qANorm;
    private readonly Linear _qB, _kvA, _kvB, _o;
    private readonly float[] _kvANorm;
    private readonly Rope _rope;
    private readonly int _heads, _nope, _ropeDim, _vDim, _rank, _qHeadDim;
    /// <summary>Each head's no-RoPE key block of kv_b_proj, transposed: row h·rank + j holds W_kb[h][:, j].</summary>
    private readonly WeightMatrix _kbTransposed;

    public LatentAttention(Linear? qA, float[]? qANorm, Linear qB, Linear kvA, float[] kvANorm, Linear kvB, Linear o, Rope rope, ModelConfig c, bool qIsDirect)
    {
        if (qIsDirect) _qProj = qB; else { _qA = qA; _qANorm = qANorm; }
        (_qB, _kvA, _kvANorm, _kvB, _o, _rope) = (qB, kvA, kvANorm, kvB, o, rope);
        _heads = c.NumHeads;
        _nope = c.QkNopeHeadDim;
        _ropeDim = c.QkRopeHeadDim;
        _vDim = c.VHeadDim;
        _rank = c.KvLoraRank;
        _qHeadDim = _nope + _ropeDim;
        _kbTransposed = TransposeKeyBlocks(kvB.Weight);
    }

    /// <summary>
    /// Built once at load so absorbing a query is a dot product per output rather than a dequantized row per
    /// input; BF16 when kv_b is BF16 (exactly representable), float32 otherwise.
    /// </summary>
    private WeightMatrix TransposeKeyBlocks(WeightMatrix kvB)
    {
        var transposed = new float[(long)_heads * _rank * _nope];
        var row = new float[_rank];
        for (int h = 0; h < _heads; h++)
            for (int d = 0; d < _nope; d++)
            {
                kvB.DequantizeRow(h * (_nope + _vDim) + d, row);
                for (int j = 0; j < _rank; j++) transposed[((long)h * _rank + j) * _nope + d] = row[j];
            }
        if (kvB is not Bf16Matrix) return new F32Matrix(transposed, _heads * _rank, _nope);
        var bits = new ushort[transposed.Length];
        Glm.Kernels.Formats.BFloat16.FromFloat(transposed, bits);
        return Bf16Matrix.FromArray(bits, _heads * _rank, _nope);
    }

    public IEnumerable<Linear> Linears => new[] { _qA, _qB, _kvA, _kvB, _o }.OfType<Linear>();

    public static KvLayout CacheLayout(ModelConfig c) =>
        new(c.NumLayers, 1, c.KvLoraRank + c.QkRopeHeadDim, c.KvLoraRank, ValueIsKeyPrefix: true);

    public void Forward(ReadOnlySpan<float> x, ForwardBatch batch, AttentionSequence[] sequences, KvStore cache, int layer, Span<float> output)
    {
        int t = batch.TokenCount, qw = _heads * _qHeadDim, latentW = _rank + _ropeDim;
        using var q = new Pooled<float>((long)t * qw);
        if (_qProj is not null)
        {
            _qProj.Forward(x, t, q.Span);
        }
        else
        {
            using var qa = new Pooled<float>((long)t * _qA!.OutFeatures);
            _qA.Forward(x, t, qa.Span);
            RmsNorm.ApplyRows(qa.Span, t, _qANorm!, LatentNormEps, qa.Span);
            _qB.Forward(qa.Span, t, q.Span);
        }
        using var latent = new Pooled<float>((long)t * latentW);
        _kvA.Forward(x, t, latent.Span);

        Span<float> ropeScratch = stackalloc float[_rope.ScratchLength];
        using var qLatentBuffer = new Pooled<float>((long)t * _heads * latentW); // per head: [absorbed no-RoPE query (rank) | roped query (rope dims)]
        var qLatent = qLatentBuffer.Array;
        for (int i = 0; i < t; i++)
        {
            var li = latent.Span.Slice(i * latentW, latentW);
            RmsNorm.Apply(li[.._rank], _kvANorm, LatentNormEps, li[.._rank]);
            _rope.Apply(li[_rank..], 1, _ropeDim, batch.Positions[i], ropeScratch);
            for (int h = 0; h < _heads; h++)
            {
                var qh = q.Span.Slice(i * qw + h * _qHeadDim, _qHeadDim);
                _rope.Apply(qh[_nope..], 1, _ropeDim, batch.Positions[i], ropeScratch);
                var dst = qLatent.AsSpan((i * _heads + h) * latentW, latentW);
                RowsTimesVector(_kbTransposed, h * _rank, _rank, qh[.._nope], dst[.._rank]);
                qh[_nope..].CopyTo(dst[_rank..]);
            }
        }
        foreach (var s in sequences)
            for (int i = 0; i < s.Count; i++)
                cache.Write(layer, s.Slots[s.FirstPosition + i], latent.Span.Slice((s.Start + i) * latentW, latentW), default);

        using var latentOutBuffer = new Pooled<float>((long)t * _heads * _rank);
        var latentOut = latentOutBuffer.Array;
        PagedAttention.Forward(cache, layer, sequences, qLatent, _heads, latentW, _heads, 1f / MathF.Sqrt(_qHeadDim), latentOut, _rank);

        using var attn = new Pooled<float>((long)t * _heads * _vDim);
        for (int i = 0; i < t; i++)
            for (int h = 0; h < _heads; h++)
                RowsTimesVector(_kvB.Weight, h * (_nope + _vDim) + _nope, _vDim, latentOut.AsSpan((i * _heads + h) * _rank, _rank),
                    attn.Span.Slice((i * _heads + h) * _vDim, _vDim));
        _o.Forward(attn.Span, t, output);
    }

    /// <summary>
    /// y[j] = row(first + j) · x for <paramref name="count"/> consecutive rows, in one call, so a format that
    /// prepares its activations (Int4 quantizes them to int8) does so once for the head rather than once per row.
    /// The arithmetic per element is that of <see cref="WeightMatrix.DotRow"/>.
    /// </summary>
    private static unsafe void RowsTimesVector(WeightMatrix w, int first, int count, ReadOnlySpan<float> x, Span<float> y)
    {
        fixed (float* px = x) fixed (float* py = y)
            w.MultiplyRows(px, 1, py - first, w.Rows, first, first + count); // MultiplyRows writes y[n] for rows n
    }

    public void Dispose()
    {
        foreach (var l in Linears) l.Dispose();
        _kbTransposed.Dispose();
    }
}
