using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Glm.Kernels.Cpu;
using Glm.Kernels.Formats;

namespace Glm.Kernels.Attention;

/// <summary>How <see cref="KeyDots{TK}"/> reads one codec's key records.</summary>
internal unsafe interface IKeySource
{
    static abstract Vector256<float> Load8(byte* record, int i);
    static abstract float Load1(byte* record, int i);
    /// <summary>The dot with the record's values turned into the dot with the record (FP8: times its scale).</summary>
    static abstract float Finish(byte* record, float dot);
}

/// <summary>
/// q · key for F32, BF16 and FP8 records: one 8-lane accumulator per record along the values, a fixed pairwise
/// reduction of its lanes, scalar multiply-adds for a tail of fewer than 8. Eight records are taken at once
/// (eight independent chains, their reductions folded together: six horizontal adds, two permutes, one add), one record alone
/// in exactly the same arithmetic, so a score does not depend on the records beside it.
/// </summary>
internal static unsafe class KeyDots<TK> where TK : struct, IKeySource
{
    private static bool Simd => Avx2.IsSupported && Fma.IsSupported;

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static float One(byte* record, float* q, int n)
    {
        if (!Simd) return Scalar(record, q, n);
        int full = n / 8 * 8;
        Vector256<float> a = default;
        for (int i = 0; i < full; i += 8) a = Fma.MultiplyAdd(Avx.LoadVector256(q + i), TK.Load8(record, i), a);
        var h = Avx.HorizontalAdd(a, a);
        h = Avx.HorizontalAdd(h, h);
        return Tail(record, q, full, n, h.GetLower().ToScalar() + h.GetUpper().ToScalar());
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Eight(byte** records, float* q, int n, float* results)
    {
        if (!Simd)
        {
            for (int j = 0; j < 8; j++) results[j] = Scalar(records[j], q, n);
            return;
        }
        int full = n / 8 * 8;
        byte* r0 = records[0], r1 = records[1], r2 = records[2], r3 = records[3], r4 = records[4], r5 = records[5], r6 = records[6], r7 = records[7];
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        for (int i = 0; i < full; i += 8)
        {
            var qv = Avx.LoadVector256(q + i);
            a0 = Fma.MultiplyAdd(qv, TK.Load8(r0, i), a0); a1 = Fma.MultiplyAdd(qv, TK.Load8(r1, i), a1);
            a2 = Fma.MultiplyAdd(qv, TK.Load8(r2, i), a2); a3 = Fma.MultiplyAdd(qv, TK.Load8(r3, i), a3);
            a4 = Fma.MultiplyAdd(qv, TK.Load8(r4, i), a4); a5 = Fma.MultiplyAdd(qv, TK.Load8(r5, i), a5);
            a6 = Fma.MultiplyAdd(qv, TK.Load8(r6, i), a6); a7 = Fma.MultiplyAdd(qv, TK.Load8(r7, i), a7);
        }
        // hadd(hadd(a0, a1), hadd(a2, a3)) holds ((l0+l1)+(l2+l3)) of records 0-3 in its low half and ((l4+l5)+(l6+l7))
        // in its high half: the pairs One forms, in the same order.
        var low = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
        var high = Avx.HorizontalAdd(Avx.HorizontalAdd(a4, a5), Avx.HorizontalAdd(a6, a7));
        var sums = Avx.Add(Avx.Permute2x128(low, high, 0x20), Avx.Permute2x128(low, high, 0x31));
        Avx.Store(results, sums);
        for (int j = 0; j < 8; j++) results[j] = Tail(records[j], q, full, n, results[j]);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static float Tail(byte* record, float* q, int from, int n, float sum)
    {
        for (int i = from; i < n; i++) sum = MathF.FusedMultiplyAdd(q[i], TK.Load1(record, i), sum);
        return TK.Finish(record, sum);
    }

    /// <summary>Machines without AVX2 and FMA: one multiply-add after another, alone or eight at a time.</summary>
    private static float Scalar(byte* record, float* q, int n) => Tail(record, q, 0, n, 0f);
}

/// <summary>How <see cref="RegisterAccumulation{TCodec, TV}"/> reads one codec's value records: acc += w · value.</summary>
internal unsafe interface IValueSource
{
    /// <summary>Values i..i+7 of a record, as the codec's Accumulate widens them.</summary>
    static abstract Vector256<float> Load8(byte* record, int i);
    static abstract float Load1(byte* record, int i);
    /// <summary>The multiplier Accumulate applies to a record's values for attention weight <paramref name="p"/>.</summary>
    static abstract float Weight(byte* record, float p);
}

/// <summary>
/// Weighted sums of a chunk of value records for several heads with the sums in registers: for each 32 values
/// and three heads at a time, the records are walked in order and each element gets acc = fma(w, value, acc),
/// exactly the operation (and order over records) of the codecs' one-record Accumulate, so the bits are those
/// of summing record by record. The sums are loaded and stored once per chunk instead of once per record.
/// </summary>
internal static unsafe class RegisterAccumulation<TCodec, TV> where TCodec : struct, IKvCodec where TV : struct, IValueSource
{
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Run(byte** records, int count, int recordDim, float* probs, int stride, int heads, float* acc, int n)
    {
        if (!(Avx2.IsSupported && Fma.IsSupported))
        {
            // The codec's one-record kernel, record by record: the same operations per element.
            for (int t = 0; t < count; t++)
                for (int h = 0; h < heads; h++) TCodec.Accumulate(records[t], recordDim, probs[h * stride + t], new Span<float>(acc + (long)h * n, n));
            return;
        }
        int full = n / 32 * 32;
        float* w = stackalloc float[3 * count];
        for (int h0 = 0; h0 < heads; h0 += 3)
        {
            int taken = Math.Min(3, heads - h0);
            for (int j = 0; j < taken; j++)
                for (int t = 0; t < count; t++) w[j * count + t] = TV.Weight(records[t], probs[(h0 + j) * stride + t]);
            float* wa = w, wb = w + count, wc = wb + count;
            for (int i = 0; i < full; i += 32)
            {
                float* pa = acc + (long)h0 * n + i, pb = pa + n, pc = pb + n;
                var a0 = Avx.LoadVector256(pa); var a1 = Avx.LoadVector256(pa + 8); var a2 = Avx.LoadVector256(pa + 16); var a3 = Avx.LoadVector256(pa + 24);
                Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default, c0 = default, c1 = default, c2 = default, c3 = default;
                if (taken > 1) { b0 = Avx.LoadVector256(pb); b1 = Avx.LoadVector256(pb + 8); b2 = Avx.LoadVector256(pb + 16); b3 = Avx.LoadVector256(pb + 24); }
                if (taken > 2) { c0 = Avx.LoadVector256(pc); c1 = Avx.LoadVector256(pc + 8); c2 = Avx.LoadVector256(pc + 16); c3 = Avx.LoadVector256(pc + 24); }
                for (int t = 0; t < count; t++)
                {
                    byte* record = records[t];
                    var v0 = TV.Load8(record, i); var v1 = TV.Load8(record, i + 8); var v2 = TV.Load8(record, i + 16); var v3 = TV.Load8(record, i + 24);
                    var vw = Vector256.Create(wa[t]);
                    a0 = Fma.MultiplyAdd(vw, v0, a0); a1 = Fma.MultiplyAdd(vw, v1, a1); a2 = Fma.MultiplyAdd(vw, v2, a2); a3 = Fma.MultiplyAdd(vw, v3, a3);
                    if (taken > 1)
                    {
                        vw = Vector256.Create(wb[t]);
                        b0 = Fma.MultiplyAdd(vw, v0, b0); b1 = Fma.MultiplyAdd(vw, v1, b1); b2 = Fma.MultiplyAdd(vw, v2, b2); b3 = Fma.MultiplyAdd(vw, v3, b3);
                    }
                    if (taken > 2)
                    {
                        vw = Vector256.Create(wc[t]);
                        c0 = Fma.MultiplyAdd(vw, v0, c0); c1 = Fma.MultiplyAdd(vw, v1, c1); c2 = Fma.MultiplyAdd(vw, v2, c2); c3 = Fma.MultiplyAdd(vw, v3, c3);
                    }
                }
                Avx.Store(pa, a0); Avx.Store(pa + 8, a1); Avx.Store(pa + 16, a2); Avx.Store(pa + 24, a3);
                if (taken > 1) { Avx.Store(pb, b0); Avx.Store(pb + 8, b1); Avx.Store(pb + 16, b2); Avx.Store(pb + 24, b3); }
                if (taken > 2) { Avx.Store(pc, c0); Avx.Store(pc + 8, c1); Avx.Store(pc + 16, c2); Avx.Store(pc + 24, c3); }
            }
            for (int j = 0; j < taken; j++)
            {
                float* row = acc + (long)(h0 + j) * n;
                for (int t = 0; t < count; t++)
                    for (int i = full; i < n; i++) row[i] = MathF.FusedMultiplyAdd(w[j * count + t], TV.Load1(records[t], i), row[i]);
            }
        }
    }
}

public readonly unsafe struct F32Codec : IKvCodec
{
    public static KvCacheDType DType => KvCacheDType.F32;
    public static int RecordBytes(int dim) => dim * 4;
    public static void Encode(ReadOnlySpan<float> source, byte* record) => source.CopyTo(new Span<float>(record, source.Length));
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static float Dot(byte* record, ReadOnlySpan<float> q)
    {
        fixed (float* pq = q) return KeyDots<Keys>.One(record, pq, q.Length);
    }
    public static void Dot8(byte** records, float* q, int n, float* results) => KeyDots<Keys>.Eight(records, q, n, results);

    private readonly struct Keys : IKeySource
    {
        public static Vector256<float> Load8(byte* record, int i) => Avx.LoadVector256((float*)record + i);
        public static float Load1(byte* record, int i) => ((float*)record)[i];
        public static float Finish(byte* record, float dot) => dot;
    }
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate(byte* record, int recordDim, float weight, Span<float> acc) =>
        Cpu.Dot.Axpy(weight, new ReadOnlySpan<float>(record, acc.Length), acc);
    private readonly struct Values : IValueSource
    {
        public static Vector256<float> Load8(byte* record, int i) => Avx.LoadVector256((float*)record + i);
        public static float Load1(byte* record, int i) => ((float*)record)[i];
        public static float Weight(byte* record, float p) => p;
    }

    public static void AccumulateRecords(byte** records, int count, int recordDim, float* probs, int stride, int heads, float* acc, int accLength) =>
        RegisterAccumulation<F32Codec, Values>.Run(records, count, recordDim, probs, stride, heads, acc, accLength);

    public static void Decode(byte* record, Span<float> destination) =>
        new ReadOnlySpan<float>(record, destination.Length).CopyTo(destination);
}

public readonly unsafe struct Bf16Codec : IKvCodec
{
    public static KvCacheDType DType => KvCacheDType.Bf16;
    public static int RecordBytes(int dim) => dim * 2;
    public static void Encode(ReadOnlySpan<float> source, byte* record) => BFloat16.FromFloat(source, new Span<ushort>(record, source.Length));
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static float Dot(byte* record, ReadOnlySpan<float> q)
    {
        fixed (float* pq = q) return KeyDots<Keys>.One(record, pq, q.Length);
    }
    public static void Dot8(byte** records, float* q, int n, float* results) => KeyDots<Keys>.Eight(records, q, n, results);

    private readonly struct Keys : IKeySource
    {
        public static Vector256<float> Load8(byte* record, int i) => Values.Load8(record, i);
        public static float Load1(byte* record, int i) => Values.Load1(record, i);
        public static float Finish(byte* record, float dot) => dot;
    }
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate(byte* record, int recordDim, float weight, Span<float> acc)
    {
        var w = (ushort*)record;
        int i = 0;
        fixed (float* pa = acc)
        {
            if (Vector256.IsHardwareAccelerated)
            {
                var vw = Vector256.Create(weight);
                for (; i <= acc.Length - 16; i += 16)
                {
                    var (lo, hi) = Cpu.Dot.WidenBf16(Vector256.Load(w + i));
                    Vector256.FusedMultiplyAdd(vw, lo, Vector256.Load(pa + i)).Store(pa + i);
                    Vector256.FusedMultiplyAdd(vw, hi, Vector256.Load(pa + i + 8)).Store(pa + i + 8);
                }
            }
            for (; i < acc.Length; i++) pa[i] = MathF.FusedMultiplyAdd(weight, BFloat16.ToFloat(w[i]), pa[i]);
        }
    }
    private readonly struct Values : IValueSource
    {
        public static Vector256<float> Load8(byte* record, int i) =>
            Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((ushort*)record + i), 16).AsSingle();
        public static float Load1(byte* record, int i) => BFloat16.ToFloat(((ushort*)record)[i]);
        public static float Weight(byte* record, float p) => p;
    }

    public static void AccumulateRecords(byte** records, int count, int recordDim, float* probs, int stride, int heads, float* acc, int accLength) =>
        RegisterAccumulation<Bf16Codec, Values>.Run(records, count, recordDim, probs, stride, heads, acc, accLength);

    public static void Decode(byte* record, Span<float> destination) =>
        BFloat16.ToFloat(new ReadOnlySpan<ushort>(record, destination.Length), destination);
}

/// <summary>E4M3 codes with one float32 scale (absmax / 448) per token and head; decoded in registers as in Fp8Matrix.</summary>
public readonly unsafe struct Fp8Codec : IKvCodec
{
    public static KvCacheDType DType => KvCacheDType.Fp8;
    public static int RecordBytes(int dim) => 4 + dim;
    public static void Encode(ReadOnlySpan<float> source, byte* record)
    {
        float absMax = 0;
        foreach (float v in source) absMax = MathF.Max(absMax, MathF.Abs(v));
        float scale = absMax > 0 ? absMax / Fp8E4M3.MaxFinite : 1f;
        *(float*)record = scale;
        float inv = 1f / scale;
        byte* codes = record + 4;
        for (int i = 0; i < source.Length; i++) codes[i] = Fp8E4M3.FromFloat(source[i] * inv);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static float Dot(byte* record, ReadOnlySpan<float> q)
    {
        fixed (float* pq = q) return KeyDots<Keys>.One(record, pq, q.Length);
    }
    public static void Dot8(byte** records, float* q, int n, float* results) => KeyDots<Keys>.Eight(records, q, n, results);

    private readonly struct Keys : IKeySource
    {
        public static Vector256<float> Load8(byte* record, int i) => Values.Load8(record, i);
        public static float Load1(byte* record, int i) => Values.Load1(record, i);
        public static float Finish(byte* record, float dot) => dot * *(float*)record;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate(byte* record, int recordDim, float weight, Span<float> acc)
    {
        float w = weight * *(float*)record;
        byte* codes = record + 4;
        int i = 0;
        fixed (float* pa = acc)
        {
            if (Avx2.IsSupported && Fma.IsSupported)
            {
                var vw = Vector256.Create(w);
                for (; i <= acc.Length - 8; i += 8)
                    Fma.MultiplyAdd(vw, Fp8E4M3.Decode8(codes + i), Avx.LoadVector256(pa + i)).Store(pa + i);
            }
            for (; i < acc.Length; i++) pa[i] = MathF.FusedMultiplyAdd(w, Fp8E4M3.ToFloat(codes[i]), pa[i]);
        }
    }

    private readonly struct Values : IValueSource
    {
        public static Vector256<float> Load8(byte* record, int i) => Fp8E4M3.Decode8(record + 4 + i);
        public static float Load1(byte* record, int i) => Fp8E4M3.ToFloat(record[4 + i]);
        public static float Weight(byte* record, float p) => p * *(float*)record;
    }

    public static void AccumulateRecords(byte** records, int count, int recordDim, float* probs, int stride, int heads, float* acc, int accLength) =>
        RegisterAccumulation<Fp8Codec, Values>.Run(records, count, recordDim, probs, stride, heads, acc, accLength);

    public static void Decode(byte* record, Span<float> destination)
    {
        float scale = *(float*)record;
        for (int i = 0; i < destination.Length; i++) destination[i] = Fp8E4M3.ToFloat(record[4 + i]) * scale;
    }
}

/// <summary>
/// Asymmetric 4-bit in groups of 64 values: per group an FP16 scale and FP16 minimum (value = code · scale +
/// minimum), quantized against the FP16-rounded scale so decode inverts encode exactly; then the codes. Each
/// full run of 32 values is packed for SIMD (byte j: value j low nibble, value j + 16 high nibble); a shorter
/// tail is packed in pairs. Groups keep a head's outliers from coarsening the rest, and put MLA's RoPE part
/// (the last 64 of 576) in its own range.
/// </summary>
public readonly unsafe struct Int4Codec : IMultiHeadKvCodec
{
    public const int GroupSize = 64;

    public static KvCacheDType DType => KvCacheDType.Int4;
    private static int Groups(int dim) => (dim + GroupSize - 1) / GroupSize;
    public static int RecordBytes(int dim) => 4 * Groups(dim) + (dim + 1) / 2;

    /// <summary>Byte and nibble (0 low, 1 high) holding element i of a record of <paramref name="dim"/> values.</summary>
    private static (int Byte, int High) Place(int i, int dim)
    {
        int full = dim / 32 * 32;
        if (i < full) return (i / 32 * 16 + (i % 32 & 15), i % 32 >= 16 ? 1 : 0);
        int t = i - full;
        return (full / 2 + t / 2, t & 1);
    }

    public static void Encode(ReadOnlySpan<float> source, byte* record)
    {
        int dim = source.Length, groups = Groups(dim);
        var header = (Half*)record;
        byte* codes = record + 4 * groups;
        new Span<byte>(codes, (dim + 1) / 2).Clear();
        for (int g = 0; g < groups; g++)
        {
            var values = source.Slice(g * GroupSize, Math.Min(GroupSize, dim - g * GroupSize));
            float min = float.PositiveInfinity, max = float.NegativeInfinity;
            foreach (float v in values) { min = MathF.Min(min, v); max = MathF.Max(max, v); }
            Half minH = (Half)min, scaleH = (Half)((max - min) / 15f);
            float minF = (float)minH, scaleF = (float)scaleH;
            header[2 * g] = scaleH;
            header[2 * g + 1] = minH;
            float inv = scaleF > 0 ? 1f / scaleF : 0f;
            for (int k = 0; k < values.Length; k++)
            {
                int c = Math.Clamp((int)MathF.Round((values[k] - minF) * inv, MidpointRounding.ToEven), 0, 15);
                var (b, high) = Place(g * GroupSize + k, dim);
                codes[b] |= (byte)(c << (4 * high));
            }
        }
    }

    private static int CodeAt(byte* codes, int i, int dim)
    {
        var (b, high) = Place(i, dim);
        return (codes[b] >> (4 * high)) & 15;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float>, Vector256<float>, Vector256<float>, Vector256<float>) Unpack32(byte* codes)
    {
        var mask = Vector128.Create((byte)0x0F);
        var packed = Sse2.LoadVector128(codes);
        var lo = Sse2.And(packed, mask);
        var hi = Sse2.And(Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte(), mask);
        return (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(lo)),
                Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(lo, 8))),
                Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(hi)),
                Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(hi, 8))));
    }

    /// <summary>q · (c·scale + min) per group = scale · Σ q_i c_i + min · Σ q_i.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static float Dot(byte* record, ReadOnlySpan<float> q)
    {
        int n = q.Length, groups = Groups(n);
        var header = (Half*)record;
        byte* codes = record + 4 * groups;
        bool simd = Avx2.IsSupported && Fma.IsSupported;
        int full = n / 32 * 32;
        float total = 0;
        fixed (float* pq = q)
        {
            for (int g = 0; g < groups; g++)
            {
                int start = g * GroupSize, end = Math.Min(n, start + GroupSize);
                float sumQc = 0, sumQ = 0;
                int i = start;
                if (simd)
                {
                    Vector256<float> a0 = default, a1 = default, s0 = default, s1 = default;
                    for (; i + 32 <= end && i + 32 <= full; i += 32)
                    {
                        var (w0, w1, w2, w3) = Unpack32(codes + i / 2);
                        Vector256<float> q0 = Avx.LoadVector256(pq + i), q1 = Avx.LoadVector256(pq + i + 8), q2 = Avx.LoadVector256(pq + i + 16), q3 = Avx.LoadVector256(pq + i + 24);
                        a0 = Fma.MultiplyAdd(q0, w0, a0);
                        a1 = Fma.MultiplyAdd(q1, w1, a1);
                        a0 = Fma.MultiplyAdd(q2, w2, a0);
                        a1 = Fma.MultiplyAdd(q3, w3, a1);
                        s0 = Avx.Add(s0, Avx.Add(q0, q2));
                        s1 = Avx.Add(s1, Avx.Add(q1, q3));
                    }
                    sumQc = Vector256.Sum(a0 + a1);
                    sumQ = Vector256.Sum(s0 + s1);
                }
                for (; i < end; i++)
                {
                    sumQc = MathF.FusedMultiplyAdd(pq[i], CodeAt(codes, i, n), sumQc);
                    sumQ += pq[i];
                }
                total += (float)header[2 * g] * sumQc + (float)header[2 * g + 1] * sumQ;
            }
        }
        return total;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate(byte* record, int recordDim, float weight, Span<float> acc)
    {
        // The layout (header size, packed runs) follows the encoded width, not the prefix being read.
        int n = acc.Length, groups = Groups(recordDim);
        var header = (Half*)record;
        byte* codes = record + 4 * groups;
        bool simd = Avx2.IsSupported && Fma.IsSupported;
        int full = Math.Min(n, recordDim / 32 * 32) / 32 * 32;
        fixed (float* pa = acc)
        {
            for (int g = 0; g < Groups(n); g++)
            {
                float scale = (float)header[2 * g] * weight, offset = (float)header[2 * g + 1] * weight;
                int start = g * GroupSize, end = Math.Min(n, start + GroupSize);
                int i = start;
                if (simd)
                {
                    var vs = Vector256.Create(scale);
                    var vo = Vector256.Create(offset);
                    for (; i + 32 <= end && i + 32 <= full; i += 32)
                    {
                        var (w0, w1, w2, w3) = Unpack32(codes + i / 2);
                        Avx.Add(Avx.LoadVector256(pa + i), Fma.MultiplyAdd(w0, vs, vo)).Store(pa + i);
                        Avx.Add(Avx.LoadVector256(pa + i + 8), Fma.MultiplyAdd(w1, vs, vo)).Store(pa + i + 8);
                        Avx.Add(Avx.LoadVector256(pa + i + 16), Fma.MultiplyAdd(w2, vs, vo)).Store(pa + i + 16);
                        Avx.Add(Avx.LoadVector256(pa + i + 24), Fma.MultiplyAdd(w3, vs, vo)).Store(pa + i + 24);
                    }
                }
                for (; i < end; i++) pa[i] += MathF.FusedMultiplyAdd(CodeAt(codes, i, recordDim), scale, offset);
            }
        }
    }

    public static void Dot8(byte** records, float* q, int n, float* results)
    {
        for (int j = 0; j < 8; j++) results[j] = Dot(records[j], new ReadOnlySpan<float>(q, n));
    }

    /// <summary>Σq of each group, summed exactly as <see cref="Dot"/> sums it.</summary>
    public static int QueryStateLength(int dim) => Groups(dim);

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void PrepareQuery(float* q, int n, float* state)
    {
        int full = n / 32 * 32;
        bool simd = Avx2.IsSupported && Fma.IsSupported;
        for (int g = 0; g < Groups(n); g++)
        {
            int start = g * GroupSize, end = Math.Min(n, start + GroupSize), i = start;
            float sumQ = 0;
            if (simd)
            {
                Vector256<float> s0 = default, s1 = default;
                for (; i + 32 <= end && i + 32 <= full; i += 32)
                {
                    s0 = Avx.Add(s0, Avx.Add(Avx.LoadVector256(q + i), Avx.LoadVector256(q + i + 16)));
                    s1 = Avx.Add(s1, Avx.Add(Avx.LoadVector256(q + i + 8), Avx.LoadVector256(q + i + 24)));
                }
                sumQ = Vector256.Sum(s0 + s1);
            }
            for (; i < end; i++) sumQ += q[i];
            state[g] = sumQ;
        }
    }

    /// <summary>
    /// Every head's dot with one record, the record's codes widened once per group (two 32-value steps held in
    /// eight registers) and each head's sums taken in <see cref="Dot"/>'s order, with its Σq from <see cref="PrepareQuery"/>.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void DotHeads(byte* record, float* q, int n, int count, float* state, float* results)
    {
        int groups = Groups(n), full = n / 32 * 32;
        if (!(Avx2.IsSupported && Fma.IsSupported) || full < n)
        {
            for (int h = 0; h < count; h++) results[h] = Dot(record, new ReadOnlySpan<float>(q + (long)h * n, n));
            return;
        }
        var header = (Half*)record;
        byte* codes = record + 4 * groups;
        for (int h = 0; h < count; h++) results[h] = 0;
        for (int g = 0; g < groups; g++)
        {
            int start = g * GroupSize, steps = (Math.Min(n, start + GroupSize) - start) / 32;
            float scale = (float)header[2 * g], min = (float)header[2 * g + 1];
            var (w0, w1, w2, w3) = Unpack32(codes + start / 2);
            Vector256<float> w4 = default, w5 = default, w6 = default, w7 = default;
            if (steps == 2) (w4, w5, w6, w7) = Unpack32(codes + start / 2 + 16);
            for (int h = 0; h < count; h++)
            {
                float* pq = q + (long)h * n + start;
                Vector256<float> a0 = default, a1 = default;
                a0 = Fma.MultiplyAdd(Avx.LoadVector256(pq), w0, a0);
                a1 = Fma.MultiplyAdd(Avx.LoadVector256(pq + 8), w1, a1);
                a0 = Fma.MultiplyAdd(Avx.LoadVector256(pq + 16), w2, a0);
                a1 = Fma.MultiplyAdd(Avx.LoadVector256(pq + 24), w3, a1);
                if (steps == 2)
                {
                    a0 = Fma.MultiplyAdd(Avx.LoadVector256(pq + 32), w4, a0);
                    a1 = Fma.MultiplyAdd(Avx.LoadVector256(pq + 40), w5, a1);
                    a0 = Fma.MultiplyAdd(Avx.LoadVector256(pq + 48), w6, a0);
                    a1 = Fma.MultiplyAdd(Avx.LoadVector256(pq + 56), w7, a1);
                }
                results[h] += scale * Vector256.Sum(a0 + a1) + min * state[h * groups + g];
            }
        }
    }

    /// <summary>
    /// Every head's weighted sum of a chunk of value records, the sums held in registers: for each 32 values and
    /// three heads at a time, the records are walked in order, each run of codes widened once for the three heads,
    /// and the sums stored once at the end. Every element gets Accumulate's operations in Accumulate's order.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void AccumulateRecords(byte** records, int count, int recordDim, float* probs, int stride, int heads, float* acc, int accLength)
    {
        int n = accLength, groups = Groups(recordDim);
        int full = Math.Min(n, recordDim / 32 * 32) / 32 * 32;
        if (!(Avx2.IsSupported && Fma.IsSupported) || full < n)
        {
            for (int t = 0; t < count; t++)
                for (int h = 0; h < heads; h++) Accumulate(records[t], recordDim, probs[h * stride + t], new Span<float>(acc + (long)h * n, n));
            return;
        }
        for (int i = 0; i < n; i += 32)
        {
            int g = i / GroupSize;
            for (int h0 = 0; h0 < heads; h0 += 3)
            {
                int taken = Math.Min(3, heads - h0);
                float* pa = acc + (long)h0 * n + i, pb = pa + n, pc = pb + n;
                float* qa = probs + h0 * stride, qb = qa + stride, qc = qb + stride;
                var a0 = Avx.LoadVector256(pa); var a1 = Avx.LoadVector256(pa + 8); var a2 = Avx.LoadVector256(pa + 16); var a3 = Avx.LoadVector256(pa + 24);
                Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default, c0 = default, c1 = default, c2 = default, c3 = default;
                if (taken > 1) { b0 = Avx.LoadVector256(pb); b1 = Avx.LoadVector256(pb + 8); b2 = Avx.LoadVector256(pb + 16); b3 = Avx.LoadVector256(pb + 24); }
                if (taken > 2) { c0 = Avx.LoadVector256(pc); c1 = Avx.LoadVector256(pc + 8); c2 = Avx.LoadVector256(pc + 16); c3 = Avx.LoadVector256(pc + 24); }
                for (int t = 0; t < count; t++)
                {
                    byte* record = records[t];
                    var header = (Half*)record;
                    float scale = (float)header[2 * g], offset = (float)header[2 * g + 1];
                    var (w0, w1, w2, w3) = Unpack32(record + 4 * groups + i / 2);
                    var vs = Vector256.Create(scale * qa[t]);
                    var vo = Vector256.Create(offset * qa[t]);
                    a0 = Avx.Add(a0, Fma.MultiplyAdd(w0, vs, vo)); a1 = Avx.Add(a1, Fma.MultiplyAdd(w1, vs, vo));
                    a2 = Avx.Add(a2, Fma.MultiplyAdd(w2, vs, vo)); a3 = Avx.Add(a3, Fma.MultiplyAdd(w3, vs, vo));
                    if (taken > 1)
                    {
                        vs = Vector256.Create(scale * qb[t]);
                        vo = Vector256.Create(offset * qb[t]);
                        b0 = Avx.Add(b0, Fma.MultiplyAdd(w0, vs, vo)); b1 = Avx.Add(b1, Fma.MultiplyAdd(w1, vs, vo));
                        b2 = Avx.Add(b2, Fma.MultiplyAdd(w2, vs, vo)); b3 = Avx.Add(b3, Fma.MultiplyAdd(w3, vs, vo));
                    }
                    if (taken > 2)
                    {
                        vs = Vector256.Create(scale * qc[t]);
                        vo = Vector256.Create(offset * qc[t]);
                        c0 = Avx.Add(c0, Fma.MultiplyAdd(w0, vs, vo)); c1 = Avx.Add(c1, Fma.MultiplyAdd(w1, vs, vo));
                        c2 = Avx.Add(c2, Fma.MultiplyAdd(w2, vs, vo)); c3 = Avx.Add(c3, Fma.MultiplyAdd(w3, vs, vo));
                    }
                }
                Avx.Store(pa, a0); Avx.Store(pa + 8, a1); Avx.Store(pa + 16, a2); Avx.Store(pa + 24, a3);
                if (taken > 1) { Avx.Store(pb, b0); Avx.Store(pb + 8, b1); Avx.Store(pb + 16, b2); Avx.Store(pb + 24, b3); }
                if (taken > 2) { Avx.Store(pc, c0); Avx.Store(pc + 8, c1); Avx.Store(pc + 16, c2); Avx.Store(pc + 24, c3); }
            }
        }
    }

    public static void Decode(byte* record, Span<float> destination)
    {
        int n = destination.Length, groups = Groups(n);
        var header = (Half*)record;
        byte* codes = record + 4 * groups;
        for (int i = 0; i < n; i++)
        {
            int g = i / GroupSize;
            destination[i] = CodeAt(codes, i, n) * (float)header[2 * g] + (float)header[2 * g + 1];
        }
    }
}
