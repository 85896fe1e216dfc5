using System.Buffers;

namespace Glm.Models.Architectures;

/// <summary>A pooled buffer of a requested length (the shared array pool's); returned to the pool on dispose.</summary>
internal readonly struct Pooled<T> : IDisposable
{
    private readonly T[] _array;
    public readonly int Length;

    public Pooled(long length)
    {
        Length = checked((int)length);
        _array = ArrayPool<T>.Shared.Rent(Math.Max(Length, 1));
    }

    public Span<T> Span => _array.AsSpan(0, Length);
    /// <summary>The rented array itself (at least <see cref="Length"/> long), for APIs that take arrays.</summary>
    public T[] Array => _array;

    public void Dispose() => ArrayPool<T>.Shared.Return(_array);
}
