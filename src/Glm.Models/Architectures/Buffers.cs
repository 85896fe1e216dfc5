using System.Buffers;

namespace Glm.Models.Architectures;

/// <summary>A pooled float buffer of a requested length; returned to the pool on dispose.</summary>
internal readonly struct PooledFloats : IDisposable
{
    private readonly float[] _array;
    public readonly int Length;

    public PooledFloats(long length)
    {
        Length = checked((int)length);
        _array = ArrayPool<float>.Shared.Rent(Math.Max(Length, 1));
    }

    public Span<float> Span => _array.AsSpan(0, Length);
    public float[] Array => _array;

    public void Dispose() => ArrayPool<float>.Shared.Return(_array);
}

/// <summary>A pooled int buffer of a requested length; returned to the pool on dispose.</summary>
internal readonly struct PooledInts : IDisposable
{
    private readonly int[] _array;
    public readonly int Length;

    public PooledInts(long length)
    {
        Length = checked((int)length);
        _array = ArrayPool<int>.Shared.Rent(Math.Max(Length, 1));
    }

    public Span<int> Span => _array.AsSpan(0, Length);

    public void Dispose() => ArrayPool<int>.Shared.Return(_array);
}
