namespace Glm.Kernels.Cpu;

/// <summary>
/// y[M, N] = x[M, K] · Wᵀ (+ bias). Output rows are split into contiguous column ranges across threads; every
/// element is computed by the same per-row kernel, so results do not depend on M or on the thread count.
/// </summary>
public static unsafe class MatMul
{
    /// <summary>Work below this many multiply-adds runs on the calling thread: fork/join costs more than it saves.</summary>
    private const long ParallelThreshold = 1 << 17;

    public static int Threads { get; set; } = Environment.ProcessorCount;

    /// <summary>
    /// Bytes of activation rows a batched kernel works through at a time (see <see cref="WeightMatrix.ActivationBlockRows"/>):
    /// 128 KiB measured 1.3x over unblocked for BF16 and FP8 at M = 256, K = 4096 on this Zen 4 (1 MiB L2); 32-512 KiB all
    /// help, within noise of each other. Settable for benchmarks.
    /// </summary>
    public static int ActivationBlockBytes { get; set; } = 128 << 10;

    public static void Multiply(WeightMatrix w, ReadOnlySpan<float> x, int m, Span<float> y, ReadOnlySpan<float> bias = default)
    {
        if (x.Length < (long)m * w.Cols) throw new ArgumentException("x too short", nameof(x));
        if (y.Length < (long)m * w.Rows) throw new ArgumentException("y too short", nameof(y));
        fixed (float* px = x) fixed (float* py = y)
        {
            w.Multiply(px, m, py);
            if (!bias.IsEmpty)
                for (int i = 0; i < m; i++)
                    for (int n = 0; n < w.Rows; n++) py[(long)i * w.Rows + n] += bias[n];
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/> over ranges covering [0, <paramref name="count"/>) on up to <see cref="Threads"/>
    /// threads, or on the calling thread when the whole (count x <paramref name="workPerItem"/>) is small: for
    /// one-off bulk work such as quantizing a matrix at load.
    /// </summary>
    public static void ForEachChunk(int count, long workPerItem, Action<int, int> body)
    {
        int threads = Math.Min(Threads, count);
        if (threads <= 1 || count * workPerItem < ParallelThreshold)
        {
            body(0, count);
            return;
        }
        int chunks = threads * 4, size = (count + chunks - 1) / chunks;
        Parallel.For(0, (count + size - 1) / size, new ParallelOptions { MaxDegreeOfParallelism = threads },
            c => body(c * size, Math.Min(count, (c + 1) * size)));
    }

    /// <summary>
    /// Runs <paramref name="body"/> over ranges of W's rows covering [0, Rows): on the calling thread for small
    /// work, else in parallel (how the rows are cut is explained below).
    /// </summary>
    public static void ForEachRowRange(WeightMatrix w, int m, Action<int, int> body)
    {
        long work = (long)m * w.Rows * w.Cols;
        int threads = Math.Min(Threads, w.Rows / 16);
        if (threads <= 1 || work < ParallelThreshold)
        {
            body(0, w.Rows);
            return;
        }
        // Decode (one activation row) streams the weights: one contiguous range per thread keeps one prefetched
        // stream per core (measured 10% faster than four ranges each). Batches are compute-bound: several ranges
        // per thread, so a core slowed by a neighbour does not hold up the rest. Range edges on multiples of 16 rows.
        int chunks = m == 1 ? threads : threads * 4;
        int chunkRows = ((w.Rows + chunks - 1) / chunks + 15) & ~15;
        chunks = (w.Rows + chunkRows - 1) / chunkRows;
        int rows = w.Rows;
        Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads }, c =>
        {
            int start = c * chunkRows;
            body(start, Math.Min(rows, start + chunkRows));
        });
    }
}
