using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;

namespace Glm.Kernels.Device;

/// <summary>Raised by <see cref="CheckingWorker"/> at the first op whose two results differ beyond the tolerance.</summary>
public sealed class WorkerMismatchException(string op, long opNumber, double error, string detail)
    : Exception($"op #{opNumber} {op}: {detail} (relative error {error:E2})")
{
    public string Op { get; } = op;
    public long OpNumber { get; } = opNumber;
    public double Error { get; } = error;
}

/// <summary>
/// Runs two workers side by side, op by op: every weight is placed on both, every op runs on both, and each
/// output is compared as soon as it exists. The first op whose outputs differ by more than
/// <see cref="Tolerance"/> (max |a − b| over max |a|, per output) throws <see cref="WorkerMismatchException"/>
/// naming it, so a new worker (CUDA, a hybrid) is debugged at the op that goes wrong, not at the logits. Each
/// worker continues from its own results; the first divergence stops the run, so none cascades unseen.
/// </summary>
public sealed class CheckingWorker(IWorker reference, IWorker candidate, double tolerance = 1e-4) : IWorker
{
    private long _ops;

    public IWorker Reference { get; } = reference;
    public IWorker Candidate { get; } = candidate;
    public double Tolerance { get; } = tolerance;
    /// <summary>Ops checked so far.</summary>
    public long OpsChecked => Interlocked.Read(ref _ops);

    public string Name => $"check({Reference.Name} vs {Candidate.Name})";

    private sealed record Pair<T>(T A, T B) : IDisposable
    {
        public void Dispose()
        {
            (A as IDisposable)?.Dispose();
            // Two CPU workers place the very same host matrix: free it once.
            if (A is DeviceWeight a && B is DeviceWeight b && ReferenceEquals(a.Native, b.Native)) return;
            (B as IDisposable)?.Dispose();
        }
    }

    private sealed record TensorPair(Tensor A, Tensor B);

    private static TensorPair Of(Tensor t) => (TensorPair)t.Storage;
    private static (Heads A, Heads B) Of(Heads h) => (h with { Tensor = Of(h.Tensor).A }, h with { Tensor = Of(h.Tensor).B });
    private static Pair<DeviceWeight> Of(DeviceWeight w) => (Pair<DeviceWeight>)w.Native;
    private static Pair<DeviceVector> Of(DeviceVector v) => (Pair<DeviceVector>)v.Native;
    private static DeviceVector? A(DeviceVector? v) => v is null ? null : Of(v).A;
    private static DeviceVector? B(DeviceVector? v) => v is null ? null : Of(v).B;
    private static Pair<DeviceKvCache> Of(DeviceKvCache c) => ((PairCache)c).Caches;
    private static Pair<StepSequences> Of(StepSequences s) => (Pair<StepSequences>)s.Native;

    private Tensor Wrap(Tensor a, Tensor b) => new(this, new TensorPair(a, b), a.Rows, a.Cols, a.DType);

    /// <summary>Compares the reference's and the candidate's versions of one output.</summary>
    private void Check(string op, Tensor a, Tensor b)
    {
        long n = Interlocked.Increment(ref _ops);
        if (a.Rows != b.Rows || a.Cols != b.Cols)
            throw new WorkerMismatchException(op, n, double.PositiveInfinity, $"shapes differ: {a} against {b}");
        Compare(op, n, Reference.ToHost(a), Candidate.ToHost(b));
    }

    /// <summary>Compares only the elements of a view an in-place op wrote (the rest of its tensor may be unwritten yet).</summary>
    private void Check(string op, Heads a, Heads b)
    {
        long n = Interlocked.Increment(ref _ops);
        var x = Reference.ToHost(a.Tensor);
        var y = Candidate.ToHost(b.Tensor);
        int rows = a.Tensor.Rows, count = a.Count * a.Width;
        var xv = new float[rows * count];
        var yv = new float[rows * count];
        for (int i = 0, at = 0; i < rows; i++)
            for (int h = 0; h < a.Count; h++, at += a.Width)
            {
                x.AsSpan(i * a.Tensor.Cols + h * a.Stride + a.Offset, a.Width).CopyTo(xv.AsSpan(at));
                y.AsSpan(i * b.Tensor.Cols + h * b.Stride + b.Offset, b.Width).CopyTo(yv.AsSpan(at));
            }
        Compare(op, n, xv, yv);
    }

