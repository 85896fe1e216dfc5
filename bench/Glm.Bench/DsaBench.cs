using System.Diagnostics;
using System.Text.Json.Nodes;
using Glm.Kernels.Attention;
using Glm.Kernels.Device;
using Glm.Models.Architectures;
using Glm.Models.Synthetic;

namespace Glm.Bench;

/// <summary>
/// The point of DeepSeek Sparse Attention, measured: a GLM-5-shaped synthetic checkpoint (GLM-5 widths: hidden
/// 6144, 64 MLA heads, the 32 x 128 indexer, the real vocabulary; a few dense layers, IndexShare as GLM-5.2 when
/// asked) decodes one token at 4k, 32k and 128k tokens of context, with the indexer's top-2048 selection and
/// without it (the same weights with index_topk past the context: dense MLA). The KV pool is filled with
/// synthetic latents and indexer keys written through the worker (a 128k-token prefill would take hours on a
/// CPU), so the step times the decode of one token over that context exactly as serving does. Also the KV bytes
/// per token of every stream in each dtype.
/// Also the share of the top-2048 that BF16, FP8 and Int4 indexer keys keep against float32 keys.
/// usage: Glm.Bench dsa [--layers 2] [--contexts 4096,32768,131072] [--kv int4] [--threads N] [--precision-context 8192] [--precision-only]
/// </summary>
public static class DsaBench
{
    public static int Run(string[] args)
    {
        int layers = int.Parse(Program.Arg(args, "--layers") ?? "2");
        var contexts = (Program.Arg(args, "--contexts") ?? "4096,32768,131072").Split(',').Select(int.Parse).ToArray();
        var kv = KvCacheDTypes.Parse(Program.Arg(args, "--kv") ?? "int4");
        string dir = Path.Combine(Path.GetTempPath(), $"glm-bench-glm5-{layers}l");
        if (!File.Exists(Path.Combine(dir, "model.safetensors")))
        {
            Console.WriteLine($"writing a synthetic GLM-5-shaped checkpoint with {layers} dense layers to {dir} …");
            var config = SyntheticCheckpoint.Glm5Config(layers);
            config["first_k_dense_replace"] = layers; // 256 experts a layer would be 9.7 GB each: attention is what this measures
            SyntheticCheckpoint.Write(dir, config);
        }
        string dense = Path.Combine(Path.GetTempPath(), $"glm-bench-glm5-{layers}l-dense");
        Directory.CreateDirectory(dense);
        var denseConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
        denseConfig["index_topk"] = 1 << 30; // every key selected: dense MLA, no scoring
        File.WriteAllText(Path.Combine(dense, "config.json"), denseConfig.ToJsonString());
        string link = Path.Combine(dense, "model.safetensors");
        if (!File.Exists(link)) File.CreateSymbolicLink(link, Path.Combine(dir, "model.safetensors"));

        using var sparse = ModelLoader.Load(dir);
        using var full = ModelLoader.Load(dense);
        Console.WriteLine($"\n## GLM-5-shaped ({layers} layers, hidden 6144, 64 heads, indexer 32 x 128, vocab 154880): KV bytes per token");
        Console.WriteLine("| KV dtype | MLA latent (576 values) | indexer keys (128) | total, per layer |");
        Console.WriteLine("|---|---|---|---|");
        foreach (var d in new[] { KvCacheDType.Bf16, KvCacheDType.Fp8, KvCacheDType.Int4 })
        {
            long latent = KvStore.RecordBytes(d, 576), indexer = KvStore.RecordBytes(d, 128);
            Console.WriteLine($"| {d.Name()} | {latent} | {indexer} | {(double)sparse.KvBytesPerBlock(d, 1) / layers:F0} |");
        }

        IndexerPrecision(int.Parse(Program.Arg(args, "--precision-context") ?? "8192"));
        if (args.Contains("--precision-only")) return 0;

        Console.WriteLine($"\n## decode of one token at each context, {kv.Name()} KV, {Glm.Kernels.Cpu.MatMul.Threads} threads (median of 3 steps)");
        Console.WriteLine("| context | dense MLA s/token | DSA top-2048 s/token | DSA speed-up |");
        Console.WriteLine("|---|---|---|---|");
        foreach (int context in contexts)
        {
            double d = DecodeSeconds(full, kv, context), s = DecodeSeconds(sparse, kv, context);
            Console.WriteLine($"| {context:N0} | {d:F3} | {s:F3} | {d / s:F2}x |");
        }
        return 0;
    }

