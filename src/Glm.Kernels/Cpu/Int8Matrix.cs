using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Glm.Kernels.Cpu;

/// <summary>Int8 codes, widened by a sign extension and a conversion to float32 (two instructions for 8 weights).</summary>
internal readonly unsafe struct Int8Row : IRow8
{
    public static int ElementBytes => 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(void* row, int i) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32((sbyte*)row + i));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(void* row, int i) => ((sbyte*)row)[i];
}

/// <summary>
/// Symmetric int8 weights with one float32 scale per output channel (row): w = code · scale, code in [-127, 127],
/// scale = absmax(row) / 127 (compressed-tensors' int-quantized "channel" strategy). Half the bytes of BF16, meant
/// for the LM head and embeddings, where per-channel int8 keeps far less quantization noise than FP8's three
/// mantissa bits. Activations meet it as <see cref="Activations"/> says: quantized to int8 per group of
/// <see cref="ActivationGroup"/> (as llama.cpp's Q8_0 x Q8_0), y = s_w · Σ_g a_g · Σ_{k∈g} q_k·c_k with exact integer
/// group sums (vpsignb/vpabsb, vpmaddubsw, vpmaddwd); or in float32 over the codes widened in registers (the
/// <see cref="Lanes8"/> kernels; exact against the dequantized weights). Either way a row's bits do not depend on
/// the batch, and the scale multiplies each finished sum once.
/// </summary>
public sealed unsafe class Int8Matrix : WeightMatrix
{
    public const int MaxCode = 127;

    private readonly WeightMemory _codes;
    private readonly sbyte* _pCodes;
    private readonly float[] _scales;

    private Int8Matrix(int rows, int cols, float[] scales) : base(rows, cols)
    {
        if (scales.Length != rows) throw new ArgumentException($"expected {rows} scales (one a row), got {scales.Length}", nameof(scales));
        _codes = new WeightMemory((long)rows * cols);
        _pCodes = (sbyte*)_codes.Pointer;
        _scales = GC.AllocateArray<float>(rows, pinned: true);
        scales.CopyTo(_scales, 0);
        ActivationGroup = cols % 128 == 0 ? 128 : cols % 64 == 0 ? 64 : cols % 32 == 0 ? 32 : 0;
    }

    /// <summary>A matrix over stored codes (row-major, [rows, cols]) and their per-row scales, as a checkpoint holds them.</summary>
    public Int8Matrix(ReadOnlySpan<sbyte> codes, int rows, int cols, float[] scales) : this(rows, cols, scales)
    {
        if (codes.Length != (long)rows * cols) throw new ArgumentException("codes size mismatch", nameof(codes));
        codes.CopyTo(new Span<sbyte>(_pCodes, codes.Length));
    }

    public sbyte Code(int row, int col) => _pCodes[(long)row * Cols + col];
    public ReadOnlySpan<sbyte> Codes => new(_pCodes, checked(Rows * Cols));
    /// <summary>One scale per row.</summary>
    public ReadOnlySpan<float> Scales => _scales;
    public override string Format => "int8-channel";
    public override long ByteSize => _codes.Length + _scales.LongLength * 4;

    /// <summary>
    /// Int8 (the default where the width splits into groups of 32 or more) or float activations. The setting is
    /// named for Int4, whose option (--int4-activations) it shares: both integer formats meet activations alike.
    /// </summary>
    public Int4Activations Activations
    {
        get => ActivationGroup == 0 ? Int4Activations.Float : _activations;
        set => _activations = value;
    }
    private Int4Activations _activations = Int4Activations.Int8;

    /// <summary>Activation elements per int8 scale: 128, 64 or 32, the largest that divides the width; 0 if none does (float activations only).</summary>
    public int ActivationGroup { get; }

    private int Groups => Cols / ActivationGroup;

    /// <summary>absmax / 127 per row, codes rounded to nearest even; rows quantized on every core.</summary>
    public static Int8Matrix Quantize(ReadOnlySpan<float> w, int rows, int cols)
    {
        if (w.Length != (long)rows * cols) throw new ArgumentException("size mismatch", nameof(w));
        var m = new Int8Matrix(rows, cols, new float[rows]);
        fixed (float* pw = w)
        {
            nint source = (nint)pw;
            MatMul.ForEachChunk(rows, cols, (first, last) =>
            {
                for (int r = first; r < last; r++)
                {
                    var row = new ReadOnlySpan<float>((float*)source + (long)r * cols, cols);
                    float max = 0;
                    foreach (float v in row) max = MathF.Max(max, MathF.Abs(v));
                    float scale = max > 0 ? max / MaxCode : 1f;
                    m._scales[r] = scale;
                    sbyte* codes = m._pCodes + (long)r * cols;
                    for (int c = 0; c < cols; c++) codes[c] = (sbyte)Math.Clamp(MathF.Round(row[c] / scale, MidpointRounding.ToEven), -MaxCode, MaxCode);
                }
            });
        }
        return m;
    }

