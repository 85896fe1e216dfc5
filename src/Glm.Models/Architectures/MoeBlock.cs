using Glm.Kernels.Device;

namespace Glm.Models.Architectures;

/// <summary>
/// Glm4MoeMoE: the gate picks each token's experts (sigmoid scores, correction bias, group-limited top-k), the
/// routed experts run grouped by expert, and the shared experts see every token.
/// </summary>
public sealed class MoeBlock(IWorker worker, MoeGate gate, ExpertSet experts, DenseMlp sharedExperts) : IDisposable
{
    public MoeGate Gate { get; } = gate;
    public ExpertSet Experts { get; } = experts;
    public DenseMlp Shared { get; } = sharedExperts;

    public Tensor Forward(Tensor hiddenStates)
    {
        using var routing = worker.MoeRoute(hiddenStates, Gate);           // topk_indices, topk_weights = self.gate(x)
        var output = worker.MoeExperts(hiddenStates, routing, Experts);    // self.moe(x, topk_indices, topk_weights)
        using var shared = Shared.Forward(hiddenStates);                   // + self.shared_experts(residuals)
        worker.Add(output, shared);
        return output;
    }

    public void Dispose()
    {
        Experts.Dispose();
        Shared.Dispose();
        Gate.Weight.Dispose();
        Gate.CorrectionBias?.Dispose();
    }
}
