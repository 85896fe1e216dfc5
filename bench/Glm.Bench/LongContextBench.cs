using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;

namespace Glm.Bench;

/// <summary>
/// Decode attention over long contexts: one query token against 4k, 32k and 128k cached positions in each KV
/// dtype, GLM-4.5-Air's attention shape (96 query heads, 8 KV heads, head_dim 128), one layer. Each dtype is
/// timed in turn with a read pass of the same machine, so the KV bytes read per step can be put against the
/// bandwidth measured beside them.
/// </summary>
public static class LongContextBench
{
    public static int Run(string[] args)
    {
        const int heads = 96, kvHeads = 8, headDim = 128;
        var layout = new KvLayout(1, kvHeads, headDim, headDim, false);
        var contexts = args.Contains("--quick") ? new[] { 4096 } : new[] { 4096, 32768, 131072 };
        Console.WriteLine($"## Decode attention by context, {heads} query heads / {kvHeads} KV heads, head_dim {headDim}, one layer, {MatMul.Threads} threads");
        Console.WriteLine("| context | KV dtype | KV read per step | ms per layer | GB/s | % of read bandwidth | vs BF16 |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- |");
        var readPass = Measure.ReadPass(256L << 20, MatMul.Threads);
        var rng = new Random(5);
        foreach (int context in contexts)
        {
            var dtypes = new[] { KvCacheDType.Bf16, KvCacheDType.Fp8, KvCacheDType.Int4 };
            var stores = new List<KvStore>();
            var kv = new float[kvHeads * headDim];
            foreach (var dtype in dtypes)
            {
                var store = KvStore.Create(dtype, layout, context);
                var fill = new Random(7);
                for (int t = 0; t < context; t++)
                {
                    for (int i = 0; i < kv.Length; i++) kv[i] = (float)(fill.NextDouble() * 2 - 1);
                    store.Write(0, t, kv, kv);
                }
                stores.Add(store);
            }
            var q = new float[heads * headDim];
            for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 2 - 1);
            var output = new float[heads * headDim];
            // Slots as a paged cache hands them out: blocks of 16 in a shuffled order.
            var blocks = Enumerable.Range(0, context / 16).OrderBy(_ => rng.Next()).ToArray();
            var slots = new long[context];
            for (int t = 0; t < context; t++) slots[t] = blocks[t / 16] * 16L + t % 16;
            var seqs = new[] { new AttentionSequence(0, 1, context - 1, slots) };
            var actions = new List<Action> { readPass };
            foreach (var store in stores)
                actions.Add(() => PagedAttention.Forward(store, 0, seqs, q, heads, headDim, heads / kvHeads, 0.088f, output, headDim));
            var seconds = Measure.InterleavedMedianSeconds(actions, repeats: context >= 131072 ? 5 : 9);
            double bandwidth = (256L << 20) / seconds[0] / 1e9;
            for (int d = 0; d < dtypes.Length; d++)
            {
                long bytes = (long)stores[d].BytesPerTokenPerLayer * context;
                double s = seconds[d + 1], gbs = bytes / s / 1e9;
                Console.WriteLine($"| {context / 1024}k | {dtypes[d].Name()} | {bytes / 1048576.0:F0} MiB | {s * 1e3:F2} | {gbs:F1} | {gbs / bandwidth:P0} | {seconds[1] / s:F2}x |");
            }
            Console.WriteLine($"| {context / 1024}k | (read pass) | 256 MiB | | {bandwidth:F1} | 100 % | |");
            foreach (var store in stores) store.Dispose();
        }
        return 0;
    }
}
