namespace Glm.Kernels.Attention;

/// <summary>How one head's vector of one token is stored: a fixed-size record per dtype.</summary>
public unsafe interface IKvCodec
{
    static abstract KvCacheDType DType { get; }
    static abstract int RecordBytes(int dim);
    static abstract void Encode(ReadOnlySpan<float> source, byte* record);
    static abstract float Dot(byte* record, ReadOnlySpan<float> q);
    /// <summary>results[j] = Dot(records[j], q[..n]) for eight records, each with exactly Dot's arithmetic.</summary>
    static abstract void Dot8(byte** records, float* q, int n, float* results);
    /// <summary>acc += weight · decode(record)[..acc.Length]; the record holds <paramref name="recordDim"/> values
    /// (more than acc.Length when a latent cache reads its value as a prefix of the key).</summary>
    static abstract void Accumulate(byte* record, int recordDim, float weight, Span<float> acc);
    static abstract void Decode(byte* record, Span<float> destination);

    /// <summary>
    /// acc[h·accLength ..] += Σ_t probs[h·stride + t] · decode(records[t]) for <paramref name="count"/> heads over
    /// <paramref name="n"/> records, each element summed in record order exactly as <see cref="Accumulate"/> does.
    /// </summary>
    static abstract void AccumulateRecords(byte** records, int n, int recordDim, float* probs, int stride, int count, float* acc, int accLength);
}

/// <summary>
/// A codec whose key decode is worth sharing among the query heads of one KV head (grouped-query attention):
/// Int4's unpacking costs more than the multiply-adds it feeds. Measured not worth it for the scores of F32, BF16
/// and FP8 (equal or slower at 4 query heads per KV head), which keep one head at a time.
/// </summary>
public unsafe interface IMultiHeadKvCodec : IKvCodec
{
    /// <summary>Floats of per-query values <see cref="DotHeads"/> reuses for every record (Int4: each group's Σq); 0 for none.</summary>
    static abstract int QueryStateLength(int dim);
    /// <summary>Fills <paramref name="state"/> (<see cref="QueryStateLength"/> floats) for the query at <paramref name="q"/>.</summary>
    static abstract void PrepareQuery(float* q, int dim, float* state);

    /// <summary>
    /// results[h] = Dot(record, q[h·dim ..]) for <paramref name="count"/> query heads sharing this KV head, with
    /// exactly <see cref="IKvCodec.Dot"/>'s arithmetic per head; a codec may decode the record once for all of them.
    /// </summary>
    static abstract void DotHeads(byte* record, float* q, int dim, int count, float* state, float* results);
}
