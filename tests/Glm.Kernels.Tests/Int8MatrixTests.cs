using Glm.Kernels.Cpu;

namespace Glm.Kernels.Tests;

/// <summary>
/// Int8 per-channel weights: the quantizer within half a step, both activation modes against float64 references
/// (float: the dequantized weights; int8: also the dequantized activations, so only float rounding is left), and
/// every kernel shape (decode's four rows, batches' four activation rows, the rows left over) batch-independent.
/// </summary>
public unsafe class Int8MatrixTests
{
    private readonly int _seed = Environment.TickCount;

    [Fact]
    public void QuantizationIsWithinHalfAStepAndKeepsZeroRows()
    {
        var rng = new Random(_seed);
        int rows = 33, cols = 200;
        var w = ScalarReference.Random(rng, rows * cols, 0.3f);
        for (int c = 0; c < cols; c++) w[5 * cols + c] = 0; // an all-zero row
        w[7 * cols + 3] = 9f; // an outlier sets its row's scale
        using var m = Int8Matrix.Quantize(w, rows, cols);
        var row = new float[cols];
        for (int r = 0; r < rows; r++)
        {
            float max = 0;
            for (int c = 0; c < cols; c++) max = MathF.Max(max, MathF.Abs(w[r * cols + c]));
            float step = max > 0 ? max / Int8Matrix.MaxCode : 1f;
            Assert.Equal(step, m.Scales[r]);
            m.DequantizeRow(r, row);
            for (int c = 0; c < cols; c++)
            {
                Assert.InRange(m.Code(r, c), -Int8Matrix.MaxCode, Int8Matrix.MaxCode);
                Assert.True(Math.Abs(row[c] - w[r * cols + c]) <= step / 2 * 1.0001f, $"[{r},{c}] {w[r * cols + c]} → {row[c]} (seed {_seed})");
            }
        }
        Assert.Equal(Int8Matrix.MaxCode, m.Code(7, 3));
        m.DequantizeRow(5, row);
        Assert.All(row, v => Assert.Equal(0f, v));
    }

    [Fact]
    public void StoredCodesAndScalesLoadAsGiven()
    {
        sbyte[] codes = [1, -2, 3, -127, 0, 127];
        using var m = new Int8Matrix(codes, 2, 3, [0.5f, 2f]);
        var row = new float[3];
        m.DequantizeRow(1, row);
        Assert.Equal(new[] { -254f, 0f, 254f }, row);
        Assert.Equal("int8-channel", m.Format);
        Assert.Equal(6 + 2 * 4, m.ByteSize);
        Assert.Throws<ArgumentException>(() => new Int8Matrix(codes, 2, 3, [1f]));
    }

    /// <summary>K = 645 splits into no group of 32, so it takes float activations whatever is asked (and the 8-lane tails).</summary>
    [Theory]
    [InlineData(640)]
    [InlineData(645)]
    [InlineData(9216)]
    public void FloatActivationsMatchTheFloat64DequantizedReference(int k)
    {
        var rng = new Random(_seed);
        int n = 67;
        using var matrix = Int8Matrix.Quantize(ScalarReference.Random(rng, n * k, 0.05f), n, k);
        matrix.Activations = Int4Activations.Float;
        Assert.Equal(Int4Activations.Float, matrix.Activations);
        var deq = ScalarReference.Dequantized(matrix);
        foreach (int m in new[] { 1, 7 })
        {
            var x = ScalarReference.Random(rng, m * k);
            var y = new float[m * n];
            MatMul.Multiply(matrix, x, m, y);
            double err = ScalarReference.RelativeError(y, ScalarReference.MatMul(x, m, deq, n, k));
            Assert.True(err < 1e-5, $"K={k} M={m}: relative error {err:E2} (seed {_seed})");
            ScalarReference.AssertRowsIndependentOfBatch(matrix, x, m);
            fixed (float* px = x)
                for (int r = 0; r < n; r += 11) Assert.Equal(y[r], matrix.DotRow(r, px));
        }
    }

    /// <summary>K = 1536 takes groups of 128, 1472 groups of 64, 1440 groups of 32; 9216 is wider than L1 holds.</summary>
    [Theory]
    [InlineData(1536, 128)]
    [InlineData(1472, 64)]
    [InlineData(1440, 32)]
    [InlineData(9216, 128)]
    public void Int8ActivationsMatchTheFloat64Reference(int k, int group)
    {
        var rng = new Random(_seed);
        int n = 71; // odd: weight rows after the last four of decode's tiles
        using var matrix = Int8Matrix.Quantize(ScalarReference.Random(rng, n * k, 0.05f), n, k);
        Assert.Equal(Int4Activations.Int8, matrix.Activations);
        Assert.Equal(group, matrix.ActivationGroup);
        var deq = ScalarReference.Dequantized(matrix);
        foreach (int m in new[] { 1, 6, 9 }) // 6 and 9: activation rows after the last four of the batch tiles
        {
            var x = ScalarReference.Random(rng, m * k);
            for (int i = 0; i < x.Length; i += 61) x[i] *= 25; // outliers set the groups' scales
            var xq = new float[m * k];
            using (var activations = new Int8Activations(m, k, group, 1))
            {
                fixed (float* px = x) activations.Quantize(px);
                for (int i = 0; i < m; i++) activations.Dequantize(i, xq.AsSpan(i * k, k));
            }
            var y = new float[m * n];
            MatMul.Multiply(matrix, x, m, y);
            double err = ScalarReference.RelativeError(y, ScalarReference.MatMul(xq, m, deq, n, k));
            Assert.True(err < 1e-5, $"K={k} M={m}: relative error {err:E2} (seed {_seed})");
            ScalarReference.AssertRowsIndependentOfBatch(matrix, x, m);
            fixed (float* px = x)
                for (int i = 0; i < m; i++)
                    for (int r = 0; r < n; r += 5) Assert.Equal(y[i * n + r], matrix.DotRow(r, px + (long)i * k));
        }
    }

    /// <summary>The whole-matrix entry points (rows shared among threads, or all on the caller's) give the same bits.</summary>
    [Fact]
    public void OnThisThreadGivesTheSharedBits()
    {
        var rng = new Random(_seed);
        int n = 260, k = 1024, m = 5;
        using var matrix = Int8Matrix.Quantize(ScalarReference.Random(rng, n * k, 0.05f), n, k);
        var x = ScalarReference.Random(rng, m * k);
        var shared = new float[m * n];
        var alone = new float[m * n];
        MatMul.Multiply(matrix, x, m, shared);
        fixed (float* px = x, py = alone) matrix.MultiplyOnThisThread(px, m, py);
        Assert.Equal(shared, alone);
    }
}
