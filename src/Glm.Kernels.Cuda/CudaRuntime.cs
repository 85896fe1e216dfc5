using System.Runtime.InteropServices;

namespace Glm.Kernels.Cuda;

/// <summary>A failed native call, with the library's own message; never a crash of the host.</summary>
public sealed class CudaException(string message) : Exception(message);

/// <summary>Finds libglm_cuda and a CUDA device, and turns native status codes into exceptions.</summary>
public static class CudaRuntime
{
    private static readonly Lazy<(bool Ok, string Reason)> State = new(Probe);

    /// <summary>True when the native library loads and sees at least one device; otherwise why not.</summary>
    public static bool IsAvailable(out string reason)
    {
        (bool ok, reason) = State.Value;
        return ok;
    }

    private static (bool, string) Probe()
    {
        if (!NativeLibrary.TryLoad(CudaNative.Library, typeof(CudaRuntime).Assembly, null, out _))
            return (false, "libglm_cuda.so was not found (build src/Glm.Kernels.Cuda/native with CMake and nvcc, and put it next to the server)");
        try
        {
            if (CudaNative.glm_cuda_device_count(out int count) != 0) return (false, "CUDA is not usable: " + LastError());
            return count > 0 ? (true, $"{count} CUDA device(s)") : (false, "no CUDA device is visible");
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return (false, "libglm_cuda could not be bound: " + e.Message);
        }
    }

    public static string LastError() => Marshal.PtrToStringUTF8(CudaNative.glm_cuda_last_error()) ?? "unknown error";

    internal static void Check(int status, string what)
    {
        if (status != 0) throw new CudaException($"{what} failed ({status}): {LastError()}");
    }

    /// <summary>Waits for everything queued on the default stream (timing, reading results).</summary>
    public static void Synchronize() => Check(CudaNative.glm_cuda_stream_synchronize(0), "synchronize");

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
