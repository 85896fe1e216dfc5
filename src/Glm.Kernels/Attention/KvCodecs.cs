using System.Runtime.InteropServices;
using Glm.Kernels.Cpu;
using Glm.Kernels.Formats;

namespace Glm.Kernels.Attention;

public readonly unsafe struct F32Codec : IKvCodec
{
    public static KvCacheDType DType => KvCacheDType.F32;
    public static int RecordBytes(int dim) => dim * 4;
    public static void Encode(ReadOnlySpan<float> source, byte* record) => source.CopyTo(new Span<float>(record, source.Length));
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static float Dot(byte* record, ReadOnlySpan<float> q)
    {
        fixed (float* pq = q) return Cpu.Dot.F32(pq, (float*)record, q.Length);
    }
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate(byte* record, float weight, Span<float> acc) =>
        Cpu.Dot.Axpy(weight, new ReadOnlySpan<float>(record, acc.Length), acc);
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
        fixed (float* pq = q) return Cpu.Dot.Bf16(pq, (ushort*)record, q.Length);
    }
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate(byte* record, float weight, Span<float> acc)
    {
        var w = (ushort*)record;
        for (int i = 0; i < acc.Length; i++) acc[i] = MathF.FusedMultiplyAdd(weight, BFloat16.ToFloat(w[i]), acc[i]);
    }
    public static void Decode(byte* record, Span<float> destination) =>
        BFloat16.ToFloat(new ReadOnlySpan<ushort>(record, destination.Length), destination);
}

/// <summary>E4M3 codes with one float32 scale (absmax / 448) per token and head.</summary>
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
        float scale = *(float*)record;
        byte* codes = record + 4;
        ReadOnlySpan<float> table = Fp8E4M3.Table;
        float sum = 0;
        for (int i = 0; i < q.Length; i++) sum = MathF.FusedMultiplyAdd(q[i], table[codes[i]], sum);
        return sum * scale;
    }
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate(byte* record, float weight, Span<float> acc)
    {
        float w = weight * *(float*)record;
        byte* codes = record + 4;
        ReadOnlySpan<float> table = Fp8E4M3.Table;
        for (int i = 0; i < acc.Length; i++) acc[i] = MathF.FusedMultiplyAdd(w, table[codes[i]], acc[i]);
    }
    public static void Decode(byte* record, Span<float> destination)
    {
        float scale = *(float*)record;
        for (int i = 0; i < destination.Length; i++) destination[i] = Fp8E4M3.ToFloat(record[4 + i]) * scale;
    }
}

/// <summary>
/// Asymmetric 4-bit: FP16 scale and FP16 minimum per token and head, then two codes a byte (low nibble first);
/// value = code · scale + minimum. Quantized against the FP16-rounded scale so decode inverts encode exactly.
/// </summary>
public readonly unsafe struct Int4Codec : IKvCodec
{
    public static KvCacheDType DType => KvCacheDType.Int4;
    public static int RecordBytes(int dim) => 4 + (dim + 1) / 2;

    public static void Encode(ReadOnlySpan<float> source, byte* record)
    {
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        foreach (float v in source) { min = MathF.Min(min, v); max = MathF.Max(max, v); }
        Half minH = (Half)min, scaleH = (Half)((max - min) / 15f);
        float minF = (float)minH, scaleF = (float)scaleH;
        ((Half*)record)[0] = scaleH;
        ((Half*)record)[1] = minH;
        float inv = scaleF > 0 ? 1f / scaleF : 0f;
        byte* codes = record + 4;
        for (int i = 0; i < source.Length; i += 2)
        {
            int lo = Quantize(source[i], minF, inv);
            int hi = i + 1 < source.Length ? Quantize(source[i + 1], minF, inv) : 0;
            codes[i >> 1] = (byte)(lo | (hi << 4));
        }
    }

    private static int Quantize(float v, float min, float inv) =>
        Math.Clamp((int)MathF.Round((v - min) * inv, MidpointRounding.ToEven), 0, 15);

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static float Dot(byte* record, ReadOnlySpan<float> q)
    {
        float scale = (float)((Half*)record)[0], min = (float)((Half*)record)[1];
        byte* codes = record + 4;
        // q · (c·scale + min) = scale · Σ q_i c_i + min · Σ q_i
        float sumQc = 0, sumQ = 0;
        int n = q.Length;
        for (int i = 0; i < n - 1; i += 2)
        {
            byte b = codes[i >> 1];
            sumQc = MathF.FusedMultiplyAdd(q[i], b & 15, sumQc);
            sumQc = MathF.FusedMultiplyAdd(q[i + 1], b >> 4, sumQc);
            sumQ += q[i] + q[i + 1];
        }
        if ((n & 1) != 0) { sumQc = MathF.FusedMultiplyAdd(q[n - 1], codes[n >> 1] & 15, sumQc); sumQ += q[n - 1]; }
        return scale * sumQc + min * sumQ;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate(byte* record, float weight, Span<float> acc)
    {
        float scale = (float)((Half*)record)[0] * weight, offset = (float)((Half*)record)[1] * weight;
        byte* codes = record + 4;
        for (int i = 0; i < acc.Length; i++)
        {
            int c = (codes[i >> 1] >> ((i & 1) * 4)) & 15;
            acc[i] += MathF.FusedMultiplyAdd(c, scale, offset);
        }
    }

    public static void Decode(byte* record, Span<float> destination)
    {
        float scale = (float)((Half*)record)[0], min = (float)((Half*)record)[1];
        for (int i = 0; i < destination.Length; i++)
            destination[i] = ((record[4 + (i >> 1)] >> ((i & 1) * 4)) & 15) * scale + min;
    }
}
