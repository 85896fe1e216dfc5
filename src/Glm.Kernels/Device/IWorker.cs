using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;

namespace Glm.Kernels.Device;

/// <summary>
/// What a GLM model needs from the hardware it runs on. The model definitions (Glm.Models' architectures) are
/// written once against these operations, named as transformers' modeling files name the steps; a worker
/// executes them where it keeps the tensors: <see cref="Cpu.CpuWorker"/> with this library's SIMD kernels, a
/// CUDA worker with its own kernels, a hybrid by placing each weight where it runs best. Weights are placed once
/// at load; activations and scratch memory are the worker's, handed out as <see cref="Tensor"/> handles.
/// </summary>
/// <remarks>
/// Conventions: an op that returns a tensor allocates it (the caller disposes it); an op that takes a
/// <see cref="Heads"/> view as its output writes in place. Rows are tokens, in batch order. Nothing here blocks
/// on the host except <see cref="Download"/> and <see cref="LinearToHost"/>, the end of a step.
/// </remarks>
public interface IWorker : IDisposable
{
    /// <summary>"cpu", "cuda:0", … for logs and errors.</summary>
    string Name { get; }

    // --- placement and memory -------------------------------------------------------------------------------

    /// <summary>Places a weight matrix built on the host (any stored format) where this worker computes with it.</summary>
    DeviceWeight Place(WeightMatrix weight);

    /// <summary>Places a float32 vector (a norm weight, a bias, a router's weights).</summary>
    DeviceVector Place(float[] values);

    /// <summary>An uninitialised activation of [rows, cols] float32.</summary>
    Tensor Empty(int rows, int cols);

    /// <summary>Gives a tensor's memory back (what <see cref="Tensor.Dispose"/> calls).</summary>
    void Free(Tensor tensor);

    /// <summary>A paged KV pool of <paramref name="blocks"/> blocks of <paramref name="blockSize"/> slots.</summary>
    DeviceKvCache CreateKvCache(KvLayout layout, KvCacheDType dtype, int blocks, int blockSize);

    /// <summary>This step's page tables and positions, on the worker's side.</summary>
    StepSequences PrepareStep(DeviceKvCache cache, IReadOnlyList<StepSequence> sequences, int[] positions);

    /// <summary>Copies a tensor to host memory (the end of a step, or a check).</summary>
    void Download(Tensor tensor, Span<float> destination);

    // --- the operations of the GLM family ----------------------------------------------------------------------

    /// <summary>embed_tokens: row i is the (dequantized) embedding of ids[i].</summary>
    Tensor Embedding(DeviceWeight table, ReadOnlySpan<int> ids);

    /// <summary>nn.Linear: x · Wᵀ + b, for W in any stored format (BF16, FP8 E4M3 per channel or block, Int4 groups).</summary>
    Tensor Linear(Tensor x, DeviceWeight weight, DeviceVector? bias = null);

    /// <summary>The LM head: x · Wᵀ straight into host memory (the logits a step returns).</summary>
    void LinearToHost(Tensor x, DeviceWeight weight, Span<float> output);

    /// <summary>
    /// Per-head slices of one weight (MLA's absorbed projections): for row i and head h,
    /// y[i, h] = W[h·rowsPerHead + rowOffset …, + y.Width) · x[i, h].
    /// </summary>
    void HeadsTimesWeight(DeviceWeight weight, int rowsPerHead, int rowOffset, Heads x, Heads y);

    /// <summary>RMSNorm of each head (a whole row is one head): out = x · rsqrt(mean(x²) + eps) · weight. May be in place.</summary>
    void RmsNorm(Heads x, DeviceVector weight, float eps, Heads output);

    /// <summary>Rotary embedding in place, at each row's position (the rope's layout and rotary width are its own).</summary>
    void Rope(Heads x, Rope rope, StepSequences step);

    /// <summary>Copies each head of <paramref name="source"/> into <paramref name="destination"/>.</summary>
    void Copy(Heads source, Heads destination);

    /// <summary>into += x (the residual stream).</summary>
    void Add(Tensor into, Tensor x);

    /// <summary>gate ← silu(gate) · up (act_fn(gate_proj(x)) * up_proj(x)).</summary>
    void SiluMul(Tensor gate, Tensor up);

    /// <summary>silu(gate) · up from a fused gate_up_proj output (gate columns first), as a new [rows, cols/2] tensor.</summary>
    Tensor SiluMulHalves(Tensor gateUp);

    /// <summary>The listed rows of x, in that order (the last token of each sequence before the LM head).</summary>
    Tensor GatherRows(Tensor x, ReadOnlySpan<int> rows);

    /// <summary>Writes each row's key (and value, unless the layout stores the value inside the key) into its KV slot.</summary>
    void WriteKv(DeviceKvCache cache, int layer, StepSequences step, Tensor keys, Tensor? values);

