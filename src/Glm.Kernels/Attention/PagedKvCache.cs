namespace Glm.Kernels.Attention;

/// <summary>The KV pool: <see cref="NumBlocks"/> blocks of <see cref="BlockSize"/> token slots in one store.</summary>
public sealed class PagedKvCache : IDisposable
{
    public PagedKvCache(KvLayout layout, KvCacheDType dtype, int numBlocks, int blockSize)
    {
        if (numBlocks <= 0 || blockSize <= 0) throw new ArgumentException("the KV pool needs at least one block of at least one slot");
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        Store = KvStore.Create(dtype, layout, (long)numBlocks * blockSize);
    }

    public KvStore Store { get; }
    public int NumBlocks { get; }
    public int BlockSize { get; }
    public KvLayout Layout => Store.Layout;

    /// <summary>Bytes of KV one token takes over all layers.</summary>
    public long BytesPerToken => (long)Store.BytesPerTokenPerLayer * Layout.Layers;

    /// <summary>Pool bytes for a given number of blocks, used to size the pool from a memory budget.</summary>
    public static long BytesPerBlock(KvLayout layout, KvCacheDType dtype, int blockSize) =>
        (long)KvStore.BytesPerTokenPerLayerOf(layout, dtype) * layout.Layers * blockSize;

    /// <summary>Fills <paramref name="slots"/>[p] with the slot of position p for a sequence's block table.</summary>
    public void SlotsFor(IReadOnlyList<int> blockTable, Span<long> slots)
    {
        for (int p = 0; p < slots.Length; p++) slots[p] = (long)blockTable[p / BlockSize] * BlockSize + p % BlockSize;
    }

    public void Dispose() => Store.Dispose();
}
