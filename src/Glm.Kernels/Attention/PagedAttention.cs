using System.Buffers;
using Glm.Kernels.Cpu;

namespace Glm.Kernels.Attention;

/// <summary>One sequence's queries in a step: rows [Start, Start + Count) at positions FirstPosition… .</summary>
public readonly record struct AttentionSequence(int Start, int Count, int FirstPosition, long[] Slots);

/// <summary>
/// Causal attention of a batch of queries against the paged cache (decode and chunked prefill alike): query at
/// position p sees cached positions 0..p of its own sequence. One work item is a (token, KV head) pair: the cache
/// is walked in chunks of 128 positions, and every query head sharing that KV head is served from a chunk while
/// it is in cache (<see cref="KvStore.ScoresForHeads"/>, <see cref="KvStore.AccumulateValuesForHeads"/>: the
/// stores decode a record once for all those heads where that pays), so grouped-query attention reads each KV
/// record once rather than once per query head. Each head still sums in position order, so a row's result does
/// not depend on what else is in the batch.
/// </summary>
public static class PagedAttention
{
    private const int Chunk = 128;

    /// <param name="queries">[tokens, heads, qDim]</param>
    /// <param name="output">[tokens, heads, vDim]</param>
    /// <param name="groupSize">query heads per KV head</param>
    /// <param name="selected">per batch row, the positions it attends to (ascending), or null for all; null for dense attention</param>
    public static void Forward(KvStore store, int layer, ReadOnlySpan<AttentionSequence> sequences,
        float[] queries, int heads, int qDim, int groupSize, float scale, float[] output, int vDim, int[]?[]? selected = null)
    {
        int kvHeads = heads / groupSize;
        // Work items are (sequence, token, KV head), numbered through a prefix sum of tokens per sequence.
        var seqs = ArrayPool<AttentionSequence>.Shared.Rent(sequences.Length);
        var firstItem = ArrayPool<int>.Shared.Rent(sequences.Length + 1);
        long cost = 0;
        int items = 0;
        for (int s = 0; s < sequences.Length; s++)
        {
            seqs[s] = sequences[s];
            firstItem[s] = items;
            items += sequences[s].Count * kvHeads;
            for (int i = 0; i < sequences[s].Count; i++) cost += (long)(sequences[s].FirstPosition + i + 1) * (qDim + vDim) * heads;
        }
        firstItem[sequences.Length] = items;
        try
        {
            void Run(int w)
            {
                int s = 0;
                while (firstItem[s + 1] <= w) s++;
                int local = w - firstItem[s], i = local / kvHeads, kvh = local % kvHeads;
                var seq = seqs[s];
                int row = seq.Start + i;
                int[]? chosen = selected?[row];
                int ctx = chosen?.Length ?? seq.FirstPosition + i + 1;
                float[] scores = ArrayPool<float>.Shared.Rent(ctx * groupSize);
                long[]? picked = null;
                try
                {
                    var slots = seq.Slots.AsSpan(0, ctx);
                    if (chosen is not null)
                    {
                        picked = ArrayPool<long>.Shared.Rent(ctx);
                        for (int k = 0; k < ctx; k++) picked[k] = seq.Slots[chosen[k]];
                        slots = picked.AsSpan(0, ctx);
                    }
                    int firstHead = row * heads + kvh * groupSize;
                    for (int start = 0; start < ctx; start += Chunk)
                    {
                        int n = Math.Min(Chunk, ctx - start);
                        store.ScoresForHeads(layer, kvh, slots.Slice(start, n), queries.AsSpan(firstHead * qDim, groupSize * qDim), groupSize, scale, scores.AsSpan(start), ctx);
                    }
                    for (int g = 0; g < groupSize; g++)
                    {
                        Activations.Softmax(scores.AsSpan(g * ctx, ctx));
                        output.AsSpan((row * heads + kvh * groupSize + g) * vDim, vDim).Clear();
                    }
                    for (int start = 0; start < ctx; start += Chunk)
                    {
                        int n = Math.Min(Chunk, ctx - start);
                        store.AccumulateValuesForHeads(layer, kvh, slots.Slice(start, n), scores.AsSpan(start), ctx, groupSize, output.AsSpan(firstHead * vDim, groupSize * vDim));
                    }
                }
                finally
                {
                    ArrayPool<float>.Shared.Return(scores);
                    if (picked is not null) ArrayPool<long>.Shared.Return(picked);
                }
            }
            if (cost < 1 << 16 || MatMul.Threads <= 1)
                for (int w = 0; w < items; w++) Run(w);
            else
                Parallel.For(0, items, new ParallelOptions { MaxDegreeOfParallelism = MatMul.Threads }, Run);
        }
        finally
        {
            ArrayPool<AttentionSequence>.Shared.Return(seqs, clearArray: true);
            ArrayPool<int>.Shared.Return(firstItem);
        }
    }
}
