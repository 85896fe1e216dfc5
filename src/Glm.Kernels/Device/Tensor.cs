namespace Glm.Kernels.Device;

public enum TensorDType { F32, Bf16 }

/// <summary>
/// An activation that lives where its worker keeps it: a handle with a shape and a dtype, never a span on the
/// model's side. 2-D, row-major: one row per token. The model owns what an op returns and disposes it (the
/// worker then reuses the memory); a handle is a struct, so passing one around allocates nothing.
/// </summary>
public readonly struct Tensor : IDisposable
{
    public Tensor(IWorker worker, object storage, int rows, int cols, TensorDType dtype = TensorDType.F32)
    {
        Worker = worker;
        Storage = storage;
        Rows = rows;
        Cols = cols;
        DType = dtype;
    }

    public IWorker Worker { get; }
    /// <summary>The worker's own handle to the memory (a pooled array on the CPU, a device buffer on a GPU).</summary>
    public object Storage { get; }
    public int Rows { get; }
    public int Cols { get; }
    public TensorDType DType { get; }
    public long Length => (long)Rows * Cols;

    /// <summary>Each row as <paramref name="count"/> consecutive heads of <paramref name="width"/> values.</summary>
    public Heads Heads(int count, int width) => new(this, count, width, 0, width);

    /// <summary>Each row as one head: the whole row.</summary>
    public Heads WholeRows => new(this, 1, Cols, 0, Cols);

    public void Dispose() => Worker?.Free(this);

    public override string ToString() => $"[{Rows}, {Cols}] {DType}";
}

/// <summary>
/// A strided view of a tensor's rows as heads: head h of row i is columns [h·Stride + Offset, … + Width). It names
/// the sub-blocks attention works on (per-head norms, the rotary part of a query, the latent part of an MLA key).
/// </summary>
public readonly record struct Heads(Tensor Tensor, int Count, int Stride, int Offset, int Width)
{
    /// <summary>True when the view is <see cref="Count"/> heads packed from column <see cref="Offset"/> on.</summary>
    public bool IsPacked => Stride == Width;

    public Heads Slice(int offset, int width) => this with { Offset = Offset + offset, Width = width };
}
