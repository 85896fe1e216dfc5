using System.Buffers;
using System.Numerics.Tensors;
using Glm.Kernels.Cpu;

namespace Glm.Kernels.Device.Cpu;

/// <summary>The CPU worker's MoE: GLM-4.5 routing in float32, then experts grouped by a stable counting sort.</summary>
internal static class CpuMoe
{
    /// <summary>Each row's chosen experts (ascending) and weights, and the picks grouped by expert.</summary>
    internal sealed class Routing(int rows, int topK, int experts)
    {
        public readonly int Rows = rows, TopK = topK;
        public readonly int[] Chosen = ArrayPool<int>.Shared.Rent(Math.Max(1, rows * topK));
        public readonly float[] Weights = ArrayPool<float>.Shared.Rent(Math.Max(1, rows * topK));
        /// <summary>Expert e's picks (indexes into Chosen) are Order[Start[e] .. Start[e + 1]), ascending.</summary>
        public readonly int[] Start = ArrayPool<int>.Shared.Rent(experts + 1);
        public readonly int[] Order = ArrayPool<int>.Shared.Rent(Math.Max(1, rows * topK));

        public void Release()
        {
            ArrayPool<int>.Shared.Return(Chosen);
            ArrayPool<float>.Shared.Return(Weights);
            ArrayPool<int>.Shared.Return(Start);
            ArrayPool<int>.Shared.Return(Order);
        }
    }

    public static MoeRouting Route(ReadOnlySpan<float> x, int rows, MoeGate gate)
    {
        int k = gate.TopK, h = gate.Hidden, experts = gate.Experts;
        var r = new Routing(rows, k, experts);
        var weight = (float[])gate.Weight.Native;
        var bias = gate.CorrectionBias?.Native as float[];
        for (int row = 0; row < rows; row++) RouteOne(x.Slice(row * h, h), weight, bias, gate, r.Chosen.AsSpan(row * k, k), r.Weights.AsSpan(row * k, k));

        // Group the (token, choice) picks by expert with a stable counting sort, with no per-step lists.
        var start = r.Start.AsSpan(0, experts + 1);
        var chosen = r.Chosen.AsSpan(0, rows * k);
        start.Clear();
        foreach (int e in chosen) start[e + 1]++;
        for (int e = 0; e < experts; e++) start[e + 1] += start[e];
        var fill = ArrayPool<int>.Shared.Rent(experts);
        start[..experts].CopyTo(fill);
        for (int pick = 0; pick < chosen.Length; pick++) r.Order[fill[chosen[pick]]++] = pick;
        ArrayPool<int>.Shared.Return(fill);
        return new MoeRouting(r, rows, k, r.Release);
    }

    /// <summary>One token: <paramref name="experts"/> ascending by index, with their weights.</summary>
    private static void RouteOne(ReadOnlySpan<float> x, float[] weight, float[]? correctionBias, MoeGate gate, Span<int> experts, Span<float> weights)
    {
        int n = gate.Experts, hidden = gate.Hidden;
        Span<float> scores = stackalloc float[n];
        Span<float> choice = stackalloc float[n];
        for (int e = 0; e < n; e++)
        {
            scores[e] = Activations.Sigmoid(Dot.F32(x, weight.AsSpan(e * hidden, hidden)));
            choice[e] = scores[e] + (correctionBias is null ? 0f : correctionBias[e]);
        }
        if (gate.Groups > 1) MaskGroups(choice, gate);

        // Top-k by corrected score (first index wins a tie, as a stable descending sort would).
        Span<bool> taken = stackalloc bool[n];
        for (int k = 0; k < gate.TopK; k++)
        {
            int best = -1;
            for (int e = 0; e < n; e++)
                if (!taken[e] && (best < 0 || choice[e] > choice[best])) best = e;
            taken[best] = true;
        }
        int m = 0;
        float sum = 0;
        for (int e = 0; e < n; e++)
        {
            if (!taken[e]) continue;
            experts[m] = e;
            weights[m] = scores[e];
            sum += scores[e];
            m++;
        }
        for (int k = 0; k < gate.TopK; k++)
        {
            if (gate.NormTopkProb) weights[k] /= sum + 1e-20f;
            weights[k] *= gate.RoutedScalingFactor;
        }
    }

    private static void MaskGroups(Span<float> choice, MoeGate gate)
    {
        int groups = gate.Groups, perGroup = gate.Experts / groups;
        Span<float> groupScore = stackalloc float[groups];
        for (int g = 0; g < groups; g++)
        {
            float first = float.NegativeInfinity, second = float.NegativeInfinity;
            foreach (float v in choice.Slice(g * perGroup, perGroup))
            {
                if (v > first) { second = first; first = v; }
                else if (v > second) second = v;
            }
            groupScore[g] = perGroup >= 2 ? first + second : first;
        }
        Span<bool> keep = stackalloc bool[groups];
        for (int k = 0; k < gate.TopkGroup; k++)
        {
            int best = -1;
            for (int g = 0; g < groups; g++)
                if (!keep[g] && (best < 0 || groupScore[g] > groupScore[best])) best = g;
            keep[best] = true;
        }
        for (int g = 0; g < groups; g++)
            if (!keep[g]) choice.Slice(g * perGroup, perGroup).Fill(float.NegativeInfinity);
    }

