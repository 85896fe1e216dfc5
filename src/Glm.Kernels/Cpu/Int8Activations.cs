using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Glm.Kernels.Cpu;

/// <summary>
/// Activation rows quantized to int8 for the integer dot products of <see cref="Int4Matrix"/>, as llama.cpp does:
/// one absmax scale per weight group (so a group's partial dot stays an exact integer), round to nearest even,
/// codes in [−127, 127]. Codes are laid out to meet the Int4 packing without shuffles: the weights are packed in
/// runs of 32 (byte j holds weight j low, weight j + 16 high), and a kernel step reads <see cref="RunsPerStep"/>
/// runs at once, so each step's activations are stored as the low halves of its runs, then the high halves.
/// The integer code sum of each group is kept for the zero-point term.
/// </summary>
public sealed unsafe class Int8Activations : IDisposable
{
    private byte* _memory;
    private long _capacity;

    /// <summary>This thread's reusable buffer, reshaped and grown when needed: decode steps allocate nothing.</summary>
    [ThreadStatic] private static Int8Activations? t_reusable;

    /// <param name="runsPerStep">1 (a step is one run: natural order) or 2 (two runs per 256-bit step).</param>
    public Int8Activations(int rows, int cols, int groupSize, int runsPerStep) => Reshape(rows, cols, groupSize, runsPerStep);

    /// <summary>
    /// The calling thread's buffer in the given shape. It stays valid until the same thread asks again, so a caller
    /// may hand it to worker threads for the duration of one call.
    /// </summary>
    public static Int8Activations ForThisThread(int rows, int cols, int groupSize, int runsPerStep)
    {
        var buffer = t_reusable;
        if (buffer is null) return t_reusable = new Int8Activations(rows, cols, groupSize, runsPerStep);
        buffer.Reshape(rows, cols, groupSize, runsPerStep);
        return buffer;
    }

    private void Reshape(int rows, int cols, int groupSize, int runsPerStep)
    {
        if (cols % groupSize != 0 || groupSize % (32 * runsPerStep) != 0) throw new ArgumentException($"group {groupSize} does not fit cols {cols} and {runsPerStep} runs per step");
        Rows = rows;
        Cols = cols;
        GroupSize = groupSize;
        Groups = cols / groupSize;
        RunsPerStep = runsPerStep;
        long codeBytes = ((long)rows * cols + 63) & ~63L;
        long groupBytes = (long)rows * Groups * sizeof(float);
        long bytes = codeBytes + 2 * groupBytes;
        if (bytes > _capacity)
        {
            if (_memory != null) NativeMemory.AlignedFree(_memory);
            _memory = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
            _capacity = bytes;
        }
        Codes = (sbyte*)_memory;
        Scales = (float*)(_memory + codeBytes);
        CodeSums = (float*)(_memory + codeBytes + groupBytes);
    }

    public int Rows { get; private set; }
    public int Cols { get; private set; }
    public int GroupSize { get; private set; }
    public int Groups { get; private set; }
    public int RunsPerStep { get; private set; }

    /// <summary>Rows × Cols codes in the step layout.</summary>
    public sbyte* Codes { get; private set; }
    /// <summary>Rows × Groups: x ≈ scale · code within each group.</summary>
    public float* Scales { get; private set; }
    /// <summary>Rows × Groups: Σ code over each group, for the zero-point term (an integer, exact in float: |Σ| ≤ 127·group).</summary>
    public float* CodeSums { get; private set; }

    public sbyte* RowCodes(int row) => Codes + (long)row * Cols;
    public float* RowScales(int row) => Scales + (long)row * Groups;
    public float* RowCodeSums(int row) => CodeSums + (long)row * Groups;

    /// <summary>Quantizes <see cref="Rows"/> rows of <see cref="Cols"/> floats.</summary>
    public void Quantize(float* x)
    {
        for (int r = 0; r < Rows; r++) QuantizeRow(x + (long)r * Cols, RowCodes(r), RowScales(r), RowCodeSums(r), Cols, GroupSize, RunsPerStep);
    }

    /// <summary>Row <paramref name="row"/> as the floats the integer kernels see (scale · code), in natural order.</summary>
    public void Dequantize(int row, Span<float> destination)
    {
        sbyte* codes = RowCodes(row);
        float* scales = RowScales(row);
        for (int k = 0; k < Cols; k += 16)
            for (int j = 0; j < 16; j++) destination[k + j] = scales[k / GroupSize] * codes[Position(k, RunsPerStep) + j];
    }

    /// <summary>
    /// One row. Scales are absmax / 127 (NaN or ∞ in a group make its scale non-finite, so the dot products come
    /// out non-finite as in float arithmetic); codes are round-half-even of x · 127 / absmax.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeRow(float* x, sbyte* codes, float* scales, float* sums, int cols, int groupSize, int runsPerStep)
    {
        int groups = cols / groupSize;
        for (int g = 0; g < groups; g++)
        {
            float* xg = x + g * groupSize;
            float absMax = System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(new ReadOnlySpan<float>(xg, groupSize));
            absMax = MathF.Abs(absMax);
            scales[g] = absMax / 127f;
            float inv = absMax > 0 && float.IsFinite(absMax) ? 127f / absMax : 0f;
            int sum = 0;
            for (int p = 0; p < groupSize; p += 16) sum += QuantizePiece(xg + p, inv, codes + Position(g * groupSize + p, runsPerStep));
            sums[g] = sum;
        }
    }

    /// <summary>Where natural element k (a multiple of 16) lands: its run's step, low or high half, run within the step.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Position(int k, int runsPerStep)
    {
        int run = k >> 5, half = (k >> 4) & 1;
        int step = run / runsPerStep, inStep = run % runsPerStep;
        return step * 32 * runsPerStep + half * 16 * runsPerStep + inStep * 16 + (k & 15);
    }

    /// <summary>16 values to codes, returning their sum; SIMD and scalar round the same product the same way (half to even).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int QuantizePiece(float* x, float inv, sbyte* dst)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            var scale = Vector256.Create(inv);
            var lo = Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(x) * scale));
            var hi = Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(x + 8) * scale));
            var narrowed = Vector256.Narrow(Vector256.Narrow(lo, hi), Vector256<short>.Zero);
            narrowed.GetLower().Store(dst);
            return Vector256.Sum(lo + hi);
        }
        int sum = 0;
        for (int j = 0; j < 16; j++) sum += dst[j] = (sbyte)(int)MathF.Round(x[j] * inv, MidpointRounding.ToEven);
        return sum;
    }

    public void Dispose()
    {
        if (ReferenceEquals(this, t_reusable)) t_reusable = null;
        if (_memory != null) NativeMemory.AlignedFree(_memory);
        _memory = null;
        _capacity = 0;
        GC.SuppressFinalize(this);
    }

    ~Int8Activations() => Dispose();
}