    /// <summary>
    /// The indexer-key stream's dtype against float32 keys: the same keys (random, unit scale), the same queries and
    /// head weights at GLM-5's 32 x 128, and the share of each query's top-2048 that the quantized keys keep.
    /// </summary>
    private static void IndexerPrecision(int context)
    {
        var worker = Glm.Kernels.Device.Cpu.CpuWorker.Instance;
        const int heads = 32, dim = 128, topK = 2048, blockSize = 16, queries = 8;
        var layout = new KvLayout(1, 1, dim, dim, true);
        var rng = new Random(4);
        var keys = new float[context * dim];
        for (int i = 0; i < keys.Length; i++) keys[i] = (float)(rng.NextDouble() * 2 - 1);
        var q = new float[queries * heads * dim];
        for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 2 - 1);
        var w = new float[queries * heads];
        for (int i = 0; i < w.Length; i++) w[i] = (float)(rng.NextDouble() * 2 - 1);
        int blocks = context / blockSize + 2;
        var table = Enumerable.Range(0, blocks).ToArray();

        int[]?[] Select(KvCacheDType dtype)
        {
            using var cache = worker.CreateKvCache(layout, dtype, blocks, blockSize);
            using (var step = worker.PrepareStep(cache, [new StepSequence(0, context, 0, table)], Enumerable.Range(0, context).ToArray()))
            using (var k = worker.Empty(context, dim))
            {
                keys.CopyTo(Glm.Kernels.Device.Cpu.CpuWorker.Data(k));
                worker.WriteKv(cache, 0, step, k, null);
            }
            // The queries sit at the last positions, each seeing the whole context.
            using var last = worker.PrepareStep(cache, [new StepSequence(0, queries, context - queries, table)], Enumerable.Range(context - queries, queries).ToArray());
            using var qt = worker.Empty(queries, heads * dim);
            using var wt = worker.Empty(queries, heads);
            q.CopyTo(Glm.Kernels.Device.Cpu.CpuWorker.Data(qt));
            w.CopyTo(Glm.Kernels.Device.Cpu.CpuWorker.Data(wt));
            using var selection = worker.IndexerTopK(cache, 0, last, qt, wt, heads, dim, 1f / MathF.Sqrt(dim), 1f / MathF.Sqrt(heads), topK);
            return ((int[]?[])selection.Native).ToArray();
        }

        var reference = Select(KvCacheDType.F32);
        Console.WriteLine($"\n## the indexer-key stream's dtype: share of the float32 top-{topK} kept, {context:N0} keys, {queries} queries (32 heads x 128)");
        Console.WriteLine("| indexer keys | bytes per key | top-k kept |");
        Console.WriteLine("|---|---|---|");
        foreach (var d in new[] { KvCacheDType.Bf16, KvCacheDType.Fp8, KvCacheDType.Int4 })
        {
            var got = Select(d);
            double kept = Enumerable.Range(0, queries).Average(i => (double)reference[i]!.Intersect(got[i]!).Count() / topK);
            Console.WriteLine($"| {d.Name()} | {KvStore.RecordBytes(d, dim)} | {kept:P1} |");
        }
    }

    /// <summary>Fills a pool with <paramref name="context"/> positions of synthetic KV, then times decode steps at the next position.</summary>
    private static double DecodeSeconds(CausalLM model, KvCacheDType dtype, int context)
    {
        const int blockSize = 16;
        int blocks = (context + 16) / blockSize + 1;
        using var cache = model.CreateKvCache(dtype, blocks, blockSize);
        var table = Enumerable.Range(0, blocks).ToArray();
        var worker = model.Worker;
        var rng = new Random(9);
        var main = DsaKvCache.MainOf(cache);
        var indexer = (cache as DsaKvCache)?.IndexerKeys;
        int indexerLayers = model.IndexerCacheLayout?.Layers ?? 0, latentWidth = main.Layout.KeyDim;
        for (int start = 0; start < context; start += 4096)
        {
            int n = Math.Min(4096, context - start);
            using var step = worker.PrepareStep(main, [new StepSequence(0, n, start, table)], Enumerable.Range(start, n).ToArray());
            for (int l = 0; l < main.Layout.Layers; l++) Write(main, l, latentWidth);
            for (int l = 0; l < indexerLayers; l++) Write(indexer!, l, model.IndexerCacheLayout!.KeyDim);

            void Write(DeviceKvCache target, int layer, int width)
            {
                using var keys = worker.Empty(n, width);
                var values = Glm.Kernels.Device.Cpu.CpuWorker.Data(keys);
                for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1);
                worker.WriteKv(target, layer, step, keys, null);
            }
        }
        var logits = new float[model.VocabSize];
        var times = new List<double>();
        for (int i = 0; i < 4; i++)
        {
            var batch = new ForwardBatch([rng.Next(model.VocabSize)], [new SequenceInput(0, 1, context + i, table)]);
            var sw = Stopwatch.StartNew();
            model.Forward(batch, cache, logits);
            if (i > 0) times.Add(sw.Elapsed.TotalSeconds); // the first step warms up
        }
        times.Sort();
        return times[times.Count / 2];
    }
}
