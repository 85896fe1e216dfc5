namespace Glm.Kernels.Cpu;

/// <summary>Which dimensions of the rotary part form a rotated pair, and where the results go.</summary>
public enum RopeLayout
{
    /// <summary>glm, glm4: pairs (x0,x1),(x2,x3)…, results stay in place.</summary>
    Interleaved,
    /// <summary>glm4_moe (Llama style rotate_half): pairs (x_i, x_{i+d/2}).</summary>
    HalfSplit,
    /// <summary>glm4_moe_lite with rope_interleave: pairs (x0,x1)…, results written de-interleaved (evens then odds).</summary>
    InterleavedToHalf,
}

/// <summary>Rotary embedding over the first <see cref="RotaryDim"/> dims of each head; cos/sin tables per position.</summary>
public sealed class Rope
{
    private readonly float[] _invFreq;

    /// <param name="bf16Frequencies">
    /// Round the inverse frequencies to BF16. transformers keeps <c>inv_freq</c> as a module buffer, which is cast
    /// with the model to the checkpoint dtype when a BF16 checkpoint loads; its float32 outputs (and the fixtures)
    /// therefore use BF16-rounded frequencies. Without the rounding, logits drift by up to 4e-3 relative at 300 tokens.
    /// </param>
    public Rope(int rotaryDim, double theta, RopeLayout layout, bool bf16Frequencies = false)
    {
        if (rotaryDim % 2 != 0) throw new ArgumentException("rotary dim must be even", nameof(rotaryDim));
        RotaryDim = rotaryDim;
        Layout = layout;
        _invFreq = new float[rotaryDim / 2];
        // As transformers: exponents and the power in float32.
        for (int i = 0; i < _invFreq.Length; i++)
            _invFreq[i] = 1f / MathF.Pow((float)theta, (2f * i) / rotaryDim);
        if (bf16Frequencies)
            for (int i = 0; i < _invFreq.Length; i++) _invFreq[i] = Formats.BFloat16.ToFloat(Formats.BFloat16.FromFloat(_invFreq[i]));
    }

    public int RotaryDim { get; }
    public RopeLayout Layout { get; }
    /// <summary>The inverse frequency of each rotated pair (what a GPU worker uploads once).</summary>
    public ReadOnlySpan<float> InverseFrequencies => _invFreq;

    /// <summary>Rotates the rotary part of <paramref name="heads"/> consecutive heads of width <paramref name="headDim"/> in place.</summary>
    public void Apply(Span<float> x, int heads, int headDim, int position, Span<float> scratch)
    {
        int half = RotaryDim / 2;
        Span<float> cos = scratch[..half], sin = scratch.Slice(half, half), tmp = scratch.Slice(RotaryDim, RotaryDim);
        for (int i = 0; i < half; i++)
        {
            float angle = position * _invFreq[i];
            cos[i] = MathF.Cos(angle);
            sin[i] = MathF.Sin(angle);
        }
        for (int h = 0; h < heads; h++)
        {
            var v = x.Slice(h * headDim, RotaryDim);
            switch (Layout)
            {
                case RopeLayout.Interleaved:
                    for (int i = 0; i < half; i++)
                    {
                        float a = v[2 * i], b = v[2 * i + 1];
                        v[2 * i] = a * cos[i] - b * sin[i];
                        v[2 * i + 1] = b * cos[i] + a * sin[i];
                    }
                    break;
                case RopeLayout.HalfSplit:
                    for (int i = 0; i < half; i++)
                    {
                        float a = v[i], b = v[i + half];
                        v[i] = a * cos[i] - b * sin[i];
                        v[i + half] = b * cos[i] + a * sin[i];
                    }
                    break;
                case RopeLayout.InterleavedToHalf:
                    v.CopyTo(tmp);
                    for (int i = 0; i < half; i++)
                    {
                        float a = tmp[2 * i], b = tmp[2 * i + 1];
                        v[i] = a * cos[i] - b * sin[i];
                        v[i + half] = b * cos[i] + a * sin[i];
                    }
                    break;
            }
        }
    }

    /// <summary>Scratch floats <see cref="Apply"/> needs.</summary>
    public int ScratchLength => RotaryDim * 2;
}
