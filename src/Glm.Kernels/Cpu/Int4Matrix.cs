using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Glm.Kernels.Formats;

namespace Glm.Kernels.Cpu;

/// <summary>How an Int4 matrix meets its activations.</summary>
public enum Int4Activations
{
    /// <summary>Activations quantized to int8 per weight group, integer dot products (as llama.cpp): memory-bound decode.</summary>
    Int8,
    /// <summary>Weights widened to float in registers: exact against the dequantized weights, about a third of the speed.</summary>
    Float,
}

/// <summary>
/// Int4 weights in groups along K (32, 64 or 128), with a float scale and an integer zero point per group. Codes
/// are packed for SIMD: within each run of 32 weights, byte j holds weight j in its low nibble and weight j + 16
/// in its high nibble. A row's dot product is Σ_g s_g · (Σ_{i∈g} x_i·u_i − z_g · Σ_{i∈g} x_i).
/// </summary>
public sealed unsafe partial class Int4Matrix : WeightMatrix
{
    private readonly WeightMemory _codes; // Rows × Cols/2
    private readonly float[] _scales; // Rows × Groups
    private readonly float[] _zeros;  // Rows × Groups, integers 0..15
    private readonly float[] _scaledZeros; // s·z per group, so the float path's zero-point term is one short dot per row
    private readonly byte* _pCodes;
    private readonly float* _pScales, _pZeros; // the arrays are pinned
    private readonly float[] _symmetricZeros; // one row of 8s: symmetric rows read their zero points from L1, not memory
    private readonly float* _pSymmetricZeros;
    private readonly int _groups;

    private Int4Matrix(int rows, int cols, int groupSize, bool symmetric, WeightMemory codes, float[] scales, float[] zeros) : base(rows, cols)
    {
        GroupSize = groupSize;
        Symmetric = symmetric;
        _groups = cols / groupSize;
        _codes = codes;
        _scales = scales;
        _zeros = zeros;
        _scaledZeros = new float[scales.Length];
        for (int i = 0; i < scales.Length; i++) _scaledZeros[i] = scales[i] * zeros[i];
        _pCodes = codes.Pointer;
        fixed (float* p = _scales) _pScales = p;
        fixed (float* p = _zeros) _pZeros = p;
        _symmetricZeros = GC.AllocateArray<float>(_groups, pinned: true);
        Array.Fill(_symmetricZeros, 8f);
        fixed (float* p = _symmetricZeros) _pSymmetricZeros = p;
    }

    public int GroupSize { get; }
    public bool Symmetric { get; }

    /// <summary>Int8 (the default) or float activations; see <see cref="Int4Activations"/>.</summary>
    public Int4Activations Activations { get; set; } = Int4Activations.Int8;
    public override string Format => $"int4-g{GroupSize}{(Symmetric ? "" : "-asym")}";
    /// <summary>Row <paramref name="row"/>'s zero points; symmetric matrices share one row of 8s.</summary>
    private float* RowZeros(int row) => Symmetric ? _pSymmetricZeros : _pZeros + (long)row * _groups;

    public override long ByteSize => _codes.Length + (_scales.LongLength + (Symmetric ? 0 : _zeros.LongLength)) * 4;
    public ReadOnlySpan<float> Scales => _scales;
    public ReadOnlySpan<float> Zeros => _zeros;
    /// <summary>The packed codes as stored (what the CUDA worker uploads as is).</summary>
    public ReadOnlySpan<byte> PackedCodes => _codes.Span;

    public static bool Supports(int cols, int groupSize) => groupSize % 32 == 0 && groupSize > 0 && cols % groupSize == 0;

    /// <summary>Quantizes float weights [rows, cols] (round to nearest even).</summary>
    /// <remarks>Rows are quantized on <see cref="MatMul.Threads"/> threads (each row's codes and scales are its own), so loading scales with the cores.</remarks>
    public static Int4Matrix Quantize(ReadOnlySpan<float> weights, int rows, int cols, int groupSize, bool symmetric)
    {
        var m = Allocate(rows, cols, groupSize, symmetric);
        unsafe
        {
            fixed (float* pw = weights)
            {
                nint source = (nint)pw;
                MatMul.ForEachChunk(rows, (long)cols * 8, (start, end) =>
                {
                    var codes = new byte[groupSize];
                    var w = new ReadOnlySpan<float>((float*)source, checked(rows * cols));
                    for (int r = start; r < end; r++)
                        for (int g = 0; g < m._groups; g++)
                        {
                            Int4Groups.QuantizeGroup(w.Slice(r * cols + g * groupSize, groupSize), symmetric, codes, out float s, out float z);
                            m.SetGroup(r, g, codes, s, z);
                        }
                });
            }
        }
        return m;
    }

