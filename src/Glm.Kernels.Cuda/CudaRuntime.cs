using System.Runtime.InteropServices;

namespace Glm.Kernels.Cuda;

/// <summary>A failed native call, with the library's own message; never a crash of the host.</summary>
public sealed class CudaException(string message) : Exception(message);

/// <summary>
/// Finds the native library and a device, and turns native status codes into exceptions. Two builds answer to
/// the same imports: libglm_cuda.so (CUDA kernels on an NVIDIA GPU) and libglm_cuda_host.so (the same C ABI in
/// plain C++ over host memory, which CI runs the CUDA worker's C# side on). Which one loads is chosen before
/// the first native call: <see cref="UseLibrary"/>, else the GLM_CUDA_LIBRARY environment variable (a path, or
/// "host" for the host build beside this assembly), else libglm_cuda next to the server or on the library path.
/// </summary>
public static class CudaRuntime
{
    private static readonly object Gate = new();
    private static string? _requested = Environment.GetEnvironmentVariable("GLM_CUDA_LIBRARY") is { Length: > 0 } v ? v : null;
    private static string? _loadedFrom;
    private static readonly Lazy<(bool Ok, string Reason)> State = new(Probe);

    /// <summary>The host build's file name.</summary>
    public const string HostLibraryFile = "libglm_cuda_host.so";

    // The resolver must be in place before any import binds, whichever class makes the first native call; a
    // library has no entry point of its own, so a module initializer is the one place that runs first.
#pragma warning disable CA2255
    [System.Runtime.CompilerServices.ModuleInitializer]
#pragma warning restore CA2255
    internal static void RegisterResolver() => NativeLibrary.SetDllImportResolver(typeof(CudaRuntime).Assembly, Resolve);

    /// <summary>
    /// Chooses the library every later native call binds to: a path, or "host" for the host build next to this
    /// assembly. Only before the first native call; afterwards the same choice is accepted and another refused.
    /// </summary>
    public static void UseLibrary(string pathOrHost)
    {
        lock (Gate)
        {
            if (_loadedFrom is not null && _requested != pathOrHost)
                throw new InvalidOperationException($"the CUDA library is already loaded from {_loadedFrom}");
            _requested = pathOrHost;
        }
    }

    /// <summary>The host build beside this assembly, or null when it was not built.</summary>
    public static string? HostLibraryPath()
    {
        string path = Path.Combine(Path.GetDirectoryName(typeof(CudaRuntime).Assembly.Location) ?? AppContext.BaseDirectory, HostLibraryFile);
        return File.Exists(path) ? path : null;
    }

    private static nint Resolve(string name, System.Reflection.Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name != CudaNative.Library) return 0;
        lock (Gate)
        {
            string? path = _requested == "host" ? HostLibraryPath() ?? HostLibraryFile : _requested;
            nint handle;
            if (path is not null) { if (!NativeLibrary.TryLoad(path, out handle)) return 0; }
            else if (!NativeLibrary.TryLoad(name, assembly, searchPath, out handle)) return 0;
            _loadedFrom = path ?? name;
            return handle;
        }
    }

    /// <summary>True when the native library loads and sees at least one device; otherwise why not.</summary>
    public static bool IsAvailable(out string reason)
    {
        (bool ok, reason) = State.Value;
        return ok;
    }

    /// <summary>True when the library that loaded is the host build (no GPU: plain C++ over host memory).</summary>
    public static bool IsHostBuild => IsAvailable(out _) && CudaNative.glm_cuda_is_host_build() == 1;

    private static (bool, string) Probe()
    {
        try
        {
            if (CudaNative.glm_cuda_device_count(out int count) != 0) return (false, "CUDA is not usable: " + LastError());
            if (count == 0) return (false, "no CUDA device is visible");
            return (true, CudaNative.glm_cuda_is_host_build() == 1 ? "the host build (no GPU: the CUDA ABI in plain C++)" : $"{count} CUDA device(s)");
        }
        catch (DllNotFoundException)
        {
            return (false, _requested is null
                ? "libglm_cuda.so was not found (build src/Glm.Kernels.Cuda/native with CMake and nvcc, and put it next to the server)"
                : $"the CUDA library '{_requested}' was not found");
        }
        catch (EntryPointNotFoundException e)
        {
            return (false, "libglm_cuda could not be bound (an older build?): " + e.Message);
        }
    }

    public static string LastError() => Marshal.PtrToStringUTF8(CudaNative.glm_cuda_last_error()) ?? "unknown error";

    internal static void Check(int status, string what)
    {
        if (status != 0) throw new CudaException($"{what} failed ({status}): {LastError()}");
    }

    /// <summary>Waits for everything queued on the default stream (timing, reading results).</summary>
    public static void Synchronize() => Check(CudaNative.glm_cuda_stream_synchronize(0), "synchronize");

    /// <summary>Free and total memory of the current device, in bytes.</summary>
    public static (long Free, long Total) MemoryInfo()
    {
        Check(CudaNative.glm_cuda_memory_info(out nuint free, out nuint total), "memory info");
        return ((long)free, (long)total);
    }

    public static unsafe string DeviceName(int device)
    {
        byte* buffer = stackalloc byte[256];
        Check(CudaNative.glm_cuda_device_name(device, buffer, 256), "device name");
        return Marshal.PtrToStringUTF8((nint)buffer) ?? "";
    }
}

