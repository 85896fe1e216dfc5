using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Glm.Kernels.Cpu;

/// <summary>
/// Dot products in float32 with a fixed reduction order (8 lanes × 4 accumulators, then a fixed tree), so a row
/// gives the same bits whatever else is in the batch. Scalar tails keep the same order on every machine.
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

    /// <summary>x (float32) · w (bfloat16 bits), widening BF16 by a 16-bit shift in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Bf16(float* x, ushort* w, int n)
    {
        int i = 0;
        float sum = 0;
        if (Vector256.IsHardwareAccelerated && n >= 32)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= n - 32; i += 32)
            {
                var (w0, w1) = WidenBf16(Vector256.Load(w + i));
                var (w2, w3) = WidenBf16(Vector256.Load(w + i + 16));
                a0 = Fma(Vector256.Load(x + i), w0, a0);
                a1 = Fma(Vector256.Load(x + i + 8), w1, a1);
                a2 = Fma(Vector256.Load(x + i + 16), w2, a2);
                a3 = Fma(Vector256.Load(x + i + 24), w3, a3);
            }
            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(x[i], BitConverter.Int32BitsToSingle(w[i] << 16), sum);
        return sum;
    }

    /// <summary>
    /// One activation row against two BF16 weight rows: each x load serves both (when x outgrows L1, as at
    /// K = 11008, x comes from L2 for every row otherwise). Each row's arithmetic is exactly that of
    /// <see cref="Bf16"/>, so the bits do not depend on the pairing.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Bf16Rows2(float* x, ushort* w0, ushort* w1, int n, out float r0, out float r1)
    {
        int i = 0;
        float s0 = 0, s1 = 0;
        if (Vector256.IsHardwareAccelerated && n >= 32)
        {
            Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
            Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
            for (; i <= n - 32; i += 32)
            {
                var x0 = Vector256.Load(x + i);
                var x1 = Vector256.Load(x + i + 8);
                var x2 = Vector256.Load(x + i + 16);
                var x3 = Vector256.Load(x + i + 24);
                var (u0, u1) = WidenBf16(Vector256.Load(w0 + i));
                var (u2, u3) = WidenBf16(Vector256.Load(w0 + i + 16));
                a00 = Fma(x0, u0, a00); a01 = Fma(x1, u1, a01); a02 = Fma(x2, u2, a02); a03 = Fma(x3, u3, a03);
                var (v0, v1) = WidenBf16(Vector256.Load(w1 + i));
                var (v2, v3) = WidenBf16(Vector256.Load(w1 + i + 16));
                a10 = Fma(x0, v0, a10); a11 = Fma(x1, v1, a11); a12 = Fma(x2, v2, a12); a13 = Fma(x3, v3, a13);
            }
            s0 = Vector256.Sum((a00 + a01) + (a02 + a03));
            s1 = Vector256.Sum((a10 + a11) + (a12 + a13));
        }
        for (; i < n; i++)
        {
            s0 = MathF.FusedMultiplyAdd(x[i], BitConverter.Int32BitsToSingle(w0[i] << 16), s0);
            s1 = MathF.FusedMultiplyAdd(x[i], BitConverter.Int32BitsToSingle(w1[i] << 16), s1);
        }
        r0 = s0;
        r1 = s1;
    }

    /// <summary>
    /// Four activation rows against one BF16 weight row, sharing each weight load and widening. Every row's
    /// arithmetic is exactly that of <see cref="Bf16"/> (same accumulators, same reduction, same tail), so a row
    /// gives the same bits whether it is computed alone or in a group of four.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Bf16x4(float* x0, float* x1, float* x2, float* x3, ushort* w, int n, float* results)
    {
        int i = 0;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        if (Vector256.IsHardwareAccelerated && n >= 32)
        {
            Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
            Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
            Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default;
            Vector256<float> a30 = default, a31 = default, a32 = default, a33 = default;
            for (; i <= n - 32; i += 32)
            {
                var (w0, w1) = WidenBf16(Vector256.Load(w + i));
                var (w2, w3) = WidenBf16(Vector256.Load(w + i + 16));
                a00 = Fma(Vector256.Load(x0 + i), w0, a00); a01 = Fma(Vector256.Load(x0 + i + 8), w1, a01);
                a02 = Fma(Vector256.Load(x0 + i + 16), w2, a02); a03 = Fma(Vector256.Load(x0 + i + 24), w3, a03);
                a10 = Fma(Vector256.Load(x1 + i), w0, a10); a11 = Fma(Vector256.Load(x1 + i + 8), w1, a11);
                a12 = Fma(Vector256.Load(x1 + i + 16), w2, a12); a13 = Fma(Vector256.Load(x1 + i + 24), w3, a13);
                a20 = Fma(Vector256.Load(x2 + i), w0, a20); a21 = Fma(Vector256.Load(x2 + i + 8), w1, a21);
                a22 = Fma(Vector256.Load(x2 + i + 16), w2, a22); a23 = Fma(Vector256.Load(x2 + i + 24), w3, a23);
                a30 = Fma(Vector256.Load(x3 + i), w0, a30); a31 = Fma(Vector256.Load(x3 + i + 8), w1, a31);
                a32 = Fma(Vector256.Load(x3 + i + 16), w2, a32); a33 = Fma(Vector256.Load(x3 + i + 24), w3, a33);
            }
            s0 = Vector256.Sum((a00 + a01) + (a02 + a03));
            s1 = Vector256.Sum((a10 + a11) + (a12 + a13));
            s2 = Vector256.Sum((a20 + a21) + (a22 + a23));
            s3 = Vector256.Sum((a30 + a31) + (a32 + a33));
        }
        for (; i < n; i++)
        {
            float wf = BitConverter.Int32BitsToSingle(w[i] << 16);
            s0 = MathF.FusedMultiplyAdd(x0[i], wf, s0);
            s1 = MathF.FusedMultiplyAdd(x1[i], wf, s1);
            s2 = MathF.FusedMultiplyAdd(x2[i], wf, s2);
            s3 = MathF.FusedMultiplyAdd(x3[i], wf, s3);
        }
        results[0] = s0;
        results[1] = s1;
        results[2] = s2;
        results[3] = s3;
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
