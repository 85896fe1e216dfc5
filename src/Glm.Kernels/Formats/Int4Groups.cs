namespace Glm.Kernels.Formats;

/// <summary>
/// 4-bit group quantization: each run of <c>groupSize</c> weights along K shares a scale and a zero point;
/// w ≈ (u − z) · s with u ∈ 0..15. Symmetric groups use z = 8 and s = absmax / 7.5 (so ±absmax round to the
/// ends of the code range); asymmetric groups use s = (max − min) / 15 and an integer z. Codes are chosen by
/// round-to-nearest-even, so |w − ŵ| ≤ s/2 for symmetric groups and ≤ s for asymmetric ones (z is rounded too).
/// </summary>
public static class Int4Groups
{
    public static void QuantizeGroup(ReadOnlySpan<float> w, bool symmetric, Span<byte> codes, out float scale, out float zero)
    {
        if (symmetric)
        {
            float absMax = 0;
            foreach (float v in w) absMax = MathF.Max(absMax, MathF.Abs(v));
            scale = absMax > 0 ? absMax / 7.5f : 1f;
            zero = 8;
        }
        else
        {
            float min = 0, max = 0; // the grid always contains 0 so exact zeros stay exact
            foreach (float v in w) { min = MathF.Min(min, v); max = MathF.Max(max, v); }
            scale = max > min ? (max - min) / 15f : 1f;
            zero = Math.Clamp(MathF.Round(-min / scale, MidpointRounding.ToEven), 0, 15);
        }
        float inv = 1f / scale;
        for (int i = 0; i < w.Length; i++)
            codes[i] = (byte)Math.Clamp(MathF.Round(w[i] * inv, MidpointRounding.ToEven) + zero, 0, 15);
    }

    /// <summary>The worst-case absolute error of one group's codes.</summary>
    public static float ErrorBound(float scale, bool symmetric) => symmetric ? scale / 2 : scale;
}
