using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Glm.Kernels.Cpu;

/// <summary>A weight row the 8-lane kernels read: 8 values widened to float32 at a time, or one.</summary>
internal unsafe interface IRow8
{
    static abstract int ElementBytes { get; }
    static abstract Vector256<float> Load8(void* row, int i);
    static abstract float Load1(void* row, int i);
}

/// <summary>BF16 bits, widened by a zero-extension and a 16-bit shift.</summary>
internal readonly unsafe struct Bf16Row : IRow8
{
    public static int ElementBytes => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(void* row, int i) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32((ushort*)row + i), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(void* row, int i) => BitConverter.Int32BitsToSingle(((ushort*)row)[i] << 16);
}

/// <summary>Float32 values (an FP8 row decoded and scaled once for a batch).</summary>
internal readonly unsafe struct F32Row : IRow8
{
    public static int ElementBytes => 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(void* row, int i) => Avx.LoadVector256((float*)row + i);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(void* row, int i) => ((float*)row)[i];
}

/// <summary>
/// AVX2 + FMA dot products where every product x · w is summed one way: one 8-lane accumulator over 8-value steps
/// along K, one horizontal sum, then scalar multiply-adds for the rest. With a single accumulator per product,
/// tiles of 4 activation rows x 3 weight rows fit their 12 accumulators in the 16 registers, reusing each
/// widened weight vector four times and each activation load three times, and decode runs four weight rows at
/// once so four chains hide the multiply-add latency. Alone or in any tile, a product gives the same bits.
/// </summary>
internal static unsafe class Lanes8
{
    public static bool Supported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// How far ahead decode asks for each weight stream (8 KB of BF16, as the other decode kernels). A prefetch
    /// past the end is harmless.
    /// </summary>
    private const int PrefetchBytes = 8192;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail<TW>(float* x, void* w, int from, int n, float sum) where TW : struct, IRow8
    {
        for (int i = from; i < n; i++) sum = MathF.FusedMultiplyAdd(x[i], TW.Load1(w, i), sum);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot<TW>(float* x, void* w, int n) where TW : struct, IRow8
    {
        Vector256<float> a = default;
        int i = 0;
        for (; i + 8 <= n; i += 8) a = Fma.MultiplyAdd(Avx.LoadVector256(x + i), TW.Load8(w, i), a);
        return Tail<TW>(x, w, i, n, Vector256.Sum(a));
    }

    /// <summary>
    /// One activation row against four weight rows <paramref name="rowBytes"/> apart (decode), each exactly as
    /// <see cref="Dot{TW}"/>; the weight streams are prefetched.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tile1x4<TW>(float* x, byte* w0, long rowBytes, int n, float* y) where TW : struct, IRow8
    {
        byte* w1 = w0 + rowBytes, w2 = w1 + rowBytes, w3 = w2 + rowBytes;
        int every = 64 / TW.ElementBytes; // one prefetch per cache line of each stream
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            if (i % every == 0)
            {
                long ahead = (long)i * TW.ElementBytes + PrefetchBytes;
                Sse.Prefetch0(w0 + ahead);
                Sse.Prefetch0(w1 + ahead);
                Sse.Prefetch0(w2 + ahead);
                Sse.Prefetch0(w3 + ahead);
            }
            var v = Avx.LoadVector256(x + i);
            a0 = Fma.MultiplyAdd(v, TW.Load8(w0, i), a0);
            a1 = Fma.MultiplyAdd(v, TW.Load8(w1, i), a1);
            a2 = Fma.MultiplyAdd(v, TW.Load8(w2, i), a2);
            a3 = Fma.MultiplyAdd(v, TW.Load8(w3, i), a3);
        }
        y[0] = Tail<TW>(x, w0, i, n, Vector256.Sum(a0));
        y[1] = Tail<TW>(x, w1, i, n, Vector256.Sum(a1));
        y[2] = Tail<TW>(x, w2, i, n, Vector256.Sum(a2));
        y[3] = Tail<TW>(x, w3, i, n, Vector256.Sum(a3));
    }

