using Glm.Kernels.Cpu;

namespace Glm.Engine;

/// <summary>
/// Picks the next token of one sequence from its logits row. Every random draw comes from the sequence's own
/// seeded generator, so a seeded request gives the same tokens whatever else shares the batch.
/// </summary>
public sealed class Sampler
{
    private float[] _work = [];
    private int[] _order = [];

    public (int Token, float? Logprob, TokenLogprob[]? Top) Sample(Sequence seq, ReadOnlySpan<float> rawLogits, IReadOnlyCollection<int> eosTokenIds)
    {
        var p = seq.Sampling;
        int vocab = rawLogits.Length;
        if (_work.Length < vocab) { _work = new float[vocab]; _order = new int[vocab]; }
        var logits = _work.AsSpan(0, vocab);
        rawLogits.CopyTo(logits);

        ApplyPenalties(seq, logits);
        if (p.LogitBias is not null) foreach (var (id, bias) in p.LogitBias) logits[id] += bias;
        if (seq.GeneratedCount < p.MinTokens)
        {
            foreach (int eos in eosTokenIds) if ((uint)eos < (uint)vocab) logits[eos] = float.NegativeInfinity;
            foreach (int stop in p.StopTokenIds) if ((uint)stop < (uint)vocab) logits[stop] = float.NegativeInfinity;
        }
        p.Constraint?.Apply(seq.GeneratedSpan, logits, ref seq.ConstraintState);

        int token = p.IsGreedy ? Activations.ArgMax(logits) : Draw(seq, logits);
        if (p.Logprobs is null) return (token, null, null);
        return (token, LogSoftmaxAt(rawLogits, token), TopLogprobs(rawLogits, p.Logprobs.Value));
    }

    private static void ApplyPenalties(Sequence seq, Span<float> logits)
    {
        var p = seq.Sampling;
        if (p.RepetitionPenalty != 1f)
        {
            // HF/vLLM: every token seen in prompt or output; positive logits divided, negative multiplied.
            var seen = new HashSet<int>(seq.Tokens);
            foreach (int t in seen)
                if ((uint)t < (uint)logits.Length) logits[t] = logits[t] > 0 ? logits[t] / p.RepetitionPenalty : logits[t] * p.RepetitionPenalty;
        }
        if (p.PresencePenalty != 0 || p.FrequencyPenalty != 0)
        {
            var counts = new Dictionary<int, int>();
            foreach (int t in seq.GeneratedSpan) counts[t] = counts.GetValueOrDefault(t) + 1;
            foreach (var (t, c) in counts)
                if ((uint)t < (uint)logits.Length) logits[t] -= p.PresencePenalty + p.FrequencyPenalty * c;
        }
    }

    private int Draw(Sequence seq, Span<float> logits)
    {
        var p = seq.Sampling;
        float invT = 1f / p.Temperature;
        float max = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++) { logits[i] *= invT; if (logits[i] > max) max = logits[i]; }
        double sum = 0;
        for (int i = 0; i < logits.Length; i++) { float e = float.IsNegativeInfinity(logits[i]) ? 0 : MathF.Exp(logits[i] - max); logits[i] = e; sum += e; }
        // logits now holds unnormalised probabilities.
        var order = _order.AsSpan(0, logits.Length);
        int candidates = logits.Length;
        bool needsOrder = p.TopK > 0 || p.TopP < 1f;
        if (needsOrder)
        {
            for (int i = 0; i < order.Length; i++) order[i] = i;
            int limitK = p.TopK > 0 ? Math.Min(p.TopK, order.Length) : order.Length;
            // Only the head of the distribution is ever needed: select and sort the largest `head` entries
            // (probability descending, then id), growing the head until the nucleus fits inside it.
            // With top-k the nucleus is taken within the renormalised top k, so select all k at once.
            int head = p.TopK > 0 ? limitK : Math.Min(limitK, 256);
            while (true)
            {
                SelectLargest(order, head, _work);
                order[..head].Sort(new ProbabilityOrder(_work));
                candidates = head;
                if (p.TopP >= 1f) break;
                double mass = p.TopK > 0 ? SumOf(logits, order[..head]) : sum;
                double cumulative = 0, limit = p.TopP * mass;
                bool reached = false;
                for (int k = 0; k < head; k++)
                {
                    cumulative += logits[order[k]];
                    if (cumulative >= limit) { candidates = k + 1; reached = true; break; }
                }
                if (reached || head == limitK) break;
                head = Math.Min(limitK, head * 4);
            }
        }
        if (p.MinP > 0)
        {
            float threshold = p.MinP; // relative to the top probability, which is exp(0) = 1 after the max shift
            if (needsOrder)
                while (candidates > 1 && logits[order[candidates - 1]] < threshold) candidates--;
            else
                for (int i = 0; i < logits.Length; i++) if (logits[i] < threshold) logits[i] = 0;
        }
        double total = needsOrder ? SumOf(logits, order[..candidates]) : SumAll(logits);
        double u = seq.Random.NextDouble() * total;
        if (needsOrder)
        {
            for (int k = 0; k < candidates; k++) { u -= logits[order[k]]; if (u < 0) return order[k]; }
            return order[candidates - 1];
        }
        int last = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] <= 0) continue;
            last = i;
            u -= logits[i];
            if (u < 0) return i;
        }
        return last;
    }

    /// <summary>Probability descending, then token id: a total order, so selection is deterministic.</summary>
    private readonly struct ProbabilityOrder(float[] probs) : IComparer<int>
    {
        public int Compare(int a, int b) => probs[b] != probs[a] ? probs[b].CompareTo(probs[a]) : a.CompareTo(b);
    }

    /// <summary>Moves the <paramref name="k"/> first entries under <see cref="ProbabilityOrder"/> to the front (quickselect).</summary>
    private static void SelectLargest(Span<int> order, int k, float[] probs)
    {
        var cmp = new ProbabilityOrder(probs);
        int lo = 0, hi = order.Length - 1;
        while (lo < hi)
        {
            int pivot = order[lo + (hi - lo) / 2];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (cmp.Compare(order[i], pivot) < 0) i++;
                while (cmp.Compare(order[j], pivot) > 0) j--;
                if (i <= j) { (order[i], order[j]) = (order[j], order[i]); i++; j--; }
            }
            if (k - 1 <= j) hi = j;
            else if (k - 1 >= i) lo = i;
            else break;
        }
    }

    private static double SumOf(Span<float> probs, ReadOnlySpan<int> ids)
    {
        double s = 0;
        foreach (int i in ids) s += probs[i];
        return s;
    }

    private static double SumAll(Span<float> probs)
    {
        double s = 0;
        foreach (float v in probs) s += v;
        return s;
    }

    private static float LogSoftmaxAt(ReadOnlySpan<float> logits, int token) => (float)(logits[token] - Activations.LogSumExp(logits));

    private static TokenLogprob[] TopLogprobs(ReadOnlySpan<float> logits, int k)
    {
        double lse = Activations.LogSumExp(logits);
        var top = new List<TokenLogprob>(k + 1);
        for (int i = 0; i < logits.Length && k > 0; i++)
        {
            if (top.Count < k || logits[i] > top[^1].Logprob)
            {
                var entry = new TokenLogprob(i, logits[i]);
                int at = top.FindIndex(t => t.Logprob < entry.Logprob);
                if (at < 0) top.Add(entry); else top.Insert(at, entry);
                if (top.Count > k) top.RemoveAt(top.Count - 1);
            }
        }
        return top.Select(t => new TokenLogprob(t.Token, (float)(t.Logprob - lse))).ToArray();
    }
}
