using Glm.Kernels.Attention;
using Glm.Kernels.Cuda.Worker;
using Glm.Kernels.Device;
using Glm.Kernels.Device.Cpu;

namespace Glm.CudaWorker.Tests;

/// <summary>The CUDA worker's KV pool holds the CPU worker's page format, written bit for bit alike.</summary>
public unsafe class PagedCacheTests
{
    private static Tensor Filled(IWorker worker, float[] values, int rows, int cols)
    {
        var t = worker.Empty(rows, cols);
        if (worker is CpuWorker) values.CopyTo(CpuWorker.Data(t));
        else DeviceMemory.CopyIn<float>((DeviceSlab)t.Storage, values);
        return t;
    }

    private static float[] Decode(KvCacheDType dtype, byte[] region, long offset, int dim)
    {
        var values = new float[dim];
        fixed (byte* p = region)
        {
            byte* record = p + offset;
            switch (dtype)
            {
                case KvCacheDType.F32: F32Codec.Decode(record, values); break;
                case KvCacheDType.Bf16: Bf16Codec.Decode(record, values); break;
                case KvCacheDType.Fp8: Fp8Codec.Decode(record, values); break;
                default: Int4Codec.Decode(record, values); break;
            }
        }
        return values;
    }

    public static TheoryData<KvCacheDType, bool> Cases()
    {
        var data = new TheoryData<KvCacheDType, bool>();
        foreach (var d in Enum.GetValues<KvCacheDType>())
        {
            data.Add(d, false);
            data.Add(d, true);
        }
        return data;
    }

    [HostBuildTheory]
    [MemberData(nameof(Cases))]
    public void PagesWrittenByBothWorkersAreIdenticalAndCopyOnWriteCopiesThem(KvCacheDType dtype, bool latent)
    {
        using var cuda = HostBuild.Open();
        var layout = latent ? new KvLayout(2, 1, 576, 512, true) : new KvLayout(2, 2, 128, 96, false);
        const int blocks = 12, blockSize = 4;
        using var cpuCache = CpuWorker.Instance.CreateKvCache(layout, dtype, blocks, blockSize);
        using var gpuCache = (CudaKvCache)cuda.CreateKvCache(layout, dtype, blocks, blockSize);
        Assert.Equal(cpuCache.BytesPerToken, gpuCache.BytesPerToken);

        // Two sequences over scattered blocks: 7 tokens at positions 0..6 and 3 tokens at positions 5..7.
        var sequences = new List<StepSequence> { new(0, 7, 0, [9, 2]), new(7, 3, 5, [4, 11]) };
        int[] positions = [0, 1, 2, 3, 4, 5, 6, 5, 6, 7];
        var rng = new Random(5);
        float[] Random(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
        var keys = Random(positions.Length * layout.KvHeads * layout.KeyDim);
        var values = Random(positions.Length * layout.KvHeads * layout.ValueDim);
        foreach (var (worker, cache) in new (IWorker, DeviceKvCache)[] { (CpuWorker.Instance, cpuCache), (cuda, gpuCache) })
        {
            using var step = worker.PrepareStep(cache, sequences, positions);
            for (int layer = 0; layer < layout.Layers; layer++)
            {
                using var k = Filled(worker, keys, positions.Length, layout.KvHeads * layout.KeyDim);
                using var v = Filled(worker, values, positions.Length, layout.KvHeads * layout.ValueDim);
                worker.WriteKv(cache, layer, step, k, latent ? null : v);
            }
            cache.CopyBlock(9, 0); // copy-on-write of the first sequence's first block
        }

        var store = ((CpuWorker.CpuKvCache)cpuCache).Pool.Store;
        int checkedRecords = 0;
        for (int layer = 0; layer < layout.Layers; layer++)
        {
            var keyRegion = gpuCache.ReadRecords(layer, values: false);
            var valueRegion = latent ? null : gpuCache.ReadRecords(layer, values: true);
            // Every slot a position was written to, and block 0, which the copy filled from block 9.
            var written = sequences.SelectMany(q => Enumerable.Range(q.FirstPosition, q.Count)
                    .Select(p => (long)q.BlockTable[p / blockSize] * blockSize + p % blockSize))
                .Concat(Enumerable.Range(0, blockSize).Select(s => (long)s));
            foreach (long slot in written)
                for (int h = 0; h < layout.KvHeads; h++)
                {
                    var expected = new float[layout.KeyDim];
                    store.ReadKey(layer, slot, h, expected);
                    Assert.Equal(expected, Decode(dtype, keyRegion, (slot * layout.KvHeads + h) * gpuCache.KeyRecordBytes, layout.KeyDim));
                    if (!latent)
                    {
                        var expectedValue = new float[layout.ValueDim];
                        store.ReadValue(layer, slot, h, expectedValue);
                        Assert.Equal(expectedValue, Decode(dtype, valueRegion!, (slot * layout.KvHeads + h) * gpuCache.ValueRecordBytes, layout.ValueDim));
                    }
                    checkedRecords++;
                }
        }
        Assert.True(checkedRecords > 0);
    }

    [HostBuildFact]
    public void ABadPageTableIsRefusedBeforeAnythingIsQueued()
    {
        using var cuda = HostBuild.Open();
        using var cache = cuda.CreateKvCache(new KvLayout(1, 1, 64, 64, false), KvCacheDType.Bf16, 4, 4);
        Assert.Throws<ArgumentException>(() => cuda.PrepareStep(cache, [new StepSequence(0, 6, 0, [1])], [0, 1, 2, 3, 4, 5])); // 6 positions, one block of 4
        Assert.Throws<ArgumentException>(() => cuda.PrepareStep(cache, [new StepSequence(0, 1, 0, [4])], [0])); // block outside the pool
        Assert.Throws<ArgumentException>(() => cuda.PrepareStep(cache, [new StepSequence(0, 1, 0, [0])], [0, 1])); // row 1 in no sequence
        Assert.Throws<ArgumentException>(() => cuda.PrepareStep(cache, [new StepSequence(0, 2, 3, [0, 1])], [3, 5])); // positions not consecutive
        using var ok = cuda.PrepareStep(cache, [new StepSequence(0, 2, 3, [0, 1])], [3, 4]);
        Assert.Equal(2, ok.TokenCount);
    }
}
