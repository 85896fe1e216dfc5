using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Glm.Kernels.Cpu;

/// <summary>
/// The integer path: Σ_g s_g · a_g · (Σ_{i∈g} u_i·q_i − z_g·Q_g), with q the int8 activation codes, a_g their scale
/// and Q_g their sum. Unsigned nibbles times signed bytes is exactly what vpmaddubsw multiplies; vpmaddwd against
/// ones widens the pairs to int32 lanes, which stay integer (exact) through a group. Four groups' lane vectors
/// are then folded together (three horizontal adds and one add of the halves) so the conversion, the zero-point term and the
/// scale cost one 4-wide instruction each per four groups. Integer sums do not depend on the loop shape, so the
/// one-row and four-row kernels give the same bits.
/// 256-bit registers: on this Zen 4 the 512-bit form measured slower (its 512-bit operations are double-pumped).
/// Where <see cref="AvxVnni"/> is reported, vpdpbusd does the multiply, the pairing and the widening in one
/// instruction, into the same int32 sums: the kernels are written once over <see cref="IInt8Dot"/> and specialized
/// for each instruction set, and give the same bits either way. (The .NET 10.0.12 runtime reports AvxVnni only for
/// the VEX AVX-VNNI extension: an AMD EPYC Zen 4 with AVX512-VNNI alone gets false and runs vpmaddubsw, whose
/// batches then use the 4 x 2 tile below.)
/// </summary>
public sealed unsafe partial class Int4Matrix
{
    /// <summary>Two runs (64 weights, 32 code bytes) per 256-bit step where the groups allow it, else one.</summary>
    private int RunsPerStep => GroupSize % 64 == 0 ? 2 : 1;

    /// <summary>The integer instructions this machine has, best first.</summary>
    public static Int8DotKernel BestIntegerKernel =>
        AvxVnni.IsSupported ? Int8DotKernel.Vnni : Avx2.IsSupported ? Int8DotKernel.Avx2 : Int8DotKernel.Scalar;

    /// <summary>
    /// Which instructions the int8-activation kernels use (the best by default). All integer sums are exact, so the
    /// SIMD choices give the same bits; tests and benchmarks compare them by setting this.
    /// </summary>
    public Int8DotKernel IntegerKernel
    {
        get => _integerKernel;
        set
        {
            if ((value == Int8DotKernel.Vnni && !AvxVnni.IsSupported) || (value == Int8DotKernel.Avx2 && !Avx2.IsSupported))
                throw new PlatformNotSupportedException($"{value} is not supported on this machine");
            _integerKernel = value;
        }
    }
    private Int8DotKernel _integerKernel = BestIntegerKernel;

    /// <summary>
    /// y[i, n] for activation rows [<paramref name="first"/>, <paramref name="last"/>) and weight rows
    /// [<paramref name="rowStart"/>, <paramref name="rowEnd"/>), with this matrix's <see cref="IntegerKernel"/>.
    /// </summary>
    private void MultiplyRowsInt8(Int8Activations act, int first, int last, float* y, int yStride, int rowStart, int rowEnd)
    {
        switch (_integerKernel)
        {
            case Int8DotKernel.Vnni: MultiplyRowsInt8<VnniDot>(act, first, last, y, yStride, rowStart, rowEnd); break;
            case Int8DotKernel.Avx2: MultiplyRowsInt8<MaddDot>(act, first, last, y, yStride, rowStart, rowEnd); break;
            default:
                for (int n = rowStart; n < rowEnd; n++)
                    for (int i = first; i < last; i++)
                        y[(long)i * yStride + n] = DotInt8Scalar(_pCodes + (long)n * Cols / 2, act.RowCodes(i), act.RowScales(i), act.RowCodeSums(i), n * _groups);
                break;
        }
    }

