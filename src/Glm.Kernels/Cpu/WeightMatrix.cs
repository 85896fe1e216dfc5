namespace Glm.Kernels.Cpu;

/// <summary>
/// A linear layer's weight, [Rows = out features, Cols = in features], row-major as in PyTorch, in some storage
/// format. Each format supplies a row dot product and a row dequantizer; the shared driver handles batching and threads.
/// </summary>
public abstract class WeightMatrix : IDisposable
{
    protected WeightMatrix(int rows, int cols)
    {
        Rows = rows;
        Cols = cols;
    }

    public int Rows { get; }
    public int Cols { get; }

    /// <summary>
    /// Whether one activation row (float32, more than 24 KiB of a 32 KiB L1) is re-read from L2 for every weight
    /// row: decode kernels then take weight rows in pairs so each x load serves two.
    /// </summary>
    protected bool XOutgrowsL1 => Cols > 6144;

    /// <summary>Name of the storage format, for startup summaries ("bf16", "fp8-e4m3", "int4-g128", …).</summary>
    public abstract string Format { get; }

    /// <summary>Bytes of weight data (scales included) this matrix holds.</summary>
    public abstract long ByteSize { get; }

    /// <summary>x · row(n), x having <see cref="Cols"/> elements.</summary>
    public abstract unsafe float DotRow(int row, float* x);

    /// <summary>Writes row(n) as float32.</summary>
    public abstract void DequantizeRow(int row, Span<float> destination);

    /// <summary>
    /// y = x · Wᵀ for m rows of x, the rows of W split across threads by <see cref="MatMul.ForEachRowRange"/>.
    /// Formats that prepare the activations once per call (Int4 quantizes them to int8) override this.
    /// </summary>
    public virtual unsafe void Multiply(float* x, int m, float* y)
    {
        nint px = (nint)x, py = (nint)y;
        MatMul.ForEachRowRange(this, m, (start, end) => MultiplyBlocked((float*)px, m, (float*)py, start, end));
    }

    /// <summary>
    /// y = x · Wᵀ for m rows of x, every row of W on the calling thread: for callers that share out whole
    /// matrices among the threads (the MoE experts of a prefill) instead of each matrix's rows. The same bits as
    /// <see cref="Multiply"/>.
    /// </summary>
    public virtual unsafe void MultiplyOnThisThread(float* x, int m, float* y) => MultiplyBlocked(x, m, y, 0, Rows);

    /// <summary>Rows [start, end) of y, the activations taken <see cref="ActivationBlockBytes"/> at a time.</summary>
    private unsafe void MultiplyBlocked(float* x, int m, float* y, int start, int end)
    {
        int block = RowsPerBlock(ActivationBlockBytes, Cols * sizeof(float));
        for (int i = 0; i < m; i += block)
            MultiplyRows(x + (long)i * Cols, Math.Min(block, m - i), y + (long)i * Rows, Rows, start, end);
    }

    /// <summary>
    /// Batches are taken this many activation rows at a time (a multiple of 4, the batched kernels' width), so the
    /// rows a weight row meets stay in the core's L2 instead of streaming from L3 once per weight row.
    /// </summary>
    public static int ActivationBlockRows(int bytesPerRow) => RowsPerBlock(MatMul.ActivationBlockBytes, bytesPerRow);

    private static int RowsPerBlock(int blockBytes, int bytesPerRow) => Math.Max(4, blockBytes / bytesPerRow & ~3);

    /// <summary>
    /// The activation bytes this format's batched kernels take at a time (<see cref="MatMul.ActivationBlockBytes"/>
    /// unless a format that prepares each weight row per block, as FP8 decodes it, gains from larger blocks).
    /// </summary>
    protected virtual int ActivationBlockBytes => MatMul.ActivationBlockBytes;

    /// <summary>
    /// y[m, n] = Σ_k x[m, k] · W[n, k] for rows [rowStart, rowEnd). Formats override this to share a weight
    /// load across several activation rows; the per-element arithmetic must stay that of <see cref="DotRow"/>.
    /// </summary>
    public virtual unsafe void MultiplyRows(float* x, int m, float* y, int yStride, int rowStart, int rowEnd)
    {
        for (int n = rowStart; n < rowEnd; n++)
            for (int i = 0; i < m; i++)
                y[(long)i * yStride + n] = DotRow(n, x + (long)i * Cols);
    }

    public virtual void Dispose() => GC.SuppressFinalize(this);
}
