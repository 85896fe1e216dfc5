namespace Glm.Kernels.Attention;

/// <summary>
/// The KV pool's storage: one preallocated region per layer addressed by slot (block × block size + offset).
/// Each dtype implements writing a token and the two attention inner loops, so pages are read in their own
/// format (dequantized in registers) and never expanded into a float copy.
/// </summary>
public abstract unsafe class KvStore : IDisposable
{
    protected KvStore(KvLayout layout, long slots)
    {
        Layout = layout;
        Slots = slots;
    }

    public KvLayout Layout { get; }
    public long Slots { get; }
    public abstract KvCacheDType DType { get; }

    /// <summary>Bytes one token takes in one layer (keys and values of all KV heads, scales included).</summary>
    public abstract int BytesPerTokenPerLayer { get; }

    /// <summary>Stores the keys (KvHeads × KeyDim) and values (KvHeads × ValueDim, empty for latent caches) of one token.</summary>
    public abstract void Write(int layer, long slot, ReadOnlySpan<float> keys, ReadOnlySpan<float> values);

    /// <summary>scores[t] = scale · (q · key(slots[t], head)).</summary>
    public abstract void Scores(int layer, int head, ReadOnlySpan<long> slots, ReadOnlySpan<float> q, float scale, Span<float> scores);

    /// <summary>output = Σ_t probs[t] · value(slots[t], head); output has ValueDim elements and is overwritten.</summary>
    public void WeightedValues(int layer, int head, ReadOnlySpan<long> slots, ReadOnlySpan<float> probs, Span<float> output)
    {
        output.Clear();
        AccumulateValues(layer, head, slots, probs, output);
    }

    /// <summary>output += Σ_t probs[t] · value(slots[t], head), in slot order.</summary>
    public abstract void AccumulateValues(int layer, int head, ReadOnlySpan<long> slots, ReadOnlySpan<float> probs, Span<float> output);

    /// <summary>
    /// scores[h·stride + t] = scale · (q_h · key(slots[t], head)) for the <paramref name="count"/> query heads
    /// whose queries lie one after another in <paramref name="queries"/> (grouped-query attention); a store may
    /// decode each key record once for all of them (Int4 does). Per head the same bits as <see cref="Scores"/>.
    /// </summary>
    public abstract void ScoresForHeads(int layer, int head, ReadOnlySpan<long> slots, ReadOnlySpan<float> queries, int count, float scale, Span<float> scores, int stride);

    /// <summary>
    /// output[h·ValueDim ..] += Σ_t probs[h·stride + t] · value(slots[t], head) for <paramref name="count"/> heads,
    /// each value record read once for all of them. Per head the same bits as <see cref="AccumulateValues"/>.
    /// </summary>
    public abstract void AccumulateValuesForHeads(int layer, int head, ReadOnlySpan<long> slots, ReadOnlySpan<float> probs, int stride, int count, Span<float> output);

    /// <summary>Decodes one stored key (tests and error measurement).</summary>
    public abstract void ReadKey(int layer, long slot, int head, Span<float> destination);

    /// <summary>Decodes one stored value (the key's prefix for latent caches).</summary>
    public abstract void ReadValue(int layer, long slot, int head, Span<float> destination);

    /// <summary>Copies one slot's contents to another in every layer (copy-on-write of a shared block).</summary>
    public abstract void CopySlot(long from, long to);

    /// <summary>Bytes of one head's record of <paramref name="dim"/> values in a dtype (the page format every worker shares).</summary>
    public static int RecordBytes(KvCacheDType dtype, int dim) => dtype switch
    {
        KvCacheDType.F32 => F32Codec.RecordBytes(dim),
        KvCacheDType.Bf16 => Bf16Codec.RecordBytes(dim),
        KvCacheDType.Fp8 => Fp8Codec.RecordBytes(dim),
        KvCacheDType.Int4 => Int4Codec.RecordBytes(dim),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>Bytes one token takes in one layer of <paramref name="layout"/>: its keys and, unless the value is the key's prefix, its values.</summary>
    public static int BytesPerTokenPerLayerOf(KvLayout layout, KvCacheDType dtype) =>
        layout.KvHeads * (RecordBytes(dtype, layout.KeyDim) + (layout.ValueIsKeyPrefix ? 0 : RecordBytes(dtype, layout.ValueDim)));

    public static KvStore Create(KvCacheDType dtype, KvLayout layout, long slots) => dtype switch
    {
        KvCacheDType.F32 => new F32KvStore(layout, slots),
        KvCacheDType.Bf16 => new Bf16KvStore(layout, slots),
        KvCacheDType.Fp8 => new Fp8KvStore(layout, slots),
        KvCacheDType.Int4 => new Int4KvStore(layout, slots),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>
    /// Allocates one 64-byte aligned region per layer. Not cleared: attention only reads slots of positions a
    /// sequence has written, and leaving the pages untouched lets the OS commit them as the pool fills.
    /// </summary>
    protected static byte*[] AllocateLayers(int layers, long bytesPerLayer)
    {
        var regions = new byte*[layers];
        for (int l = 0; l < layers; l++)
            regions[l] = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)Math.Max(bytesPerLayer, 64), 64);
        return regions;
    }

    protected static void FreeLayers(byte*[] regions)
    {
        for (int l = 0; l < regions.Length; l++)
        {
            if (regions[l] != null) System.Runtime.InteropServices.NativeMemory.AlignedFree(regions[l]);
            regions[l] = null;
        }
    }

    public abstract void Dispose();
}