    private void MultiplyRowsInt8<TDot>(Int8Activations act, int first, int last, float* y, int yStride, int rowStart, int rowEnd) where TDot : struct, IInt8Dot
    {
        float* results = stackalloc float[8];
        int n = rowStart;
        if (typeof(TDot) == typeof(MaddDot) && UsesTile4x2 && last - first >= 4)
            for (; n + 2 <= rowEnd; n += 2)
            {
                int i = first;
                for (; i + 4 <= last; i += 4)
                {
                    DotRowsInt8x4x2(n, act, i, results);
                    for (int j = 0; j < 4; j++)
                    {
                        y[(long)(i + j) * yStride + n] = results[2 * j];
                        y[(long)(i + j) * yStride + n + 1] = results[2 * j + 1];
                    }
                }
                for (; i < last; i++)
                {
                    y[(long)i * yStride + n] = DotRowInt8<TDot>(n, act.RowCodes(i), act.RowScales(i), act.RowCodeSums(i));
                    y[(long)i * yStride + n + 1] = DotRowInt8<TDot>(n + 1, act.RowCodes(i), act.RowScales(i), act.RowCodeSums(i));
                }
            }
        bool fourRows = RunsPerStep == 2;
        for (; n < rowEnd; n++)
        {
            int i = first;
            if (fourRows)
                for (; i + 4 <= last; i += 4)
                {
                    DotRowsInt8x4<TDot>(n, act, i, results);
                    for (int j = 0; j < 4; j++) y[(long)(i + j) * yStride + n] = results[j];
                }
            for (; i < last; i++) y[(long)i * yStride + n] = DotRowInt8<TDot>(n, act.RowCodes(i), act.RowScales(i), act.RowCodeSums(i));
        }
    }

    /// <summary>One activation row against weight row <paramref name="row"/>, with this matrix's <see cref="IntegerKernel"/>.</summary>
    private float DotRowInt8(int row, sbyte* a, float* aScales, float* aSums) => _integerKernel switch
    {
        Int8DotKernel.Vnni => DotRowInt8<VnniDot>(row, a, aScales, aSums),
        Int8DotKernel.Avx2 => DotRowInt8<MaddDot>(row, a, aScales, aSums),
        _ => DotInt8Scalar(_pCodes + (long)row * Cols / 2, a, aScales, aSums, row * _groups),
    };

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private float DotRowInt8<TDot>(int row, sbyte* a, float* aScales, float* aSums) where TDot : struct, IInt8Dot
    {
        byte* w = _pCodes + (long)row * Cols / 2;
        int baseIndex = row * _groups;
        if (RunsPerStep == 1) return DotOneRun<TDot>(row, w, a, aScales, aSums);

        var mask = Vector256.Create((byte)0x0F);
        float* scales = _pScales + baseIndex, zeros = RowZeros(row);
        Vector128<float> total = default;
        int g = 0;
        if (GroupSize == 128)
        {
            // The default group size as straight-line code: without the inner loop's control it measured ~20% faster.
            for (; g + 4 <= _groups; g += 4, w += 256, a += 512)
                total = Combine4(TDot.Block128(w, a, mask), TDot.Block128(w + 64, a + 128, mask),
                                 TDot.Block128(w + 128, a + 256, mask), TDot.Block128(w + 192, a + 384, mask),
                                 g, scales, zeros, aScales, aSums, total);
        }
        for (; g + 4 <= _groups; g += 4)
        {
            var d0 = GroupDot<TDot>(ref w, ref a, mask);
            var d1 = GroupDot<TDot>(ref w, ref a, mask);
            var d2 = GroupDot<TDot>(ref w, ref a, mask);
            var d3 = GroupDot<TDot>(ref w, ref a, mask);
            total = Combine4(d0, d1, d2, d3, g, scales, zeros, aScales, aSums, total);
        }
        float tail = 0;
        for (; g < _groups; g++) tail = CombineOne(GroupDot<TDot>(ref w, ref a, mask), g, scales, zeros, aScales, aSums, tail);
        return Vector128.Sum(total) + tail;
    }

