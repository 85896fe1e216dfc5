namespace Glm.Kernels.Tests;

/// <summary>Plain float64 loops the SIMD kernels are checked against.</summary>
public static class ScalarReference
{
    public static double Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += (double)a[i] * b[i];
        return s;
    }

    public static double[] MatMul(float[] x, int m, float[] w, int n, int k)
    {
        var y = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                y[i * n + j] = Dot(x.AsSpan(i * k, k), w.AsSpan(j * k, k));
        return y;
    }

    public static float[] Random(Random rng, int n, float scale = 1f)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return v;
    }

    /// <summary>Each of <paramref name="rows"/> activation rows gives the same bits alone as inside the batch.</summary>
    public static void AssertRowsIndependentOfBatch(Glm.Kernels.Cpu.WeightMatrix w, float[] x, int rows)
    {
        var batched = new float[rows * w.Rows];
        Glm.Kernels.Cpu.MatMul.Multiply(w, x, rows, batched);
        for (int row = 0; row < rows; row++)
        {
            var alone = new float[w.Rows];
            Glm.Kernels.Cpu.MatMul.Multiply(w, x.AsSpan(row * w.Cols, w.Cols), 1, alone);
            Xunit.Assert.Equal(alone, batched.AsSpan(row * w.Rows, w.Rows).ToArray());
        }
    }

    /// <summary>Every row of a matrix as float32, row-major: what the float64 references multiply.</summary>
    public static float[] Dequantized(Glm.Kernels.Cpu.WeightMatrix m)
    {
        var values = new float[(long)m.Rows * m.Cols];
        for (int r = 0; r < m.Rows; r++) m.DequantizeRow(r, values.AsSpan(r * m.Cols, m.Cols));
        return values;
    }

    /// <summary>max |a − b| / max |b|: the relative error used throughout.</summary>
    public static double RelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        double maxErr = 0, maxRef = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            maxErr = Math.Max(maxErr, Math.Abs(actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }
        return maxRef == 0 ? maxErr : maxErr / maxRef;
    }
}
