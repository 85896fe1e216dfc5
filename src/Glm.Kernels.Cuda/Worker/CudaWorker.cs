using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;
using Glm.Kernels.Device;

namespace Glm.Kernels.Cuda.Worker;

/// <summary>
/// The device contract on an NVIDIA GPU through libglm_cuda (or on the host build of the same C ABI, which is how
/// CI runs everything here). Weights are uploaded once in their stored format; activations are float32 slabs
/// from a size-class pool; every op is queued on one stream, in order, with no host synchronisation inside a
/// step: only <see cref="Download"/> and <see cref="LinearToHost"/> wait, at the end of one. Page tables and
/// positions go up once per step (<see cref="PrepareStep"/>); MoE routing, grouping and the experts stay on the
/// device. What the host checks before it queues (token ids, block tables) is what a kernel could not report.
/// </summary>
public sealed class CudaWorker : IWorker, IDeviceSampler
{
    private readonly DeviceMemory _memory = new();
    private readonly ConditionalWeakTable<Rope, CudaVector> _ropeFrequencies = new();
    private readonly ConditionalWeakTable<ExpertSet, ExpertTables> _expertTables = new();
    private bool _disposed;

    private CudaWorker(int device, string name, bool hostBuild)
    {
        Device = device;
        DeviceName = name;
        IsHostBuild = hostBuild;
    }

    /// <summary>Opens device <paramref name="device"/>; throws <see cref="CudaException"/> saying exactly why it cannot.</summary>
    public static CudaWorker Open(int device = 0)
    {
        if (!CudaRuntime.IsAvailable(out string reason)) throw new CudaException(reason);
        CudaRuntime.Check(CudaNative.glm_cuda_device_count(out int count), "device count");
        if ((uint)device >= (uint)count) throw new CudaException($"there is no CUDA device {device} ({count} visible)");
        CudaRuntime.Check(CudaNative.glm_cuda_set_device(device), $"select device {device}");
        return new CudaWorker(device, CudaRuntime.DeviceName(device), CudaRuntime.IsHostBuild);
    }

    public int Device { get; }
    public string DeviceName { get; }
    /// <summary>True on the host build (plain C++ over host memory): the C# side is the real one, the "GPU" is not.</summary>
    public bool IsHostBuild { get; }
    public string Name => IsHostBuild ? "cuda-host" : $"cuda:{Device}";

    /// <summary>Device bytes this worker holds: weights and KV pools, and the activation pool.</summary>
    public long BytesHeld => _memory.BytesHeld;
    public long PermanentBytes => _memory.PermanentBytes;

    // --- handles --------------------------------------------------------------------------------------------------

    private static DeviceSlab Slab(Tensor t) => (DeviceSlab)t.Storage;
    private static nint Ptr(Tensor t) => Slab(t).Pointer;
    private static ref GlmWeight W(DeviceWeight w) => ref ((CudaWeight)w.Native).Native;
    private static nint Ptr(DeviceVector? v) => v is null ? 0 : ((CudaVector)v.Native).Pointer;
    private static CudaKvCache Pool(DeviceKvCache c) => (CudaKvCache)c;
    private static CudaStep StepOf(StepSequences s) => (CudaStep)s.Native;

    private static GlmHeads View(Heads h) => new()
    {
        Data = Ptr(h.Tensor), Rows = h.Tensor.Rows, RowStride = h.Tensor.Cols, Count = h.Count, HeadStride = h.Stride, Offset = h.Offset, Width = h.Width,
    };

    private static void Check(int status, string op) => CudaRuntime.Check(status, op);

    /// <summary>A step's uploaded tables and the glm_step pointing into them.</summary>
    private sealed class CudaStep(DeviceSlab slab, GlmStep native)
    {
        public DeviceSlab Slab { get; } = slab;
        public GlmStep Native = native;
    }

    /// <summary>One MoE layer's expert weights as three device arrays of glm_weight.</summary>
    private sealed class ExpertTables(DeviceSlab gate, DeviceSlab up, DeviceSlab down, int intermediate, int hidden)
    {
        public DeviceSlab Gate { get; } = gate;
        public DeviceSlab Up { get; } = up;
        public DeviceSlab Down { get; } = down;
        public int Intermediate { get; } = intermediate;
        public int Hidden { get; } = hidden;
    }