    /// <summary>
    /// Four activation rows against one weight row: each code load and unpack serves four rows (batched decode
    /// and prefill). Per row the lanes hold the same integers as the one-row kernel, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DotRowsInt8x4<TDot>(int row, Int8Activations act, int firstRow, float* results) where TDot : struct, IInt8Dot
    {
        byte* w = _pCodes + (long)row * Cols / 2;
        int baseIndex = row * _groups, groups = _groups;
        float* scales = _pScales + baseIndex, zeros = RowZeros(row);
        long stride = Cols;
        sbyte* a = act.RowCodes(firstRow);
        float* s0 = act.RowScales(firstRow), s1 = s0 + groups, s2 = s1 + groups, s3 = s2 + groups;
        float* q0 = act.RowCodeSums(firstRow), q1 = q0 + groups, q2 = q1 + groups, q3 = q2 + groups;
        var mask = Vector256.Create((byte)0x0F);
        Vector128<float> t0 = default, t1 = default, t2 = default, t3 = default;
        int g = 0;
        for (; g + 4 <= groups; g += 4)
        {
            GroupDot4Rows<TDot>(ref w, ref a, stride, mask, out var a0, out var b0, out var c0, out var e0);
            GroupDot4Rows<TDot>(ref w, ref a, stride, mask, out var a1, out var b1, out var c1, out var e1);
            GroupDot4Rows<TDot>(ref w, ref a, stride, mask, out var a2, out var b2, out var c2, out var e2);
            GroupDot4Rows<TDot>(ref w, ref a, stride, mask, out var a3, out var b3, out var c3, out var e3);
            t0 = Combine4(a0, a1, a2, a3, g, scales, zeros, s0, q0, t0);
            t1 = Combine4(b0, b1, b2, b3, g, scales, zeros, s1, q1, t1);
            t2 = Combine4(c0, c1, c2, c3, g, scales, zeros, s2, q2, t2);
            t3 = Combine4(e0, e1, e2, e3, g, scales, zeros, s3, q3, t3);
        }
        float u0 = 0, u1 = 0, u2 = 0, u3 = 0;
        for (; g < groups; g++)
        {
            GroupDot4Rows<TDot>(ref w, ref a, stride, mask, out var d0, out var d1, out var d2, out var d3);
            u0 = CombineOne(d0, g, scales, zeros, s0, q0, u0);
            u1 = CombineOne(d1, g, scales, zeros, s1, q1, u1);
            u2 = CombineOne(d2, g, scales, zeros, s2, q2, u2);
            u3 = CombineOne(d3, g, scales, zeros, s3, q3, u3);
        }
        results[0] = Vector128.Sum(t0) + u0;
        results[1] = Vector128.Sum(t1) + u1;
        results[2] = Vector128.Sum(t2) + u2;
        results[3] = Vector128.Sum(t3) + u3;
    }

    /// <summary>
    /// Whether the 4 x 2 tile applies: vpmaddubsw (its group sums stay in 16 bits: at most 8 pair sums of ≤ 3,810
    /// per lane, so groups of up to 256), two runs a step, and 32 vector registers (AVX-512VL), which its eight
    /// accumulators, four unpacked code vectors and four totals need; with AVX2's 16 it would spill.
    /// </summary>
    private bool UsesTile4x2 => Tile4x2Enabled && Tile4x2Supported && RunsPerStep == 2 && GroupSize <= 256;

    /// <summary>Whether this machine has what the 4 x 2 tile needs (AVX-512VL's 32 vector registers for the 256-bit code).</summary>
    public static bool Tile4x2Supported => Avx512F.VL.IsSupported && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Whether batches may use the 4 x 2 tile (the default); tests and benchmarks compare it with the 4 x 1 kernel by clearing this.</summary>
    public static bool Tile4x2Enabled { get; set; } = true;

