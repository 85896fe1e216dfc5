using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Glm.Kernels.Cpu;

/// <summary>BF16 weights read in place (for example straight from a memory-mapped safetensors file).</summary>
/// <remarks>
/// With AVX-512 every product x · row(n) is summed the same way, alone or in a tile: two 16-lane accumulators
/// take alternate 16-value steps along K, a last half step goes to the first, then one horizontal sum and scalar
/// multiply-adds for the rest. Tiles of 4 activation rows x 2 weight rows (16 accumulators) reuse every widened
/// weight vector four times and every activation load twice, so batches (prefill, a speculative verify) run at
/// about twice the multiply-adds per load of the one-weight-row kernel; decode takes weight rows in pairs. Without
/// AVX-512 the <see cref="Dot"/> kernels (8 lanes x 4 accumulators) serve, with the same independence of the batch.
/// </remarks>
public sealed unsafe class Bf16Matrix : WeightMatrix
{
    private readonly ushort* _data;
    private readonly object? _owner; // holds the memory behind _data alive for this matrix's lifetime

    /// <param name="data">Rows × Cols BF16 values; must stay valid while <paramref name="owner"/> is alive.</param>
    /// <param name="owner">Whatever keeps <paramref name="data"/> valid (a mapped file, a pinned array).</param>
    public Bf16Matrix(ushort* data, int rows, int cols, object? owner) : base(rows, cols)
    {
        _data = data;
        _owner = owner;
    }

    public static Bf16Matrix FromArray(ushort[] values, int rows, int cols)
    {
        var pinned = GC.AllocateArray<ushort>(values.Length, pinned: true);
        values.CopyTo(pinned, 0);
        fixed (ushort* p = pinned) return new Bf16Matrix(p, rows, cols, pinned);
    }

    public override string Format => "bf16";
    public override long ByteSize => (long)Rows * Cols * 2;
    public ushort* Data => _data;

    /// <summary>
    /// Whether this matrix runs the AVX-512 tiled kernels (the default where AVX-512 is present) or the 8-lane
    /// <see cref="Dot"/> kernels. The two sum in different orders; either is independent of the batch. Settable so
    /// benchmarks and tests can compare them on one machine; set it before use, not while a multiply runs.
    /// </summary>
    public bool Tiled
    {
        get => _tiled;
        set
        {
            if (value && !Avx512F.IsSupported) throw new PlatformNotSupportedException("the tiled BF16 kernels need AVX-512");
            _tiled = value;
        }
    }
    private bool _tiled = Avx512F.IsSupported;

    public override float DotRow(int row, float* x) =>
        Tiled ? Dot512(x, _data + (long)row * Cols, Cols) : Dot.Bf16(x, _data + (long)row * Cols, Cols);

    public override void MultiplyRows(float* x, int m, float* y, int yStride, int rowStart, int rowEnd)
    {
        if (Tiled) MultiplyTiled(x, m, y, yStride, rowStart, rowEnd);
        // Without AVX-512: the 8-lane tiles (4 x 3 for batches, 1 x 4 for decode). In one process against the
        // four-accumulator kernels they replaced: 2.2-2.5x the GFLOP/s at M = 64-512 and K = 4096, decode 1.3-1.7x
        // the GB/s (single thread, a 2-core AVX2 machine).
        else if (Lanes8.Supported) Lanes8.Multiply<Bf16Row>(x, m, Cols, (byte*)_data, 2L * Cols, y, yStride, rowStart, rowEnd);
        else base.MultiplyRows(x, m, y, yStride, rowStart, rowEnd); // scalar: DotRow (Dot.Bf16) for each product
    }