    /// <summary>The MoE gate's decision, on the device.</summary>
    private sealed class CudaRouting(DeviceSlab chosen, DeviceSlab weights, DeviceSlab start, DeviceSlab order)
    {
        public DeviceSlab Chosen { get; } = chosen;
        public DeviceSlab Weights { get; } = weights;
        public DeviceSlab Start { get; } = start;
        public DeviceSlab Order { get; } = order;
    }

    // --- placement and memory -------------------------------------------------------------------------------------

    public DeviceWeight Place(WeightMatrix weight)
    {
        var w = CudaWeight.Upload(weight, _memory);
        return new DeviceWeight(w, weight.Rows, weight.Cols, weight.Format, weight.ByteSize);
    }

    public DeviceVector Place(float[] values) => new(new CudaVector(_memory.Upload<float>(values), _memory), values.Length);

    public Tensor Empty(int rows, int cols) => new(this, _memory.Rent(Math.Max(1L, (long)rows * cols) * sizeof(float)), rows, cols);

    public void Free(Tensor tensor) => _memory.Return(Slab(tensor));

    public DeviceKvCache CreateKvCache(KvLayout layout, KvCacheDType dtype, int blocks, int blockSize) => new CudaKvCache(_memory, layout, dtype, blocks, blockSize);

    public StepSequences PrepareStep(DeviceKvCache cache, IReadOnlyList<StepSequence> sequences, int[] positions)
    {
        var pool = Pool(cache);
        int rows = positions.Length, tableLength = 0;
        foreach (var s in sequences) tableLength += s.BlockTable.Count;
        // One upload: positions, each row's table offset, then the block tables one after another.
        var host = new int[2 * rows + tableLength];
        var covered = new bool[rows];
        int at = 2 * rows;
        foreach (var s in sequences)
        {
            int needed = (s.ContextLength + pool.BlockSize - 1) / pool.BlockSize;
            if (s.BlockTable.Count < needed)
                throw new ArgumentException($"a block table of {s.BlockTable.Count} blocks cannot hold {s.ContextLength} positions of {pool.BlockSize}");
            if (s.Start < 0 || s.Count < 0 || s.Start + s.Count > rows) throw new ArgumentException("a sequence's rows lie outside the step");
            for (int b = 0; b < s.BlockTable.Count; b++)
            {
                int block = s.BlockTable[b];
                if ((uint)block >= (uint)pool.NumBlocks) throw new ArgumentException($"block {block} is outside the pool of {pool.NumBlocks}");
                host[at + b] = block;
            }
            for (int i = 0; i < s.Count; i++)
            {
                int row = s.Start + i;
                if (covered[row]) throw new ArgumentException($"row {row} belongs to two sequences");
                covered[row] = true;
                if (positions[row] != s.FirstPosition + i) throw new ArgumentException($"row {row}'s position {positions[row]} is not its sequence's {s.FirstPosition + i}");
                host[row] = positions[row];
                host[rows + row] = at - 2 * rows;
            }
            at += s.BlockTable.Count;
        }
        if (Array.IndexOf(covered, false) is int missing and >= 0) throw new ArgumentException($"row {missing} belongs to no sequence");
        var slab = _memory.Rent(Math.Max(1, host.Length) * sizeof(int));
        DeviceMemory.CopyIn<int>(slab, host);
        var native = new GlmStep
        {
            Positions = slab.Pointer, TableOffsets = slab.Pointer + rows * sizeof(int), Tables = slab.Pointer + 2 * rows * sizeof(int),
            Rows = rows, BlockSize = pool.BlockSize,
        };
        return new StepSequences(new CudaStep(slab, native), positions, sequences, () => _memory.Return(slab));
    }

    public void Download(Tensor tensor, Span<float> destination) => DeviceMemory.CopyOut(Ptr(tensor), destination[..checked((int)tensor.Length)]);

    /// <summary>
    /// Host indices, each checked to lie in [0, <paramref name="bound"/>) (a kernel could not report it), uploaded
    /// into a pooled slab that the caller returns at once after queueing its reader (the stream keeps the order).
    /// </summary>
    private DeviceSlab UploadIndices(ReadOnlySpan<int> values, int bound, string what)
    {
        foreach (int v in values)
            if ((uint)v >= (uint)bound) throw new ArgumentOutOfRangeException(nameof(values), v, $"{what} outside [0, {bound})");
        var slab = _memory.Rent(Math.Max(1, values.Length) * sizeof(int));
        DeviceMemory.CopyIn(slab, values);
        return slab;
    }

    // --- the operations -------------------------------------------------------------------------------------------