    /// <summary>
    /// Four activation rows against weight rows <paramref name="row"/> and row + 1: each code unpack serves four
    /// activation rows and each activation load two weight rows, and a group's products are summed in 16 bits and
    /// widened once, so the tile issues about 0.6x the instructions of two 4 x 1 passes. results[2·r + c] is
    /// activation row firstRow + r against weight row row + c. The per-element arithmetic is the one-row kernel's
    /// (<see cref="Combine4"/> over each four groups, <see cref="CombineOne"/> for the rest; the integers are exact),
    /// so the bits are too.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DotRowsInt8x4x2(int row, Int8Activations act, int firstRow, float* results)
    {
        int groups = _groups, steps = GroupSize / 64;
        byte* w0 = _pCodes + (long)row * Cols / 2, w1 = w0 + Cols / 2;
        float* sc0 = _pScales + (long)row * groups, sc1 = sc0 + groups;
        float* z0 = RowZeros(row), z1 = RowZeros(row + 1);
        long stride = Cols;
        sbyte* a = act.RowCodes(firstRow);
        float* s0 = act.RowScales(firstRow), s1 = s0 + groups, s2 = s1 + groups, s3 = s2 + groups;
        float* q0 = act.RowCodeSums(firstRow), q1 = q0 + groups, q2 = q1 + groups, q3 = q2 + groups;
        var mask = Vector256.Create((byte)0x0F);
        // Totals hold two (activation row, weight row) pairs each, four groups' lanes per pair, as Combine4's do:
        // t0 = (r0, c0) | (r2, c0), t1 = (r0, c1) | (r2, c1), t2 = (r1, c0) | (r3, c0), t3 = (r1, c1) | (r3, c1).
        Vector256<float> t0 = default, t1 = default, t2 = default, t3 = default;
        int g = 0;
        for (; g + 4 <= groups; g += 4)
        {
            var e0 = GroupDots4x2(ref w0, ref w1, ref a, stride, steps, mask);
            var e1 = GroupDots4x2(ref w0, ref w1, ref a, stride, steps, mask);
            var e2 = GroupDots4x2(ref w0, ref w1, ref a, stride, steps, mask);
            var e3 = GroupDots4x2(ref w0, ref w1, ref a, stride, steps, mask);
            // Transpose [group][pair] to [pair][group]: u0 = pairs 0 | 4, u1 = 1 | 5, u2 = 2 | 6, u3 = 3 | 7.
            var l01 = Avx2.UnpackLow(e0, e1).AsInt64();
            var h01 = Avx2.UnpackHigh(e0, e1).AsInt64();
            var l23 = Avx2.UnpackLow(e2, e3).AsInt64();
            var h23 = Avx2.UnpackHigh(e2, e3).AsInt64();
            var zc0 = Avx.BroadcastVector128ToVector256(z0 + g);
            var zc1 = Avx.BroadcastVector128ToVector256(z1 + g);
            var sg0 = Avx.BroadcastVector128ToVector256(sc0 + g);
            var sg1 = Avx.BroadcastVector128ToVector256(sc1 + g);
            var sums02 = Vector256.Create(Sse.LoadVector128(q0 + g), Sse.LoadVector128(q2 + g));
            var sums13 = Vector256.Create(Sse.LoadVector128(q1 + g), Sse.LoadVector128(q3 + g));
            var scales02 = Vector256.Create(Sse.LoadVector128(s0 + g), Sse.LoadVector128(s2 + g));
            var scales13 = Vector256.Create(Sse.LoadVector128(s1 + g), Sse.LoadVector128(s3 + g));
            t0 = CombineTile(Avx2.UnpackLow(l01, l23), zc0, sums02, sg0, scales02, t0);
            t1 = CombineTile(Avx2.UnpackHigh(l01, l23), zc1, sums02, sg1, scales02, t1);
            t2 = CombineTile(Avx2.UnpackLow(h01, h23), zc0, sums13, sg0, scales13, t2);
            t3 = CombineTile(Avx2.UnpackHigh(h01, h23), zc1, sums13, sg1, scales13, t3);
        }
        // The four totals hold the pairs in the order 0 | 4, 1 | 5, 2 | 6, 3 | 7: low halves are rows 0-1, high rows 2-3.
        float u00 = 0, u01 = 0, u10 = 0, u11 = 0, u20 = 0, u21 = 0, u30 = 0, u31 = 0;
        for (; g < groups; g++)
        {
            var e = GroupDots4x2(ref w0, ref w1, ref a, stride, steps, mask);
            u00 = CombineOne(e.GetElement(0), g, sc0, z0, s0, q0, u00);
            u01 = CombineOne(e.GetElement(1), g, sc1, z1, s0, q0, u01);
            u10 = CombineOne(e.GetElement(2), g, sc0, z0, s1, q1, u10);
            u11 = CombineOne(e.GetElement(3), g, sc1, z1, s1, q1, u11);
            u20 = CombineOne(e.GetElement(4), g, sc0, z0, s2, q2, u20);
            u21 = CombineOne(e.GetElement(5), g, sc1, z1, s2, q2, u21);
            u30 = CombineOne(e.GetElement(6), g, sc0, z0, s3, q3, u30);
            u31 = CombineOne(e.GetElement(7), g, sc1, z1, s3, q3, u31);
        }
        results[0] = Vector128.Sum(t0.GetLower()) + u00;
        results[1] = Vector128.Sum(t1.GetLower()) + u01;
        results[2] = Vector128.Sum(t2.GetLower()) + u10;
        results[3] = Vector128.Sum(t3.GetLower()) + u11;
        results[4] = Vector128.Sum(t0.GetUpper()) + u20;
        results[5] = Vector128.Sum(t1.GetUpper()) + u21;
        results[6] = Vector128.Sum(t2.GetUpper()) + u30;
        results[7] = Vector128.Sum(t3.GetUpper()) + u31;
    }