    /// <summary>An empty matrix that loaders fill group by group with <see cref="SetGroup"/>.</summary>
    public static Int4Matrix Allocate(int rows, int cols, int groupSize, bool symmetric)
    {
        if (!Supports(cols, groupSize)) throw new ArgumentException($"cols {cols} is not a multiple of group size {groupSize} (itself a multiple of 32)");
        int groups = cols / groupSize;
        return new Int4Matrix(rows, cols, groupSize, symmetric,
            new WeightMemory((long)rows * cols / 2), GC.AllocateArray<float>(rows * groups, pinned: true), GC.AllocateArray<float>(rows * groups, pinned: true));
    }

    /// <summary>Sets one group's unsigned codes (0..15, in natural order), scale and integer zero point (0..15).</summary>
    public void SetGroup(int row, int group, ReadOnlySpan<byte> codes, float scale, float zero)
    {
        if (zero != MathF.Round(zero) || zero < 0 || zero > 15) throw new ArgumentOutOfRangeException(nameof(zero), zero, "Int4 zero points are integer codes 0..15");
        if (Symmetric && zero != 8) throw new ArgumentOutOfRangeException(nameof(zero), zero, "symmetric Int4 groups have zero point 8");
        _scales[row * _groups + group] = scale;
        _zeros[row * _groups + group] = zero;
        _scaledZeros[row * _groups + group] = scale * zero;
        int start = group * GroupSize;
        for (int i = 0; i < GroupSize; i++) SetCode(row, start + i, codes[i]);
    }

    private void SetCode(int row, int col, byte code)
    {
        long block = ((long)row * Cols + col) / 32 * 16;
        int j = col % 32;
        ref byte b = ref _pCodes[block + (j & 15)];
        b = j < 16 ? (byte)((b & 0xF0) | code) : (byte)((b & 0x0F) | (code << 4));
    }

    /// <summary>Unsigned code (0..15) of one weight.</summary>
    public int Code(int row, int col) => GetCode(row, col);
    public float Scale(int row, int group) => _scales[row * _groups + group];
    public float Zero(int row, int group) => _zeros[row * _groups + group];

    private int GetCode(int row, int col)
    {
        long block = ((long)row * Cols + col) / 32 * 16;
        int j = col % 32;
        byte b = _pCodes[block + (j & 15)];
        return j < 16 ? b & 15 : b >> 4;
    }

    public override void DequantizeRow(int row, Span<float> destination)
    {
        for (int c = 0; c < Cols; c++)
        {
            int g = row * _groups + c / GroupSize;
            destination[c] = (GetCode(row, c) - _zeros[g]) * _scales[g];
        }
    }

    public override float DotRow(int row, float* x)
    {
        if (Activations == Int4Activations.Float)
        {
            float* sums = stackalloc float[_groups];
            GroupSums(x, sums);
            return DotRowFloat(row, x, sums);
        }
        int runs = RunsPerStep;
        sbyte* codes = stackalloc sbyte[Cols];
        float* scales = stackalloc float[_groups];
        float* codeSums = stackalloc float[_groups];
        Int8Activations.QuantizeRow(x, codes, scales, codeSums, Cols, GroupSize, runs);
        return DotRowInt8(row, codes, scales, codeSums);
    }

    /// <summary>The activations are quantized once per call (not once per thread's share of the rows).</summary>
    public override void Multiply(float* x, int m, float* y)
    {
        if (Activations == Int4Activations.Float) base.Multiply(x, m, y);
        else MultiplyInt8(x, m, y, onThisThread: false);
    }

    public override void MultiplyOnThisThread(float* x, int m, float* y)
    {
        if (Activations == Int4Activations.Float) base.MultiplyOnThisThread(x, m, y);
        else MultiplyInt8(x, m, y, onThisThread: true);
    }

    private void MultiplyInt8(float* x, int m, float* y, bool onThisThread)
    {
        var activations = Int8Activations.ForThisThread(m, Cols, GroupSize, RunsPerStep);
        activations.Quantize(x);
        nint py = (nint)y;
        if (onThisThread) MultiplyInt8Blocked(activations, y, 0, Rows);
        else MatMul.ForEachRowRange(this, m, (start, end) => MultiplyInt8Blocked(activations, (float*)py, start, end));
        GC.KeepAlive(this); // the codes are native memory freed by a finalizer: keep it until the kernels are done
    }

    /// <summary>Weight rows [start, end) against all the quantized rows, <see cref="WeightMatrix.ActivationBlockRows"/> at a time.</summary>
    private void MultiplyInt8Blocked(Int8Activations activations, float* y, int start, int end)
    {
        int m = activations.Rows, block = ActivationBlockRows(Cols); // one byte per int8 code
        for (int i = 0; i < m; i += block) MultiplyRowsInt8(activations, i, Math.Min(m, i + block), y, Rows, start, end);
    }