    /// <summary>
    /// Each expert's rows in one batched MLP, weighted per pick, then summed per token in ascending expert order.
    /// With at least twice as many active experts as threads the experts are shared out among them (largest first), each
    /// running its experts' matrices whole on its own thread: no fork and join per matrix, and each core streams
    /// its own experts' weights. Otherwise each matrix is split across the threads. Every element is computed by
    /// the same kernel either way, and the sum per token is in expert order, so the bits do not change.
    /// </summary>
    public static void Experts(ReadOnlySpan<float> x, Routing r, ExpertSet experts, Span<float> output)
    {
        int rows = r.Rows, k = r.TopK, h = experts.Gate[0].Cols;
        output[..(rows * h)].Clear();
        // Contributions are staged per (token, choice) so each token can add them in expert order afterwards.
        var contributions = ArrayPool<float>.Shared.Rent(Math.Max(1, rows * k * h));
        var active = ArrayPool<int>.Shared.Rent(experts.Count);
        try
        {
            int count = 0;
            for (int e = 0; e < experts.Count; e++)
                if (r.Start[e + 1] > r.Start[e]) active[count++] = e;
            int threads = Math.Min(MatMul.Threads, count);
            if (threads > 1 && count >= 2 * threads)
            {
                // Largest first, taken one at a time by whichever thread is free: the busiest expert cannot come last.
                var order = active.AsSpan(0, count);
                order.Sort((a, b) => (r.Start[b + 1] - r.Start[b]).CompareTo(r.Start[a + 1] - r.Start[a]) is var c && c != 0 ? c : a.CompareTo(b));
                unsafe
                {
                    // The threads read x through a pointer: a span cannot enter the lambda, and a copy of it would cost a pass over x.
                    fixed (float* px = x)
                    {
                        nint source = (nint)px;
                        int length = x.Length;
                        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = threads },
                            i => RunExpert(new ReadOnlySpan<float>((float*)source, length), r, experts, active[i], contributions, onThisThread: true));
                    }
                }
            }
            else
                for (int i = 0; i < count; i++) RunExpert(x, r, experts, active[i], contributions, onThisThread: false);
            for (int row = 0; row < rows; row++)
            {
                var o = output.Slice(row * h, h);
                for (int j = 0; j < k; j++) // Chosen is ascending by expert within a token
                    TensorPrimitives.Add(o, contributions.AsSpan((row * k + j) * h, h), o);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(contributions);
            ArrayPool<int>.Shared.Return(active);
        }
    }

    /// <summary>Expert e over its picks: gathered, through its MLP, each result scaled by its pick's weight into contributions.</summary>
    private static void RunExpert(ReadOnlySpan<float> x, Routing r, ExpertSet experts, int e, float[] contributions, bool onThisThread)
    {
        int k = r.TopK, h = experts.Gate[0].Cols;
        var picks = r.Order.AsSpan(r.Start[e], r.Start[e + 1] - r.Start[e]);
        var gathered = ArrayPool<float>.Shared.Rent(picks.Length * h);
        var result = ArrayPool<float>.Shared.Rent(picks.Length * h);
        for (int i = 0; i < picks.Length; i++) x.Slice(picks[i] / k * h, h).CopyTo(gathered.AsSpan(i * h, h));
        Mlp(gathered.AsSpan(0, picks.Length * h), picks.Length, experts, e, result.AsSpan(0, picks.Length * h), onThisThread);
        for (int i = 0; i < picks.Length; i++)
            TensorPrimitives.Multiply(result.AsSpan(i * h, h), r.Weights[picks[i]], contributions.AsSpan(picks[i] * h, h));
        ArrayPool<float>.Shared.Return(gathered);
        ArrayPool<float>.Shared.Return(result);
    }

    /// <summary>down(silu(gate(x)) · up(x)) for one expert over a batch of rows.</summary>
    private static void Mlp(ReadOnlySpan<float> x, int rows, ExpertSet experts, int e, Span<float> output, bool onThisThread)
    {
        int inter = experts.Gate[e].Rows;
        var gate = ArrayPool<float>.Shared.Rent(rows * inter);
        var up = ArrayPool<float>.Shared.Rent(rows * inter);
        var g = gate.AsSpan(0, rows * inter);
        var u = up.AsSpan(0, rows * inter);
        Multiply((WeightMatrix)experts.Gate[e].Native, x, rows, g, onThisThread);
        Multiply((WeightMatrix)experts.Up[e].Native, x, rows, u, onThisThread);
        Activations.SiluMul(g, u, g);
        Multiply((WeightMatrix)experts.Down[e].Native, g, rows, output, onThisThread);
        ArrayPool<float>.Shared.Return(gate);
        ArrayPool<float>.Shared.Return(up);
    }

    private static unsafe void Multiply(WeightMatrix w, ReadOnlySpan<float> x, int rows, Span<float> y, bool onThisThread)
    {
        if (!onThisThread)
        {
            MatMul.Multiply(w, x, rows, y);
            return;
        }
        fixed (float* px = x) fixed (float* py = y) w.MultiplyOnThisThread(px, rows, py);
    }
}