    public override void DequantizeRow(int row, Span<float> destination)
    {
        sbyte* codes = _pCodes + (long)row * Cols;
        float scale = _scales[row];
        for (int c = 0; c < Cols; c++) destination[c] = codes[c] * scale;
    }

    public override float DotRow(int row, float* x)
    {
        if (Activations == Int4Activations.Float) return DotRowFloat(row, x);
        sbyte* codes = stackalloc sbyte[Cols];
        float* scales = stackalloc float[Groups];
        float* sums = stackalloc float[Groups];
        Int8Activations.QuantizeRow(x, codes, scales, sums, Cols, ActivationGroup, runsPerStep: 1);
        return DotRowInt8(row, codes, scales);
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

    public override void MultiplyRows(float* x, int m, float* y, int yStride, int rowStart, int rowEnd)
    {
        if (Activations == Int4Activations.Int8)
        {
            var activations = Int8Activations.ForThisThread(m, Cols, ActivationGroup, runsPerStep: 1);
            activations.Quantize(x);
            MultiplyRowsInt8(activations, 0, m, y, yStride, rowStart, rowEnd);
        }
        else if (Lanes8.Supported)
        {
            Lanes8.Multiply<Int8Row>(x, m, Cols, (byte*)_pCodes, Cols, y, yStride, rowStart, rowEnd);
            for (int i = 0; i < m; i++)
            {
                float* yi = y + (long)i * yStride;
                for (int n = rowStart; n < rowEnd; n++) yi[n] *= _scales[n];
            }
        }
        else base.MultiplyRows(x, m, y, yStride, rowStart, rowEnd);
        GC.KeepAlive(this);
    }

    private void MultiplyInt8(float* x, int m, float* y, bool onThisThread)
    {
        var activations = Int8Activations.ForThisThread(m, Cols, ActivationGroup, runsPerStep: 1);
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

    private float DotRowFloat(int row, float* x)
    {
        sbyte* codes = _pCodes + (long)row * Cols;
        if (Lanes8.Supported) return Lanes8.Dot<Int8Row>(x, codes, Cols) * _scales[row];
        float sum = 0;
        for (int c = 0; c < Cols; c++) sum = MathF.FusedMultiplyAdd(x[c], codes[c], sum);
        return sum * _scales[row];
    }

    /// <summary>
    /// y[i, n] for activation rows [first, last) and weight rows [rowStart, rowEnd): decode (one activation row)
    /// four weight rows at a time, batches four activation rows against each weight row; the rest one by one.
    /// </summary>
    private void MultiplyRowsInt8(Int8Activations act, int first, int last, float* y, int yStride, int rowStart, int rowEnd)
    {
        if (!Lanes8.Supported)
        {
            for (int n = rowStart; n < rowEnd; n++)
                for (int i = first; i < last; i++) y[(long)i * yStride + n] = DotRowInt8(n, act.RowCodes(i), act.RowScales(i));
            return;
        }
        int row = rowStart;
        if (last - first == 1)
        {
            for (; row + 4 <= rowEnd; row += 4) Tile1x4(row, act.RowCodes(first), act.RowScales(first), y + (long)first * yStride + row);
            for (; row < rowEnd; row++) y[(long)first * yStride + row] = DotRowInt8(row, act.RowCodes(first), act.RowScales(first));
            return;
        }
        for (; row < rowEnd; row++)
        {
            int i = first;
            for (; i + 4 <= last; i += 4) Tile4x1(row, act, i, y + (long)i * yStride + row, yStride);
            for (; i < last; i++) y[(long)i * yStride + row] = DotRowInt8(row, act.RowCodes(i), act.RowScales(i));
        }
    }

    /// <summary>
    /// |w| · sign(a, w) summed in pairs (vpmaddubsw: at most 2 · 127 · 127 = 32,258, no saturation), widened to int32
    /// lanes against ones: 32 products of a group added to <paramref name="acc"/>, exactly.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dot32(Vector256<int> acc, Vector256<sbyte> w, Vector256<byte> absW, Vector256<sbyte> a) =>
        Avx2.Add(acc, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, Avx2.Sign(a, w)), Vector256.Create((short)1)));

