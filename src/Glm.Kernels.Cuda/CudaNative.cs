using System.Runtime.InteropServices;

namespace Glm.Kernels.Cuda;

/// <summary>The C ABI of libglm_cuda (native/include/glm_cuda.h). Every call returns 0 or a negative status.</summary>
internal static unsafe partial class CudaNative
{
    public const string Library = "glm_cuda";

    [LibraryImport(Library)] public static partial nint glm_cuda_last_error();
    [LibraryImport(Library)] public static partial int glm_cuda_version(out int runtime, out int driver);
    [LibraryImport(Library)] public static partial int glm_cuda_device_count(out int count);
    [LibraryImport(Library)] public static partial int glm_cuda_device_name(int device, byte* buffer, int length);
    [LibraryImport(Library)] public static partial int glm_cuda_set_device(int device);
    [LibraryImport(Library)] public static partial int glm_cuda_malloc(out nint pointer, nuint bytes);
    [LibraryImport(Library)] public static partial int glm_cuda_free(nint pointer);
    [LibraryImport(Library)] public static partial int glm_cuda_copy_to_device(nint device, void* host, nuint bytes, nint stream);
    [LibraryImport(Library)] public static partial int glm_cuda_copy_to_host(void* host, nint device, nuint bytes, nint stream);
    [LibraryImport(Library)] public static partial int glm_cuda_stream_create(out nint stream);
    [LibraryImport(Library)] public static partial int glm_cuda_stream_destroy(nint stream);
    [LibraryImport(Library)] public static partial int glm_cuda_stream_synchronize(nint stream);
    [LibraryImport(Library)] public static partial int glm_rmsnorm_f32(nint x, nint weight, nint y, int rows, int dim, float eps, nint stream);
    [LibraryImport(Library)] public static partial int glm_silu_mul_f32(nint gate, nint up, nint output, long n, nint stream);
    [LibraryImport(Library)] public static partial int glm_rope_f32(nint x, nint positions, int tokens, int heads, int headDim, int rotaryDim, int layout, nint invFreq, nint stream);
    [LibraryImport(Library)] public static partial int glm_gemv_bf16(nint weight, nint x, nint y, int rows, int cols, nint stream);
    [LibraryImport(Library)] public static partial int glm_gemv_int4(nint codes, nint scales, nint zeros, nint x, nint y, int rows, int cols, int groupSize, nint stream);
    [LibraryImport(Library)] public static partial int glm_gemv_fp8_channel(nint codes, nint scales, nint x, nint y, int rows, int cols, nint stream);
}