    public override void MultiplyRows(float* x, int m, float* y, int yStride, int rowStart, int rowEnd)
    {
        if (Activations == Int4Activations.Int8)
        {
            var activations = Int8Activations.ForThisThread(m, Cols, GroupSize, RunsPerStep);
            activations.Quantize(x);
            MultiplyRowsInt8(activations, 0, m, y, yStride, rowStart, rowEnd);
            GC.KeepAlive(this);
            return;
        }
        float* sums = stackalloc float[m * _groups];
        for (int i = 0; i < m; i++) GroupSums(x + (long)i * Cols, sums + i * _groups);
        for (int n = rowStart; n < rowEnd; n++)
            for (int i = 0; i < m; i++)
                y[(long)i * yStride + n] = DotRowFloat(n, x + (long)i * Cols, sums + i * _groups);
        GC.KeepAlive(this);
    }

    private void GroupSums(float* x, float* sums)
    {
        for (int g = 0; g < _groups; g++)
            sums[g] = System.Numerics.Tensors.TensorPrimitives.Sum(new ReadOnlySpan<float>(x + g * GroupSize, GroupSize));
    }

    /// <summary>
    /// Σ_g s_g·Σ_{i∈g} x_i·u_i − Σ_g (s_g·z_g)·Σ_{i∈g} x_i. The first sum stays in a vector register across groups
    /// (one broadcast multiply-add per group, no horizontal sum per group); the second is a short scalar dot.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private float DotRowFloat(int row, float* x, float* sums)
    {
        byte* codes = _pCodes + (long)row * Cols / 2;
        int baseIndex = row * _groups;
        float zeroTerm = 0;
        for (int g = 0; g < _groups; g++) zeroTerm = MathF.FusedMultiplyAdd(_scaledZeros[baseIndex + g], sums[g], zeroTerm);
        float dot;
        if (Avx512F.IsSupported && GroupSize % 64 == 0) dot = DotAvx512(codes, x, baseIndex);
        else if (Avx2.IsSupported && Fma.IsSupported) dot = DotAvx2(codes, x, baseIndex);
        else
        {
            dot = 0;
            for (int g = 0; g < _groups; g++)
                dot = MathF.FusedMultiplyAdd(_scales[baseIndex + g], GroupDotScalar(codes + g * GroupSize / 2, x + g * GroupSize, GroupSize), dot);
        }
        return dot - zeroTerm;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private float DotAvx2(byte* codes, float* x, int baseIndex)
    {
        Vector256<float> total = default;
        var mask = Vector128.Create((byte)0x0F);
        for (int g = 0; g < _groups; g++)
        {
            Vector256<float> a0 = default, a1 = default;
            for (int i = 0; i < GroupSize; i += 32, codes += 16, x += 32)
            {
                var packed = Sse2.LoadVector128(codes);
                var lo = Sse2.And(packed, mask);
                var hi = Sse2.And(Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte(), mask);
                a0 = Fma.MultiplyAdd(Avx.LoadVector256(x), Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(lo)), a0);
                a1 = Fma.MultiplyAdd(Avx.LoadVector256(x + 8), Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(lo, 8))), a1);
                a0 = Fma.MultiplyAdd(Avx.LoadVector256(x + 16), Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(hi)), a0);
                a1 = Fma.MultiplyAdd(Avx.LoadVector256(x + 24), Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(hi, 8))), a1);
            }
            total = Fma.MultiplyAdd(a0 + a1, Vector256.Create(_scales[baseIndex + g]), total);
        }
        return Vector256.Sum(total);
    }

    /// <summary>
    /// 64 weights (two packed runs, 32 bytes) per step: low nibbles are weights 0–15 of each run, high nibbles
    /// weights 16–31, so the four widened vectors meet x at offsets 0, 32, 16 and 48.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private float DotAvx512(byte* codes, float* x, int baseIndex)
    {
        Vector512<float> total = default;
        var mask = Vector256.Create((byte)0x0F);
        for (int g = 0; g < _groups; g++)
        {
            Vector512<float> a0 = default, a1 = default;
            for (int i = 0; i < GroupSize; i += 64, codes += 32, x += 64)
            {
                var packed = Avx.LoadVector256(codes);
                var lo = Avx2.And(packed, mask);
                var hi = Avx2.And(Avx2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte(), mask);
                a0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x), Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(lo.GetLower())), a0);
                a1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + 32), Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(lo.GetUpper())), a1);
                a0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + 16), Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(hi.GetLower())), a0);
                a1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + 48), Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(hi.GetUpper())), a1);
            }
            total = Avx512F.FusedMultiplyAdd(a0 + a1, Vector512.Create(_scales[baseIndex + g]), total);
        }
        return Vector512.Sum(total);
    }

    public override void Dispose()
    {
        _codes.Dispose();
        base.Dispose();
    }

    private static float GroupDotScalar(byte* codes, float* x, int n)
    {
        float acc = 0;
        for (int i = 0; i < n; i += 32, codes += 16, x += 32)
            for (int j = 0; j < 16; j++)
            {
                acc = MathF.FusedMultiplyAdd(x[j], codes[j] & 15, acc);
                acc = MathF.FusedMultiplyAdd(x[j + 16], codes[j] >> 4, acc);
            }
        return acc;
    }
}
