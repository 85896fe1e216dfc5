using System.Diagnostics;
using System.Text.Json.Nodes;
using Glm.Bench;
using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;
using Glm.Models.Architectures;
using Glm.Models.Inference;
using Glm.Models.Loading;
using Glm.Models.Quantization;
using Glm.Models.Synthetic;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Glm.LlamaCppBench;

/// <summary>
/// Issue 20's same-run comparison with llama.cpp (the build inside LLamaSharp.Backend.Cpu 0.30.0) on identical
/// weights: a synthetic GLM-4.5-Air-shaped checkpoint (3 layers: 1 dense, 2 MoE with 128 experts top-8, vocab
/// 151,552), exported to GGUF with the same BF16 bits and quantized by llama.cpp's own quantizer. Each row pairs a
/// policy of ours with a llama.cpp file; both engines run the same random prompt (prefill) and greedy decode at
/// batch 1 on the same threads, one after the other, for several rounds (medians). For the bf16 row (and the f32
/// row: llama.cpp given the same weights widened to F32, both engines with F32 KV) the first round also reports
/// how closely the engines agree: free-running greedy tokens, teacher-forced next tokens, the logits after the prompt.
/// Quantized rows run ours from what the quantize verb wrote (written once, beside the GGUFs), as llama.cpp runs
/// its quantized files; the time and memory of quantizing the BF16 checkpoint on load are reported beside.
/// usage: dotnet run --project bench/Glm.LlamaCppBench -c Release -- [--layers 3] [--experts 128] [--rounds 3]
///        [--prefill 512] [--decode 128] [--threads N] [--rows bf16,q8,q4,q4mix,q4mix-bf16,f32] [--dir DIR] [--no-flash-attention]
/// </summary>
public static class Program
{
    private sealed record Row(string Key, string Title, Func<QuantizationPolicy> Ours, string LlamaFile, LLamaFtype? Ftype, bool Pure);

    /// <param name="Tokens">the token fed at each decode step (its own greedy choice, or the forced one)</param>
    /// <param name="Choices">the engine's greedy choice after each step (after the prompt, then after each token fed)</param>
    /// <param name="FirstLogits">the logits after the prompt</param>
    private sealed record Run(double LoadSeconds, long AnonBytes, double PrefillSeconds, double DecodeSeconds, int[] Tokens, int[] Choices, float[] FirstLogits);

    /// <summary>--no-flash-attention: llama.cpp's plain attention for the agreement row (to rule its flash kernel's precision out).</summary>
    private static bool NoFlashAttention;

