using System.Buffers;
using System.Numerics.Tensors;
using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;

namespace Glm.Kernels.Device.Cpu;

/// <summary>
/// The device contract on this machine's cores: tensors are pooled float32 arrays, weights stay the host
/// matrices the loader built (BF16, FP8, Int4 in native memory), every op is this library's SIMD kernels. Each
/// op makes exactly the kernel calls the architectures made before the contract existed, in the same shapes, so
/// results are bit for bit those of the direct CPU path. Ops are virtual so a test can derive a faulty copy.
/// </summary>
public class CpuWorker : IWorker
{
    /// <summary>One shared instance: the CPU worker holds no state of its own beyond the array pool.</summary>
    public static readonly CpuWorker Instance = new();

    public virtual string Name => "cpu";

    /// <summary>The float32 values of a CPU tensor (its pooled array, at least <see cref="Tensor.Length"/> long).</summary>
    public static float[] Array(Tensor t) => (float[])t.Storage;

    public static Span<float> Data(Tensor t) => Array(t).AsSpan(0, checked((int)t.Length));

    private static WeightMatrix Matrix(DeviceWeight w) => (WeightMatrix)w.Native;
    private static float[] Values(DeviceVector v) => (float[])v.Native;
    private static PagedKvCache Pool(DeviceKvCache cache) => ((CpuKvCache)cache).Pool;
    private static AttentionSequence[] Slots(StepSequences step) => (AttentionSequence[])step.Native;

    public virtual DeviceWeight Place(WeightMatrix weight) => new(weight, weight.Rows, weight.Cols, weight.Format, weight.ByteSize);

    public virtual DeviceVector Place(float[] values) => new(values, values.Length);

    public virtual Tensor Empty(int rows, int cols) =>
        new(this, ArrayPool<float>.Shared.Rent(Math.Max(1, checked(rows * cols))), rows, cols);

    public virtual void Free(Tensor tensor) => ArrayPool<float>.Shared.Return(Array(tensor));

    public virtual DeviceKvCache CreateKvCache(KvLayout layout, KvCacheDType dtype, int blocks, int blockSize) =>
        new CpuKvCache(new PagedKvCache(layout, dtype, blocks, blockSize));

    public virtual StepSequences PrepareStep(DeviceKvCache cache, IReadOnlyList<StepSequence> sequences, int[] positions)
    {
        var pool = Pool(cache);
        var slots = new AttentionSequence[sequences.Count];
        for (int s = 0; s < slots.Length; s++)
        {
            var seq = sequences[s];
            var table = ArrayPool<long>.Shared.Rent(seq.ContextLength); // the slot of each position; returned with the step
            pool.SlotsFor(seq.BlockTable, table.AsSpan(0, seq.ContextLength));
            slots[s] = new AttentionSequence(seq.Start, seq.Count, seq.FirstPosition, table);
        }
        return new StepSequences(slots, positions, sequences, () =>
        {
            foreach (var s in slots) ArrayPool<long>.Shared.Return(s.Slots);
        });
    }

    public virtual void Download(Tensor tensor, Span<float> destination) => Data(tensor).CopyTo(destination);

    public virtual Tensor Embedding(DeviceWeight table, ReadOnlySpan<int> ids)
    {
        var output = Empty(ids.Length, table.Cols);
        var values = Data(output);
        int h = table.Cols;
        for (int i = 0; i < ids.Length; i++) Matrix(table).DequantizeRow(ids[i], values.Slice(i * h, h));
        return output;
    }

    public virtual Tensor Linear(Tensor x, DeviceWeight weight, DeviceVector? bias = null)
    {
        var y = Empty(x.Rows, weight.Rows);
        MatMul.Multiply(Matrix(weight), Data(x), x.Rows, Data(y), bias is null ? default : Values(bias));
        return y;
    }

    public virtual void LinearToHost(Tensor x, DeviceWeight weight, Span<float> output) => MatMul.Multiply(Matrix(weight), Data(x), x.Rows, output);

