using Glm.Kernels.Cpu;

namespace Glm.Models.Architectures;

/// <summary>down(silu(gate(x)) · up(x)); glm/glm4 store gate and up fused in one matrix (gate rows first).</summary>
public sealed class DenseMlp : IDisposable
{
    private readonly Linear? _gate, _up, _gateUp;
    private readonly Linear _down;

    public DenseMlp(Linear gate, Linear up, Linear down)
    {
        _gate = gate;
        _up = up;
        _down = down;
        IntermediateSize = gate.OutFeatures;
    }

    public DenseMlp(Linear gateUp, Linear down)
    {
        _gateUp = gateUp;
        _down = down;
        IntermediateSize = gateUp.OutFeatures / 2;
    }

    public int IntermediateSize { get; }
    public IEnumerable<Linear> Linears => new[] { _gate, _up, _gateUp, _down }.OfType<Linear>();

    public void Forward(ReadOnlySpan<float> x, int rows, Span<float> output)
    {
        int inter = IntermediateSize;
        using var gate = new Pooled<float>((long)rows * inter);
        using var up = new Pooled<float>((long)rows * inter);
        if (_gateUp is not null)
        {
            using var fused = new Pooled<float>((long)rows * inter * 2);
            _gateUp.Forward(x, rows, fused.Span);
            for (int r = 0; r < rows; r++)
            {
                fused.Span.Slice(r * 2 * inter, inter).CopyTo(gate.Span.Slice(r * inter, inter));
                fused.Span.Slice(r * 2 * inter + inter, inter).CopyTo(up.Span.Slice(r * inter, inter));
            }
        }
        else
        {
            _gate!.Forward(x, rows, gate.Span);
            _up!.Forward(x, rows, up.Span);
        }
        Activations.SiluMul(gate.Span, up.Span, gate.Span);
        _down.Forward(gate.Span, rows, output);
    }

    public void Dispose()
    {
        foreach (var l in Linears) l.Dispose();
    }
}