    private void Compare(string op, long n, ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        double maxDiff = 0, maxRef = 0;
        int worst = -1;
        for (int i = 0; i < x.Length; i++)
        {
            double d = Math.Abs((double)x[i] - y[i]);
            if (double.IsNaN(d)) d = double.IsNaN(x[i]) && double.IsNaN(y[i]) ? 0 : double.PositiveInfinity;
            if (d > maxDiff) { maxDiff = d; worst = i; }
            maxRef = Math.Max(maxRef, Math.Abs((double)x[i]));
        }
        double error = maxDiff / Math.Max(maxRef, 1e-30);
        if (maxDiff > 0 && error > Tolerance)
            throw new WorkerMismatchException(op, n, error,
                $"{Candidate.Name} differs from {Reference.Name} at element {worst} of {x.Length}: {y[worst]} against {x[worst]}");
    }

    public DeviceWeight Place(WeightMatrix weight)
    {
        var a = Reference.Place(weight);
        var b = Candidate.Place(weight);
        return new DeviceWeight(new Pair<DeviceWeight>(a, b), a.Rows, a.Cols, a.Format, a.ByteSize);
    }

    public DeviceVector Place(float[] values) => new(new Pair<DeviceVector>(Reference.Place(values), Candidate.Place((float[])values.Clone())), values.Length);

    public Tensor Empty(int rows, int cols) => Wrap(Reference.Empty(rows, cols), Candidate.Empty(rows, cols));

    public void Free(Tensor tensor)
    {
        var p = Of(tensor);
        p.A.Dispose();
        p.B.Dispose();
    }

    private sealed class PairCache(Pair<DeviceKvCache> caches) : DeviceKvCache
    {
        public Pair<DeviceKvCache> Caches { get; } = caches;
        public override KvLayout Layout => Caches.A.Layout;
        public override KvCacheDType DType => Caches.A.DType;
        public override int NumBlocks => Caches.A.NumBlocks;
        public override int BlockSize => Caches.A.BlockSize;
        public override long BytesPerToken => Caches.A.BytesPerToken;

        public override void CopyBlock(int from, int to)
        {
            Caches.A.CopyBlock(from, to);
            Caches.B.CopyBlock(from, to);
        }

        public override void Dispose() => Caches.Dispose();
    }

    public DeviceKvCache CreateKvCache(KvLayout layout, KvCacheDType dtype, int blocks, int blockSize) =>
        new PairCache(new Pair<DeviceKvCache>(Reference.CreateKvCache(layout, dtype, blocks, blockSize), Candidate.CreateKvCache(layout, dtype, blocks, blockSize)));

    public StepSequences PrepareStep(DeviceKvCache cache, IReadOnlyList<StepSequence> sequences, int[] positions)
    {
        var c = Of(cache);
        var pair = new Pair<StepSequences>(Reference.PrepareStep(c.A, sequences, positions), Candidate.PrepareStep(c.B, sequences, positions));
        return new StepSequences(pair, positions, sequences, pair.Dispose);
    }

    public void Download(Tensor tensor, Span<float> destination) => Reference.Download(Of(tensor).A, destination);

    /// <summary>Runs a tensor-returning op on both workers and checks the results.</summary>
    private Tensor Both(string op, Func<IWorker, Func<Tensor, Tensor>, Func<DeviceWeight, DeviceWeight>, Func<DeviceVector?, DeviceVector?>, Tensor> run)
    {
        var a = run(Reference, t => Of(t).A, w => Of(w).A, A);
        var b = run(Candidate, t => Of(t).B, w => Of(w).B, B);
        try { Check(op, a, b); }
        catch { a.Dispose(); b.Dispose(); throw; }
        return Wrap(a, b);
    }

