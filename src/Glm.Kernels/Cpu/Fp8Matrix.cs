using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Glm.Kernels.Formats;

namespace Glm.Kernels.Cpu;

/// <summary>How an FP8 matrix's scales are laid out.</summary>
public enum Fp8Scaling { PerTensor, PerChannel, Block }

/// <summary>
/// FP8 E4M3 weights with per-tensor, per-output-channel, or block (e.g. 128×128) scales; w = decode(code) · scale.
/// Codes are decoded in registers (<see cref="Fp8E4M3.Decode8"/>): a sign extension, a shift, a mask and one
/// multiply instead of a table lookup. AVX-512 sums each block's products and scales the block sum; AVX2 alone
/// runs the <see cref="Lanes8"/> tiles (one accumulator a product) over the decoded codes and scales each row's
/// sum where one scale covers the row (per channel, per tensor), or over each decoded weight times its block's
/// scale where blocks split the row.
/// </summary>
public sealed unsafe class Fp8Matrix : WeightMatrix
{
    private readonly WeightMemory _codes;
    private readonly byte* _pCodes;
    private readonly float[] _scales;
    private readonly int _blockRows, _blockCols, _gridCols;

    public Fp8Matrix(byte[] codes, int rows, int cols, Fp8Scaling scaling, float[] scales, int blockRows = 128, int blockCols = 128) : base(rows, cols)
    {
        if (codes.Length != (long)rows * cols) throw new ArgumentException("codes size mismatch", nameof(codes));
        Scaling = scaling;
        (_blockRows, _blockCols) = scaling switch
        {
            Fp8Scaling.PerTensor => (rows, cols),
            Fp8Scaling.PerChannel => (1, cols),
            _ => (blockRows, blockCols),
        };
        _gridCols = (cols + _blockCols - 1) / _blockCols;
        int expected = (rows + _blockRows - 1) / _blockRows * _gridCols;
        if (scales.Length != expected) throw new ArgumentException($"expected {expected} scales for {scaling}, got {scales.Length}", nameof(scales));
        _codes = new WeightMemory(codes.LongLength);
        _pCodes = _codes.Pointer;
        codes.AsSpan().CopyTo(_codes.Span);
        _scales = scales;
    }

    public Fp8Scaling Scaling { get; }
    /// <summary>Rows and columns one scale covers (1 x Cols per channel, Rows x Cols per tensor).</summary>
    public int BlockRows => _blockRows;
    public int BlockCols => _blockCols;
    public byte Code(int row, int col) => _pCodes[(long)row * Cols + col];
    public ReadOnlySpan<byte> Codes => _codes.Span;
    /// <summary>Scales in row-major block-grid order ([1], [rows] or [ceil(rows/br), ceil(cols/bc)]).</summary>
    public ReadOnlySpan<float> ScaleGrid => _scales;
    public override string Format => Scaling == Fp8Scaling.Block ? $"fp8-e4m3-block{_blockRows}x{_blockCols}" : Scaling == Fp8Scaling.PerChannel ? "fp8-e4m3-channel" : "fp8-e4m3-tensor";
    public override long ByteSize => _codes.Length + _scales.LongLength * 4;