    /// <summary>
    /// Causal attention of each row's query heads against its sequence's cached KV (decode and chunked prefill):
    /// <paramref name="queriesPerKvHead"/> query heads share a KV head; returns [rows, heads · valueDim].
    /// </summary>
    Tensor PagedAttention(DeviceKvCache cache, int layer, StepSequences step, Tensor queries, int heads, int headDim,
        int queriesPerKvHead, float scale, int valueDim);

    /// <summary>The MoE gate's choice for each row (see <see cref="MoeGate"/>), grouped by expert for <see cref="MoeExperts"/>.</summary>
    MoeRouting MoeRoute(Tensor x, MoeGate gate);

    /// <summary>
    /// The routed experts: each row through its chosen experts (grouped, one batched matmul per expert),
    /// weighted, and summed in ascending expert order as transformers sums them.
    /// </summary>
    Tensor MoeExperts(Tensor x, MoeRouting routing, ExpertSet experts);

    // --- DeepSeek Sparse Attention (glm_moe_dsa); a worker without them refuses such a model at load -----------

    /// <summary>Whether this worker has <see cref="LayerNorm"/>, <see cref="IndexerTopK"/> and <see cref="SparsePagedAttention"/>.</summary>
    bool SupportsSparseAttention => false;

    /// <summary>nn.LayerNorm of each head: (x − mean) · rsqrt(var + eps) · weight + bias (the indexer's k_norm). May be in place.</summary>
    void LayerNorm(Heads x, DeviceVector weight, DeviceVector bias, float eps, Heads output) =>
        throw new NotSupportedException($"the {Name} worker has no LayerNorm");

    /// <summary>
    /// The lightning indexer's choice for each row at position p: score[j] = Σ_h (w[h]·weightScale)·ReLU(q_h · k_j ·
    /// scale) over the cached indexer keys of positions j ≤ p (one KV head of <paramref name="headDim"/> in
    /// <paramref name="keys"/>' layer), and the <paramref name="topK"/> best positions, ties to the lower position;
    /// every position when p + 1 ≤ topK. <paramref name="queries"/> [rows, heads·headDim], <paramref name="headWeights"/> [rows, heads].
    /// </summary>
    TokenSelection IndexerTopK(DeviceKvCache keys, int layer, StepSequences step, Tensor queries, Tensor headWeights, int heads, int headDim,
        float scale, float weightScale, int topK) =>
        throw new NotSupportedException($"the {Name} worker has no DSA indexer");

    /// <summary><see cref="PagedAttention"/> over each row's selected positions only (in ascending order); exactly it where a row's selection is every position.</summary>
    Tensor SparsePagedAttention(DeviceKvCache cache, int layer, StepSequences step, Tensor queries, int heads, int headDim,
        int queriesPerKvHead, float scale, int valueDim, TokenSelection selection) =>
        throw new NotSupportedException($"the {Name} worker has no sparse attention");
}

/// <summary>Each row's selected positions (the DSA indexer's top-k), held where the worker computed them.</summary>
public sealed class TokenSelection(object native, int rows, Action release) : IDisposable
{
    public object Native { get; } = native;
    public int Rows { get; } = rows;
    public void Dispose() => release();
}

/// <summary>Shorthands over <see cref="IWorker"/> that read like the model code they serve.</summary>
public static class WorkerOps
{
    /// <summary>RMSNorm of whole rows into a new tensor.</summary>
    public static Tensor RmsNorm(this IWorker w, Tensor x, DeviceVector weight, float eps)
    {
        var output = w.Empty(x.Rows, x.Cols);
        w.RmsNorm(x.WholeRows, weight, eps, output.WholeRows);
        return output;
    }

    /// <summary>RMSNorm of whole rows (or heads) in place.</summary>
    public static void RmsNormInPlace(this IWorker w, Heads x, DeviceVector weight, float eps) => w.RmsNorm(x, weight, eps, x);

    /// <summary>A host copy of a tensor.</summary>
    public static float[] ToHost(this IWorker w, Tensor t)
    {
        var values = new float[t.Length];
        w.Download(t, values);
        return values;
    }
}

/// <summary>
/// One row's sampling settings for <see cref="IDeviceSampler"/>: temperature (below 1e-5 greedy), top-k (0 off),
/// top-p (1 off), min-p (0 off), and the uniform number in [0, 1) the host drew from the sequence's generator.
/// </summary>
[System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
public readonly record struct RowSampling(float Temperature, int TopK, float TopP, float MinP, double Uniform);

/// <summary>
/// A worker that samples where the logits are (a GPU), so a step returns token ids instead of [rows, vocab]
/// floats. It draws as Glm.Engine's Sampler does for requests without penalties, biases, constraints or logprobs;
/// the engine keeps everything else on the host.
/// </summary>
public interface IDeviceSampler
{
    /// <summary>One token per row of <paramref name="logits"/> [rows, vocab].</summary>
    void SampleToHost(Tensor logits, ReadOnlySpan<RowSampling> rows, Span<int> tokens);
}