    /// <summary>
    /// Weight rows in pairs; activation rows four at a time, then one at a time. One activation row (decode) takes
    /// the 1 x 2 tile where x outgrows L1 (each x load from L2 serves both rows: 1.26x over single rows at
    /// 4096x11008) and single rows otherwise (pairs measured 0.5-0.7x there: two weight streams).
    /// </summary>
    private void MultiplyTiled(float* x, int m, float* y, int yStride, int rowStart, int rowEnd)
    {
        long k = Cols;
        int n = rowStart;
        if (m == 1 && !XOutgrowsL1)
        {
            for (; n < rowEnd; n++) y[n] = Dot512(x, _data + n * k, Cols);
            return;
        }
        for (; n + 2 <= rowEnd; n += 2)
        {
            ushort* w0 = _data + n * k, w1 = w0 + k;
            int i = 0;
            for (; i + 4 <= m; i += 4) Tile4x2(x + i * k, k, w0, w1, Cols, y + (long)i * yStride + n, yStride);
            for (; i < m; i++) Tile1x2(x + i * k, w0, w1, Cols, y + (long)i * yStride + n);
        }
        if (n < rowEnd)
            for (int i = 0; i < m; i++) y[(long)i * yStride + n] = Dot512(x + i * k, _data + n * k, Cols);
    }

    /// <summary>
    /// How far ahead decode asks for the weight stream (4096 values, 8 KB: one line per 64-byte step): the
    /// hardware prefetcher alone kept a GEMV at 23 GB/s where the read pass measured 44; 8 KB ahead measured
    /// 36-53 GB/s in the same runs (2 KB ahead 33-44, 16 KB no better than 8). A prefetch past the end is harmless.
    /// </summary>
    private const int PrefetchElements = 4096;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Widen(ushort* w) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(Avx.LoadVector256(w)), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail(float* x, ushort* w, int from, int n, float sum)
    {
        for (int i = from; i < n; i++) sum = MathF.FusedMultiplyAdd(x[i], BitConverter.Int32BitsToSingle(w[i] << 16), sum);
        return sum;
    }

