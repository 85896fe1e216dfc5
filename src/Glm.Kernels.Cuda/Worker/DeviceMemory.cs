namespace Glm.Kernels.Cuda.Worker;

/// <summary>One device allocation: a pointer and its size in bytes. Pooled slabs come back to their pool.</summary>
internal sealed class DeviceSlab(nint pointer, long bytes)
{
    public nint Pointer { get; } = pointer;
    public long Bytes { get; } = bytes;
}

/// <summary>
/// Device memory for a worker: permanent allocations (weights, KV pages) and a pool of activation slabs in
/// power-of-two size classes, so a step's tensors reuse the memory the last step freed instead of calling
/// cudaMalloc (which synchronises the device) per op. Every op runs on one stream in order, so a slab freed after
/// queueing its last reader can be handed to the next op at once: that op runs after the reader.
/// </summary>
internal sealed class DeviceMemory : IDisposable
{
    private const int MinClassBytes = 1024;
    private readonly object _gate = new();
    private readonly Dictionary<long, Stack<DeviceSlab>> _free = [];
    private readonly List<DeviceSlab> _all = [];
    private bool _disposed;

    /// <summary>Bytes held: permanent allocations plus every pooled slab, in use or not.</summary>
    public long BytesHeld { get; private set; }
    public long PermanentBytes { get; private set; }

    /// <summary>A permanent allocation (weights, KV pages), freed by <see cref="Release"/> or with the worker.</summary>
    public DeviceSlab Allocate(long bytes)
    {
        var slab = AllocateRaw(bytes);
        lock (_gate) PermanentBytes += bytes;
        return slab;
    }

    private DeviceSlab AllocateRaw(long bytes)
    {
        CudaRuntime.Check(CudaNative.glm_cuda_malloc(out nint p, (nuint)Math.Max(bytes, 1)), $"cudaMalloc of {bytes:N0} bytes");
        var slab = new DeviceSlab(p, bytes);
        lock (_gate)
        {
            _all.Add(slab);
            BytesHeld += bytes;
        }
        return slab;
    }

    /// <summary>A permanent allocation holding a copy of <paramref name="host"/>.</summary>
    public unsafe DeviceSlab Upload<T>(ReadOnlySpan<T> host) where T : unmanaged
    {
        long bytes = (long)host.Length * sizeof(T);
        var slab = Allocate(bytes);
        CopyIn(slab, host);
        return slab;
    }

    public static unsafe void CopyIn<T>(DeviceSlab slab, ReadOnlySpan<T> host, long byteOffset = 0) where T : unmanaged
    {
        long bytes = (long)host.Length * sizeof(T);
        if (bytes == 0) return;
        if (byteOffset + bytes > slab.Bytes) throw new ArgumentException("copy past the end of a device allocation");
        fixed (T* p = host) CudaRuntime.Check(CudaNative.glm_cuda_copy_to_device(slab.Pointer + (nint)byteOffset, p, (nuint)bytes, 0), "copy to device");
    }

    public static unsafe void CopyOut<T>(nint device, Span<T> host) where T : unmanaged
    {
        if (host.IsEmpty) return;
        fixed (T* p = host) CudaRuntime.Check(CudaNative.glm_cuda_copy_to_host(p, device, (nuint)((long)host.Length * sizeof(T)), 0), "copy to host");
    }

    private static long SizeClass(long bytes)
    {
        long c = MinClassBytes;
        while (c < bytes) c <<= 1;
        return c;
    }

    /// <summary>A pooled slab of at least <paramref name="bytes"/>; give it back with <see cref="Return"/>.</summary>
    public DeviceSlab Rent(long bytes)
    {
        long size = SizeClass(bytes);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_free.TryGetValue(size, out var stack) && stack.Count > 0) return stack.Pop();
        }
        return AllocateRaw(size);
    }

    public void Return(DeviceSlab slab)
    {
        lock (_gate)
        {
            if (_disposed) return;
            if (!_free.TryGetValue(slab.Bytes, out var stack)) _free[slab.Bytes] = stack = new Stack<DeviceSlab>();
            stack.Push(slab);
        }
    }

    /// <summary>Frees one permanent allocation (a weight or a KV pool disposed before the worker).</summary>
    public void Release(DeviceSlab slab)
    {
        lock (_gate)
        {
            if (_disposed || !_all.Remove(slab)) return;
            BytesHeld -= slab.Bytes;
            PermanentBytes -= slab.Bytes;
        }
        CudaNative.glm_cuda_free(slab.Pointer);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var s in _all) CudaNative.glm_cuda_free(s.Pointer);
            _all.Clear();
            _free.Clear();
            BytesHeld = PermanentBytes = 0;
        }
    }
}