    public virtual unsafe void HeadsTimesWeight(DeviceWeight weight, int rowsPerHead, int rowOffset, Heads x, Heads y)
    {
        var w = Matrix(weight);
        int tokens = x.Tensor.Rows;
        if (tokens == 1)
        {
            var xs = Data(x.Tensor);
            var ys = Data(y.Tensor);
            for (int h = 0; h < x.Count; h++)
            {
                int first = h * rowsPerHead + rowOffset;
                // One call per head, so a format that prepares its activations (Int4 quantizes them to int8)
                // does so once for the head; MultiplyRows writes y[n] for rows n, hence the pointer offset.
                fixed (float* px = xs.Slice(h * x.Stride + x.Offset, x.Width))
                fixed (float* py = ys.Slice(h * y.Stride + y.Offset, y.Width))
                    w.MultiplyRows(px, 1, py - first, w.Rows, first, first + y.Width);
            }
            return;
        }
        // Several tokens (prefill, verification): each head's slices of every token gathered into one block, so
        // the batched kernels reuse each weight row across the tokens, and the heads shared out among the threads.
        // MultiplyRows computes each element as for one row, so the bits are those of the loop above.
        var xArray = Array(x.Tensor);
        var yArray = Array(y.Tensor);
        int xCols = x.Tensor.Cols, yCols = y.Tensor.Cols;
        MatMul.ForEachChunk(x.Count, (long)tokens * x.Width * y.Width, (headStart, headEnd) =>
        {
            var xBlock = ArrayPool<float>.Shared.Rent(tokens * x.Width);
            var yBlock = ArrayPool<float>.Shared.Rent(tokens * y.Width);
            try
            {
                for (int h = headStart; h < headEnd; h++)
                {
                    int first = h * rowsPerHead + rowOffset;
                    for (int i = 0; i < tokens; i++)
                        xArray.AsSpan(i * xCols + h * x.Stride + x.Offset, x.Width).CopyTo(xBlock.AsSpan(i * x.Width, x.Width));
                    fixed (float* px = xBlock) fixed (float* py = yBlock)
                        w.MultiplyRows(px, tokens, py - first, y.Width, first, first + y.Width);
                    for (int i = 0; i < tokens; i++)
                        yBlock.AsSpan(i * y.Width, y.Width).CopyTo(yArray.AsSpan(i * yCols + h * y.Stride + y.Offset, y.Width));
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(xBlock);
                ArrayPool<float>.Shared.Return(yBlock);
            }
        });
    }

    public virtual void RmsNorm(Heads x, DeviceVector weight, float eps, Heads output)
    {
        var w = Values(weight);
        var xs = Data(x.Tensor);
        var os = Data(output.Tensor);
        for (int i = 0; i < x.Tensor.Rows; i++)
        {
            int xRow = i * x.Tensor.Cols, oRow = i * output.Tensor.Cols;
            if (x.IsPacked && output.IsPacked)
                Glm.Kernels.Cpu.RmsNorm.ApplyRows(xs.Slice(xRow + x.Offset, x.Count * x.Width), x.Count, w, eps, os.Slice(oRow + output.Offset, x.Count * x.Width));
            else
                for (int h = 0; h < x.Count; h++)
                    Glm.Kernels.Cpu.RmsNorm.Apply(xs.Slice(xRow + h * x.Stride + x.Offset, x.Width), w, eps, os.Slice(oRow + h * output.Stride + output.Offset, x.Width));
        }
    }

    public virtual void Rope(Heads x, Rope rope, StepSequences step)
    {
        Span<float> scratch = stackalloc float[rope.ScratchLength];
        var xs = Data(x.Tensor);
        for (int i = 0; i < x.Tensor.Rows; i++)
        {
            int row = i * x.Tensor.Cols, position = step.Positions[i];
            if (x.IsPacked) rope.Apply(xs.Slice(row + x.Offset, x.Count * x.Width), x.Count, x.Width, position, scratch);
            else
                for (int h = 0; h < x.Count; h++)
                    rope.Apply(xs.Slice(row + h * x.Stride + x.Offset, x.Width), 1, x.Width, position, scratch);
        }
    }

    public virtual void Copy(Heads source, Heads destination)
    {
        var s = Data(source.Tensor);
        var d = Data(destination.Tensor);
        for (int i = 0; i < source.Tensor.Rows; i++)
            for (int h = 0; h < source.Count; h++)
                s.Slice(i * source.Tensor.Cols + h * source.Stride + source.Offset, source.Width)
                    .CopyTo(d.Slice(i * destination.Tensor.Cols + h * destination.Stride + destination.Offset, source.Width));
    }

    public virtual void Add(Tensor into, Tensor x) => TensorPrimitives.Add(Data(into), Data(x), Data(into));

    public virtual void SiluMul(Tensor gate, Tensor up) => Activations.SiluMul(Data(gate), Data(up), Data(gate));

    public virtual Tensor SiluMulHalves(Tensor gateUp)
    {
        int inter = gateUp.Cols / 2;
        var output = Empty(gateUp.Rows, inter);
        var g = Data(gateUp);
        var o = Data(output);
        for (int r = 0; r < gateUp.Rows; r++)
            Activations.SiluMul(g.Slice(r * 2 * inter, inter), g.Slice(r * 2 * inter + inter, inter), o.Slice(r * inter, inter));
        return output;
    }

    public virtual Tensor GatherRows(Tensor x, ReadOnlySpan<int> rows)
    {
        var output = Empty(rows.Length, x.Cols);
        var s = Data(x);
        var d = Data(output);
        for (int r = 0; r < rows.Length; r++) s.Slice(rows[r] * x.Cols, x.Cols).CopyTo(d.Slice(r * x.Cols, x.Cols));
        return output;
    }

    public virtual void WriteKv(DeviceKvCache cache, int layer, StepSequences step, Tensor keys, Tensor? values)
    {
        var store = Pool(cache).Store;
        var k = Data(keys);
        var v = values is { } vt ? Data(vt) : default;
        int kw = keys.Cols, vw = values?.Cols ?? 0;
        foreach (var s in Slots(step))
            for (int i = 0; i < s.Count; i++)
            {
                int row = s.Start + i;
                store.Write(layer, s.Slots[s.FirstPosition + i], k.Slice(row * kw, kw), vw == 0 ? default : v.Slice(row * vw, vw));
            }
    }

    public virtual Tensor PagedAttention(DeviceKvCache cache, int layer, StepSequences step, Tensor queries, int heads, int headDim,
        int queriesPerKvHead, float scale, int valueDim)
    {
        var output = Empty(queries.Rows, heads * valueDim);
        Glm.Kernels.Attention.PagedAttention.Forward(Pool(cache).Store, layer, Slots(step), Array(queries), heads, headDim, queriesPerKvHead, scale, Array(output), valueDim);
        return output;
    }

    public virtual MoeRouting MoeRoute(Tensor x, MoeGate gate) => CpuMoe.Route(Data(x), x.Rows, gate);

    public virtual Tensor MoeExperts(Tensor x, MoeRouting routing, ExpertSet experts)
    {
        var output = Empty(x.Rows, x.Cols);
        CpuMoe.Experts(Data(x), (CpuMoe.Routing)routing.Native, experts, Data(output));
        return output;
    }

    public virtual bool SupportsSparseAttention => true;

    public virtual void LayerNorm(Heads x, DeviceVector weight, DeviceVector bias, float eps, Heads output)
    {
        var w = Values(weight);
        var b = Values(bias);
        var xs = Data(x.Tensor);
        var os = Data(output.Tensor);
        for (int i = 0; i < x.Tensor.Rows; i++)
            for (int h = 0; h < x.Count; h++)
            {
                var v = xs.Slice(i * x.Tensor.Cols + h * x.Stride + x.Offset, x.Width);
                var o = os.Slice(i * output.Tensor.Cols + h * output.Stride + output.Offset, x.Width);
                float mean = TensorPrimitives.Sum(v) / v.Length;
                float variance = 0;
                foreach (float e in v) variance += (e - mean) * (e - mean);
                float inv = 1f / MathF.Sqrt(variance / v.Length + eps);
                for (int k = 0; k < v.Length; k++) o[k] = (v[k] - mean) * inv * w[k] + b[k];
            }
    }

    public virtual TokenSelection IndexerTopK(DeviceKvCache keys, int layer, StepSequences step, Tensor queries, Tensor headWeights, int heads, int headDim,
        float scale, float weightScale, int topK)
    {
        var store = Pool(keys).Store;
        var q = Array(queries);
        var w = Data(headWeights);
        var selected = new int[]?[queries.Rows];
        foreach (var s in Slots(step))
            for (int i = 0; i < s.Count; i++)
            {
                int row = s.Start + i, context = s.FirstPosition + i + 1;
                if (context <= topK) continue; // every position: exactly dense attention
                var score = new float[context];
                var headScores = ArrayPool<float>.Shared.Rent(context);
                for (int h = 0; h < heads; h++)
                {
                    store.Scores(layer, 0, s.Slots.AsSpan(0, context), q.AsSpan((row * heads + h) * headDim, headDim), scale, headScores);
                    float weight = w[row * heads + h] * weightScale;
                    for (int j = 0; j < context; j++) score[j] += weight * MathF.Max(headScores[j], 0f);
                }
                ArrayPool<float>.Shared.Return(headScores);
                var order = new int[context];
                for (int j = 0; j < context; j++) order[j] = j;
                // Highest score first, the lower position winning a tie: a deterministic top-k.
                System.Array.Sort(order, (a, b) => score[a] != score[b] ? score[b].CompareTo(score[a]) : a.CompareTo(b));
                var pick = order[..topK];
                System.Array.Sort(pick);
                selected[row] = pick;
            }
        return new TokenSelection(selected, queries.Rows, () => { });
    }

    public virtual Tensor SparsePagedAttention(DeviceKvCache cache, int layer, StepSequences step, Tensor queries, int heads, int headDim,
        int queriesPerKvHead, float scale, int valueDim, TokenSelection selection)
    {
        var output = Empty(queries.Rows, heads * valueDim);
        Glm.Kernels.Attention.PagedAttention.Forward(Pool(cache).Store, layer, Slots(step), Array(queries), heads, headDim, queriesPerKvHead, scale,
            Array(output), valueDim, (int[]?[])selection.Native);
        return output;
    }

    public virtual void Dispose() => GC.SuppressFinalize(this);

    /// <summary>The CPU page pool behind <see cref="DeviceKvCache"/>.</summary>
    public sealed class CpuKvCache(PagedKvCache pool) : DeviceKvCache
    {
        public PagedKvCache Pool { get; } = pool;
        public override KvLayout Layout => Pool.Layout;
        public override KvCacheDType DType => Pool.Store.DType;
        public override int NumBlocks => Pool.NumBlocks;
        public override int BlockSize => Pool.BlockSize;
        public override long BytesPerToken => Pool.BytesPerToken;

        public override void CopyBlock(int from, int to)
        {
            for (int s = 0; s < Pool.BlockSize; s++) Pool.Store.CopySlot((long)from * Pool.BlockSize + s, (long)to * Pool.BlockSize + s);
        }

        public override void Dispose() => Pool.Dispose();
    }
}
