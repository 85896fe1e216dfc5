using Glm.Kernels.Attention;

namespace Glm.Kernels.Device;

/// <summary>
/// A weight matrix [Rows, Cols] placed by a worker at load (a GPU worker uploads it once, possibly repacked).
/// The model sees its shape and stored format; <see cref="Native"/> is the worker's.
/// </summary>
public sealed class DeviceWeight(IDisposable native, int rows, int cols, string format, long byteSize) : IDisposable
{
    public IDisposable Native { get; } = native;
    public int Rows { get; } = rows;
    public int Cols { get; } = cols;
    /// <summary>The stored format, as the load summary names it (bf16, fp8-e4m3, int4-g128, …).</summary>
    public string Format { get; } = format;
    public long ByteSize { get; } = byteSize;
    public void Dispose() => Native.Dispose();
}

/// <summary>A float32 vector placed by a worker (norm weights, biases, router weights and correction bias).</summary>
public sealed class DeviceVector(object native, int length) : IDisposable
{
    public object Native { get; } = native;
    public int Length { get; } = length;
    public void Dispose() => (Native as IDisposable)?.Dispose();
}

/// <summary>
/// GLM-4.5's MoE gate: sigmoid scores from <see cref="Weight"/> [experts, hidden], the correction bias added only
/// to choose, group-limited top-k (<see cref="Groups"/> groups, the best <see cref="TopkGroup"/> kept, scored by
/// their two best experts), weights from the uncorrected scores, optionally normalised, times the scaling factor.
/// </summary>
public sealed record MoeGate(DeviceVector Weight, DeviceVector? CorrectionBias, int Experts, int Hidden, int TopK, int Groups, int TopkGroup,
    bool NormTopkProb, float RoutedScalingFactor);

/// <summary>The routed experts of one MoE layer: expert e is down(silu(gate(x)) · up(x)).</summary>
public sealed class ExpertSet(DeviceWeight[] gate, DeviceWeight[] up, DeviceWeight[] down) : IDisposable
{
    public IReadOnlyList<DeviceWeight> Gate { get; } = gate;
    public IReadOnlyList<DeviceWeight> Up { get; } = up;
    public IReadOnlyList<DeviceWeight> Down { get; } = down;
    public int Count => Gate.Count;

    public IEnumerable<DeviceWeight> Of(int expert) => [Gate[expert], Up[expert], Down[expert]];

    public void Dispose()
    {
        foreach (var w in Gate.Concat(Up).Concat(Down)) w.Dispose();
    }
}

/// <summary>One step's routing decision (each token's experts and weights), held where the worker computed it.</summary>
public sealed class MoeRouting(object native, int rows, int topK, Action release) : IDisposable
{
    public object Native { get; } = native;
    public int Rows { get; } = rows;
    public int TopK { get; } = topK;
    public void Dispose() => release();
}

/// <summary>One sequence's share of a step: batch rows [Start, Start + Count) at positions FirstPosition…, in the blocks of BlockTable.</summary>
public readonly record struct StepSequence(int Start, int Count, int FirstPosition, IReadOnlyList<int> BlockTable)
{
    public int ContextLength => FirstPosition + Count;
}

/// <summary>
/// A step's page tables and positions, as the worker needs them on its side (the CPU keeps each position's KV
/// slot; a GPU uploads them once per step). Built by <see cref="IWorker.PrepareStep"/>, disposed after the step.
/// </summary>
public sealed class StepSequences(object native, int[] positions, IReadOnlyList<StepSequence> sequences, Action release) : IDisposable
{
    public object Native { get; } = native;
    /// <summary>The position of each batch row.</summary>
    public int[] Positions { get; } = positions;
    public IReadOnlyList<StepSequence> Sequences { get; } = sequences;
    public int TokenCount => Positions.Length;
    public void Dispose() => release();
}

/// <summary>A paged KV pool on a worker, in the CPU worker's page format (so pages mean the same everywhere).</summary>
public abstract class DeviceKvCache : IDisposable
{
    public abstract KvLayout Layout { get; }
    public abstract KvCacheDType DType { get; }
    public abstract int NumBlocks { get; }
    public abstract int BlockSize { get; }
    /// <summary>Bytes of KV one token takes over all layers.</summary>
    public abstract long BytesPerToken { get; }
    /// <summary>Copies block <paramref name="from"/>'s slots into block <paramref name="to"/> (copy-on-write of a shared prefix).</summary>
    public abstract void CopyBlock(int from, int to);
    public abstract void Dispose();
}