    public Tensor Embedding(DeviceWeight table, ReadOnlySpan<int> ids)
    {
        int[] copy = ids.ToArray();
        return Both(nameof(Embedding), (w, _, wt, _) => w.Embedding(wt(table), copy));
    }

    public Tensor Linear(Tensor x, DeviceWeight weight, DeviceVector? bias = null) =>
        Both(nameof(Linear), (w, t, wt, v) => w.Linear(t(x), wt(weight), v(bias)));

    public void LinearToHost(Tensor x, DeviceWeight weight, Span<float> output)
    {
        var candidate = new float[output.Length];
        Reference.LinearToHost(Of(x).A, Of(weight).A, output);
        Candidate.LinearToHost(Of(x).B, Of(weight).B, candidate);
        Compare(nameof(LinearToHost), Interlocked.Increment(ref _ops), output, candidate);
    }

    public void HeadsTimesWeight(DeviceWeight weight, int rowsPerHead, int rowOffset, Heads x, Heads y)
    {
        var (xa, xb) = Of(x);
        var (ya, yb) = Of(y);
        Reference.HeadsTimesWeight(Of(weight).A, rowsPerHead, rowOffset, xa, ya);
        Candidate.HeadsTimesWeight(Of(weight).B, rowsPerHead, rowOffset, xb, yb);
        Check(nameof(HeadsTimesWeight), ya, yb);
    }

    public void RmsNorm(Heads x, DeviceVector weight, float eps, Heads output)
    {
        var (xa, xb) = Of(x);
        var (oa, ob) = Of(output);
        Reference.RmsNorm(xa, Of(weight).A, eps, oa);
        Candidate.RmsNorm(xb, Of(weight).B, eps, ob);
        Check(nameof(RmsNorm), oa, ob);
    }

    public void Rope(Heads x, Rope rope, StepSequences step)
    {
        var (xa, xb) = Of(x);
        Reference.Rope(xa, rope, Of(step).A);
        Candidate.Rope(xb, rope, Of(step).B);
        Check(nameof(Rope), xa, xb);
    }

    public void Copy(Heads source, Heads destination)
    {
        var (sa, sb) = Of(source);
        var (da, db) = Of(destination);
        Reference.Copy(sa, da);
        Candidate.Copy(sb, db);
        Check(nameof(Copy), da, db);
    }

    public void Add(Tensor into, Tensor x)
    {
        Reference.Add(Of(into).A, Of(x).A);
        Candidate.Add(Of(into).B, Of(x).B);
        Check(nameof(Add), Of(into).A, Of(into).B);
    }

    public void SiluMul(Tensor gate, Tensor up)
    {
        Reference.SiluMul(Of(gate).A, Of(up).A);
        Candidate.SiluMul(Of(gate).B, Of(up).B);
        Check(nameof(SiluMul), Of(gate).A, Of(gate).B);
    }

    public Tensor SiluMulHalves(Tensor gateUp) => Both(nameof(SiluMulHalves), (w, t, _, _) => w.SiluMulHalves(t(gateUp)));

    public Tensor GatherRows(Tensor x, ReadOnlySpan<int> rows)
    {
        int[] copy = rows.ToArray();
        return Both(nameof(GatherRows), (w, t, _, _) => w.GatherRows(t(x), copy));
    }

    public void WriteKv(DeviceKvCache cache, int layer, StepSequences step, Tensor keys, Tensor? values)
    {
        // What was written is checked where it is read back: the attention output.
        Reference.WriteKv(Of(cache).A, layer, Of(step).A, Of(keys).A, values is { } v ? Of(v).A : null);
        Candidate.WriteKv(Of(cache).B, layer, Of(step).B, Of(keys).B, values is { } v2 ? Of(v2).B : null);
    }