    /// <summary>Quantizes float weights with absmax/448 scales of the chosen layout (round to nearest even, saturating).</summary>
    public static Fp8Matrix Quantize(ReadOnlySpan<float> w, int rows, int cols, Fp8Scaling scaling, int blockRows = 128, int blockCols = 128)
    {
        int bR = scaling switch { Fp8Scaling.PerTensor => rows, Fp8Scaling.PerChannel => 1, _ => blockRows };
        int bC = scaling == Fp8Scaling.Block ? blockCols : cols;
        int gridRows = (rows + bR - 1) / bR, gridCols = (cols + bC - 1) / bC;
        var scales = new float[gridRows * gridCols];
        var codes = new byte[(long)rows * cols];
        // A row of scale blocks at a time, on MatMul.Threads threads: its scales and codes belong to it alone.
        fixed (float* pw = w)
        {
            nint source = (nint)pw;
            MatMul.ForEachChunk(gridRows, (long)bR * cols * 16, (first, last) =>
            {
                var all = new ReadOnlySpan<float>((float*)source, checked(rows * cols));
                for (int gr = first; gr < last; gr++)
                {
                    int r0 = gr * bR, r1 = Math.Min(rows, r0 + bR);
                    for (int r = r0; r < r1; r++)
                        for (int c = 0; c < cols; c++)
                        {
                            ref float s = ref scales[gr * gridCols + c / bC];
                            s = MathF.Max(s, MathF.Abs(all[r * cols + c]));
                        }
                    for (int i = gr * gridCols; i < (gr + 1) * gridCols; i++) scales[i] = scales[i] > 0 ? scales[i] / Fp8E4M3.MaxFinite : 1f;
                    for (int r = r0; r < r1; r++)
                        for (int c = 0; c < cols; c++)
                            codes[(long)r * cols + c] = Fp8E4M3.FromFloat(all[r * cols + c] / scales[gr * gridCols + c / bC]);
                }
            });
        }
        return new Fp8Matrix(codes, rows, cols, scaling, scales, bR, bC);
    }

    /// <summary>
    /// How far ahead decode asks for the code stream (8 KB, as the BF16 kernels): the hardware prefetcher alone
    /// left FP8 GEMV well below the read bandwidth. A prefetch past the end is harmless.
    /// </summary>
    private const int PrefetchBytes = 8192;

    private float Scale(int row, int blockCol) => _scales[row / _blockRows * _gridCols + blockCol];

    public override void DequantizeRow(int row, Span<float> destination)
    {
        for (int c = 0; c < Cols; c++) destination[c] = Fp8E4M3.ToFloat(_pCodes[(long)row * Cols + c]) * Scale(row, c / _blockCols);
    }

    /// <summary>
    /// Σ_b scale_b · Σ_{k∈b} x_k·decode(code_k): the block sums stay in a vector register, scaled by a broadcast
    /// multiply-add per block; one horizontal sum per row. AVX-512 decodes 16 codes a step where present.
    /// </summary>
    public override float DotRow(int row, float* x)
    {
        byte* codes = _pCodes + (long)row * Cols;
        if (Avx512F.IsSupported && _blockCols % 16 == 0) return DotAvx512<FromCodes>(row, codes, x);
        if (UsesLanes8) return DotLanes8(row, x);
        float total = 0;
        for (int start = 0, b = 0; start < Cols; start += _blockCols, b++)
            total = MathF.FusedMultiplyAdd(BlockDotScalar<FromCodes>(codes, start, x + start, Math.Min(_blockCols, Cols - start)), Scale(row, b), total);
        return total;
    }

    /// <summary>
    /// Where the kernels read a weight row from: its codes, decoded in registers (decode), or the same row decoded
    /// once into float32 (batches: one decode then serves every activation row). Both give the same floats, and
    /// every kernel is written once over this, so a row's bits do not depend on which it read.
    /// </summary>
    private interface IRowSource
    {
        static abstract Vector512<float> Load16(void* row, int i);
        static abstract float Load1(void* row, int i);
    }