    /// <summary>
    /// One group of four activation rows against two weight rows with vpmaddubsw: the eight (row, weight row) sums
    /// in one vector, pair 2·r + c in lane 2·r + c. Each pair's products stay in 16-bit lanes through the group
    /// (see <see cref="UsesTile4x2"/>) and are widened by one vpmaddwd.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> GroupDots4x2(ref byte* w0, ref byte* w1, ref sbyte* a, long stride, int steps, Vector256<byte> mask)
    {
        sbyte* a0 = a, a1 = a + stride, a2 = a + 2 * stride, a3 = a + 3 * stride;
        var p = Avx.LoadVector256(w0);
        var lo0 = Avx2.And(p, mask);
        var hi0 = HighNibbles(p, mask);
        p = Avx.LoadVector256(w1);
        var lo1 = Avx2.And(p, mask);
        var hi1 = HighNibbles(p, mask);
        var x = Avx.LoadVector256(a0);
        var y = Avx.LoadVector256(a0 + 32);
        var m00 = Avx2.Add(Avx2.MultiplyAddAdjacent(lo0, x), Avx2.MultiplyAddAdjacent(hi0, y));
        var m01 = Avx2.Add(Avx2.MultiplyAddAdjacent(lo1, x), Avx2.MultiplyAddAdjacent(hi1, y));
        x = Avx.LoadVector256(a1);
        y = Avx.LoadVector256(a1 + 32);
        var m10 = Avx2.Add(Avx2.MultiplyAddAdjacent(lo0, x), Avx2.MultiplyAddAdjacent(hi0, y));
        var m11 = Avx2.Add(Avx2.MultiplyAddAdjacent(lo1, x), Avx2.MultiplyAddAdjacent(hi1, y));
        x = Avx.LoadVector256(a2);
        y = Avx.LoadVector256(a2 + 32);
        var m20 = Avx2.Add(Avx2.MultiplyAddAdjacent(lo0, x), Avx2.MultiplyAddAdjacent(hi0, y));
        var m21 = Avx2.Add(Avx2.MultiplyAddAdjacent(lo1, x), Avx2.MultiplyAddAdjacent(hi1, y));
        x = Avx.LoadVector256(a3);
        y = Avx.LoadVector256(a3 + 32);
        var m30 = Avx2.Add(Avx2.MultiplyAddAdjacent(lo0, x), Avx2.MultiplyAddAdjacent(hi0, y));
        var m31 = Avx2.Add(Avx2.MultiplyAddAdjacent(lo1, x), Avx2.MultiplyAddAdjacent(hi1, y));
        for (int s = 1; s < steps; s++)
        {
            int off = 64 * s;
            p = Avx.LoadVector256(w0 + 32 * s);
            lo0 = Avx2.And(p, mask);
            hi0 = HighNibbles(p, mask);
            p = Avx.LoadVector256(w1 + 32 * s);
            lo1 = Avx2.And(p, mask);
            hi1 = HighNibbles(p, mask);
            x = Avx.LoadVector256(a0 + off);
            y = Avx.LoadVector256(a0 + off + 32);
            m00 = Avx2.Add(m00, Avx2.Add(Avx2.MultiplyAddAdjacent(lo0, x), Avx2.MultiplyAddAdjacent(hi0, y)));
            m01 = Avx2.Add(m01, Avx2.Add(Avx2.MultiplyAddAdjacent(lo1, x), Avx2.MultiplyAddAdjacent(hi1, y)));
            x = Avx.LoadVector256(a1 + off);
            y = Avx.LoadVector256(a1 + off + 32);
            m10 = Avx2.Add(m10, Avx2.Add(Avx2.MultiplyAddAdjacent(lo0, x), Avx2.MultiplyAddAdjacent(hi0, y)));
            m11 = Avx2.Add(m11, Avx2.Add(Avx2.MultiplyAddAdjacent(lo1, x), Avx2.MultiplyAddAdjacent(hi1, y)));
            x = Avx.LoadVector256(a2 + off);
            y = Avx.LoadVector256(a2 + off + 32);
            m20 = Avx2.Add(m20, Avx2.Add(Avx2.MultiplyAddAdjacent(lo0, x), Avx2.MultiplyAddAdjacent(hi0, y)));
            m21 = Avx2.Add(m21, Avx2.Add(Avx2.MultiplyAddAdjacent(lo1, x), Avx2.MultiplyAddAdjacent(hi1, y)));
            x = Avx.LoadVector256(a3 + off);
            y = Avx.LoadVector256(a3 + off + 32);
            m30 = Avx2.Add(m30, Avx2.Add(Avx2.MultiplyAddAdjacent(lo0, x), Avx2.MultiplyAddAdjacent(hi0, y)));
            m31 = Avx2.Add(m31, Avx2.Add(Avx2.MultiplyAddAdjacent(lo1, x), Avx2.MultiplyAddAdjacent(hi1, y)));
        }
        w0 += 32 * steps;
        w1 += 32 * steps;
        a += 64 * steps;
        var ones = Vector256.Create((short)1);
        // Eight vectors of eight int32 lanes to one vector of eight sums: two rounds of horizontal adds leave each
        // pair's total split over the two 128-bit halves, which the cross-half add joins.
        var k0 = Avx2.HorizontalAdd(Avx2.HorizontalAdd(Avx2.MultiplyAddAdjacent(m00, ones), Avx2.MultiplyAddAdjacent(m01, ones)),
                                    Avx2.HorizontalAdd(Avx2.MultiplyAddAdjacent(m10, ones), Avx2.MultiplyAddAdjacent(m11, ones)));
        var k1 = Avx2.HorizontalAdd(Avx2.HorizontalAdd(Avx2.MultiplyAddAdjacent(m20, ones), Avx2.MultiplyAddAdjacent(m21, ones)),
                                    Avx2.HorizontalAdd(Avx2.MultiplyAddAdjacent(m30, ones), Avx2.MultiplyAddAdjacent(m31, ones)));
        return Avx2.Add(Avx2.Permute2x128(k0, k1, 0x20), Avx2.Permute2x128(k0, k1, 0x31));
    }

