namespace Glm.Kernels.Attention;

/// <summary>How one head's vector of one token is stored: a fixed-size record per dtype.</summary>
public unsafe interface IKvCodec
{
    static abstract KvCacheDType DType { get; }
    static abstract int RecordBytes(int dim);
    static abstract void Encode(ReadOnlySpan<float> source, byte* record);
    static abstract float Dot(byte* record, ReadOnlySpan<float> q);
    /// <summary>acc += weight · decode(record)[..acc.Length]; the record holds <paramref name="recordDim"/> values
    /// (more than acc.Length when a latent cache reads its value as a prefix of the key).</summary>
    static abstract void Accumulate(byte* record, int recordDim, float weight, Span<float> acc);
    static abstract void Decode(byte* record, Span<float> destination);
}
