using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;
using Glm.Models.Architectures;

namespace Glm.Models.Inference;

/// <summary>How a candidate configuration's next-token distributions compare with a reference run on the same tokens.</summary>
public sealed record EvalResult(int Positions, double Top1Agreement, double MeanKl, double MaxKl, double ReferencePerplexity, double CandidatePerplexity)
{
    public override string ToString() =>
        $"positions {Positions}, top-1 agreement {Top1Agreement:P2}, mean KL {MeanKl:E3} nats (max {MaxKl:E2}), perplexity {ReferencePerplexity:F3} → {CandidatePerplexity:F3}";
}

/// <summary>
/// Measures a quantized path against the unquantized one: both models read each sequence whole (so the KV dtype
/// under test is used for every position), and each position's distributions are compared.
/// </summary>
public static class Evaluator
{
    public static EvalResult Compare(CausalLM reference, KvCacheDType referenceKv, CausalLM candidate, KvCacheDType candidateKv, IReadOnlyList<int[]> sequences)
    {
        int vocab = reference.VocabSize;
        long positions = 0, agree = 0, scored = 0;
        double klSum = 0, klMax = 0, nllRef = 0, nllCand = 0;
        foreach (var seq in sequences)
        {
            if (seq.Length < 2) continue;
            var refLogits = Logits(reference, referenceKv, seq);
            var candLogits = Logits(candidate, candidateKv, seq);
            for (int p = 0; p < seq.Length; p++)
            {
                var r = refLogits.AsSpan(p * vocab, vocab);
                var c = candLogits.AsSpan(p * vocab, vocab);
                double lseR = Activations.LogSumExp(r), lseC = Activations.LogSumExp(c);
                double kl = 0;
                for (int v = 0; v < vocab; v++)
                {
                    double lr = r[v] - lseR, lc = c[v] - lseC;
                    kl += Math.Exp(lr) * (lr - lc);
                }
                kl = Math.Max(kl, 0);
                klSum += kl;
                klMax = Math.Max(klMax, kl);
                if (Activations.ArgMax(r) == Activations.ArgMax(c)) agree++;
                positions++;
                if (p + 1 < seq.Length)
                {
                    nllRef += lseR - r[seq[p + 1]];
                    nllCand += lseC - c[seq[p + 1]];
                    scored++;
                }
            }
        }
        return new EvalResult((int)positions, (double)agree / positions, klSum / positions, klMax, Math.Exp(nllRef / scored), Math.Exp(nllCand / scored));
    }

    private static float[] Logits(CausalLM model, KvCacheDType kv, int[] sequence)
    {
        using var runner = new SequenceRunner(model, sequence.Length, kv);
        return runner.Feed(sequence, allLogits: true);
    }
}
