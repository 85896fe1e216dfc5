using System.Diagnostics;
using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;
using Glm.Kernels.Device;

namespace Glm.Bench;

/// <summary>
/// A worker that runs every op on another one and adds up the wall time each kind of op takes (Linear and the
/// MoE experts split by weight format and shape), so a forward pass says where its time goes. Ops on the CPU
/// worker finish before they return, so the wall time of the call is the op's time.
/// </summary>
public sealed class ProfilingWorker(IWorker inner) : IWorker
{
    private readonly Dictionary<string, (double Seconds, long Calls)> _totals = new();

    public string Name => $"profile({inner.Name})";

    /// <summary>Seconds and calls per op label since the last <see cref="Reset"/>.</summary>
    public IReadOnlyDictionary<string, (double Seconds, long Calls)> Totals => _totals;

    public void Reset() => _totals.Clear();

    private T Time<T>(string label, Func<T> op)
    {
        long start = Stopwatch.GetTimestamp();
        var result = op();
        Add(label, start);
        return result;
    }

    private void Time(string label, Action op)
    {
        long start = Stopwatch.GetTimestamp();
        op();
        Add(label, start);
    }

    private void Add(string label, long start)
    {
        double s = Stopwatch.GetElapsedTime(start).TotalSeconds;
        lock (_totals)
        {
            _totals.TryGetValue(label, out var t);
            _totals[label] = (t.Seconds + s, t.Calls + 1);
        }
    }

    private static string Shape(DeviceWeight w) =>
        w.Native is WeightMatrix m ? $"{m.Format} {m.Rows}x{m.Cols}" : "?";

    private static string RowsBucket(int rows) => rows == 1 ? "M=1" : rows <= 16 ? "M<=16" : rows <= 128 ? "M<=128" : "M>128";

    public DeviceWeight Place(WeightMatrix weight) => inner.Place(weight);
    public DeviceVector Place(float[] values) => inner.Place(values);
    public Tensor Empty(int rows, int cols) => inner.Empty(rows, cols);
    public void Free(Tensor tensor) => inner.Free(tensor);
    public DeviceKvCache CreateKvCache(KvLayout layout, KvCacheDType dtype, int blocks, int blockSize) => inner.CreateKvCache(layout, dtype, blocks, blockSize);
    public StepSequences PrepareStep(DeviceKvCache cache, IReadOnlyList<StepSequence> sequences, int[] positions) => inner.PrepareStep(cache, sequences, positions);
    public void Download(Tensor tensor, Span<float> destination)
    {
        long start = Stopwatch.GetTimestamp();
        inner.Download(tensor, destination);
        Add("download", start);
    }

    public Tensor Embedding(DeviceWeight table, ReadOnlySpan<int> ids)
    {
        long start = Stopwatch.GetTimestamp();
        var t = inner.Embedding(table, ids);
        Add("embedding", start);
        return t;
    }

    public Tensor Linear(Tensor x, DeviceWeight weight, DeviceVector? bias = null) =>
        Time($"linear {Shape(weight)} {RowsBucket(x.Rows)}", () => inner.Linear(x, weight, bias));

    public void LinearToHost(Tensor x, DeviceWeight weight, Span<float> output)
    {
        long start = Stopwatch.GetTimestamp();
        inner.LinearToHost(x, weight, output);
        Add($"linear (to host) {Shape(weight)} {RowsBucket(x.Rows)}", start);
    }

    public void HeadsTimesWeight(DeviceWeight weight, int rowsPerHead, int rowOffset, Heads x, Heads y) =>
        Time($"heads x weight {Shape(weight)}", () => inner.HeadsTimesWeight(weight, rowsPerHead, rowOffset, x, y));
    public void RmsNorm(Heads x, DeviceVector weight, float eps, Heads output) => Time("rmsnorm", () => inner.RmsNorm(x, weight, eps, output));
    public void Rope(Heads x, Rope rope, StepSequences step) => Time("rope", () => inner.Rope(x, rope, step));
    public void Copy(Heads source, Heads destination) => Time("copy", () => inner.Copy(source, destination));
    public void Add(Tensor into, Tensor x) => Time("add", () => inner.Add(into, x));
    public void SiluMul(Tensor gate, Tensor up) => Time("silu*mul", () => inner.SiluMul(gate, up));
    public Tensor SiluMulHalves(Tensor gateUp) => Time("silu*mul", () => inner.SiluMulHalves(gateUp));

    public Tensor GatherRows(Tensor x, ReadOnlySpan<int> rows)
    {
        long start = Stopwatch.GetTimestamp();
        var t = inner.GatherRows(x, rows);
        Add("gather rows", start);
        return t;
    }

    public void WriteKv(DeviceKvCache cache, int layer, StepSequences step, Tensor keys, Tensor? values) =>
        Time("write kv", () => inner.WriteKv(cache, layer, step, keys, values));

    public Tensor PagedAttention(DeviceKvCache cache, int layer, StepSequences step, Tensor queries, int heads, int headDim,
        int queriesPerKvHead, float scale, int valueDim) =>
        Time("paged attention", () => inner.PagedAttention(cache, layer, step, queries, heads, headDim, queriesPerKvHead, scale, valueDim));

    public MoeRouting MoeRoute(Tensor x, MoeGate gate) => Time("moe route", () => inner.MoeRoute(x, gate));

    public Tensor MoeExperts(Tensor x, MoeRouting routing, ExpertSet experts) =>
        Time($"moe experts {RowsBucket(x.Rows)}", () => inner.MoeExperts(x, routing, experts));

    public bool SupportsSparseAttention => inner.SupportsSparseAttention;

    public void LayerNorm(Heads x, DeviceVector weight, DeviceVector bias, float eps, Heads output) =>
        Time("layernorm", () => inner.LayerNorm(x, weight, bias, eps, output));

    public TokenSelection IndexerTopK(DeviceKvCache keys, int layer, StepSequences step, Tensor queries, Tensor headWeights, int heads, int headDim,
        float scale, float weightScale, int topK) =>
        Time("indexer top-k", () => inner.IndexerTopK(keys, layer, step, queries, headWeights, heads, headDim, scale, weightScale, topK));

    public Tensor SparsePagedAttention(DeviceKvCache cache, int layer, StepSequences step, Tensor queries, int heads, int headDim,
        int queriesPerKvHead, float scale, int valueDim, TokenSelection selection) =>
        Time("sparse attention", () => inner.SparsePagedAttention(cache, layer, step, queries, heads, headDim, queriesPerKvHead, scale, valueDim, selection));

    public void Dispose() => inner.Dispose();

    /// <summary>The totals, largest first, as shares of <paramref name="wallSeconds"/>.</summary>
    public void Print(double wallSeconds, int repeats)
    {
        double timed = _totals.Values.Sum(t => t.Seconds);
        foreach (var (label, (seconds, calls)) in _totals.OrderByDescending(kv => kv.Value.Seconds))
            Console.WriteLine($"  {label,-48} {seconds / repeats * 1e3,9:F2} ms {seconds / wallSeconds,6:P1}  ({calls / repeats} calls)");
        Console.WriteLine($"  {"(outside the worker's ops)",-48} {(wallSeconds - timed) / repeats * 1e3,9:F2} ms {(wallSeconds - timed) / wallSeconds,6:P1}");
    }
}
