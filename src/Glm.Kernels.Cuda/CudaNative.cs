using System.Runtime.InteropServices;

namespace Glm.Kernels.Cuda;

/// <summary>A weight in its stored format (glm_weight); every pointer is device memory.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GlmWeight
{
    public int Format, Rows, Cols, GroupSize, BlockRows, BlockCols;
    public nint Data, Scales, Zeros;

    public const int F32 = 0, Bf16 = 1, Fp8 = 2, Int4 = 3, Int8 = 4;
}

/// <summary>A strided view of a tensor's rows as heads (glm_heads).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GlmHeads
{
    public nint Data;
    public int Rows, RowStride, Count, HeadStride, Offset, Width;
}

/// <summary>A step's positions and page tables on the device (glm_step).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GlmStep
{
    public nint Positions, TableOffsets, Tables;
    public int Rows, BlockSize;
}

/// <summary>One layer of a paged KV pool (glm_kv_layer).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GlmKvLayer
{
    public nint Keys, Values;
    public int DType, KvHeads, KeyDim, ValueDim, ValueIsKeyPrefix;
    public long Slots;
}

/// <summary>The C ABI of libglm_cuda (native/include/glm_cuda.h). Every call returns 0 or a negative status.</summary>
internal static unsafe partial class CudaNative
{
    /// <summary>The name every import binds to; <see cref="CudaRuntime"/> resolves it to the CUDA or the host build.</summary>
    public const string Library = "glm_cuda";

    [LibraryImport(Library)] public static partial nint glm_cuda_last_error();
    [LibraryImport(Library)] public static partial int glm_cuda_version(out int runtime, out int driver);
    [LibraryImport(Library)] public static partial int glm_cuda_device_count(out int count);
    [LibraryImport(Library)] public static partial int glm_cuda_device_name(int device, byte* buffer, int length);
    [LibraryImport(Library)] public static partial int glm_cuda_set_device(int device);
    [LibraryImport(Library)] public static partial int glm_cuda_memory_info(out nuint free, out nuint total);
    [LibraryImport(Library)] public static partial int glm_cuda_is_host_build();
    [LibraryImport(Library)] public static partial int glm_cuda_malloc(out nint pointer, nuint bytes);
    [LibraryImport(Library)] public static partial int glm_cuda_free(nint pointer);
    [LibraryImport(Library)] public static partial int glm_cuda_copy_to_device(nint device, void* host, nuint bytes, nint stream);
    [LibraryImport(Library)] public static partial int glm_cuda_copy_to_host(void* host, nint device, nuint bytes, nint stream);
    [LibraryImport(Library)] public static partial int glm_cuda_copy_on_device(nint destination, nint source, nuint bytes, nint stream);
    [LibraryImport(Library)] public static partial int glm_cuda_stream_create(out nint stream);
    [LibraryImport(Library)] public static partial int glm_cuda_stream_destroy(nint stream);
    [LibraryImport(Library)] public static partial int glm_cuda_stream_synchronize(nint stream);
    [LibraryImport(Library)] public static partial int glm_rmsnorm_f32(nint x, nint weight, nint y, int rows, int dim, float eps, nint stream);
    [LibraryImport(Library)] public static partial int glm_silu_mul_f32(nint gate, nint up, nint output, long n, nint stream);
    [LibraryImport(Library)] public static partial int glm_rope_f32(nint x, nint positions, int tokens, int heads, int headDim, int rotaryDim, int layout, nint invFreq, nint stream);
    [LibraryImport(Library)] public static partial int glm_gemv_bf16(nint weight, nint x, nint y, int rows, int cols, nint stream);
    [LibraryImport(Library)] public static partial int glm_gemv_int4(nint codes, nint scales, nint zeros, nint x, nint y, int rows, int cols, int groupSize, nint stream);
    [LibraryImport(Library)] public static partial int glm_gemv_fp8_channel(nint codes, nint scales, nint x, nint y, int rows, int cols, nint stream);

    [LibraryImport(Library)] public static partial int glm_embedding(in GlmWeight table, nint ids, int n, nint output, nint stream);
    [LibraryImport(Library)] public static partial int glm_linear(in GlmWeight weight, nint x, int m, nint y, nint bias, nint stream);
    [LibraryImport(Library)] public static partial int glm_heads_times_weight(in GlmWeight weight, int rowsPerHead, int rowOffset, GlmHeads x, GlmHeads y, nint stream);
    [LibraryImport(Library)] public static partial int glm_rmsnorm_heads(GlmHeads x, nint weight, float eps, GlmHeads output, nint stream);
    [LibraryImport(Library)] public static partial int glm_rope_heads(GlmHeads x, nint positions, int rotaryDim, int layout, nint invFreq, nint stream);
    [LibraryImport(Library)] public static partial int glm_copy_heads(GlmHeads source, GlmHeads destination, nint stream);
    [LibraryImport(Library)] public static partial int glm_add_f32(nint into, nint x, long n, nint stream);
    [LibraryImport(Library)] public static partial int glm_silu_mul_halves(nint gateUp, int rows, int inter, nint output, nint stream);
    [LibraryImport(Library)] public static partial int glm_gather_rows(nint x, int cols, nint rows, int n, nint output, nint stream);
    [LibraryImport(Library)] public static partial int glm_kv_write(GlmKvLayer layer, GlmStep step, nint keys, nint values, nint stream);
    [LibraryImport(Library)] public static partial int glm_paged_attention(GlmKvLayer layer, GlmStep step, nint queries, int heads, int headDim,
        int queriesPerKvHead, float scale, int valueDim, nint output, nint stream);
    [LibraryImport(Library)] public static partial int glm_moe_route(nint x, int rows, nint gateWeight, nint correctionBias, int experts, int hidden, int topK,
        int groups, int topkGroup, int normTopkProb, float routedScalingFactor, nint chosen, nint weights, nint expertStart, nint order, nint stream);
    [LibraryImport(Library)] public static partial int glm_sample(nint logits, int rows, int vocab, nint parameters, nint scratchProbs, nint scratchOrder,
        nint tokens, nint stream);
    [LibraryImport(Library)] public static partial int glm_moe_experts(nint gate, nint up, nint down, int experts, int intermediate, int hidden,
        nint x, int rows, int topK, nint chosen, nint weights, nint expertStart, nint order, nint scratch, nint output, nint stream);
}
