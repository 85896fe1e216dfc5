namespace Glm.Kernels.Cpu;

public static class Activations
{
    /// <summary>out[i] = silu(gate[i]) · up[i], silu(g) = g · sigmoid(g).</summary>
    public static void SiluMul(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> output)
    {
        for (int i = 0; i < gate.Length; i++)
        {
            float g = gate[i];
            output[i] = g / (1f + MathF.Exp(-g)) * up[i];
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

    /// <summary>Numerically stable softmax in place.</summary>
    public static void Softmax(Span<float> x)
    {
        float max = float.NegativeInfinity;
        foreach (float v in x) if (v > max) max = v;
        float sum = 0;
        for (int i = 0; i < x.Length; i++)
        {
            float e = MathF.Exp(x[i] - max);
            x[i] = e;
            sum += e;
        }
        float inv = 1f / sum;
        for (int i = 0; i < x.Length; i++) x[i] *= inv;
    }
}
