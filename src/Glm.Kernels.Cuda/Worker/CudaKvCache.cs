using Glm.Kernels.Attention;
using Glm.Kernels.Device;

namespace Glm.Kernels.Cuda.Worker;

/// <summary>
/// A paged KV pool in device memory, in the CPU worker's page format: per layer one region of key records
/// (slot-major, then KV head) and one of value records (none for latent caches), records as the CPU codecs
/// write them. A block's slots are contiguous in each region, so copying a block is one copy per region.
/// </summary>
internal sealed class CudaKvCache : DeviceKvCache
{
    private readonly DeviceMemory _memory;
    private readonly DeviceSlab[] _keys;
    private readonly DeviceSlab?[] _values;
    private readonly int _keyRecord, _valueRecord;
    private bool _disposed;

    public CudaKvCache(DeviceMemory memory, KvLayout layout, KvCacheDType dtype, int blocks, int blockSize)
    {
        if (blocks <= 0 || blockSize <= 0) throw new ArgumentException("the KV pool needs at least one block of at least one slot");
        _memory = memory;
        Layout = layout;
        DType = dtype;
        NumBlocks = blocks;
        BlockSize = blockSize;
        _keyRecord = KvStore.RecordBytes(dtype, layout.KeyDim);
        _valueRecord = layout.ValueIsKeyPrefix ? 0 : KvStore.RecordBytes(dtype, layout.ValueDim);
        long slots = (long)blocks * blockSize;
        _keys = new DeviceSlab[layout.Layers];
        _values = new DeviceSlab?[layout.Layers];
        try
        {
            for (int l = 0; l < layout.Layers; l++)
            {
                _keys[l] = memory.Allocate(slots * layout.KvHeads * _keyRecord);
                if (_valueRecord > 0) _values[l] = memory.Allocate(slots * layout.KvHeads * _valueRecord);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public override KvLayout Layout { get; }
    public override KvCacheDType DType { get; }
    public override int NumBlocks { get; }
    public override int BlockSize { get; }
    public override long BytesPerToken => (long)KvStore.BytesPerTokenPerLayerOf(Layout, DType) * Layout.Layers;
    public long Slots => (long)NumBlocks * BlockSize;

    /// <summary>The glm_kv_layer the kernels read for one layer.</summary>
    public GlmKvLayer Layer(int layer) => new()
    {
        Keys = _keys[layer].Pointer,
        Values = _values[layer]?.Pointer ?? 0,
        DType = (int)DType,
        KvHeads = Layout.KvHeads,
        KeyDim = Layout.KeyDim,
        ValueDim = Layout.ValueDim,
        ValueIsKeyPrefix = Layout.ValueIsKeyPrefix ? 1 : 0,
        Slots = Slots,
    };

    /// <summary>A host copy of one layer's key (or value) records, for checks of the page format.</summary>
    internal byte[] ReadRecords(int layer, bool values)
    {
        var region = values ? _values[layer] ?? throw new InvalidOperationException("a latent cache stores no values") : _keys[layer];
        var bytes = new byte[region.Bytes];
        DeviceMemory.CopyOut<byte>(region.Pointer, bytes);
        return bytes;
    }

    public int KeyRecordBytes => _keyRecord;
    public int ValueRecordBytes => _valueRecord;

    public override void CopyBlock(int from, int to)
    {
        if ((uint)from >= (uint)NumBlocks || (uint)to >= (uint)NumBlocks) throw new ArgumentOutOfRangeException(nameof(from), "block outside the pool");
        for (int l = 0; l < Layout.Layers; l++)
        {
            Copy(_keys[l], _keyRecord, from, to);
            if (_values[l] is { } v) Copy(v, _valueRecord, from, to);
        }
    }

    private void Copy(DeviceSlab region, int record, int from, int to)
    {
        long blockBytes = (long)BlockSize * Layout.KvHeads * record;
        CudaRuntime.Check(CudaNative.glm_cuda_copy_on_device(region.Pointer + (nint)(to * blockBytes), region.Pointer + (nint)(from * blockBytes), (nuint)blockBytes, 0), "copy KV block");
    }

    public override void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var k in _keys)
            if (k is not null) _memory.Release(k);
        foreach (var v in _values)
            if (v is not null) _memory.Release(v);
    }
}
