using Glm.Kernels.Device;

namespace Glm.Models.Architectures;

/// <summary>down_proj(act_fn(gate_proj(x)) * up_proj(x)); glm/glm4 store gate and up fused in one gate_up_proj (gate rows first).</summary>
public sealed class DenseMlp : IDisposable
{
    private readonly IWorker _worker;
    private readonly Linear? _gate, _up, _gateUp;
    private readonly Linear _down;

    public DenseMlp(IWorker worker, Linear gate, Linear up, Linear down)
    {
        (_worker, _gate, _up, _down) = (worker, gate, up, down);
        IntermediateSize = gate.OutFeatures;
    }

    public DenseMlp(IWorker worker, Linear gateUp, Linear down)
    {
        (_worker, _gateUp, _down) = (worker, gateUp, down);
        IntermediateSize = gateUp.OutFeatures / 2;
    }

    public int IntermediateSize { get; }
    public IEnumerable<Linear> Linears => new[] { _gate, _up, _gateUp, _down }.OfType<Linear>();

    public Tensor Forward(Tensor x)
    {
        if (_gateUp is not null)
        {
            using var gateUp = _gateUp.Forward(x);
            using var activated = _worker.SiluMulHalves(gateUp);
            return _down.Forward(activated);
        }
        using var gate = _gate!.Forward(x);
        using var up = _up!.Forward(x);
        _worker.SiluMul(gate, up);
        return _down.Forward(gate);
    }

    public void Dispose()
    {
        foreach (var l in Linears) l.Dispose();
    }
}