    /// <summary>One activation row against three weight rows <paramref name="rowBytes"/> apart, each exactly as <see cref="Dot{TW}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tile1x3<TW>(float* x, byte* w0, long rowBytes, int n, float* y) where TW : struct, IRow8
    {
        byte* w1 = w0 + rowBytes, w2 = w1 + rowBytes;
        Vector256<float> a0 = default, a1 = default, a2 = default;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var v = Avx.LoadVector256(x + i);
            a0 = Fma.MultiplyAdd(v, TW.Load8(w0, i), a0);
            a1 = Fma.MultiplyAdd(v, TW.Load8(w1, i), a1);
            a2 = Fma.MultiplyAdd(v, TW.Load8(w2, i), a2);
        }
        y[0] = Tail<TW>(x, w0, i, n, Vector256.Sum(a0));
        y[1] = Tail<TW>(x, w1, i, n, Vector256.Sum(a1));
        y[2] = Tail<TW>(x, w2, i, n, Vector256.Sum(a2));
    }

    /// <summary>
    /// Four activation rows (<paramref name="xStride"/> floats apart) against three weight rows
    /// (<paramref name="rowBytes"/> apart), writing y[r·yStride + c]; each of the twelve products exactly as <see cref="Dot{TW}"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Tile4x3<TW>(float* x, long xStride, byte* w0, long rowBytes, int n, float* y, int yStride) where TW : struct, IRow8
    {
        float* x1 = x + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
        byte* w1 = w0 + rowBytes, w2 = w1 + rowBytes;
        Vector256<float> a00 = default, a01 = default, a02 = default, a10 = default, a11 = default, a12 = default;
        Vector256<float> a20 = default, a21 = default, a22 = default, a30 = default, a31 = default, a32 = default;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var c0 = TW.Load8(w0, i);
            var c1 = TW.Load8(w1, i);
            var c2 = TW.Load8(w2, i);
            var v = Avx.LoadVector256(x + i);
            a00 = Fma.MultiplyAdd(v, c0, a00); a01 = Fma.MultiplyAdd(v, c1, a01); a02 = Fma.MultiplyAdd(v, c2, a02);
            v = Avx.LoadVector256(x1 + i);
            a10 = Fma.MultiplyAdd(v, c0, a10); a11 = Fma.MultiplyAdd(v, c1, a11); a12 = Fma.MultiplyAdd(v, c2, a12);
            v = Avx.LoadVector256(x2 + i);
            a20 = Fma.MultiplyAdd(v, c0, a20); a21 = Fma.MultiplyAdd(v, c1, a21); a22 = Fma.MultiplyAdd(v, c2, a22);
            v = Avx.LoadVector256(x3 + i);
            a30 = Fma.MultiplyAdd(v, c0, a30); a31 = Fma.MultiplyAdd(v, c1, a31); a32 = Fma.MultiplyAdd(v, c2, a32);
        }
        y[0] = Tail<TW>(x, w0, i, n, Vector256.Sum(a00));
        y[1] = Tail<TW>(x, w1, i, n, Vector256.Sum(a01));
        y[2] = Tail<TW>(x, w2, i, n, Vector256.Sum(a02));
        y[yStride] = Tail<TW>(x1, w0, i, n, Vector256.Sum(a10));
        y[yStride + 1] = Tail<TW>(x1, w1, i, n, Vector256.Sum(a11));
        y[yStride + 2] = Tail<TW>(x1, w2, i, n, Vector256.Sum(a12));
        y[2 * yStride] = Tail<TW>(x2, w0, i, n, Vector256.Sum(a20));
        y[2 * yStride + 1] = Tail<TW>(x2, w1, i, n, Vector256.Sum(a21));
        y[2 * yStride + 2] = Tail<TW>(x2, w2, i, n, Vector256.Sum(a22));
        y[3 * yStride] = Tail<TW>(x3, w0, i, n, Vector256.Sum(a30));
        y[3 * yStride + 1] = Tail<TW>(x3, w1, i, n, Vector256.Sum(a31));
        y[3 * yStride + 2] = Tail<TW>(x3, w2, i, n, Vector256.Sum(a32));
    }

    /// <summary>
    /// y = x · Wᵀ for weight rows [rowStart, rowEnd) of a row-major matrix <paramref name="rowBytes"/> a row:
    /// decode (one activation row) in 1 x 4 tiles; batches in 4 x 3 tiles, activation rows left over in 1 x 3
    /// (the three weight rows still in L1), weight rows left over one product at a time.
    /// </summary>
    public static void Multiply<TW>(float* x, int m, int k, byte* w, long rowBytes, float* y, int yStride, int rowStart, int rowEnd) where TW : struct, IRow8
    {
        int n = rowStart;
        if (m == 1)
        {
            for (; n + 4 <= rowEnd; n += 4) Tile1x4<TW>(x, w + n * rowBytes, rowBytes, k, y + n);
            for (; n < rowEnd; n++) y[n] = Dot<TW>(x, w + n * rowBytes, k);
            return;
        }
        for (; n + 3 <= rowEnd; n += 3)
        {
            byte* rows = w + n * rowBytes;
            int i = 0;
            for (; i + 4 <= m; i += 4) Tile4x3<TW>(x + (long)i * k, k, rows, rowBytes, k, y + (long)i * yStride + n, yStride);
            for (; i < m; i++) Tile1x3<TW>(x + (long)i * k, rows, rowBytes, k, y + (long)i * yStride + n);
        }
        for (; n < rowEnd; n++)
            for (int i = 0; i < m; i++) y[(long)i * yStride + n] = Dot<TW>(x + (long)i * k, w + n * rowBytes, k);
    }
}