    /// <summary><see cref="Combine4"/> for two pairs at once (one per 128-bit half), the same operations lane by lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> CombineTile(Vector256<long> dots, Vector256<float> zeros, Vector256<float> aSums,
        Vector256<float> scales, Vector256<float> aScales, Vector256<float> total)
    {
        var d = Fma.MultiplyAddNegated(zeros, aSums, Avx.ConvertToVector256Single(dots.AsInt32()));
        return Fma.MultiplyAdd(d, Avx.Multiply(scales, aScales), total);
    }

    /// <summary>One group's Σ u·q in eight int32 lanes (two runs a step, two steps an iteration where they fit).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vector256<int> GroupDot<TDot>(ref byte* w, ref sbyte* a, Vector256<byte> mask) where TDot : struct, IInt8Dot
    {
        Vector256<int> acc = default;
        int i = 0;
        for (; i + 128 <= GroupSize; i += 128, w += 64, a += 128) acc = Avx2.Add(acc, TDot.Block128(w, a, mask));
        if (i < GroupSize)
        {
            var p = Avx.LoadVector256(w);
            acc = TDot.PairDot(acc, Avx2.And(p, mask), HighNibbles(p, mask), a);
            w += 32;
            a += 64;
        }
        return acc;
    }

    /// <summary>One group for four activation rows (<paramref name="stride"/> bytes apart), one unpack per step.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void GroupDot4Rows<TDot>(ref byte* w, ref sbyte* a, long stride, Vector256<byte> mask,
        out Vector256<int> d0, out Vector256<int> d1, out Vector256<int> d2, out Vector256<int> d3) where TDot : struct, IInt8Dot
    {
        d0 = d1 = d2 = d3 = default;
        for (int i = 0; i < GroupSize; i += 64, w += 32, a += 64)
        {
            var p = Avx.LoadVector256(w);
            var lo = Avx2.And(p, mask);
            var hi = HighNibbles(p, mask);
            d0 = TDot.PairDot(d0, lo, hi, a);
            d1 = TDot.PairDot(d1, lo, hi, a + stride);
            d2 = TDot.PairDot(d2, lo, hi, a + 2 * stride);
            d3 = TDot.PairDot(d3, lo, hi, a + 3 * stride);
        }
    }

    /// <summary>
    /// Groups g..g+3: their lanes summed to one int each ([d0 d1 d2 d3], exact), then in float
    /// total + (dot − z·Q) · (s·a), four groups at once.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Combine4(Vector256<int> d0, Vector256<int> d1, Vector256<int> d2, Vector256<int> d3, int g,
        float* scales, float* zeros, float* aScales, float* aSums, Vector128<float> total)
    {
        var h = Avx2.HorizontalAdd(Avx2.HorizontalAdd(d0, d1), Avx2.HorizontalAdd(d2, d3));
        var dots = Sse2.ConvertToVector128Single(Sse2.Add(h.GetLower(), h.GetUpper()));
        dots = Fma.MultiplyAddNegated(Sse.LoadVector128(zeros + g), Sse.LoadVector128(aSums + g), dots);
        return Fma.MultiplyAdd(dots, Sse.Multiply(Sse.LoadVector128(scales + g), Sse.LoadVector128(aScales + g)), total);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float CombineOne(Vector256<int> d, int g, float* scales, float* zeros, float* aScales, float* aSums, float total) =>
        CombineOne(Vector256.Sum(d), g, scales, zeros, aScales, aSums, total);

    /// <summary>One group's exact integer dot: total + (dot − z·Q) · (s·a).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float CombineOne(int dot, int g, float* scales, float* zeros, float* aScales, float* aSums, float total) =>
        MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(-zeros[g], aSums[g], dot), scales[g] * aScales[g], total);

    /// <summary>Groups of an odd number of runs: 16 code bytes a step, low and high nibbles side by side.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private float DotOneRun<TDot>(int row, byte* w, sbyte* a, float* aScales, float* aSums) where TDot : struct, IInt8Dot
    {
        var mask = Vector128.Create((byte)0x0F);
        float* scales = _pScales + (long)row * _groups, zeros = RowZeros(row);
        float total = 0;
        for (int g = 0; g < _groups; g++)
        {
            Vector256<int> acc = default;
            for (int i = 0; i < GroupSize; i += 32, w += 16, a += 32)
            {
                var p = Sse2.LoadVector128(w);
                var nibbles = Vector256.Create(Sse2.And(p, mask), Sse2.And(Sse2.ShiftRightLogical(p.AsUInt16(), 4).AsByte(), mask));
                acc = TDot.Dot(acc, nibbles, a);
            }
            total = CombineOne(acc, g, scales, zeros, aScales, aSums, total);
        }
        return total;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> HighNibbles(Vector256<byte> packed, Vector256<byte> mask) =>
        Avx2.And(Avx2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte(), mask);

    /// <summary>Machines without AVX2: the same integers and layout, one element at a time.</summary>
    private float DotInt8Scalar(byte* w, sbyte* a, float* aScales, float* aSums, int baseIndex)
    {
        int runs = RunsPerStep;
        float total = 0;
        for (int g = 0; g < _groups; g++)
        {
            int dot = 0;
            for (int i = 0; i < GroupSize; i += 32 * runs, w += 16 * runs, a += 32 * runs)
                for (int r = 0; r < runs; r++)
                    for (int j = 0; j < 16; j++)
                    {
                        byte b = w[16 * r + j];
                        dot += (b & 15) * a[16 * r + j] + (b >> 4) * a[16 * runs + 16 * r + j];
                    }
            total = MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(-_zeros[baseIndex + g], aSums[g], dot), _scales[baseIndex + g] * aScales[g], total);
        }
        return total;
    }

    /// <summary>
    /// Unsigned nibbles (0..15) times signed int8 codes, summed into int32 lanes: the one primitive the integer
    /// kernels are written over. Which lane holds which products differs between the implementations; a group's
    /// total over its lanes does not.
    /// </summary>
    private interface IInt8Dot
    {
        /// <summary>acc + Σ nibbles·codes over 32 byte pairs.</summary>
        static abstract Vector256<int> Dot(Vector256<int> acc, Vector256<byte> nibbles, sbyte* codes);

        /// <summary>acc + one 64-weight step: low nibbles against codes[0..32), high nibbles against codes[32..64).</summary>
        static abstract Vector256<int> PairDot(Vector256<int> acc, Vector256<byte> lo, Vector256<byte> hi, sbyte* codes);

        /// <summary>128 weights (64 code bytes) against 128 codes.</summary>
        static abstract Vector256<int> Block128(byte* w, sbyte* codes, Vector256<byte> mask);
    }

    /// <summary>
    /// AVX2: vpmaddubsw (pairs into int16) then vpmaddwd against ones (into int32). Bounds: a vpmaddubsw lane sums
    /// 2 products ≤ 15·127, and at most 4 such lanes are added before widening (15,240 &lt; 32,767).
    /// </summary>
    private readonly struct MaddDot : IInt8Dot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<int> acc, Vector256<byte> nibbles, sbyte* codes) =>
            Avx2.Add(acc, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(nibbles, Avx.LoadVector256(codes)), Vector256.Create((short)1)));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> PairDot(Vector256<int> acc, Vector256<byte> lo, Vector256<byte> hi, sbyte* codes) =>
            Avx2.Add(acc, Avx2.MultiplyAddAdjacent(Avx2.Add(Avx2.MultiplyAddAdjacent(lo, Avx.LoadVector256(codes)),
                Avx2.MultiplyAddAdjacent(hi, Avx.LoadVector256(codes + 32))), Vector256.Create((short)1)));

        /// <summary>Two steps summed in 16 bits, then widened once.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Block128(byte* w, sbyte* codes, Vector256<byte> mask)
        {
            var p0 = Avx.LoadVector256(w);
            var p1 = Avx.LoadVector256(w + 32);
            var q0 = Avx2.Add(Avx2.MultiplyAddAdjacent(Avx2.And(p0, mask), Avx.LoadVector256(codes)),
                              Avx2.MultiplyAddAdjacent(HighNibbles(p0, mask), Avx.LoadVector256(codes + 32)));
            var q1 = Avx2.Add(Avx2.MultiplyAddAdjacent(Avx2.And(p1, mask), Avx.LoadVector256(codes + 64)),
                              Avx2.MultiplyAddAdjacent(HighNibbles(p1, mask), Avx.LoadVector256(codes + 96)));
            return Avx2.MultiplyAddAdjacent(Avx2.Add(q0, q1), Vector256.Create((short)1));
        }
    }

    /// <summary>VNNI: vpdpbusd multiplies, sums each four products and adds them to an int32 lane in one instruction.</summary>
    private readonly struct VnniDot : IInt8Dot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<int> acc, Vector256<byte> nibbles, sbyte* codes) =>
            AvxVnni.MultiplyWideningAndAdd(acc, nibbles, Avx.LoadVector256(codes));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> PairDot(Vector256<int> acc, Vector256<byte> lo, Vector256<byte> hi, sbyte* codes) =>
            AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(acc, lo, Avx.LoadVector256(codes)), hi, Avx.LoadVector256(codes + 32));

        /// <summary>Two independent chains, added at the end, so consecutive vpdpbusd do not wait on each other.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Block128(byte* w, sbyte* codes, Vector256<byte> mask)
        {
            var p0 = Avx.LoadVector256(w);
            var p1 = Avx.LoadVector256(w + 32);
            var a0 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Avx2.And(p0, mask), Avx.LoadVector256(codes));
            var a1 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Avx2.And(p1, mask), Avx.LoadVector256(codes + 64));
            a0 = AvxVnni.MultiplyWideningAndAdd(a0, HighNibbles(p0, mask), Avx.LoadVector256(codes + 32));
            a1 = AvxVnni.MultiplyWideningAndAdd(a1, HighNibbles(p1, mask), Avx.LoadVector256(codes + 96));
            return Avx2.Add(a0, a1);
        }
    }
}

/// <summary>The integer instructions of the int8-activation Int4 kernels.</summary>
public enum Int8DotKernel
{
    /// <summary>One element at a time (machines without AVX2; the portable reference).</summary>
    Scalar,
    /// <summary>vpmaddubsw + vpmaddwd.</summary>
    Avx2,
    /// <summary>vpdpbusd (AVX-VNNI or AVX512-VNNI).</summary>
    Vnni,
}
