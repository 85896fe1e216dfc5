using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Glm.Kernels.Formats;

/// <summary>
/// OCP FP8 E4M3 ("e4m3fn"): 1 sign, 4 exponent (bias 7), 3 mantissa bits, no infinities, S.1111.111 is NaN,
/// largest finite 448. Encoding rounds to nearest even and saturates to ±448, as quantizers clamp before casting.
/// </summary>
public static class Fp8E4M3
{
    public const float MaxFinite = 448f;

    private static readonly float[] DecodeTable = BuildDecodeTable();

    public static ReadOnlySpan<float> Table => DecodeTable;

    public static float ToFloat(byte code) => DecodeTable[code];

    public static byte FromFloat(float value)
    {
        if (float.IsNaN(value)) return 0x7F;
        byte sign = (byte)(float.IsNegative(value) ? 0x80 : 0);
        double a = Math.Abs((double)value);
        if (a >= MaxFinite) return (byte)(sign | 0x7E);
        const double subnormalStep = 1.0 / 512; // 2^-9
        if (a < 1.0 / 64) // below the smallest normal 2^-6: the code counts subnormal steps, and 8 steps is the first normal
            return (byte)(sign | (int)Math.Round(a / subnormalStep, MidpointRounding.ToEven));
        int exponent = Math.ILogB(a);
        double mantissa = Math.Round((Math.ScaleB(a, -exponent) - 1.0) * 8.0, MidpointRounding.ToEven);
        if (mantissa >= 8) { mantissa = 0; exponent++; }
        int code = ((exponent + 7) << 3) | (int)mantissa;
        return (byte)(sign | Math.Min(code, 0x7E));
    }

    /// <summary>2^120: E4M3's bits placed at float32's exponent/mantissa positions give the value × 2^-120.</summary>
    private const float TwoTo120 = 1.329228e36f;

    /// <summary>Keeps the sign (bit 31) and the exponent and mantissa (bits 26..20) of a shifted code.</summary>
    private const int SignExponentMantissa = unchecked((int)0x87F00000);

    /// <summary>
    /// Decodes 8 codes in registers, exactly (subnormals included): sign-extending each code and shifting it left
    /// by 20 puts its exponent and mantissa at float32's bits 26..20 and copies of its sign at 27..31; one mask
    /// keeps bit 31 of those, then × 2^120. Four instructions for 8 codes. NaN codes are not special-cased
    /// (quantizers never produce them).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<float> Decode8(byte* codes)
    {
        var v = Avx2.ConvertToVector256Int32((sbyte*)codes);
        var bits = Avx2.And(Avx2.ShiftLeftLogical(v, 20), Vector256.Create(SignExponentMantissa));
        return Avx.Multiply(bits.AsSingle(), Vector256.Create(TwoTo120));
    }

    /// <summary>
    /// One code decoded as <see cref="Decode8"/> decodes each lane (the same float for every non-NaN code as
    /// <see cref="ToFloat"/>), with no table: kernels whose tails call it keep their vector accumulators in
    /// registers, where a table read's static-field access made the JIT spill them on every step.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Decode1(byte code) =>
        BitConverter.Int32BitsToSingle(((code & 0x80) << 24) | ((code & 0x7F) << 20)) * TwoTo120;

    /// <summary>8 codes decoded and multiplied by a scale: each lane rounds exactly as <see cref="ToFloat"/>(code) · scale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<float> DecodeScaled8(byte* codes, Vector256<float> scale) => Avx.Multiply(Decode8(codes), scale);

    /// <summary>The same for 16 codes with AVX-512.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<float> Decode16(byte* codes)
    {
        var v = Avx512F.ConvertToVector512Int32(Sse2.LoadVector128((sbyte*)codes));
        var bits = Avx512F.And(Avx512F.ShiftLeftLogical(v, 20), Vector512.Create(SignExponentMantissa));
        return Avx512F.Multiply(bits.AsSingle(), Vector512.Create(TwoTo120));
    }

    private static float[] BuildDecodeTable()
    {
        var table = new float[256];
        for (int code = 0; code < 256; code++)
        {
            int exponent = (code >> 3) & 0xF, mantissa = code & 7;
            double magnitude = exponent == 0
                ? mantissa / 512.0
                : (1.0 + mantissa / 8.0) * Math.Pow(2, exponent - 7);
            if (exponent == 0xF && mantissa == 7) magnitude = double.NaN;
            table[code] = (float)((code & 0x80) != 0 ? -magnitude : magnitude);
        }
        return table;
    }
}
