namespace Glm.Kernels.Attention;

/// <summary>A KV store whose records all use one codec; per layer, all key records then all value records.</summary>
public unsafe class CodecKvStore<TCodec> : KvStore where TCodec : struct, IKvCodec
{
    private readonly byte*[] _layers;
    private readonly int _keyRecord, _valueRecord;
    private readonly long _valuesOffset;

    public CodecKvStore(KvLayout layout, long slots) : base(layout, slots)
    {
        _keyRecord = TCodec.RecordBytes(layout.KeyDim);
        _valueRecord = layout.ValueIsKeyPrefix ? 0 : TCodec.RecordBytes(layout.ValueDim);
        _valuesOffset = slots * layout.KvHeads * _keyRecord;
        long bytesPerLayer = _valuesOffset + slots * layout.KvHeads * _valueRecord;
        _layers = AllocateLayers(layout.Layers, bytesPerLayer);
    }

    public override KvCacheDType DType => TCodec.DType;
    public override int BytesPerTokenPerLayer => Layout.KvHeads * (_keyRecord + _valueRecord);

    protected byte* KeyRecord(int layer, long slot, int head) => _layers[layer] + (slot * Layout.KvHeads + head) * _keyRecord;
    protected byte* ValueRecord(int layer, long slot, int head) => _layers[layer] + _valuesOffset + (slot * Layout.KvHeads + head) * _valueRecord;