    public static int Main(string[] args)
    {
        NoFlashAttention = args.Contains("--no-flash-attention");
        int layers = Arg(args, "--layers", 3), experts = Arg(args, "--experts", 128), rounds = Arg(args, "--rounds", 3);
        int prefill = Arg(args, "--prefill", 512), decode = Arg(args, "--decode", 128), threads = Arg(args, "--threads", Environment.ProcessorCount);
        string dir = ArgText(args, "--dir") ?? Path.Combine(Path.GetTempPath(), $"glm-llamacpp-air-{layers}l-{experts}e");
        var wanted = (ArgText(args, "--rows") ?? "bf16,q8,q4,q4mix").Split(',');
        MatMul.Threads = threads;
        NativeLibraryConfig.All.WithLogCallback((level, message) => { if (level >= LLamaLogLevel.Warning) Console.Error.Write($"llama.cpp: {message}"); });
        // Loads libllama through LLamaSharp's resolver (the quantizer's entry points do not), and names the build.
        string llamaInfo = System.Runtime.InteropServices.Marshal.PtrToStringAnsi(NativeApi.llama_print_system_info()) ?? "";

        if (!File.Exists(Path.Combine(dir, "model.safetensors")))
        {
            var config = SyntheticCheckpoint.Glm45AirConfig(layers);
            config["n_routed_experts"] = experts;
            Console.WriteLine($"writing the synthetic checkpoint to {dir} …");
            SyntheticCheckpoint.Write(dir, config);
        }
        // transformers computes RoPE's cos/sin in the checkpoint's dtype (BF16 here) and so do we, to match it;
        // llama.cpp computes them in float32. The config's dtype is set to float32 so that both engines run the
        // same function on the same BF16 weights (measured: with BF16 tables the logits part by ~2 % at 128
        // positions, with float32 tables they agree to 0.05 % and every greedy token matches). Speed is unaffected.
        string configPath = Path.Combine(dir, "config.json");
        var stored = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        if (stored["dtype"]?.GetValue<string>() != "float32")
        {
            stored["dtype"] = "float32";
            File.WriteAllText(configPath, stored.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        }
        string bf16 = Path.Combine(dir, "bf16.gguf");
        if (!File.Exists(bf16))
        {
            Console.WriteLine($"exporting {bf16} …");
            GgufExport.Write(dir, bf16);
        }
        string f32 = Path.Combine(dir, "f32.gguf");
        if (wanted.Contains("f32") && !File.Exists(f32))
        {
            Console.WriteLine($"exporting {f32} …");
            GgufExport.Write(dir, f32, asFloat32: true);
        }
        var rows = new List<Row>
        {
            new("bf16", "BF16, the same bits", () => QuantizationPolicy.Preset("none"), bf16, null, false),
            new("f32", "BF16 weights, llama.cpp given them widened to F32 (agreement check)", () => QuantizationPolicy.Preset("none"), f32, null, false),
            new("q8", "FP8 everywhere vs Q8_0 everywhere", () => Everywhere("fp8-everywhere", WeightFormat.Fp8), Path.Combine(dir, "q8_0-pure.gguf"), LLamaFtype.MOSTLY_Q8_0, true),
            new("q4", "Int4 g128 everywhere vs Q4_0 everywhere", () => Everywhere("int4-everywhere", WeightFormat.Int4G128), Path.Combine(dir, "q4_0-pure.gguf"), LLamaFtype.MOSTLY_Q4_0, true),
            new("q4mix", "our default Int4 policy (LM head Int8, embeddings BF16) vs Q4_0 (llama.cpp's default mix)", () => QuantizationPolicy.Preset("int4"), Path.Combine(dir, "q4_0.gguf"), LLamaFtype.MOSTLY_Q4_0, false),
            new("q4mix-bf16", "our Int4 policy with the LM head BF16 (the default before Int8 heads) vs Q4_0 (llama.cpp's default mix)",
                () => new QuantizationPolicy("int4-bf16-head", [new(@"^lm_head$", WeightFormat.Keep), .. QuantizationPolicy.Preset("int4").Rules]), Path.Combine(dir, "q4_0.gguf"), LLamaFtype.MOSTLY_Q4_0, false),
        }.Where(r => wanted.Contains(r.Key)).ToList();
        foreach (var row in rows.Where(r => r.Ftype is not null && !File.Exists(r.LlamaFile)))
        {
            Console.WriteLine($"quantizing {row.LlamaFile} with llama.cpp …");
            var p = LLamaModelQuantizeParams.Default();
            p.ftype = row.Ftype!.Value;
            p.nthread = threads;
            p.pure = row.Pure;
            if (NativeApi.llama_model_quantize(bf16, row.LlamaFile, ref p) != 0) throw new InvalidOperationException($"llama.cpp could not quantize {row.LlamaFile}");
        }

        // Ours loads what the quantize verb wrote once, as llama.cpp loads its quantized GGUF; quantizing on load
        // is timed beside it (one load a row).
        var storedDirs = new Dictionary<string, string>();
        foreach (var row in rows.Where(r => r.Ours().Rules.Count > 0))
        {
            string written = storedDirs[row.Key] = Path.Combine(dir, "ours-" + row.Key);
            if (File.Exists(Path.Combine(written, "model.safetensors"))) continue;
            Console.WriteLine($"writing {written} with the quantize verb …");
            QuantizedCheckpointWriter.Write(dir, written, row.Ours());
        }

        if (args.Contains("--prepare-only")) return 0;
        double bandwidth = Measure.ReadBandwidthGBs(threads);
        var rng = new Random(11);
        int vocab = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!["vocab_size"]!.GetValue<int>();
        var prompt = Enumerable.Range(0, prefill).Select(_ => rng.Next(256, vocab)).ToArray();
        Console.WriteLine($"# Glm.LlamaCppBench: {dir}, {prefill}-token prefill, {decode}-token greedy decode at batch 1, {threads} threads, {rounds} rounds (medians)");
        Console.WriteLine($"machine read bandwidth: {bandwidth:F1} GB/s; llama.cpp: {llamaInfo.Trim()}");
        Console.WriteLine("| row | ours prefill tok/s | llama.cpp prefill tok/s | prefill ratio | ours decode tok/s | llama.cpp decode tok/s | decode ratio | decode % of bandwidth (ours / llama.cpp) | load s (ours stored / llama.cpp; ours quantizing on load) | anonymous memory the loaded model keeps, GB (ours / llama.cpp; on load) |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|");
        foreach (var row in rows)
        {
            var ours = new List<Run>();
            var theirs = new List<Run>();
            long ourBytes = 0;
            for (int r = 0; r < rounds; r++)
            {
                // The agreement row keeps keys and values in F32 on both sides (llama.cpp's default cache is F16).
                bool f32Kv = row.Key == "f32";
                ours.Add(storedDirs.TryGetValue(row.Key, out var quantizedDir)
                    ? RunOurs(quantizedDir, QuantizationPolicy.Preset("none"), prompt, decode, out ourBytes)
                    : RunOurs(dir, row.Ours(), prompt, decode, out ourBytes, f32Kv: f32Kv));
                theirs.Add(RunLlama(row.LlamaFile, prompt, decode, threads, f32Kv));
                if (args.Contains("--verbose"))
                    Console.Error.WriteLine($"{row.Key} round {r}: ours {ours[^1]}, llama.cpp {theirs[^1]}");
            }
            string onLoad = "", onLoadMemory = "";
            if (storedDirs.ContainsKey(row.Key))
            {
                var (seconds, anon) = LoadOnly(dir, row.Ours());
                (onLoad, onLoadMemory) = ($"; {seconds:F1}", $"; {anon / 1e9:F1}");
            }
            long llamaBytes = LlamaDecodeBytes(row.LlamaFile);
            double Median(IEnumerable<double> v) { var s = v.OrderBy(x => x).ToArray(); return s[s.Length / 2]; }
            double op = prefill / Median(ours.Select(x => x.PrefillSeconds)), lp = prefill / Median(theirs.Select(x => x.PrefillSeconds));
            double od = decode / Median(ours.Select(x => x.DecodeSeconds)), ld = decode / Median(theirs.Select(x => x.DecodeSeconds));
            Console.WriteLine($"| {row.Title} | {op:F1} | {lp:F1} | {op / lp:F2}x | {od:F2} | {ld:F2} | {od / ld:F2}x | {ourBytes * od / 1e9 / bandwidth:P0} / {llamaBytes * ld / 1e9 / bandwidth:P0} | {Median(ours.Select(x => x.LoadSeconds)):F1} / {Median(theirs.Select(x => x.LoadSeconds)):F1}{onLoad} | {ours[^1].AnonBytes / 1e9:F1} / {theirs[^1].AnonBytes / 1e9:F1}{onLoadMemory} |");
            if (row.Key is "bf16" or "f32") ReportAgreement(dir, row, prompt, decode, ours[0], theirs[0]);
        }
        return 0;
    }

    /// <summary>
    /// The BF16 engines on the same bits: free-running greedy tokens until they part; then ours teacher-forced on
    /// llama.cpp's tokens (the same context at every step), counting the steps where both pick the same next token;
    /// and the logits after the prompt (largest difference against the largest logit, top-1 margins).
    /// </summary>
    private static void ReportAgreement(string dir, Row row, int[] prompt, int decode, Run ours, Run theirs)
    {
        int same = 0;
        while (same < decode && ours.Tokens[same] == theirs.Tokens[same]) same++;
        var forced = RunOurs(dir, row.Ours(), prompt, decode, out _, theirs.Tokens, row.Key == "f32");
        int agree = 0;
        for (int i = 0; i <= decode; i++) if (forced.Choices[i] == theirs.Choices[i]) agree++;
        double maxDiff = 0, maxAbs = 0;
        for (int i = 0; i < ours.FirstLogits.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs(ours.FirstLogits[i] - theirs.FirstLogits[i]));
            maxAbs = Math.Max(maxAbs, Math.Abs(theirs.FirstLogits[i]));
        }
        static float Margin(float[] l) { var s = l.OrderByDescending(v => v).Take(2).ToArray(); return s[0] - s[1]; }
        Console.WriteLine($"|   BF16 agreement: free-running greedy tokens identical for {same} of {decode} steps; teacher-forced on llama.cpp's tokens, " +
            $"the same next token at {agree} of {decode + 1} steps; logits after the prompt differ by at most {maxDiff:G3} ({maxDiff / maxAbs:P2} of the largest), " +
            $"top-1 margins {Margin(ours.FirstLogits):G3} (ours) / {Margin(theirs.FirstLogits):G3} (llama.cpp) | | | | | | | | |");
    }

