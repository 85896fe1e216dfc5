using Glm.Kernels.Attention;

namespace Glm.Models.Architectures;

public interface IAttention : IDisposable
{
    /// <summary>Writes this step's keys and values into the cache and the attention output (after o_proj).</summary>
    void Forward(ReadOnlySpan<float> x, ForwardBatch batch, AttentionSequence[] sequences, KvStore cache, int layer, Span<float> output);

    IEnumerable<Linear> Linears { get; }
}
