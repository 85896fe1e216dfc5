using Glm.Kernels.Attention;
using Glm.Kernels.Device;

namespace Glm.Models.Architectures;

/// <summary>
/// glm_moe_dsa's KV pool: the MLA latent of every layer (576 values a token) and, beside it, the lightning
/// indexer's key (index_head_dim values) of every full layer, a second stream in the same paged format with the
/// same block tables and slots. Both live on the model's worker; a block copy copies both.
/// </summary>
public sealed class DsaKvCache(DeviceKvCache main, DeviceKvCache indexerKeys) : DeviceKvCache
{
    public DeviceKvCache Main { get; } = main;
    /// <summary>One layer per full (indexer-owning) decoder layer, in order.</summary>
    public DeviceKvCache IndexerKeys { get; } = indexerKeys;

    public override KvLayout Layout => Main.Layout;
    public override KvCacheDType DType => Main.DType;
    public override int NumBlocks => Main.NumBlocks;
    public override int BlockSize => Main.BlockSize;
    public override long BytesPerToken => Main.BytesPerToken + IndexerKeys.BytesPerToken;

    public override void CopyBlock(int from, int to)
    {
        Main.CopyBlock(from, to);
        IndexerKeys.CopyBlock(from, to);
    }

    public override void Dispose()
    {
        Main.Dispose();
        IndexerKeys.Dispose();
    }

    /// <summary>The stream the MLA layers read and write (the cache itself for every other architecture).</summary>
    public static DeviceKvCache MainOf(DeviceKvCache cache) => cache is DsaKvCache d ? d.Main : cache;
}
