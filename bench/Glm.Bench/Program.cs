using System.Text;
using System.Text.Json.Nodes;
using Glm.Engine;
using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;
using Glm.Kernels.Formats;
using Glm.Models.Architectures;
using Glm.Models.Inference;
using Glm.Models.Loading;
using Glm.Models.Quantization;
using Glm.Models.Synthetic;
using Glm.Text.Tokenization;

namespace Glm.Bench;

/// <summary>
/// Benchmarks. Every result is reported with a baseline measured in the same run (the scalar kernel, the
/// machine's read bandwidth, batch 1, BF16 pages) because these machines are shared and noisy.
/// usage: Glm.Bench [all|bandwidth|gemv|quantized|model|engine|attention|longcontext|tokenizer|cuda|forward|profile|structured|schemabench|spec|mtp-fit|mtp] [--layers N] [--threads N]
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        string what = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : "all";
        if (what == "cuda") return CudaBench.Run();
        if (what == "cudamodel") return CudaModelBench.Run(args);
        if (what == "load") return LoadBench.Run(args);
        if (what == "spec") return SpecBench.Run(args, FindRoot());
        if (what == "mtp-fit") return MtpBench.Fit(args, FindRoot());
        if (what == "mtp") return MtpBench.Run(args, FindRoot());
        if (what == "dsa")
        {
            MatMul.Threads = ArgInt(args, "--threads", Environment.ProcessorCount);
            return DsaBench.Run(args);
        }
        if (what == "longcontext")
        {
            MatMul.Threads = ArgInt(args, "--threads", Environment.ProcessorCount);
            return LongContextBench.Run(args);
        }
        if (what == "forward") return ForwardSpeed(ArgInt(args, "--threads", Environment.ProcessorCount));
        if (what == "profile")
        {
            MatMul.Threads = ArgInt(args, "--threads", Environment.ProcessorCount);
            return ProfileForward(args);
        }
        if (what == "structured") return StructuredBench.Run();
        if (what == "schemabench")
        {
            int at = Array.IndexOf(args, "--schemas");
            if (at < 0 || at + 1 >= args.Length) { Console.Error.WriteLine("schemabench needs --schemas PATH (a JSON list of {id, category, schema})"); return 2; }
            return SchemaBenchCoverage.Run(args[at + 1], ArgInt(args, "--max-tokens", 384), FindRoot());
        }
        int layers = ArgInt(args, "--layers", 2);
        MatMul.Threads = ArgInt(args, "--threads", Environment.ProcessorCount);
        Console.WriteLine($"# Glm.Bench on {Environment.ProcessorCount} cores, {MatMul.Threads} threads, AVX2={System.Runtime.Intrinsics.X86.Avx2.IsSupported}, AVX-512={System.Runtime.Intrinsics.X86.Avx512F.IsSupported}");
        double bandwidth = Measure.ReadBandwidthGBs(MatMul.Threads);
        Console.WriteLine($"machine read bandwidth: {bandwidth:F1} GB/s ({MatMul.Threads} threads)");
        if (what is "all" or "gemv") Gemv(bandwidth);
        if (what is "all" or "quantized") QuantizedGemv();
        if (what is "all" or "attention") Attention();
        if (what is "all" or "tokenizer") Tokenizer();
        if (what is "all" or "model" or "engine")
        {
            string dir = Path.Combine(Path.GetTempPath(), $"glm-bench-flash-{layers}l");
            if (!File.Exists(Path.Combine(dir, "model.safetensors")))
            {
                Console.WriteLine($"writing a synthetic GLM-4.7-Flash-shaped model with {layers} layers to {dir} …");
                SyntheticCheckpoint.Write(dir, SyntheticCheckpoint.Glm47FlashConfig(layers));
            }
            using var model = ModelLoader.Load(dir);
            using var fp8Int4 = ModelLoader.Load(dir, ckpt => new QuantizingWeightBuilder(ckpt, QuantizationPolicy.Preset("fp8-int4")));
            if (what is "all" or "model")
            {
                double bf16Decode = ModelSpeed(model, "none", bandwidth, 0);
                ModelSpeed(fp8Int4, "fp8-int4", bandwidth, bf16Decode);
                using var int4 = ModelLoader.Load(dir, ckpt => new QuantizingWeightBuilder(ckpt, QuantizationPolicy.Preset("int4")));
                ModelSpeed(int4, "int4", bandwidth, bf16Decode);
            }
            if (what is "all" or "engine")
            {
                EngineThroughput(model, "BF16 weights");
                EngineThroughput(fp8Int4, "fp8-int4 weights");
            }
        }
        return 0;
    }

    /// <summary>
    /// Prefill and batch-1 decode of the demo model and of a 2-layer GLM-4.7-Flash-shaped model (BF16), printed as
    /// one line each: the figures to compare two builds of the forward pass by, run alternately.
    /// </summary>
    private static int ForwardSpeed(int threads)
    {
        MatMul.Threads = threads;
        string flash = Path.Combine(Path.GetTempPath(), "glm-bench-flash-2l");
        if (!File.Exists(Path.Combine(flash, "model.safetensors"))) SyntheticCheckpoint.Write(flash, SyntheticCheckpoint.Glm47FlashConfig(2));
        foreach (var (name, dir, prompt, decodes) in new[] { ("demo", Path.Combine(FindRoot(), "models", "glm-demo"), 256, 64), ("flash-2l", flash, 512, 16) })
        {
            using var model = ModelLoader.Load(dir);
            var rng = new Random(4);
            var ids = Enumerable.Range(0, prompt).Select(_ => rng.Next(model.Config.VocabSize)).ToArray();
            double prefill = Measure.MedianSeconds(() =>
            {
                using var r = new SequenceRunner(model, prompt + 8);
                r.Feed(ids);
            }, repeats: 3);
            using var runner = new SequenceRunner(model, 64 + decodes * 8);
            runner.Feed(ids[..32]);
            int next = 1;
            double decode = Measure.MedianSeconds(() => next = Activations.ArgMax(runner.Feed([next])), repeats: decodes, warmup: 4);
            Console.WriteLine($"{name}: prefill {prompt / prefill:F1} tokens/s ({prompt}-token prompt), decode {1 / decode:F2} tokens/s (batch 1)");
        }
        return 0;
    }

    /// <summary>
    /// Where a forward pass spends its time: a synthetic Flash- or Air-shaped model (--shape flash|air, --layers N,
    /// --quantization PRESET) through <see cref="ProfilingWorker"/>, prefill of --prompt tokens and --decode single
    /// steps, each op kind's share of the wall time.
    /// </summary>
    private static int ProfileForward(string[] args)
    {
        string shape = Arg(args, "--shape") ?? "flash", preset = Arg(args, "--quantization") ?? "none";
        int layers = ArgInt(args, "--layers", 2), prompt = ArgInt(args, "--prompt", 512), decodes = ArgInt(args, "--decode", 16);
        string dir = Path.Combine(Path.GetTempPath(), $"glm-bench-{shape}-{layers}l");
        if (!File.Exists(Path.Combine(dir, "model.safetensors")))
        {
            Console.WriteLine($"writing a synthetic {shape}-shaped model with {layers} layers to {dir} …");
            SyntheticCheckpoint.Write(dir, shape == "air" ? SyntheticCheckpoint.Glm45AirConfig(layers) : SyntheticCheckpoint.Glm47FlashConfig(layers));
        }
        var profiler = new ProfilingWorker(Glm.Kernels.Device.Cpu.CpuWorker.Instance);
        using var model = ModelLoader.Load(dir, preset == "none" ? null : ckpt => new QuantizingWeightBuilder(ckpt, QuantizationPolicy.Preset(preset)), worker: profiler);
        var rng = new Random(4);
        var ids = Enumerable.Range(0, prompt).Select(_ => rng.Next(model.Config.VocabSize)).ToArray();
        const int Repeats = 3;
        using (var warm = new SequenceRunner(model, prompt + 8)) warm.Feed(ids);
        profiler.Reset();
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        for (int r = 0; r < Repeats; r++)
        {
            using var runner = new SequenceRunner(model, prompt + 8);
            runner.Feed(ids);
        }
        double wall = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
        Console.WriteLine($"# {shape} {layers} layers, --quantization {preset}, {MatMul.Threads} threads: prefill of {prompt} tokens, {prompt * Repeats / wall:F1} tokens/s");
        profiler.Print(wall, Repeats);
        using var decoder = new SequenceRunner(model, 64 + decodes + 8);
        decoder.Feed(ids[..32]);
        decoder.Feed([1]);
        profiler.Reset();
        start = System.Diagnostics.Stopwatch.GetTimestamp();
        int next = 1;
        for (int i = 0; i < decodes; i++) next = Activations.ArgMax(decoder.Feed([next]));
        wall = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
        Console.WriteLine($"# decode at batch 1: {decodes / wall:F2} tokens/s");
        profiler.Print(wall, decodes);
        return 0;
    }

    /// <summary>The value after <paramref name="name"/> on the command line, or null: every section's string options.</summary>
    internal static string? Arg(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static int ArgInt(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length && int.TryParse(args[i + 1], out int v) ? v : fallback;
    }

    private static unsafe void Gemv(double bandwidth)
    {
        Console.WriteLine("\n## GEMV (M = 1): effective weight bandwidth, and speed-up over the scalar kernel");
        var rng = new Random(1);
        foreach (var (n, k) in new[] { (4096, 4096), (11008, 4096), (4096, 11008) })
        {
            var bits = new ushort[(long)n * k];
            for (long i = 0; i < bits.LongLength; i++) bits[i] = BFloat16.FromFloat((float)(rng.NextDouble() - 0.5));
            using var w = Bf16Matrix.FromArray(bits, n, k);
            var x = new float[k];
            for (int i = 0; i < k; i++) x[i] = (float)rng.NextDouble();
            var y = new float[n];
            double simd = Measure.MedianSeconds(() => MatMul.Multiply(w, x, 1, y), repeats: 9);
            double scalar = Measure.MedianSeconds(() =>
            {
                for (int r = 0; r < n; r++)
                {
                    float s = 0;
                    for (int c = 0; c < k; c++) s += x[c] * BFloat16.ToFloat(bits[(long)r * k + c]);
                    y[r] = s;
                }
            }, repeats: 3);
            double gbs = w.ByteSize / simd / 1e9;
            Console.WriteLine($"bf16 {n}x{k}: {simd * 1e3:F2} ms, {gbs:F1} GB/s = {gbs / bandwidth:P0} of read bandwidth; scalar {scalar * 1e3:F1} ms ({scalar / simd:F1}x slower)");
        }
    }

    /// <summary>
    /// GEMV out of cache: each format cycles through enough copies of its matrix to outgrow the last-level cache
    /// (decode reads every weight once per token), timed in turn with a read pass of 128 MB, whose bandwidth is
    /// the baseline: neighbours on this shared machine move bandwidth by a third within minutes.
    /// </summary>
    private static void QuantizedGemv()
    {
        Console.WriteLine("\n## Quantized GEMV (M = 1) against BF16 and the read bandwidth, and GEMM GFLOP/s by batch rows M");
        var rng = new Random(6);
        const long OutOfCacheBytes = 160L << 20, ReadPassBytes = 128L << 20;
        var readPass = Measure.ReadPass(ReadPassBytes, MatMul.Threads);
        foreach (var (n, k) in new[] { (4096, 4096), (4096, 11008) })
        {
            var w = new float[(long)n * k];
            for (long i = 0; i < w.LongLength; i++) w[i] = (float)(rng.NextDouble() - 0.5) * 0.05f;
            var bits = new ushort[w.LongLength];
            BFloat16.FromFloat(w, bits);
            var makers = new Func<WeightMatrix>[]
            {
                () => Bf16Matrix.FromArray(bits, n, k),
                () => Fp8Matrix.Quantize(w, n, k, Fp8Scaling.PerChannel),
                () => Int4Matrix.Quantize(w, n, k, 128, true),
                () => Int8Matrix.Quantize(w, n, k),
            };
            var sets = new List<List<WeightMatrix>>();
            foreach (var make in makers)
            {
                var copies = new List<WeightMatrix> { make() };
                while (copies.Count * copies[0].ByteSize < OutOfCacheBytes) copies.Add(make());
                sets.Add(copies);
            }
            var x = new float[256 * k];
            for (int i = 0; i < x.Length; i++) x[i] = (float)rng.NextDouble();
            var y = new float[256 * n];
            // The Int4 set runs more than once: int8 activations (the default, with the best integer instructions),
            // the same with AVX2's vpmaddubsw where VNNI is the default (the before of that kernel), float activations.
            var variants = new List<(string Name, int Set, Action<WeightMatrix> Configure)>
            {
                ("bf16", 0, _ => { }),
                ("fp8-e4m3-channel", 1, _ => { }),
                ("int4-g128", 2, m => { var q = (Int4Matrix)m; q.Activations = Int4Activations.Int8; q.IntegerKernel = Int4Matrix.BestIntegerKernel; }),
            };
            if (Int4Matrix.BestIntegerKernel == Int8DotKernel.Vnni)
                variants.Add(("int4-g128 avx2", 2, m => { var q = (Int4Matrix)m; q.Activations = Int4Activations.Int8; q.IntegerKernel = Int8DotKernel.Avx2; }));
            variants.Add(("int4-g128 float-act", 2, m => ((Int4Matrix)m).Activations = Int4Activations.Float));
            variants.Add(("int8-channel", 3, _ => { }));
            var names = variants.Select(v => v.Name).ToArray();
            var setOf = variants.Select(v => v.Set).ToArray();
            var actions = new List<Action> { readPass };
            for (int f = 0; f < names.Length; f++)
            {
                var copies = sets[setOf[f]];
                var configure = variants[f].Configure;
                // Variants of one set start at different copies: the one timed right after another would otherwise
                // read the copy its predecessor just pulled into the L3.
                int next = f * 7;
                actions.Add(() =>
                {
                    var m = copies[next++ % copies.Count];
                    configure(m);
                    MatMul.Multiply(m, x.AsSpan(0, k), 1, y);
                });
            }
            var seconds = Measure.InterleavedMedianSeconds(actions, repeats: 41);
            double bw = ReadPassBytes / seconds[0] / 1e9;
            Console.WriteLine($"read pass (baseline, timed in turn with the kernels): {bw:F1} GB/s");
            for (int f = 0; f < names.Length; f++)
            {
                double s = seconds[f + 1], gbs = sets[setOf[f]][0].ByteSize / s / 1e9;
                Console.WriteLine($"{names[f],-20} {n}x{k}: {s * 1e3:F2} ms, {gbs:F1} GB/s = {gbs / bw:P0} of read bandwidth, {seconds[1] / s:F2}x BF16 speed");
            }
            foreach (int rows in new[] { 16, 64, 256 })
            {
                var line = new StringBuilder($"GEMM M={rows,-3} {n}x{k}:");
                double bf16 = 0;
                for (int f = 0; f < names.Length; f++)
                {
                    var m = sets[setOf[f]][0];
                    variants[f].Configure(m);
                    double s = Measure.MedianSeconds(() => MatMul.Multiply(m, x.AsSpan(0, rows * k), rows, y), repeats: 3);
                    double gflops = 2.0 * rows * n * k / s / 1e9;
                    if (f == 0) bf16 = gflops;
                    line.Append($"  {names[f]} {gflops:F1} GFLOP/s ({gflops / bf16:F2}x)");
                }
                Console.WriteLine(line);
            }
            foreach (var set in sets) foreach (var m in set) m.Dispose();
        }
    }

    private static void Attention()
    {
        Console.WriteLine("\n## Paged attention, decode, 32 query heads / 8 KV heads, head_dim 128, context 4096");
        var layout = new KvLayout(1, 8, 128, 128, false);
        const int context = 4096, heads = 32;
        double? baseline = null;
        foreach (var dtype in new[] { KvCacheDType.Bf16, KvCacheDType.Fp8, KvCacheDType.Int4, KvCacheDType.F32 })
        {
            using var cache = new PagedKvCache(layout, dtype, context / 16, 16);
            var rng = new Random(2);
            var kv = new float[8 * 128];
            for (int t = 0; t < context; t++)
            {
                for (int i = 0; i < kv.Length; i++) kv[i] = (float)(rng.NextDouble() * 2 - 1);
                cache.Store.Write(0, t, kv, kv);
            }
            var q = new float[heads * 128];
            for (int i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() * 2 - 1);
            var slots = Enumerable.Range(0, context).Select(i => (long)i).ToArray();
            var output = new float[heads * 128];
            var seqs = new[] { new AttentionSequence(0, 1, context - 1, slots) };
            double s = Measure.MedianSeconds(() => PagedAttention.Forward(cache.Store, 0, seqs, q, heads, 128, 4, 0.088f, output, 128), repeats: 7);
            baseline ??= s;
            long bytes = (long)cache.Store.BytesPerTokenPerLayer * context;
            Console.WriteLine($"{dtype.Name(),-5}: {s * 1e3:F2} ms per step, {context / s / 1e6:F2} M positions/s, KV {bytes / 1048576.0:F1} MiB ({cache.Store.BytesPerTokenPerLayer} B/token/layer), {baseline / s:F2}x bf16 speed");
        }
    }

    private static void Tokenizer()
    {
        Console.WriteLine("\n## Tokenizer encode, single thread, mixed English / Chinese / code");
        string root = FindRoot();
        var tokenizer = BpeTokenizer.Load(Path.Combine(root, "models", "glm-demo", "tokenizer.json"));
        var sb = new StringBuilder();
        var rng = new Random(3);
        string[] parts =
        [
            "The quick brown fox jumps over the lazy dog. ", "It's 12:45 and we'll ship v2.3.1 tomorrow!\n",
            "北京今天天气晴朗，气温二十五度。", "上海的夜景非常漂亮。", "def f(x):\n    return x ** 2  # square\n",
            "for (int i = 0; i < n; i++) { sum += a[i]; }\n", "   indented   text\twith\ttabs   ", "😀 emoji and naïve café ",
        ];
        while (sb.Length < 4_000_000) sb.Append(parts[rng.Next(parts.Length)]).Append(rng.Next(100000));
        string text = sb.ToString();
        long bytes = Encoding.UTF8.GetByteCount(text);
        int tokens = 0;
        double s = Measure.MedianSeconds(() => tokens = tokenizer.Encode(text).Length, repeats: 3);
        Console.WriteLine($"{bytes / 1e6:F1} MB → {tokens:N0} tokens in {s:F2} s: {bytes / s / 1e6:F1} MB/s, {tokens / s / 1e6:F2} M tokens/s");
    }

    /// <summary>Prefill and batch-1 decode speed of one weight policy; returns seconds per decoded token.</summary>
    private static double ModelSpeed(CausalLM model, string quantization, double bandwidth, double bf16Decode)
    {
        var c = model.Config;
        if (bf16Decode == 0) Console.WriteLine($"\n## {c.ArchitectureName} at GLM-4.7-Flash layer shapes, {c.NumLayers} layers, random BF16 weights; --quantization as named (lm_head and embeddings stay BF16)");
        var rng = new Random(4);
        var prompt = Enumerable.Range(0, 512).Select(_ => rng.Next(c.VocabSize)).ToArray();
        double prefill = Measure.MedianSeconds(() =>
        {
            using var r = new SequenceRunner(model, 600);
            r.Feed(prompt);
        }, repeats: 3);
        using var runner = new SequenceRunner(model, 700);
        runner.Feed(prompt[..64]);
        int next = 1;
        double decode = Measure.MedianSeconds(() => next = Activations.ArgMax(runner.Feed([next])), repeats: 20, warmup: 3);
        long bytes = DecodeBytesPerToken(model);
        string versus = bf16Decode > 0 ? $", {bf16Decode / decode:F2}x the BF16 decode speed" : "";
        Console.WriteLine($"{quantization,-9} prefill: {prompt.Length / prefill:F1} tokens/s (512-token prompt)");
        Console.WriteLine($"{quantization,-9} decode:  {1 / decode:F2} tokens/s at batch 1; {bytes / 1e6:F0} MB of weights read per token → {bytes / decode / 1e9:F1} GB/s = {bytes / decode / 1e9 / bandwidth:P0} of the measured read bandwidth{versus}");
        return decode;
    }

    /// <summary>Weights one decode token reads: attention, dense MLPs, the active and shared experts, one embedding row, the LM head.</summary>
    public static long DecodeBytesPerToken(CausalLM model)
    {
        var c = model.Config;
        long bytes = model.LmHead.ByteSize + model.Embedding.ByteSize / c.VocabSize;
        foreach (var layer in model.Layers)
        {
            bytes += layer.Attention.Linears.Sum(l => l.Weight.ByteSize);
            if (layer.Mlp is not null) bytes += layer.Mlp.Linears.Sum(l => l.Weight.ByteSize);
            if (layer.Moe is not null)
                bytes += layer.Moe.Shared.Linears.Sum(l => l.Weight.ByteSize)
                       + c.NumExpertsPerToken * layer.Moe.Experts.Of(0).Sum(w => w.ByteSize)
                       + (long)c.NumRoutedExperts * c.HiddenSize * 4;
        }
        return bytes;
    }

    private static void EngineThroughput(CausalLM model, string weights)
    {
        Console.WriteLine($"\n## Engine throughput by concurrency (CPU worker, {weights}, BF16 KV, 64-token prompts, 32 new tokens each)");
        Console.WriteLine("   prefill: prompt tokens / time until every sequence has its first token; decode: the tokens after that / the time after that");
        double? single = null;
        foreach (int concurrency in new[] { 1, 8, 32, 64 })
        {
            var runner = new ModelRunner(model, KvCacheDType.Bf16, 4096, 16, ownsModel: false);
            using var engine = new LlmEngine(runner, new EngineOptions { MaxNumSeqs = 64, MaxNumBatchedTokens = 2048, MaxModelLen = 4096, EnablePrefixCaching = false });
            var rng = new Random(5);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var seqs = Enumerable.Range(0, concurrency).Select(_ => engine.Submit(
                Enumerable.Range(0, 64).Select(_ => rng.Next(model.VocabSize)).ToArray(),
                new SamplingParams { Temperature = 0, MaxTokens = 32, IgnoreEos = true })).ToList();
            var firstToken = new double[concurrency];
            // One asynchronous reader per sequence, all waiting at once: a parallel loop of blocking readers starts
            // some only after the engine has finished when there are fewer cores than sequences.
            Task.WaitAll(seqs.Select(async (seq, i) =>
            {
                bool first = true;
                await foreach (var _ in seq.Output.Reader.ReadAllAsync())
                    if (first) { firstToken[i] = sw.Elapsed.TotalSeconds; first = false; }
            }).ToArray());
            double end = sw.Elapsed.TotalSeconds, prefillEnd = firstToken.Max();
            double decode = concurrency * 31 / (end - prefillEnd);
            single ??= decode;
            Console.WriteLine($"concurrency {concurrency,2}: prefill {concurrency * 64 / prefillEnd,7:F1} tokens/s; decode {decode,7:F1} output tokens/s ({decode / single:F1}x batch 1)");
        }
    }

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Glm.Server.sln"))) return d.FullName;
        throw new InvalidOperationException("run from inside the repository");
    }
}