    /// <summary>
    /// One activation row against one weight row: each group's int32 lanes, converted and multiplied by the group's
    /// activation scale into float lanes, summed once at the end and scaled by the row's. Every kernel does the
    /// same per lane, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private float DotRowInt8(int row, sbyte* a, float* aScales)
    {
        sbyte* w = _pCodes + (long)row * Cols;
        int group = ActivationGroup;
        if (!Lanes8.Supported)
        {
            float total = 0;
            for (int g = 0, k = 0; g < Groups; g++)
            {
                int dot = 0;
                for (int end = k + group; k < end; k++) dot += w[k] * a[k];
                total = MathF.FusedMultiplyAdd(dot, aScales[g], total);
            }
            return total * _scales[row];
        }
        Vector256<float> f = default;
        for (int g = 0, k = 0; g < Groups; g++)
        {
            Vector256<int> acc = default;
            for (int end = k + group; k < end; k += 32)
            {
                var wv = Avx.LoadVector256(w + k);
                acc = Dot32(acc, wv, Avx2.Abs(wv), Avx.LoadVector256(a + k));
            }
            f = Fma.MultiplyAdd(Avx.ConvertToVector256Single(acc), Vector256.Create(aScales[g]), f);
        }
        return Vector256.Sum(f) * _scales[row];
    }

    /// <summary>How far ahead decode asks for each weight stream (as the other decode kernels).</summary>
    private const int PrefetchBytes = 8192;

    /// <summary>Decode: one activation row against weight rows row..row+3, each activation load serving four; each as <see cref="DotRowInt8"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Tile1x4(int row, sbyte* a, float* aScales, float* y)
    {
        long k0 = Cols;
        sbyte* w0 = _pCodes + row * k0, w1 = w0 + k0, w2 = w1 + k0, w3 = w2 + k0;
        int group = ActivationGroup;
        Vector256<float> f0 = default, f1 = default, f2 = default, f3 = default;
        for (int g = 0, k = 0; g < Groups; g++)
        {
            Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
            for (int end = k + group; k < end; k += 32)
            {
                if ((k & 63) == 0)
                {
                    Sse.Prefetch0(w0 + k + PrefetchBytes);
                    Sse.Prefetch0(w1 + k + PrefetchBytes);
                    Sse.Prefetch0(w2 + k + PrefetchBytes);
                    Sse.Prefetch0(w3 + k + PrefetchBytes);
                }
                var av = Avx.LoadVector256(a + k);
                var wv = Avx.LoadVector256(w0 + k);
                i0 = Dot32(i0, wv, Avx2.Abs(wv), av);
                wv = Avx.LoadVector256(w1 + k);
                i1 = Dot32(i1, wv, Avx2.Abs(wv), av);
                wv = Avx.LoadVector256(w2 + k);
                i2 = Dot32(i2, wv, Avx2.Abs(wv), av);
                wv = Avx.LoadVector256(w3 + k);
                i3 = Dot32(i3, wv, Avx2.Abs(wv), av);
            }
            var s = Vector256.Create(aScales[g]);
            f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), s, f0);
            f1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), s, f1);
            f2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), s, f2);
            f3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), s, f3);
        }
        y[0] = Vector256.Sum(f0) * _scales[row];
        y[1] = Vector256.Sum(f1) * _scales[row + 1];
        y[2] = Vector256.Sum(f2) * _scales[row + 2];
        y[3] = Vector256.Sum(f3) * _scales[row + 3];
    }

    /// <summary>
    /// Batches: activation rows first..first+3 against one weight row, each weight load and |w| serving four;
    /// y[r·yStride] for activation row first + r, each as <see cref="DotRowInt8"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Tile4x1(int row, Int8Activations act, int first, float* y, int yStride)
    {
        sbyte* w = _pCodes + (long)row * Cols;
        sbyte* a0 = act.RowCodes(first), a1 = act.RowCodes(first + 1), a2 = act.RowCodes(first + 2), a3 = act.RowCodes(first + 3);
        float* s0 = act.RowScales(first), s1 = act.RowScales(first + 1), s2 = act.RowScales(first + 2), s3 = act.RowScales(first + 3);
        int group = ActivationGroup;
        Vector256<float> f0 = default, f1 = default, f2 = default, f3 = default;
        for (int g = 0, k = 0; g < Groups; g++)
        {
            Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
            for (int end = k + group; k < end; k += 32)
            {
                var wv = Avx.LoadVector256(w + k);
                var abs = Avx2.Abs(wv);
                i0 = Dot32(i0, wv, abs, Avx.LoadVector256(a0 + k));
                i1 = Dot32(i1, wv, abs, Avx.LoadVector256(a1 + k));
                i2 = Dot32(i2, wv, abs, Avx.LoadVector256(a2 + k));
                i3 = Dot32(i3, wv, abs, Avx.LoadVector256(a3 + k));
            }
            f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), Vector256.Create(s0[g]), f0);
            f1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), Vector256.Create(s1[g]), f1);
            f2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), Vector256.Create(s2[g]), f2);
            f3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), Vector256.Create(s3[g]), f3);
        }
        float scale = _scales[row];
        y[0] = Vector256.Sum(f0) * scale;
        y[yStride] = Vector256.Sum(f1) * scale;
        y[2 * yStride] = Vector256.Sum(f2) * scale;
        y[3 * yStride] = Vector256.Sum(f3) * scale;
    }

    public override void Dispose()
    {
        _codes.Dispose();
        base.Dispose();
    }
}
