namespace Glm.Kernels.Cpu;

/// <summary>
/// Float32 weights in a pinned array: the exact reference format and the home of converted F16/F8 tensors (and of
/// MLA's absorbed key blocks when kv_b_proj is quantized). With AVX2 the <see cref="Lanes8"/> kernels serve (4 x 3
/// tiles for batches, four weight rows at once for decode); without, every product is <see cref="Dot.F32"/>.
/// </summary>
public sealed unsafe class F32Matrix : WeightMatrix
{
    private readonly float[] _values;
    private readonly float* _data;

    public F32Matrix(float[] values, int rows, int cols) : base(rows, cols)
    {
        if (values.Length != (long)rows * cols) throw new ArgumentException("size mismatch", nameof(values));
        _values = GC.AllocateArray<float>(values.Length, pinned: true);
        values.CopyTo(_values, 0);
        fixed (float* p = _values) _data = p;
    }

    public override string Format => "f32";
    public override long ByteSize => (long)Rows * Cols * 4;

    public override float DotRow(int row, float* x) =>
        Lanes8.Supported ? Lanes8.Dot<F32Row>(x, _data + (long)row * Cols, Cols) : Dot.F32(x, _data + (long)row * Cols, Cols);

    public override void MultiplyRows(float* x, int m, float* y, int yStride, int rowStart, int rowEnd)
    {
        if (Lanes8.Supported) Lanes8.Multiply<F32Row>(x, m, Cols, (byte*)_data, 4L * Cols, y, yStride, rowStart, rowEnd);
        else base.MultiplyRows(x, m, y, yStride, rowStart, rowEnd);
    }

    public override void DequantizeRow(int row, Span<float> destination) =>
        _values.AsSpan(row * Cols, Cols).CopyTo(destination);
}
