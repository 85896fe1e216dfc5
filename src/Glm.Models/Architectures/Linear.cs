using Glm.Kernels.Cpu;

namespace Glm.Models.Architectures;

/// <summary>y = x·Wᵀ + b over a batch of rows.</summary>
public sealed class Linear(WeightMatrix weight, float[]? bias) : IDisposable
{
    public WeightMatrix Weight { get; } = weight;
    public float[]? Bias { get; } = bias;
    public int InFeatures => Weight.Cols;
    public int OutFeatures => Weight.Rows;

    public void Forward(ReadOnlySpan<float> x, int rows, Span<float> y) => MatMul.Multiply(Weight, x, rows, y, Bias);

    public void Dispose() => Weight.Dispose();
}
