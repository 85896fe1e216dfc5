using System.Diagnostics;
using Glm.Engine;
using Glm.Kernels.Attention;
using Glm.Kernels.Cuda;
using Glm.Kernels.Cuda.Worker;
using Glm.Models.Architectures;
using Glm.Models.Quantization;
using Glm.Models.Synthetic;

namespace Glm.Bench;

/// <summary>
/// Whole-model speed on the CUDA worker, through the engine as the server runs it: prefill of one 2,048-token
/// prompt, and decode throughput with 1, 8 and 64 concurrent sequences, for a GLM-4.7-Flash- or
/// GLM-4.5-Air-shaped synthetic checkpoint (a few layers at the real widths, the real vocabulary) in each
/// weight format. bench/cuda/transformers_baseline.py times transformers on the same checkpoint in the same run.
/// usage: Glm.Bench cudamodel --shape flash|air [--layers N] [--formats bf16,fp8,int4,fp8-int4] [--kv int4]
///        [--dir DIR] [--budget-seconds S]    (formats past the time budget are reported as skipped)
/// </summary>
public static class CudaModelBench
{
    public static int Run(string[] args)
    {
        if (!CudaRuntime.IsAvailable(out string why))
        {
            Console.WriteLine("CUDA not available: " + why);
            return 1;
        }
        string shape = Program.Arg(args, "--shape") ?? "flash";
        int layers = int.Parse(Program.Arg(args, "--layers") ?? (shape == "air" ? "2" : "2"));
        var formats = (Program.Arg(args, "--formats") ?? "bf16,fp8,int4,fp8-int4").Split(',');
        var kv = KvCacheDTypes.Parse(Program.Arg(args, "--kv") ?? "int4");
        int prefillTokens = int.Parse(Program.Arg(args, "--prefill") ?? "2048");
        var batches = (Program.Arg(args, "--batches") ?? "1,8,64").Split(',').Select(int.Parse).ToArray();
        double budget = double.Parse(Program.Arg(args, "--budget-seconds") ?? "600", System.Globalization.CultureInfo.InvariantCulture);
        string dir = Program.Arg(args, "--dir") ?? Path.Combine(Path.GetTempPath(), $"glm-bench-{shape}-{layers}l");
        var clock = Stopwatch.StartNew();
        if (!File.Exists(Path.Combine(dir, "model.safetensors")))
        {
            Console.WriteLine($"writing a synthetic {shape}-shaped checkpoint with {layers} layers to {dir} …");
            SyntheticCheckpoint.Write(dir, shape == "air" ? SyntheticCheckpoint.Glm45AirConfig(layers) : SyntheticCheckpoint.Glm47FlashConfig(layers));
        }
        Console.WriteLine($"\n## {shape}-shaped, {layers} layers, on {CudaRuntime.DeviceName(0)}; KV {kv.Name()}; tokens/s through the engine");
        Console.WriteLine($"| weights | load s | weights GiB | prefill {prefillTokens} | {string.Join(" | ", batches.Select(b => $"decode b{b}"))} |");
        Console.WriteLine($"|---|---|---|---|{string.Concat(batches.Select(_ => "---|"))}");
        foreach (string format in formats)
        {
            if (clock.Elapsed.TotalSeconds > budget)
            {
                Console.WriteLine($"| {format} | skipped: past the {budget:F0} s budget | | |{string.Concat(batches.Select(_ => " |"))}");
                continue;
            }
            using var worker = CudaWorker.Open();
            var load = Stopwatch.StartNew();
            var policy = QuantizationPolicy.Resolve(format == "bf16" ? "none" : format);
            using var model = ModelLoader.Load(dir, ckpt => new QuantizingWeightBuilder(ckpt, policy) { Int4Activations = Glm.Kernels.Cpu.Int4Activations.Float }, worker: worker);
            double loadSeconds = load.Elapsed.TotalSeconds;
            double prefill = prefillTokens > 0 ? Prefill(model, kv, prefillTokens) : double.NaN;
            var decode = batches.Select(b => Decode(model, kv, b)).ToArray();
            Console.WriteLine($"| {format} | {loadSeconds:F1} | {worker.PermanentBytes / 1073741824.0:F2} | {prefill:F0} | {string.Join(" | ", decode.Select(d => d.ToString("F1")))} |");
        }
        return 0;
    }

    private static LlmEngine Engine(CausalLM model, KvCacheDType kv, int blocks) =>
        new(new ModelRunner(model, kv, blocks, 16, ownsModel: false), new EngineOptions
        {
            MaxNumSeqs = 64, MaxNumBatchedTokens = 2048, MaxModelLen = 4096, EnablePrefixCaching = false,
        });

    /// <summary>One prompt of <paramref name="tokens"/> in one step: prompt tokens per second until its first output token (the best of two).</summary>
    private static double Prefill(CausalLM model, KvCacheDType kv, int tokens)
    {
        using var engine = Engine(model, kv, tokens / 16 + 8);
        var rng = new Random(3);
        double best = 0;
        for (int run = 0; run < 3; run++)
        {
            var prompt = Enumerable.Range(0, tokens).Select(_ => rng.Next(model.VocabSize)).ToArray();
            var sw = Stopwatch.StartNew();
            var seq = engine.Submit(prompt, new SamplingParams { Temperature = 0, MaxTokens = 1, IgnoreEos = true });
            foreach (var _ in seq.Output.Reader.ReadAllAsync().ToBlockingEnumerable()) { }
            if (run > 0) best = Math.Max(best, tokens / sw.Elapsed.TotalSeconds); // the first run warms up
        }
        return best;
    }

    /// <summary>Output tokens per second of <paramref name="batch"/> sequences decoding together (32-token prompts, 48 new tokens, after the first).</summary>
    private static double Decode(CausalLM model, KvCacheDType kv, int batch)
    {
        using var engine = Engine(model, kv, batch * 6 + 8);
        var rng = new Random(5);
        var sw = Stopwatch.StartNew();
        var seqs = Enumerable.Range(0, batch).Select(_ => engine.Submit(Enumerable.Range(0, 32).Select(_ => rng.Next(model.VocabSize)).ToArray(),
            new SamplingParams { Temperature = 0, MaxTokens = 48, IgnoreEos = true })).ToList();
        var first = new double[batch];
        var counts = new int[batch];
        // One asynchronous reader per sequence, all waiting at once (a parallel loop over blocking readers would
        // start some of them only after the engine finished, on a machine with fewer cores than sequences).
        Task.WaitAll(seqs.Select(async (seq, i) =>
        {
            await foreach (var o in seq.Output.Reader.ReadAllAsync())
                if (o.Token >= 0 && counts[i]++ == 0) first[i] = sw.Elapsed.TotalSeconds;
        }).ToArray());
        if (counts.Any(c => c != 48))
            throw new InvalidOperationException($"a sequence ended early ({string.Join(",", counts.Distinct())} tokens; {seqs[Array.FindIndex(counts, c => c != 48)].FinishReason})");
        return batch * 47 / (sw.Elapsed.TotalSeconds - first.Max());
    }
}