    public override void Write(int layer, long slot, ReadOnlySpan<float> keys, ReadOnlySpan<float> values)
    {
        if ((ulong)slot >= (ulong)Slots) throw new ArgumentOutOfRangeException(nameof(slot));
        int kd = Layout.KeyDim, vd = Layout.ValueDim;
        for (int h = 0; h < Layout.KvHeads; h++)
        {
            TCodec.Encode(keys.Slice(h * kd, kd), KeyRecord(layer, slot, h));
            if (!Layout.ValueIsKeyPrefix) TCodec.Encode(values.Slice(h * vd, vd), ValueRecord(layer, slot, h));
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public override void Scores(int layer, int head, ReadOnlySpan<long> slots, ReadOnlySpan<float> q, float scale, Span<float> scores)
    {
        byte** records = stackalloc byte*[8];
        float* dots = stackalloc float[8];
        int t = 0;
        fixed (float* pq = q)
            for (; t + 8 <= slots.Length; t += 8)
            {
                for (int j = 0; j < 8; j++) records[j] = KeyRecord(layer, slots[t + j], head);
                TCodec.Dot8(records, pq, q.Length, dots);
                for (int j = 0; j < 8; j++) scores[t + j] = dots[j] * scale;
            }
        for (; t < slots.Length; t++) scores[t] = TCodec.Dot(KeyRecord(layer, slots[t], head), q) * scale;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public override void AccumulateValues(int layer, int head, ReadOnlySpan<long> slots, ReadOnlySpan<float> probs, Span<float> output)
    {
        bool prefix = Layout.ValueIsKeyPrefix;
        int recordDim = prefix ? Layout.KeyDim : Layout.ValueDim;
        for (int t = 0; t < slots.Length; t++)
        {
            byte* rec = prefix ? KeyRecord(layer, slots[t], head) : ValueRecord(layer, slots[t], head);
            TCodec.Accumulate(rec, recordDim, probs[t], output);
        }
    }

    /// <summary>Scores one head at a time, each over the whole chunk (the records stay in L1/L2 between heads).</summary>
    public override void ScoresForHeads(int layer, int head, ReadOnlySpan<long> slots, ReadOnlySpan<float> queries, int count, float scale, Span<float> scores, int stride)
    {
        int dim = queries.Length / count;
        for (int h = 0; h < count; h++) Scores(layer, head, slots, queries.Slice(h * dim, dim), scale, scores.Slice(h * stride, slots.Length));
    }

    /// <summary>The value records gathered a piece at a time, then summed by the codec with every head's sums held in registers.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public override void AccumulateValuesForHeads(int layer, int head, ReadOnlySpan<long> slots, ReadOnlySpan<float> probs, int stride, int count, Span<float> output)
    {
        bool prefix = Layout.ValueIsKeyPrefix;
        int recordDim = prefix ? Layout.KeyDim : Layout.ValueDim, dim = output.Length / count;
        if (dim > recordDim || probs.Length < (count - 1) * stride + slots.Length) throw new ArgumentException("output wider than a value, or probs too short");
        // Pieces of at most 128 records, taken in order: each element's sum continues from one piece to the next.
        const int Piece = 128;
        byte** records = stackalloc byte*[Piece];
        fixed (float* acc = output) fixed (float* p = probs)
            for (int start = 0; start < slots.Length; start += Piece)
            {
                int n = Math.Min(Piece, slots.Length - start);
                for (int t = 0; t < n; t++) records[t] = prefix ? KeyRecord(layer, slots[start + t], head) : ValueRecord(layer, slots[start + t], head);
                TCodec.AccumulateRecords(records, n, recordDim, p + start, stride, count, acc, dim);
            }
    }

    public override void ReadKey(int layer, long slot, int head, Span<float> destination) => TCodec.Decode(KeyRecord(layer, slot, head), destination);

    public override void ReadValue(int layer, long slot, int head, Span<float> destination)
    {
        if (!Layout.ValueIsKeyPrefix)
        {
            TCodec.Decode(ValueRecord(layer, slot, head), destination);
            return;
        }
        Span<float> key = stackalloc float[Layout.KeyDim];
        TCodec.Decode(KeyRecord(layer, slot, head), key);
        key[..destination.Length].CopyTo(destination);
    }

    public override void CopySlot(long from, long to)
    {
        for (int l = 0; l < Layout.Layers; l++)
            for (int h = 0; h < Layout.KvHeads; h++)
            {
                Buffer.MemoryCopy(KeyRecord(l, from, h), KeyRecord(l, to, h), _keyRecord, _keyRecord);
                if (_valueRecord > 0) Buffer.MemoryCopy(ValueRecord(l, from, h), ValueRecord(l, to, h), _valueRecord, _valueRecord);
            }
    }

    public override void Dispose()
    {
        FreeLayers(_layers);
        GC.SuppressFinalize(this);
    }
}

public sealed class F32KvStore(KvLayout layout, long slots) : CodecKvStore<F32Codec>(layout, slots);
public sealed class Bf16KvStore(KvLayout layout, long slots) : CodecKvStore<Bf16Codec>(layout, slots);
public sealed class Fp8KvStore(KvLayout layout, long slots) : CodecKvStore<Fp8Codec>(layout, slots);
public sealed class Int4KvStore(KvLayout layout, long slots) : MultiHeadCodecKvStore<Int4Codec>(layout, slots);

/// <summary>A codec store that decodes each key record once for all the query heads of its KV head.</summary>
public unsafe class MultiHeadCodecKvStore<TCodec>(KvLayout layout, long slots) : CodecKvStore<TCodec>(layout, slots) where TCodec : struct, IMultiHeadKvCodec
{
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public override void ScoresForHeads(int layer, int head, ReadOnlySpan<long> slots, ReadOnlySpan<float> queries, int count, float scale, Span<float> scores, int stride)
    {
        // Each head's query is queries.Length / count long, as Scores reads q.Length values.
        int dim = queries.Length / count;
        if (dim > Layout.KeyDim || scores.Length < (count - 1) * stride + slots.Length) throw new ArgumentException("queries longer than a key, or scores too short");
        int stateLength = TCodec.QueryStateLength(dim);
        float* state = stackalloc float[Math.Max(1, stateLength * count)];
        float* results = stackalloc float[count];
        fixed (float* q = queries)
        {
            for (int h = 0; h < count; h++) TCodec.PrepareQuery(q + h * dim, dim, state + h * stateLength);
            for (int t = 0; t < slots.Length; t++)
            {
                TCodec.DotHeads(KeyRecord(layer, slots[t], head), q, dim, count, state, results);
                for (int h = 0; h < count; h++) scores[h * stride + t] = results[h] * scale;
            }
        }
    }
}