    /// <summary>x · w in the tiled kernels' order (see the remarks on the class).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Dot512(float* x, ushort* w, int n)
    {
        Vector512<float> a0 = default, a1 = default;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            Sse.Prefetch0(w + i + PrefetchElements);
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + i), Widen(w + i), a0);
            a1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + i + 16), Widen(w + i + 16), a1);
        }
        if (i + 16 <= n)
        {
            a0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + i), Widen(w + i), a0);
            i += 16;
        }
        return Tail(x, w, i, n, Vector512.Sum(a0 + a1));
    }

    /// <summary>One activation row against two weight rows; each row exactly as <see cref="Dot512"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile1x2(float* x, ushort* w0, ushort* w1, int n, float* y)
    {
        Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            Sse.Prefetch0(w0 + i + PrefetchElements);
            Sse.Prefetch0(w1 + i + PrefetchElements);
            var x0 = Avx512F.LoadVector512(x + i);
            var x1 = Avx512F.LoadVector512(x + i + 16);
            a0 = Avx512F.FusedMultiplyAdd(x0, Widen(w0 + i), a0);
            a1 = Avx512F.FusedMultiplyAdd(x1, Widen(w0 + i + 16), a1);
            b0 = Avx512F.FusedMultiplyAdd(x0, Widen(w1 + i), b0);
            b1 = Avx512F.FusedMultiplyAdd(x1, Widen(w1 + i + 16), b1);
        }
        if (i + 16 <= n)
        {
            var x0 = Avx512F.LoadVector512(x + i);
            a0 = Avx512F.FusedMultiplyAdd(x0, Widen(w0 + i), a0);
            b0 = Avx512F.FusedMultiplyAdd(x0, Widen(w1 + i), b0);
            i += 16;
        }
        y[0] = Tail(x, w0, i, n, Vector512.Sum(a0 + a1));
        y[1] = Tail(x, w1, i, n, Vector512.Sum(b0 + b1));
    }

    /// <summary>
    /// Four activation rows (<paramref name="xStride"/> floats apart) against two weight rows, writing
    /// y[r·yStride + c]; each of the eight products exactly as <see cref="Dot512"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile4x2(float* x, long xStride, ushort* w0, ushort* w1, int n, float* y, int yStride)
    {
        float* x1 = x + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
        Vector512<float> p0 = default, p1 = default, q0 = default, q1 = default, r0 = default, r1 = default, s0 = default, s1 = default;
        Vector512<float> t0 = default, t1 = default, u0 = default, u1 = default, v0 = default, v1 = default, z0 = default, z1 = default;
        int i = 0;
        for (; i + 32 <= n; i += 32)
        {
            var c0 = Widen(w0 + i);
            var c1 = Widen(w1 + i);
            var xa = Avx512F.LoadVector512(x + i);
            p0 = Avx512F.FusedMultiplyAdd(xa, c0, p0); t0 = Avx512F.FusedMultiplyAdd(xa, c1, t0);
            xa = Avx512F.LoadVector512(x1 + i);
            q0 = Avx512F.FusedMultiplyAdd(xa, c0, q0); u0 = Avx512F.FusedMultiplyAdd(xa, c1, u0);
            xa = Avx512F.LoadVector512(x2 + i);
            r0 = Avx512F.FusedMultiplyAdd(xa, c0, r0); v0 = Avx512F.FusedMultiplyAdd(xa, c1, v0);
            xa = Avx512F.LoadVector512(x3 + i);
            s0 = Avx512F.FusedMultiplyAdd(xa, c0, s0); z0 = Avx512F.FusedMultiplyAdd(xa, c1, z0);
            c0 = Widen(w0 + i + 16);
            c1 = Widen(w1 + i + 16);
            xa = Avx512F.LoadVector512(x + i + 16);
            p1 = Avx512F.FusedMultiplyAdd(xa, c0, p1); t1 = Avx512F.FusedMultiplyAdd(xa, c1, t1);
            xa = Avx512F.LoadVector512(x1 + i + 16);
            q1 = Avx512F.FusedMultiplyAdd(xa, c0, q1); u1 = Avx512F.FusedMultiplyAdd(xa, c1, u1);
            xa = Avx512F.LoadVector512(x2 + i + 16);
            r1 = Avx512F.FusedMultiplyAdd(xa, c0, r1); v1 = Avx512F.FusedMultiplyAdd(xa, c1, v1);
            xa = Avx512F.LoadVector512(x3 + i + 16);
            s1 = Avx512F.FusedMultiplyAdd(xa, c0, s1); z1 = Avx512F.FusedMultiplyAdd(xa, c1, z1);
        }
        if (i + 16 <= n)
        {
            var c0 = Widen(w0 + i);
            var c1 = Widen(w1 + i);
            var xa = Avx512F.LoadVector512(x + i);
            p0 = Avx512F.FusedMultiplyAdd(xa, c0, p0); t0 = Avx512F.FusedMultiplyAdd(xa, c1, t0);
            xa = Avx512F.LoadVector512(x1 + i);
            q0 = Avx512F.FusedMultiplyAdd(xa, c0, q0); u0 = Avx512F.FusedMultiplyAdd(xa, c1, u0);
            xa = Avx512F.LoadVector512(x2 + i);
            r0 = Avx512F.FusedMultiplyAdd(xa, c0, r0); v0 = Avx512F.FusedMultiplyAdd(xa, c1, v0);
            xa = Avx512F.LoadVector512(x3 + i);
            s0 = Avx512F.FusedMultiplyAdd(xa, c0, s0); z0 = Avx512F.FusedMultiplyAdd(xa, c1, z0);
            i += 16;
        }
        y[0] = Tail(x, w0, i, n, Vector512.Sum(p0 + p1));
        y[1] = Tail(x, w1, i, n, Vector512.Sum(t0 + t1));
        y[yStride] = Tail(x1, w0, i, n, Vector512.Sum(q0 + q1));
        y[yStride + 1] = Tail(x1, w1, i, n, Vector512.Sum(u0 + u1));
        y[2 * yStride] = Tail(x2, w0, i, n, Vector512.Sum(r0 + r1));
        y[2 * yStride + 1] = Tail(x2, w1, i, n, Vector512.Sum(v0 + v1));
        y[3 * yStride] = Tail(x3, w0, i, n, Vector512.Sum(s0 + s1));
        y[3 * yStride + 1] = Tail(x3, w1, i, n, Vector512.Sum(z0 + z1));
    }

    public override void DequantizeRow(int row, Span<float> destination)
    {
        var src = new ReadOnlySpan<ushort>(_data + (long)row * Cols, Cols);
        Formats.BFloat16.ToFloat(src, destination);
    }
}