    private readonly struct FromCodes : IRowSource
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load16(void* row, int i) => Fp8E4M3.Decode16((byte*)row + i);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Load1(void* row, int i) => Fp8E4M3.ToFloat(((byte*)row)[i]);
    }

    private readonly struct FromDecoded : IRowSource
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load16(void* row, int i) => Avx512F.LoadVector512((float*)row + i);
        [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Load1(void* row, int i) => ((float*)row)[i];
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private float DotAvx512<TW>(int row, void* w, float* x) where TW : struct, IRowSource
    {
        Vector512<float> total = default;
        float tail = 0;
        for (int start = 0, b = 0; start < Cols; start += _blockCols, b++)
        {
            int n = Math.Min(_blockCols, Cols - start), i = 0;
            Vector512<float> a0 = default, a1 = default;
            for (; i <= n - 32; i += 32)
            {
                if (typeof(TW) == typeof(FromCodes)) Sse.Prefetch0((byte*)w + start + i + PrefetchBytes);
                a0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + start + i), TW.Load16(w, start + i), a0);
                a1 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + start + i + 16), TW.Load16(w, start + i + 16), a1);
            }
            if (i <= n - 16)
            {
                a0 = Avx512F.FusedMultiplyAdd(Avx512F.LoadVector512(x + start + i), TW.Load16(w, start + i), a0);
                i += 16;
            }
            float scale = Scale(row, b);
            total = Avx512F.FusedMultiplyAdd(a0 + a1, Vector512.Create(scale), total);
            if (i < n) tail = MathF.FusedMultiplyAdd(BlockDotScalar<TW>(w, start + i, x + start + i, n - i), scale, tail);
        }
        return Vector512.Sum(total) + tail;
    }

    /// <summary>
    /// AVX-512: four activation rows (<paramref name="stride"/> floats apart) against two decoded weight rows
    /// (<paramref name="w"/> and the row <see cref="WeightMatrix.Cols"/> floats after it): 16 block accumulators and
    /// 8 block-scaled totals, each widened weight vector serving four rows and each activation load two. Each of
    /// the eight products exactly as <see cref="DotAvx512{TW}"/>; results go to y[r·yStride + c].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DotAvx512Tile4x2(int row, float* w, float* x, long stride, float* y, int yStride)
    {
        float* v = w + Cols;
        float* x1 = x + stride, x2 = x1 + stride, x3 = x2 + stride;
        Vector512<float> t0 = default, t1 = default, t2 = default, t3 = default, t4 = default, t5 = default, t6 = default, t7 = default;
        float u0 = 0, u1 = 0, u2 = 0, u3 = 0, u4 = 0, u5 = 0, u6 = 0, u7 = 0;
        for (int start = 0, b = 0; start < Cols; start += _blockCols, b++)
        {
            int n = Math.Min(_blockCols, Cols - start), i = 0;
            Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default, d0 = default, d1 = default;
            Vector512<float> e0 = default, e1 = default, f0 = default, f1 = default, g0 = default, g1 = default, h0 = default, h1 = default;
            for (; i <= n - 32; i += 32)
            {
                int k = start + i;
                var p = Avx512F.LoadVector512(w + k);
                var q = Avx512F.LoadVector512(v + k);
                var xa = Avx512F.LoadVector512(x + k);
                a0 = Avx512F.FusedMultiplyAdd(xa, p, a0); e0 = Avx512F.FusedMultiplyAdd(xa, q, e0);
                xa = Avx512F.LoadVector512(x1 + k);
                b0 = Avx512F.FusedMultiplyAdd(xa, p, b0); f0 = Avx512F.FusedMultiplyAdd(xa, q, f0);
                xa = Avx512F.LoadVector512(x2 + k);
                c0 = Avx512F.FusedMultiplyAdd(xa, p, c0); g0 = Avx512F.FusedMultiplyAdd(xa, q, g0);
                xa = Avx512F.LoadVector512(x3 + k);
                d0 = Avx512F.FusedMultiplyAdd(xa, p, d0); h0 = Avx512F.FusedMultiplyAdd(xa, q, h0);
                p = Avx512F.LoadVector512(w + k + 16);
                q = Avx512F.LoadVector512(v + k + 16);
                xa = Avx512F.LoadVector512(x + k + 16);
                a1 = Avx512F.FusedMultiplyAdd(xa, p, a1); e1 = Avx512F.FusedMultiplyAdd(xa, q, e1);
                xa = Avx512F.LoadVector512(x1 + k + 16);
                b1 = Avx512F.FusedMultiplyAdd(xa, p, b1); f1 = Avx512F.FusedMultiplyAdd(xa, q, f1);
                xa = Avx512F.LoadVector512(x2 + k + 16);
                c1 = Avx512F.FusedMultiplyAdd(xa, p, c1); g1 = Avx512F.FusedMultiplyAdd(xa, q, g1);
                xa = Avx512F.LoadVector512(x3 + k + 16);
                d1 = Avx512F.FusedMultiplyAdd(xa, p, d1); h1 = Avx512F.FusedMultiplyAdd(xa, q, h1);
            }
            if (i <= n - 16)
            {
                int k = start + i;
                var p = Avx512F.LoadVector512(w + k);
                var q = Avx512F.LoadVector512(v + k);
                var xa = Avx512F.LoadVector512(x + k);
                a0 = Avx512F.FusedMultiplyAdd(xa, p, a0); e0 = Avx512F.FusedMultiplyAdd(xa, q, e0);
                xa = Avx512F.LoadVector512(x1 + k);
                b0 = Avx512F.FusedMultiplyAdd(xa, p, b0); f0 = Avx512F.FusedMultiplyAdd(xa, q, f0);
                xa = Avx512F.LoadVector512(x2 + k);
                c0 = Avx512F.FusedMultiplyAdd(xa, p, c0); g0 = Avx512F.FusedMultiplyAdd(xa, q, g0);
                xa = Avx512F.LoadVector512(x3 + k);
                d0 = Avx512F.FusedMultiplyAdd(xa, p, d0); h0 = Avx512F.FusedMultiplyAdd(xa, q, h0);
                i += 16;
            }
            float sw = Scale(row, b), sv = Scale(row + 1, b);
            var vw = Vector512.Create(sw);
            var vv = Vector512.Create(sv);
            t0 = Avx512F.FusedMultiplyAdd(a0 + a1, vw, t0); t4 = Avx512F.FusedMultiplyAdd(e0 + e1, vv, t4);
            t1 = Avx512F.FusedMultiplyAdd(b0 + b1, vw, t1); t5 = Avx512F.FusedMultiplyAdd(f0 + f1, vv, t5);
            t2 = Avx512F.FusedMultiplyAdd(c0 + c1, vw, t2); t6 = Avx512F.FusedMultiplyAdd(g0 + g1, vv, t6);
            t3 = Avx512F.FusedMultiplyAdd(d0 + d1, vw, t3); t7 = Avx512F.FusedMultiplyAdd(h0 + h1, vv, t7);
            if (i < n)
            {
                int k = start + i, left = n - i;
                u0 = MathF.FusedMultiplyAdd(BlockDotScalar<FromDecoded>(w, k, x + k, left), sw, u0);
                u1 = MathF.FusedMultiplyAdd(BlockDotScalar<FromDecoded>(w, k, x1 + k, left), sw, u1);
                u2 = MathF.FusedMultiplyAdd(BlockDotScalar<FromDecoded>(w, k, x2 + k, left), sw, u2);
                u3 = MathF.FusedMultiplyAdd(BlockDotScalar<FromDecoded>(w, k, x3 + k, left), sw, u3);
                u4 = MathF.FusedMultiplyAdd(BlockDotScalar<FromDecoded>(v, k, x + k, left), sv, u4);
                u5 = MathF.FusedMultiplyAdd(BlockDotScalar<FromDecoded>(v, k, x1 + k, left), sv, u5);
                u6 = MathF.FusedMultiplyAdd(BlockDotScalar<FromDecoded>(v, k, x2 + k, left), sv, u6);
                u7 = MathF.FusedMultiplyAdd(BlockDotScalar<FromDecoded>(v, k, x3 + k, left), sv, u7);
            }
        }
        y[0] = Vector512.Sum(t0) + u0;
        y[yStride] = Vector512.Sum(t1) + u1;
        y[2 * yStride] = Vector512.Sum(t2) + u2;
        y[3 * yStride] = Vector512.Sum(t3) + u3;
        y[1] = Vector512.Sum(t4) + u4;
        y[yStride + 1] = Vector512.Sum(t5) + u5;
        y[2 * yStride + 1] = Vector512.Sum(t6) + u6;
        y[3 * yStride + 1] = Vector512.Sum(t7) + u7;
    }

    /// <summary>This thread's float32 copy of two decoded weight rows, grown when needed.</summary>
    [ThreadStatic] private static float[]? t_decodedRows;

    /// <summary>
    /// AVX-512 batches (two activation rows or more): weight rows are decoded into float32 once per call and block
    /// of activation rows (L1/L2-resident at the usual widths), two at a time for the 4 x 2 tile (1.3-1.65x over one
    /// weight row at a time at M = 64-256, M = 16 within noise); activation rows left over go one at a time.
    /// </summary>
    private void MultiplyRowsBatched(float* x, int m, float* y, int yStride, int rowStart, int rowEnd)
    {
        var buffer = t_decodedRows;
        if (buffer is null || buffer.Length < 2 * Cols) t_decodedRows = buffer = GC.AllocateUninitializedArray<float>(2 * Cols, pinned: true);
        long k = Cols;
        fixed (float* decoded = buffer)
        {
            int n = rowStart;
            for (; n + 2 <= rowEnd; n += 2)
            {
                DecodeRow(_pCodes + (long)n * Cols, decoded);
                DecodeRow(_pCodes + (long)(n + 1) * Cols, decoded + Cols);
                int i = 0;
                for (; i + 4 <= m; i += 4) DotAvx512Tile4x2(n, decoded, x + i * k, k, y + (long)i * yStride + n, yStride);
                for (; i < m; i++)
                {
                    y[(long)i * yStride + n] = DotAvx512<FromDecoded>(n, decoded, x + i * k);
                    y[(long)i * yStride + n + 1] = DotAvx512<FromDecoded>(n + 1, decoded + Cols, x + i * k);
                }
            }
            for (; n < rowEnd; n++)
            {
                DecodeRow(_pCodes + (long)n * Cols, decoded);
                for (int i = 0; i < m; i++) y[(long)i * yStride + n] = DotAvx512<FromDecoded>(n, decoded, x + i * k);
            }
        }
    }

    /// <summary>One row's codes as float32 (unscaled), with the same in-register decode the one-row AVX-512 kernels use.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DecodeRow(byte* codes, float* destination)
    {
        int i = 0;
        for (; i <= Cols - 16; i += 16) Avx512F.Store(destination + i, Fp8E4M3.Decode16(codes + i));
        for (; i < Cols; i++) destination[i] = Fp8E4M3.ToFloat(codes[i]);
    }

    /// <summary>
    /// With AVX-512, batches decode each weight row once for all activation rows (<see cref="MultiplyRowsBatched"/>);
    /// decode (one activation row) wider than L1 holds takes weight rows in pairs, so each x load from L2 serves two
    /// rows; each row's arithmetic is that of the one-row kernel. With AVX2 only, the <see cref="Lanes8"/> kernels.
    /// </summary>
    public override void MultiplyRows(float* x, int m, float* y, int yStride, int rowStart, int rowEnd)
    {
        if (UsesLanes8)
        {
            MultiplyLanes8(x, m, y, yStride, rowStart, rowEnd);
            return;
        }
        if (!Avx512F.IsSupported || _blockCols % 16 != 0)
        {
            base.MultiplyRows(x, m, y, yStride, rowStart, rowEnd);
            return;
        }
        if (m > 1)
        {
            MultiplyRowsBatched(x, m, y, yStride, rowStart, rowEnd);
            return;
        }
        if (!XOutgrowsL1)
        {
            base.MultiplyRows(x, m, y, yStride, rowStart, rowEnd);
            return;
        }
        int n = rowStart;
        for (; n + 2 <= rowEnd; n += 2) DotAvx512Rows2(n, x, out y[n], out y[n + 1]);
        if (n < rowEnd) y[n] = DotRow(n, x);
    }

    /// <summary>
    /// AVX2 without AVX-512: every product in the <see cref="Lanes8"/> order over the weight row decoded (and
    /// scaled per weight where blocks split the row, see <see cref="ScalesWholeRows"/>), so decode reads the codes
    /// four rows at a time and batches decode three weight rows once into float32 for 4 x 3 tiles, with the same bits.
    /// </summary>
    private bool UsesLanes8 => !Avx512F.IsSupported && Lanes8.Supported && _blockCols % 8 == 0;

    /// <summary>
    /// The 8-lane batches decode three weight rows per block of activation rows, so larger blocks spread that over
    /// more rows: four times the default (512 KiB) measured 1.25-1.36x the GFLOP/s at M = 512, K = N = 4096 (one
    /// and two threads, this 2-core AVX2 machine); BF16, which widens in registers, gained nothing from it.
    /// </summary>
    protected override int ActivationBlockBytes => UsesLanes8 ? 4 * MatMul.ActivationBlockBytes : base.ActivationBlockBytes;

    /// <summary>
    /// One scale covers each whole row (per channel or per tensor): the 8-lane kernels then sum x · decode(code)
    /// over the codes themselves and multiply each finished sum by the row's scale, one multiply a row instead of
    /// one per 8 weights (decode is compute-bound here). Block scales multiply each decoded weight instead.
    /// </summary>
    private bool ScalesWholeRows => _blockCols >= Cols;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private float DotLanes8(int row, float* x)
    {
        byte* codes = _pCodes + (long)row * Cols;
        if (ScalesWholeRows) return Lanes8.Dot<Fp8Row>(x, codes, Cols) * Scale(row, 0);
        Vector256<float> a = default;
        int i = 0;
        for (int b = 0; i + 8 <= Cols; b++)
        {
            var scale = Vector256.Create(Scale(row, b));
            for (int end = Math.Min(Cols, (b + 1) * _blockCols); i + 8 <= end; i += 8)
            {
                if ((i & 63) == 0) Sse.Prefetch0(codes + i + PrefetchBytes);
                a = Fma.MultiplyAdd(Avx.LoadVector256(x + i), Fp8E4M3.DecodeScaled8(codes + i, scale), a);
            }
        }
        float sum = Vector256.Sum(a);
        for (; i < Cols; i++) sum = MathF.FusedMultiplyAdd(x[i], Fp8E4M3.Decode1(codes[i]) * Scale(row, i / _blockCols), sum);
        return sum;
    }

    /// <summary>Decode: one activation row against four weight rows' codes, each exactly as <see cref="DotLanes8"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Tile1x4Lanes8(int row, float* x, float* y)
    {
        long k = Cols;
        byte* c0 = _pCodes + row * k, c1 = c0 + k, c2 = c1 + k, c3 = c2 + k;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int i = 0;
        for (int b = 0; i + 8 <= Cols; b++)
        {
            var s0 = Vector256.Create(Scale(row, b));
            var s1 = Vector256.Create(Scale(row + 1, b));
            var s2 = Vector256.Create(Scale(row + 2, b));
            var s3 = Vector256.Create(Scale(row + 3, b));
            for (int end = Math.Min(Cols, (b + 1) * _blockCols); i + 8 <= end; i += 8)
            {
                if ((i & 63) == 0)
                {
                    Sse.Prefetch0(c0 + i + PrefetchBytes);
                    Sse.Prefetch0(c1 + i + PrefetchBytes);
                    Sse.Prefetch0(c2 + i + PrefetchBytes);
                    Sse.Prefetch0(c3 + i + PrefetchBytes);
                }
                var v = Avx.LoadVector256(x + i);
                a0 = Fma.MultiplyAdd(v, Fp8E4M3.DecodeScaled8(c0 + i, s0), a0);
                a1 = Fma.MultiplyAdd(v, Fp8E4M3.DecodeScaled8(c1 + i, s1), a1);
                a2 = Fma.MultiplyAdd(v, Fp8E4M3.DecodeScaled8(c2 + i, s2), a2);
                a3 = Fma.MultiplyAdd(v, Fp8E4M3.DecodeScaled8(c3 + i, s3), a3);
            }
        }
        float r0 = Vector256.Sum(a0), r1 = Vector256.Sum(a1), r2 = Vector256.Sum(a2), r3 = Vector256.Sum(a3);
        for (; i < Cols; i++)
        {
            int b = i / _blockCols;
            r0 = MathF.FusedMultiplyAdd(x[i], Fp8E4M3.Decode1(c0[i]) * Scale(row, b), r0);
            r1 = MathF.FusedMultiplyAdd(x[i], Fp8E4M3.Decode1(c1[i]) * Scale(row + 1, b), r1);
            r2 = MathF.FusedMultiplyAdd(x[i], Fp8E4M3.Decode1(c2[i]) * Scale(row + 2, b), r2);
            r3 = MathF.FusedMultiplyAdd(x[i], Fp8E4M3.Decode1(c3[i]) * Scale(row + 3, b), r3);
        }
        y[0] = r0;
        y[1] = r1;
        y[2] = r2;
        y[3] = r3;
    }

    /// <summary>One row decoded and scaled into float32, each value exactly as <see cref="DotLanes8"/> multiplies it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DecodeScaledRow(int row, float* destination)
    {
        byte* codes = _pCodes + (long)row * Cols;
        int i = 0;
        for (int b = 0; i + 8 <= Cols; b++)
        {
            var scale = Vector256.Create(Scale(row, b));
            for (int end = Math.Min(Cols, (b + 1) * _blockCols); i + 8 <= end; i += 8) Avx.Store(destination + i, Fp8E4M3.DecodeScaled8(codes + i, scale));
        }
        for (; i < Cols; i++) destination[i] = Fp8E4M3.Decode1(codes[i]) * Scale(row, i / _blockCols);
    }

    /// <summary>This thread's float32 copy of three decoded weight rows (scaled where blocks split them): the 4 x 3 tiles' weights.</summary>
    [ThreadStatic] private static float[]? t_scaledRows;

    /// <summary>
    /// Decode (one activation row) reads four rows' codes at a time: <see cref="Lanes8.Tile1x4{TW}"/> over
    /// <see cref="Fp8Row"/> where one scale covers each row, else <see cref="Tile1x4Lanes8"/>. Batches decode up to
    /// three weight rows once into float32 (unscaled or scaled per weight) for the 4 x 3 tiles. Whole-row scales
    /// then multiply every product by its row's scale: the bits of <see cref="DotLanes8"/> either way.
    /// </summary>
    private void MultiplyLanes8(float* x, int m, float* y, int yStride, int rowStart, int rowEnd)
    {
        bool wholeRows = ScalesWholeRows;
        long k = Cols;
        if (m == 1 && wholeRows) Lanes8.Multiply<Fp8Row>(x, 1, Cols, _pCodes, k, y, yStride, rowStart, rowEnd);
        else if (m == 1)
        {
            int n = rowStart;
            for (; n + 4 <= rowEnd; n += 4) Tile1x4Lanes8(n, x, y + n);
            for (; n < rowEnd; n++) y[n] = DotLanes8(n, x);
            return;
        }
        else
        {
            var buffer = t_scaledRows;
            if (buffer is null || buffer.Length < 3 * Cols) t_scaledRows = buffer = GC.AllocateUninitializedArray<float>(3 * Cols, pinned: true);
            fixed (float* decoded = buffer)
                for (int n = rowStart; n < rowEnd; n += 3)
                {
                    // Up to three weight rows decoded, then the float32 kernels over them as a matrix of their own
                    // (its rows 0..2 are this matrix's n..n+2, hence y + n).
                    int rows = Math.Min(3, rowEnd - n);
                    for (int r = 0; r < rows; r++)
                        if (wholeRows) DecodeRowLanes8(_pCodes + (n + r) * k, decoded + r * k);
                        else DecodeScaledRow(n + r, decoded + r * k);
                    Lanes8.Multiply<F32Row>(x, m, Cols, (byte*)decoded, 4 * k, y + n, yStride, 0, rows);
                }
        }
        if (!wholeRows) return;
        for (int i = 0; i < m; i++)
        {
            float* yi = y + (long)i * yStride;
            for (int n = rowStart; n < rowEnd; n++) yi[n] *= _scales[n / _blockRows];
        }
    }

    /// <summary>
    /// One row's codes as float32 (unscaled), each value exactly as <see cref="Fp8Row"/> widens it. Whole-row scales
    /// take the 8-lane kernels only where the row is whole steps of 8 (<see cref="UsesLanes8"/>), so there is no tail.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DecodeRowLanes8(byte* codes, float* destination)
    {
        for (int i = 0; i < Cols; i += 8) Avx.Store(destination + i, Fp8E4M3.Decode8(codes + i));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DotAvx512Rows2(int row, float* x, out float r0, out float r1)
    {
        byte* c0 = _pCodes + (long)row * Cols, c1 = c0 + Cols;
        Vector512<float> total0 = default, total1 = default;
        float tail0 = 0, tail1 = 0;
        for (int start = 0, b = 0; start < Cols; start += _blockCols, b++)
        {
            int n = Math.Min(_blockCols, Cols - start), i = 0;
            Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default;
            for (; i <= n - 32; i += 32)
            {
                Sse.Prefetch0(c0 + start + i + PrefetchBytes); Sse.Prefetch0(c1 + start + i + PrefetchBytes);
                var x0 = Avx512F.LoadVector512(x + start + i);
                var x1 = Avx512F.LoadVector512(x + start + i + 16);
                a0 = Avx512F.FusedMultiplyAdd(x0, Fp8E4M3.Decode16(c0 + start + i), a0);
                a1 = Avx512F.FusedMultiplyAdd(x1, Fp8E4M3.Decode16(c0 + start + i + 16), a1);
                b0 = Avx512F.FusedMultiplyAdd(x0, Fp8E4M3.Decode16(c1 + start + i), b0);
                b1 = Avx512F.FusedMultiplyAdd(x1, Fp8E4M3.Decode16(c1 + start + i + 16), b1);
            }
            if (i <= n - 16)
            {
                var x0 = Avx512F.LoadVector512(x + start + i);
                a0 = Avx512F.FusedMultiplyAdd(x0, Fp8E4M3.Decode16(c0 + start + i), a0);
                b0 = Avx512F.FusedMultiplyAdd(x0, Fp8E4M3.Decode16(c1 + start + i), b0);
                i += 16;
            }
            float s0 = Scale(row, b), s1 = Scale(row + 1, b);
            total0 = Avx512F.FusedMultiplyAdd(a0 + a1, Vector512.Create(s0), total0);
            total1 = Avx512F.FusedMultiplyAdd(b0 + b1, Vector512.Create(s1), total1);
            if (i < n)
            {
                tail0 = MathF.FusedMultiplyAdd(BlockDotScalar<FromCodes>(c0, start + i, x + start + i, n - i), s0, tail0);
                tail1 = MathF.FusedMultiplyAdd(BlockDotScalar<FromCodes>(c1, start + i, x + start + i, n - i), s1, tail1);
            }
        }
        r0 = Vector512.Sum(total0) + tail0;
        r1 = Vector512.Sum(total1) + tail1;
    }

    public override void Dispose()
    {
        _codes.Dispose();
        base.Dispose();
    }

    /// <summary>Elements [start, start + n) of a weight row against x[0, n): the scalar tail every kernel shares.</summary>
    private static float BlockDotScalar<TW>(void* w, int start, float* x, int n) where TW : struct, IRowSource
    {
        float acc = 0;
        for (int i = 0; i < n; i++) acc = MathF.FusedMultiplyAdd(x[i], TW.Load1(w, start + i), acc);
        return acc;
    }
}

/// <summary>FP8 E4M3 codes, decoded exactly in registers (<see cref="Fp8E4M3.Decode8"/>), unscaled.</summary>
internal readonly unsafe struct Fp8Row : IRow8
{
    public static int ElementBytes => 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(void* row, int i) => Fp8E4M3.Decode8((byte*)row + i);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(void* row, int i) => Fp8E4M3.Decode1(((byte*)row)[i]);
}