    /// <summary>Every linear layer, the embeddings and the LM head in one format; routers stay as stored (llama.cpp keeps ffn_gate_inp too).</summary>
    private static QuantizationPolicy Everywhere(string name, WeightFormat format) =>
        new(name, [new(@"\.mlp\.gate$", WeightFormat.Keep), new(".*", format)]);

    /// <summary>Seconds to quantize on load under a policy, and the anonymous memory the loaded model keeps.</summary>
    private static (double Seconds, long AnonBytes) LoadOnly(string dir, QuantizationPolicy policy)
    {
        GC.Collect();
        long anonBefore = AnonymousBytes();
        var sw = Stopwatch.StartNew();
        using var model = ModelLoader.Load(dir, ckpt => new QuantizingWeightBuilder(ckpt, policy));
        double seconds = sw.Elapsed.TotalSeconds;
        GC.Collect();
        return (seconds, AnonymousBytes() - anonBefore);
    }

    private static Run RunOurs(string dir, QuantizationPolicy policy, int[] prompt, int decode, out long decodeBytes, int[]? forced = null, bool f32Kv = false)
    {
        GC.Collect();
        long anonBefore = AnonymousBytes();
        var sw = Stopwatch.StartNew();
        using var model = policy.Rules.Count == 0 ? ModelLoader.Load(dir) : ModelLoader.Load(dir, ckpt => new QuantizingWeightBuilder(ckpt, policy));
        double load = sw.Elapsed.TotalSeconds;
        GC.Collect(); // what the model keeps, not the load's transient arrays
        long anon = AnonymousBytes() - anonBefore;
        decodeBytes = Glm.Bench.Program.DecodeBytesPerToken(model);
        using (var warm = new SequenceRunner(model, 64, KvCacheDType.Bf16)) warm.Feed(prompt.AsSpan(0, Math.Min(32, prompt.Length)));
        using var runner = new SequenceRunner(model, prompt.Length + decode + 8, f32Kv ? KvCacheDType.F32 : KvCacheDType.Bf16);
        sw.Restart();
        var first = runner.Feed(prompt).ToArray();
        int next = Activations.ArgMax(first);
        double prefill = sw.Elapsed.TotalSeconds;
        var tokens = new int[decode];
        var choices = new int[decode + 1];
        choices[0] = next;
        sw.Restart();
        for (int i = 0; i < decode; i++)
        {
            tokens[i] = forced?[i] ?? next;
            next = choices[i + 1] = Activations.ArgMax(runner.Feed([tokens[i]]));
        }
        return new Run(load, anon, prefill, sw.Elapsed.TotalSeconds, tokens, choices, first);
    }

