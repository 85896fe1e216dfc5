using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Glm.Kernels.Cpu;

/// <summary>
/// Dot products in float32 with a fixed reduction order (F32: 8 lanes × 4 accumulators, then a fixed tree; BF16:
/// see <see cref="Bf16"/>), so a row gives the same bits whatever else is in the batch. Scalar tails keep the same order on every machine.
/// Hot kernels skip tiered compilation (AggressiveOptimization): tier-0 SIMD code is ~10x slower and would
/// serve the first requests.
/// </summary>
public static unsafe class Dot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float F32(ReadOnlySpan<float> x, ReadOnlySpan<float> w)
    {
        fixed (float* px = x) fixed (float* pw = w) return F32(px, pw, x.Length);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float F32(float* x, float* w, int n)
    {
        int i = 0;
        float sum = 0;
        if (Vector256.IsHardwareAccelerated && n >= 32)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= n - 32; i += 32)
            {
                a0 = Fma(Vector256.Load(x + i), Vector256.Load(w + i), a0);
                a1 = Fma(Vector256.Load(x + i + 8), Vector256.Load(w + i + 8), a1);
                a2 = Fma(Vector256.Load(x + i + 16), Vector256.Load(w + i + 16), a2);
                a3 = Fma(Vector256.Load(x + i + 24), Vector256.Load(w + i + 24), a3);
            }
            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(x[i], w[i], sum);
        return sum;
    }

    /// <summary>
    /// x (float32) · w (bfloat16 bits), widening BF16 by a 16-bit shift in registers, in the <see cref="Lanes8"/>
    /// order (Bf16Matrix's AVX2 tiles sum every product so, so a row gives the same bits alone or in a tile);
    /// scalar, in order, without AVX2.
    /// </summary>
    public static float Bf16(float* x, ushort* w, int n)
    {
        if (Lanes8.Supported) return Lanes8.Dot<Bf16Row>(x, w, n);
        float sum = 0;
        for (int i = 0; i < n; i++) sum = MathF.FusedMultiplyAdd(x[i], BitConverter.Int32BitsToSingle(w[i] << 16), sum);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector256<float> Low, Vector256<float> High) WidenBf16(Vector256<ushort> bits)
    {
        var (lo, hi) = Vector256.Widen(bits);
        return (Vector256.ShiftLeft(lo, 16).AsSingle(), Vector256.ShiftLeft(hi, 16).AsSingle());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Vector256.FusedMultiplyAdd(a, b, c);

    /// <summary>y += a·x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Axpy(float a, ReadOnlySpan<float> x, Span<float> y)
    {
        int i = 0;
        ref float rx = ref MemoryMarshal.GetReference(x);
        ref float ry = ref MemoryMarshal.GetReference(y);
        if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(a);
            for (; i <= x.Length - 8; i += 8)
            {
                var vy = Vector256.FusedMultiplyAdd(va, Vector256.LoadUnsafe(ref rx, (nuint)i), Vector256.LoadUnsafe(ref ry, (nuint)i));
                vy.StoreUnsafe(ref ry, (nuint)i);
            }
        }
        for (; i < x.Length; i++) y[i] = MathF.FusedMultiplyAdd(a, x[i], y[i]);
    }
}
