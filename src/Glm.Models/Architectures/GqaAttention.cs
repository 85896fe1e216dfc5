using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;
using Glm.Kernels.Device;

namespace Glm.Models.Architectures;

/// <summary>Grouped-query attention with biased q/k/v, optional per-head QK-norm and partial RoPE (glm, glm4, glm4_moe).</summary>
public sealed class GqaAttention : IAttention
{
    private readonly IWorker _worker;
    private readonly Linear _q, _k, _v, _o;
    private readonly DeviceVector? _qNorm, _kNorm;
    private readonly float _eps;
    private readonly Rope _rope;
    private readonly int _heads, _kvHeads, _headDim;

    public GqaAttention(IWorker worker, Linear q, Linear k, Linear v, Linear o, DeviceVector? qNorm, DeviceVector? kNorm, Rope rope, ModelConfig c)
    {
        (_worker, _q, _k, _v, _o, _qNorm, _kNorm, _rope) = (worker, q, k, v, o, qNorm, kNorm, rope);
        _eps = c.RmsNormEps;
        _heads = c.NumHeads;
        _kvHeads = c.NumKvHeads;
        _headDim = c.HeadDim;
    }

    public IEnumerable<Linear> Linears => [_q, _k, _v, _o];

    public static KvLayout CacheLayout(ModelConfig c) => new(c.NumLayers, c.NumKvHeads, c.HeadDim, c.HeadDim, false);

    public Tensor Forward(Tensor hiddenStates, StepSequences step, DeviceKvCache cache, int layer)
    {
        using var query = _q.Forward(hiddenStates);
        using var key = _k.Forward(hiddenStates);
        using var value = _v.Forward(hiddenStates);
        var queryHeads = query.Heads(_heads, _headDim);
        var keyHeads = key.Heads(_kvHeads, _headDim);
        if (_qNorm is not null) _worker.RmsNormInPlace(queryHeads, _qNorm, _eps);
        if (_kNorm is not null) _worker.RmsNormInPlace(keyHeads, _kNorm, _eps);
        _worker.Rope(queryHeads, _rope, step);
        _worker.Rope(keyHeads, _rope, step);
        _worker.WriteKv(cache, layer, step, key, value);

        using var attention = _worker.PagedAttention(cache, layer, step, query, _heads, _headDim, _heads / _kvHeads, 1f / MathF.Sqrt(_headDim), _headDim);
        return _o.Forward(attention);
    }

    public void Dispose()
    {
        foreach (var l in Linears) l.Dispose();
        _qNorm?.Dispose();
        _kNorm?.Dispose();
    }
}
