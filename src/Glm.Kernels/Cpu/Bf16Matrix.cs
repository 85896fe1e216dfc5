namespace Glm.Kernels.Cpu;

/// <summary>BF16 weights read in place (for example straight from a memory-mapped safetensors file).</summary>
public sealed unsafe class Bf16Matrix : WeightMatrix
{
    private readonly ushort* _data;
    private readonly object? _owner;

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
    internal object? Owner => _owner;

    public override float DotRow(int row, float* x) => Dot.Bf16(x, _data + (long)row * Cols, Cols);

    public override void DequantizeRow(int row, Span<float> destination)
    {
        var src = new ReadOnlySpan<ushort>(_data + (long)row * Cols, Cols);
        Formats.BFloat16.ToFloat(src, destination);
    }
}