    public Tensor PagedAttention(DeviceKvCache cache, int layer, StepSequences step, Tensor queries, int heads, int headDim,
        int queriesPerKvHead, float scale, int valueDim)
    {
        var a = Reference.PagedAttention(Of(cache).A, layer, Of(step).A, Of(queries).A, heads, headDim, queriesPerKvHead, scale, valueDim);
        var b = Candidate.PagedAttention(Of(cache).B, layer, Of(step).B, Of(queries).B, heads, headDim, queriesPerKvHead, scale, valueDim);
        try { Check(nameof(PagedAttention), a, b); }
        catch { a.Dispose(); b.Dispose(); throw; }
        return Wrap(a, b);
    }

    public MoeRouting MoeRoute(Tensor x, MoeGate gate)
    {
        var ga = gate with { Weight = Of(gate.Weight).A, CorrectionBias = A(gate.CorrectionBias) };
        var gb = gate with { Weight = Of(gate.Weight).B, CorrectionBias = B(gate.CorrectionBias) };
        var pair = new Pair<MoeRouting>(Reference.MoeRoute(Of(x).A, ga), Candidate.MoeRoute(Of(x).B, gb));
        // The choice itself is checked through the experts' output, which depends on every id and weight.
        return new MoeRouting(pair, x.Rows, gate.TopK, pair.Dispose);
    }

    public Tensor MoeExperts(Tensor x, MoeRouting routing, ExpertSet experts)
    {
        var r = (Pair<MoeRouting>)routing.Native;
        ExpertSet Side(Func<DeviceWeight, DeviceWeight> pick) =>
            new(experts.Gate.Select(pick).ToArray(), experts.Up.Select(pick).ToArray(), experts.Down.Select(pick).ToArray());
        var a = Reference.MoeExperts(Of(x).A, r.A, Side(w => Of(w).A));
        var b = Candidate.MoeExperts(Of(x).B, r.B, Side(w => Of(w).B));
        try { Check(nameof(MoeExperts), a, b); }
        catch { a.Dispose(); b.Dispose(); throw; }
        return Wrap(a, b);
    }

    public bool SupportsSparseAttention => Reference.SupportsSparseAttention && Candidate.SupportsSparseAttention;

    public void LayerNorm(Heads x, DeviceVector weight, DeviceVector bias, float eps, Heads output)
    {
        var (xa, xb) = Of(x);
        var (oa, ob) = Of(output);
        Reference.LayerNorm(xa, Of(weight).A, Of(bias).A, eps, oa);
        Candidate.LayerNorm(xb, Of(weight).B, Of(bias).B, eps, ob);
        Check(nameof(LayerNorm), oa, ob);
    }

    public TokenSelection IndexerTopK(DeviceKvCache keys, int layer, StepSequences step, Tensor queries, Tensor headWeights, int heads, int headDim,
        float scale, float weightScale, int topK)
    {
        var pair = new Pair<TokenSelection>(
            Reference.IndexerTopK(Of(keys).A, layer, Of(step).A, Of(queries).A, Of(headWeights).A, heads, headDim, scale, weightScale, topK),
            Candidate.IndexerTopK(Of(keys).B, layer, Of(step).B, Of(queries).B, Of(headWeights).B, heads, headDim, scale, weightScale, topK));
        // The choice itself is checked through the sparse attention's output, which depends on every position picked.
        return new TokenSelection(pair, queries.Rows, pair.Dispose);
    }

    public Tensor SparsePagedAttention(DeviceKvCache cache, int layer, StepSequences step, Tensor queries, int heads, int headDim,
        int queriesPerKvHead, float scale, int valueDim, TokenSelection selection)
    {
        var s = (Pair<TokenSelection>)selection.Native;
        var a = Reference.SparsePagedAttention(Of(cache).A, layer, Of(step).A, Of(queries).A, heads, headDim, queriesPerKvHead, scale, valueDim, s.A);
        var b = Candidate.SparsePagedAttention(Of(cache).B, layer, Of(step).B, Of(queries).B, heads, headDim, queriesPerKvHead, scale, valueDim, s.B);
        try { Check(nameof(SparsePagedAttention), a, b); }
        catch { a.Dispose(); b.Dispose(); throw; }
        return Wrap(a, b);
    }

    public void Dispose()
    {
        Reference.Dispose();
        Candidate.Dispose();
    }
}
