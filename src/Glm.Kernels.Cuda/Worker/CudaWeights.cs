using Glm.Kernels.Cpu;

namespace Glm.Kernels.Cuda.Worker;

/// <summary>A weight uploaded once, in its stored format: the glm_weight the kernels read, and the memory behind it.</summary>
internal sealed class CudaWeight(GlmWeight native, DeviceMemory memory, params DeviceSlab?[] slabs) : IDisposable
{
    public GlmWeight Native = native;
    private bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var s in slabs)
            if (s is not null) memory.Release(s);
    }

    /// <summary>Uploads a host matrix as the CUDA kernels read it (the CPU worker's layouts, so nothing is repacked yet).</summary>
    public static unsafe CudaWeight Upload(WeightMatrix w, DeviceMemory memory)
    {
        var n = new GlmWeight { Rows = w.Rows, Cols = w.Cols };
        switch (w)
        {
            case Bf16Matrix b:
            {
                n.Format = GlmWeight.Bf16;
                var data = memory.Upload(new ReadOnlySpan<ushort>(b.Data, checked(w.Rows * w.Cols)));
                n.Data = data.Pointer;
                return new CudaWeight(n, memory, data);
            }
            case Fp8Matrix f:
            {
                n.Format = GlmWeight.Fp8;
                n.BlockRows = f.BlockRows;
                n.BlockCols = f.BlockCols;
                var codes = memory.Upload(f.Codes);
                var scales = memory.Upload(f.ScaleGrid);
                (n.Data, n.Scales) = (codes.Pointer, scales.Pointer);
                return new CudaWeight(n, memory, codes, scales);
            }
            case Int4Matrix q:
            {
                n.Format = GlmWeight.Int4;
                n.GroupSize = q.GroupSize;
                var codes = memory.Upload(q.PackedCodes);
                var scales = memory.Upload(q.Scales);
                var zeros = memory.Upload(q.Zeros);
                (n.Data, n.Scales, n.Zeros) = (codes.Pointer, scales.Pointer, zeros.Pointer);
                return new CudaWeight(n, memory, codes, scales, zeros);
            }
            case Int8Matrix i8:
            {
                n.Format = GlmWeight.Int8;
                var codes = memory.Upload(i8.Codes);
                var scales = memory.Upload(i8.Scales);
                (n.Data, n.Scales) = (codes.Pointer, scales.Pointer);
                return new CudaWeight(n, memory, codes, scales);
            }
            default:
            {
                // F32 (and any future host format): its dequantized float32 rows, which is exactly an F32 matrix.
                n.Format = GlmWeight.F32;
                var values = new float[(long)w.Rows * w.Cols];
                for (int r = 0; r < w.Rows; r++) w.DequantizeRow(r, values.AsSpan(r * w.Cols, w.Cols));
                var data = memory.Upload<float>(values);
                n.Data = data.Pointer;
                return new CudaWeight(n, memory, data);
            }
        }
    }
}

/// <summary>A float32 vector on the device.</summary>
internal sealed class CudaVector(DeviceSlab slab, DeviceMemory memory) : IDisposable
{
    public nint Pointer => slab.Pointer;
    public void Dispose() => memory.Release(slab);
}
