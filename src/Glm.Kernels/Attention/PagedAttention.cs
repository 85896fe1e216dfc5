using System.Buffers;
using Glm.Kernels.Cpu;

namespace Glm.Kernels.Attention;

/// <summary>One sequence's queries in a step: rows [Start, Start + Count) at positions FirstPosition… .</summary>
public readonly record struct AttentionSequence(int Start, int Count, int FirstPosition, long[] Slots);

/// <summary>
/// Causal attention of a batch of queries against the paged cache (decode and chunked prefill alike): query at
/// position p sees cached positions 0..p of its own sequence. Each (token, head) is reduced in one fixed order, so
/// a row's result does not depend on what else is in the batch.
/// </summary>
public static class PagedAttention
{
    /// <param name="queries">[tokens, heads, qDim]</param>
    /// <param name="output">[tokens, heads, vDim]</param>
    /// <param name="groupSize">query heads per KV head</param>
    public static void Forward(KvStore store, int layer, ReadOnlySpan<AttentionSequence> sequences,
        float[] queries, int heads, int qDim, int groupSize, float scale, float[] output, int vDim)
    {
        var work = new List<(int Seq, int Token, int Head)>();
        long cost = 0;
        for (int s = 0; s < sequences.Length; s++)
            for (int i = 0; i < sequences[s].Count; i++)
                for (int h = 0; h < heads; h++)
                {
                    work.Add((s, i, h));
                    cost += (long)(sequences[s].FirstPosition + i + 1) * (qDim + vDim);
                }
        var seqs = sequences.ToArray();
        void Run(int w)
        {
            var (s, i, h) = work[w];
            var seq = seqs[s];
            int ctx = seq.FirstPosition + i + 1;
            int row = seq.Start + i;
            float[] scores = ArrayPool<float>.Shared.Rent(ctx);
            try
            {
                var slots = seq.Slots.AsSpan(0, ctx);
                var sc = scores.AsSpan(0, ctx);
                store.Scores(layer, h / groupSize, slots, queries.AsSpan((row * heads + h) * qDim, qDim), scale, sc);
                Activations.Softmax(sc);
                store.WeightedValues(layer, h / groupSize, slots, sc, output.AsSpan((row * heads + h) * vDim, vDim));
            }
            finally
            {
                ArrayPool<float>.Shared.Return(scores);
            }
        }
        if (cost < 1 << 16 || MatMul.Threads <= 1)
            for (int w = 0; w < work.Count; w++) Run(w);
        else
            Parallel.For(0, work.Count, new ParallelOptions { MaxDegreeOfParallelism = MatMul.Threads }, Run);
    }
}
