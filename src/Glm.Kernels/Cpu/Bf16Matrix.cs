namespace Glm.Kernels.Cpu;

/// <summary>BF16 weights read in place (for example straight from a memory-mapped safetensors file).</summary>
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

    public override float DotRow(int row, float* x) => Dot.Bf16(x, _data + (long)row * Cols, Cols);

    /// <summary>
    /// Batches go through the four-row kernel, which shares each weight load; the rest row by row. One
    /// activation row (decode) wider than L1 holds takes weight rows in pairs so each x load from L2 serves two:
    /// at 4096x11008 that measured +20-25%; where x stays in L1 pairs measured 30% slower (two weight streams).
    /// </summary>
    public override void MultiplyRows(float* x, int m, float* y, int yStride, int rowStart, int rowEnd)
    {
        if (m == 1 && XOutgrowsL1)
        {
            int n = rowStart;
            for (; n + 2 <= rowEnd; n += 2)
                Dot.Bf16Rows2(x, _data + (long)n * Cols, _data + (long)(n + 1) * Cols, Cols, out y[n], out y[n + 1]);
            if (n < rowEnd) y[n] = Dot.Bf16(x, _data + (long)n * Cols, Cols);
            return;
        }
        float* results = stackalloc float[4];
        long k = Cols;
        for (int n = rowStart; n < rowEnd; n++)
        {
            ushort* w = _data + (long)n * Cols;
            int i = 0;
            for (; i + 4 <= m; i += 4)
            {
                Dot.Bf16x4(x + i * k, x + (i + 1) * k, x + (i + 2) * k, x + (i + 3) * k, w, Cols, results);
                for (int j = 0; j < 4; j++) y[(long)(i + j) * yStride + n] = results[j];
            }
            for (; i < m; i++) y[(long)i * yStride + n] = Dot.Bf16(x + i * k, w, Cols);
        }
    }

    public override void DequantizeRow(int row, Span<float> destination)
    {
        var src = new ReadOnlySpan<ushort>(_data + (long)row * Cols, Cols);
        Formats.BFloat16.ToFloat(src, destination);
    }
}
