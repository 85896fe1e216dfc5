using Glm.Kernels.Device;

namespace Glm.Models.Architectures;

public interface IAttention : IDisposable
{
    /// <summary>Writes this step's keys and values into the cache; returns the attention output (after o_proj).</summary>
    Tensor Forward(Tensor hiddenStates, StepSequences step, DeviceKvCache cache, int layer);

    IEnumerable<Linear> Linears { get; }
}