    public Tensor Embedding(DeviceWeight table, ReadOnlySpan<int> ids)
    {
        var slab = UploadIndices(ids, table.Rows, "token id");
        var output = Empty(ids.Length, table.Cols);
        Check(CudaNative.glm_embedding(in W(table), slab.Pointer, ids.Length, Ptr(output), 0), "embedding");
        _memory.Return(slab);
        return output;
    }

    public Tensor Linear(Tensor x, DeviceWeight weight, DeviceVector? bias = null)
    {
        if (x.Cols != weight.Cols) throw new ArgumentException($"linear: x has {x.Cols} columns, the weight {weight.Cols}");
        var y = Empty(x.Rows, weight.Rows);
        Check(CudaNative.glm_linear(in W(weight), Ptr(x), x.Rows, Ptr(y), Ptr(bias), 0), "linear");
        return y;
    }

    public void LinearToHost(Tensor x, DeviceWeight weight, Span<float> output)
    {
        using var y = Linear(x, weight);
        Download(y, output);
    }

    public void HeadsTimesWeight(DeviceWeight weight, int rowsPerHead, int rowOffset, Heads x, Heads y) =>
        Check(CudaNative.glm_heads_times_weight(in W(weight), rowsPerHead, rowOffset, View(x), View(y), 0), "heads_times_weight");

    public void RmsNorm(Heads x, DeviceVector weight, float eps, Heads output)
    {
        if (weight.Length != x.Width) throw new ArgumentException($"rmsnorm: a weight of {weight.Length} for heads of {x.Width}");
        Check(CudaNative.glm_rmsnorm_heads(View(x), Ptr(weight), eps, View(output), 0), "rmsnorm");
    }

    public void Rope(Heads x, Rope rope, StepSequences step)
    {
        var frequencies = _ropeFrequencies.GetValue(rope, r => new CudaVector(_memory.Upload(r.InverseFrequencies), _memory));
        Check(CudaNative.glm_rope_heads(View(x), StepOf(step).Native.Positions, rope.RotaryDim, (int)rope.Layout, frequencies.Pointer, 0), "rope");
    }

    public void Copy(Heads source, Heads destination) => Check(CudaNative.glm_copy_heads(View(source), View(destination), 0), "copy");

    public void Add(Tensor into, Tensor x)
    {
        if (into.Length != x.Length) throw new ArgumentException("add: shapes differ");
        Check(CudaNative.glm_add_f32(Ptr(into), Ptr(x), into.Length, 0), "add");
    }

    public void SiluMul(Tensor gate, Tensor up)
    {
        if (gate.Length != up.Length) throw new ArgumentException("silu_mul: shapes differ");
        Check(CudaNative.glm_silu_mul_f32(Ptr(gate), Ptr(up), Ptr(gate), gate.Length, 0), "silu_mul");
    }

    public Tensor SiluMulHalves(Tensor gateUp)
    {
        int inter = gateUp.Cols / 2;
        var output = Empty(gateUp.Rows, inter);
        Check(CudaNative.glm_silu_mul_halves(Ptr(gateUp), gateUp.Rows, inter, Ptr(output), 0), "silu_mul_halves");
        return output;
    }

    public Tensor GatherRows(Tensor x, ReadOnlySpan<int> rows)
    {
        var slab = UploadIndices(rows, x.Rows, "row");
        var output = Empty(rows.Length, x.Cols);
        Check(CudaNative.glm_gather_rows(Ptr(x), x.Cols, slab.Pointer, rows.Length, Ptr(output), 0), "gather_rows");
        _memory.Return(slab);
        return output;
    }

    public void WriteKv(DeviceKvCache cache, int layer, StepSequences step, Tensor keys, Tensor? values)
    {
        var pool = Pool(cache);
        var l = pool.Layout;
        if (keys.Cols != l.KvHeads * l.KeyDim || (!l.ValueIsKeyPrefix && values?.Cols != l.KvHeads * l.ValueDim))
            throw new ArgumentException("write_kv: keys or values do not match the pool's layout");
        Check(CudaNative.glm_kv_write(pool.Layer(layer), StepOf(step).Native, Ptr(keys), values is { } v ? Ptr(v) : 0, 0), "write_kv");
    }

