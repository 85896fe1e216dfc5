using System.Numerics.Tensors;

namespace Glm.Kernels.Cpu;

public static class RmsNorm
{
    /// <summary>out = x · rsqrt(mean(x²) + eps) · weight, in float32; <paramref name="output"/> may alias <paramref name="x"/>.</summary>
    public static void Apply(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> output)
    {
        float meanSquare = TensorPrimitives.SumOfSquares(x) / x.Length;
        float scale = 1f / MathF.Sqrt(meanSquare + eps);
        TensorPrimitives.Multiply(x, scale, output);
        TensorPrimitives.Multiply(output[..x.Length], weight, output);
    }

    /// <summary>Normalises each of <paramref name="rows"/> consecutive rows of width weight.Length.</summary>
    public static void ApplyRows(ReadOnlySpan<float> x, int rows, ReadOnlySpan<float> weight, float eps, Span<float> output)
    {
        int d = weight.Length;
        for (int r = 0; r < rows; r++) Apply(x.Slice(r * d, d), weight, eps, output.Slice(r * d, d));
    }
}
