using System.Numerics.Tensors;

namespace Glm.Kernels.Cpu;

public static class Activations
{
    /// <summary>
    /// out[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + exp(−g)), vectorized a stretch of 256 at a time (the exp
    /// within an ulp of MathF.Exp); <paramref name="output"/> may be <paramref name="gate"/>.
    /// </summary>
    public static void SiluMul(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> output)
    {
        Span<float> denominator = stackalloc float[256];
        for (int start = 0; start < gate.Length; start += 256)
        {
            int n = Math.Min(256, gate.Length - start);
            var g = gate.Slice(start, n);
            var d = denominator[..n];
            TensorPrimitives.Negate(g, d);
            TensorPrimitives.Exp(d, d);
            TensorPrimitives.Add(d, 1f, d);
            var o = output.Slice(start, n);
            TensorPrimitives.Divide(g, d, o);
            TensorPrimitives.Multiply(o, up.Slice(start, n), o);
        }
    }

    public static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));

    /// <summary>Index of the largest value; the first wins a tie, as torch.argmax does.</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>log Σ exp(x), in double, shifted by the maximum for stability.</summary>
    public static double LogSumExp(ReadOnlySpan<float> x)
    {
        float max = float.NegativeInfinity;
        foreach (float v in x) if (v > max) max = v;
        double sum = 0;
        foreach (float v in x) sum += Math.Exp(v - max);
        return max + Math.Log(sum);
    }

    /// <summary>
    /// Numerically stable softmax in place, vectorized (TensorPrimitives' exp, within an ulp of MathF.Exp): attention
    /// over long contexts spent a quarter of its time in the scalar loops (1.8 ns an element; now about 0.9). A row's
    /// values depend only on the row.
    /// </summary>
    public static void Softmax(Span<float> x)
    {
        if (x.IsEmpty) return;
        float max = TensorPrimitives.Max(x); // a NaN makes the whole row NaN, as it did with the scalar form
        TensorPrimitives.Subtract(x, max, x);
        TensorPrimitives.Exp(x, x);
        TensorPrimitives.Multiply(x, 1f / TensorPrimitives.Sum(x), x);
    }
}