    public Tensor PagedAttention(DeviceKvCache cache, int layer, StepSequences step, Tensor queries, int heads, int headDim,
        int queriesPerKvHead, float scale, int valueDim)
    {
        var output = Empty(queries.Rows, heads * valueDim);
        Check(CudaNative.glm_paged_attention(Pool(cache).Layer(layer), StepOf(step).Native, Ptr(queries), heads, headDim, queriesPerKvHead, scale, valueDim,
            Ptr(output), 0), "paged_attention");
        return output;
    }

    public MoeRouting MoeRoute(Tensor x, MoeGate gate)
    {
        int picks = Math.Max(1, x.Rows * gate.TopK);
        var r = new CudaRouting(_memory.Rent(picks * sizeof(int)), _memory.Rent(picks * sizeof(float)), _memory.Rent((gate.Experts + 1) * sizeof(int)),
            _memory.Rent(picks * sizeof(int)));
        Check(CudaNative.glm_moe_route(Ptr(x), x.Rows, Ptr(gate.Weight), Ptr(gate.CorrectionBias), gate.Experts, gate.Hidden, gate.TopK, gate.Groups,
            gate.TopkGroup, gate.NormTopkProb ? 1 : 0, gate.RoutedScalingFactor, r.Chosen.Pointer, r.Weights.Pointer, r.Start.Pointer, r.Order.Pointer, 0),
            "moe_route");
        return new MoeRouting(r, x.Rows, gate.TopK, () =>
        {
            _memory.Return(r.Chosen);
            _memory.Return(r.Weights);
            _memory.Return(r.Start);
            _memory.Return(r.Order);
        });
    }

    public Tensor MoeExperts(Tensor x, MoeRouting routing, ExpertSet experts)
    {
        var tables = _expertTables.GetValue(experts, UploadExpertTables);
        var r = (CudaRouting)routing.Native;
        var output = Empty(x.Rows, x.Cols);
        var scratch = _memory.Rent(Math.Max(1L, (long)x.Rows * routing.TopK * (tables.Intermediate + tables.Hidden)) * sizeof(float));
        Check(CudaNative.glm_moe_experts(tables.Gate.Pointer, tables.Up.Pointer, tables.Down.Pointer, experts.Count, tables.Intermediate, tables.Hidden,
            Ptr(x), x.Rows, routing.TopK, r.Chosen.Pointer, r.Weights.Pointer, r.Start.Pointer, r.Order.Pointer, scratch.Pointer, Ptr(output), 0), "moe_experts");
        _memory.Return(scratch);
        return output;
    }

    public void SampleToHost(Tensor logits, ReadOnlySpan<RowSampling> rows, Span<int> tokens)
    {
        if (rows.Length != logits.Rows || tokens.Length < rows.Length) throw new ArgumentException("sample: one setting and one token per logits row");
        long cells = Math.Max(1L, logits.Length);
        var parameters = _memory.Rent(Math.Max(1, rows.Length) * Marshal.SizeOf<RowSampling>());
        DeviceMemory.CopyIn(parameters, rows);
        var probs = _memory.Rent(cells * sizeof(float));
        var order = _memory.Rent(cells * sizeof(int));
        var ids = _memory.Rent(Math.Max(1, rows.Length) * sizeof(int));
        try
        {
            Check(CudaNative.glm_sample(Ptr(logits), logits.Rows, logits.Cols, parameters.Pointer, probs.Pointer, order.Pointer, ids.Pointer, 0), "sample");
            DeviceMemory.CopyOut(ids.Pointer, tokens[..rows.Length]);
        }
        finally
        {
            _memory.Return(parameters);
            _memory.Return(probs);
            _memory.Return(order);
            _memory.Return(ids);
        }
    }

    private ExpertTables UploadExpertTables(ExpertSet experts)
    {
        GlmWeight[] Table(IReadOnlyList<DeviceWeight> list) => list.Select(w => W(w)).ToArray();
        int inter = experts.Gate[0].Rows, hidden = experts.Gate[0].Cols;
        for (int e = 0; e < experts.Count; e++)
            if (experts.Gate[e].Rows != inter || experts.Up[e].Rows != inter || experts.Down[e].Cols != inter || experts.Down[e].Rows != hidden)
                throw new ArgumentException($"expert {e}'s shapes differ from expert 0's");
        return new ExpertTables(Upload(Table(experts.Gate)), Upload(Table(experts.Up)), Upload(Table(experts.Down)), inter, hidden);

        DeviceSlab Upload(GlmWeight[] table) => _memory.Upload<byte>(MemoryMarshal.AsBytes(table.AsSpan()));
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _memory.Dispose();
    }
}