/// <summary>A device allocation of T elements, freed on dispose.</summary>
public sealed unsafe class DeviceBuffer<T> : IDisposable where T : unmanaged
{
    public DeviceBuffer(long length)
    {
        Length = length;
        CudaRuntime.Check(CudaNative.glm_cuda_malloc(out nint p, (nuint)(length * sizeof(T))), "cudaMalloc");
        Pointer = p;
    }

    public DeviceBuffer(ReadOnlySpan<T> host) : this(host.Length) => Upload(host);

    public nint Pointer { get; private set; }
    public long Length { get; }

    public void Upload(ReadOnlySpan<T> host)
    {
        fixed (T* p = host) CudaRuntime.Check(CudaNative.glm_cuda_copy_to_device(Pointer, p, (nuint)(host.Length * sizeof(T)), 0), "copy to device");
    }

    public T[] Download()
    {
        var host = new T[Length];
        fixed (T* p = host) CudaRuntime.Check(CudaNative.glm_cuda_copy_to_host(p, Pointer, (nuint)(Length * sizeof(T)), 0), "copy to host");
        return host;
    }

    public void Dispose()
    {
        if (Pointer != 0) CudaNative.glm_cuda_free(Pointer);
        Pointer = 0;
    }
}

/// <summary>The kernels, on the default stream, in the CPU worker's layouts.</summary>
public static class CudaKernels
{
    public static void RmsNorm(DeviceBuffer<float> x, DeviceBuffer<float> weight, DeviceBuffer<float> y, int rows, int dim, float eps) =>
        CudaRuntime.Check(CudaNative.glm_rmsnorm_f32(x.Pointer, weight.Pointer, y.Pointer, rows, dim, eps, 0), "rmsnorm");

    public static void SiluMul(DeviceBuffer<float> gate, DeviceBuffer<float> up, DeviceBuffer<float> output) =>
        CudaRuntime.Check(CudaNative.glm_silu_mul_f32(gate.Pointer, up.Pointer, output.Pointer, gate.Length, 0), "silu_mul");

    public static void Rope(DeviceBuffer<float> x, DeviceBuffer<int> positions, int heads, int headDim, int rotaryDim, int layout, DeviceBuffer<float> invFreq) =>
        CudaRuntime.Check(CudaNative.glm_rope_f32(x.Pointer, positions.Pointer, (int)positions.Length, heads, headDim, rotaryDim, layout, invFreq.Pointer, 0), "rope");

    public static void GemvBf16(DeviceBuffer<ushort> weight, DeviceBuffer<float> x, DeviceBuffer<float> y, int rows, int cols) =>
        CudaRuntime.Check(CudaNative.glm_gemv_bf16(weight.Pointer, x.Pointer, y.Pointer, rows, cols, 0), "gemv_bf16");

    public static void GemvInt4(DeviceBuffer<byte> codes, DeviceBuffer<float> scales, DeviceBuffer<float> zeros, DeviceBuffer<float> x, DeviceBuffer<float> y, int rows, int cols, int groupSize) =>
        CudaRuntime.Check(CudaNative.glm_gemv_int4(codes.Pointer, scales.Pointer, zeros.Pointer, x.Pointer, y.Pointer, rows, cols, groupSize, 0), "gemv_int4");

    public static void GemvFp8Channel(DeviceBuffer<byte> codes, DeviceBuffer<float> scales, DeviceBuffer<float> x, DeviceBuffer<float> y, int rows, int cols) =>
        CudaRuntime.Check(CudaNative.glm_gemv_fp8_channel(codes.Pointer, scales.Pointer, x.Pointer, y.Pointer, rows, cols, 0), "gemv_fp8");
}
