using System.Runtime.InteropServices;

namespace Glm.Kernels.Cpu;

/// <summary>
/// Native, zeroed memory for quantized weights, on 2 MiB pages where Linux allows it (transparent huge pages
/// asked for with madvise; this machine's THP mode is "madvise", so the GC's own heap never gets them). Decode
/// streams every weight once per token, and on 4 KiB pages the hardware prefetcher stops at each page and the
/// TLB misses: Int4 GEMV measured 87-90% of the read bandwidth on 4 KiB pages and 98-103% on 2 MiB pages, in
/// the same runs. Elsewhere, or when madvise is refused, it is ordinary aligned memory.
/// </summary>
public sealed unsafe class WeightMemory : IDisposable
{
    private const long HugePage = 2 << 20;
    private const int MadviseHugePage = 14; // MADV_HUGEPAGE
    private static readonly delegate* unmanaged<void*, nuint, int, int> Madvise = FindMadvise();

    private byte* _pointer;
    private readonly long _allocated;

    public WeightMemory(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        Length = length;
        bool huge = length >= HugePage / 2;
        _allocated = huge ? (length + HugePage - 1) & ~(HugePage - 1) : Math.Max(length, 1);
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)_allocated, huge ? (nuint)HugePage : 64);
        if (huge && Madvise != null) Madvise(_pointer, (nuint)_allocated, MadviseHugePage); // a refusal only costs speed
        NativeMemory.Clear(_pointer, (nuint)_allocated);
        GC.AddMemoryPressure(_allocated);
    }

    public long Length { get; }
    public byte* Pointer => _pointer;
    public Span<byte> Span => new(_pointer, checked((int)Length));

    private static delegate* unmanaged<void*, nuint, int, int> FindMadvise()
    {
        if (!OperatingSystem.IsLinux()) return null;
        foreach (string name in new[] { "libc.so.6", "libc" })
            if (NativeLibrary.TryLoad(name, out nint library) && NativeLibrary.TryGetExport(library, "madvise", out nint function))
                return (delegate* unmanaged<void*, nuint, int, int>)function;
        return null;
    }

    public void Dispose()
    {
        if (_pointer == null) return;
        NativeMemory.AlignedFree(_pointer);
        _pointer = null;
        GC.RemoveMemoryPressure(_allocated);
        GC.SuppressFinalize(this);
    }

    ~WeightMemory() => Dispose();
}