    private static Run RunLlama(string path, int[] prompt, int decode, int threads, bool f32Kv = false)
    {
        GC.Collect();
        long anonBefore = AnonymousBytes();
        var parameters = new ModelParams(path)
        {
            ContextSize = (uint)(prompt.Length + decode + 64), BatchSize = (uint)prompt.Length, UBatchSize = (uint)prompt.Length,
            Threads = threads, BatchThreads = threads, GpuLayerCount = 0,
        };
        if (f32Kv)
        {
            parameters.TypeK = GGMLType.GGML_TYPE_F32;
            parameters.TypeV = GGMLType.GGML_TYPE_F32;
            if (NoFlashAttention) parameters.FlashAttention = false;
        }
        var sw = Stopwatch.StartNew();
        using var weights = LLamaWeights.LoadFromFile(parameters);
        double load = sw.Elapsed.TotalSeconds;
        long anon = AnonymousBytes() - anonBefore;
        using var context = weights.CreateContext(parameters);
        var handle = context.NativeHandle;
        var batch = new LLamaBatch();
        // Warm-up as ours: 32 prompt tokens, then the cache cleared.
        int warmTokens = Math.Min(32, prompt.Length);
        for (int i = 0; i < warmTokens; i++) batch.Add(prompt[i], i, LLamaSeqId.Zero, i == warmTokens - 1);
        Check(handle.Decode(batch));
        handle.MemoryClear(true);
        batch.Clear();
        for (int i = 0; i < prompt.Length; i++) batch.Add(prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
        sw.Restart();
        Check(handle.Decode(batch));
        var first = handle.GetLogitsIth(batch.TokenCount - 1).ToArray();
        int next = Activations.ArgMax(first);
        double prefill = sw.Elapsed.TotalSeconds;
        var tokens = new int[decode];
        var choices = new int[decode + 1];
        choices[0] = next;
        sw.Restart();
        for (int i = 0; i < decode; i++)
        {
            tokens[i] = next;
            batch.Clear();
            batch.Add(next, prompt.Length + i, LLamaSeqId.Zero, true);
            Check(handle.Decode(batch));
            next = choices[i + 1] = Activations.ArgMax(handle.GetLogitsIth(0));
        }
        return new Run(load, anon, prefill, sw.Elapsed.TotalSeconds, tokens, choices, first);
    }

    private static void Check(DecodeResult result)
    {
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode: {result}");
    }

    /// <summary>Weights a llama.cpp decode token reads (as Glm.Bench counts ours): every tensor, the expert tensors at top-k of their experts, one embedding row.</summary>
    private static long LlamaDecodeBytes(string path)
    {
        long bytes = 0;
        foreach (var t in GgufReader.Tensors(path))
        {
            if (t.Name.Contains("_exps.")) bytes += t.Bytes * 8 / t.Ne[2];
            else if (t.Name == "token_embd.weight") bytes += t.Bytes / t.Ne[1];
            else bytes += t.Bytes;
        }
        return bytes;
    }

    /// <summary>RssAnon of this process (/proc/self/status): memory a load allocated rather than mapped.</summary>
    private static long AnonymousBytes()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("RssAnon:", StringComparison.Ordinal))
                return long.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        return 0;
    }

    private static int Arg(string[] args, string name, int fallback) => ArgText(args, name) is { } v ? int.Parse(v) : fallback;

    private static string? ArgText(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
