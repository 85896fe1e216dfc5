using System.Diagnostics;
using Glm.Kernels.Cpu;
using Glm.Models.Architectures;
using Glm.Models.Quantization;
using Glm.Models.Synthetic;

namespace Glm.Bench;

/// <summary>
/// Load time with quantize-on-load, one thread against all cores, interleaved in the same run, and against loading
/// what the quantize verb wrote: a synthetic GLM-4.7-Flash-shaped checkpoint (BF16) under each policy. The first
/// load also warms the page cache, so each figure is the faster of two loads.
/// usage: Glm.Bench load [--layers 2] [--policies int4,fp8,fp8-int4]
/// </summary>
public static class LoadBench
{
    public static int Run(string[] args)
    {
        int layers = int.Parse(Program.Arg(args, "--layers") ?? "2");
        var policies = (Program.Arg(args, "--policies") ?? "int4,fp8,fp8-int4").Split(',');
        string dir = Path.Combine(Path.GetTempPath(), $"glm-bench-flash-{layers}l");
        if (!File.Exists(Path.Combine(dir, "model.safetensors")))
        {
            Console.WriteLine($"writing a synthetic GLM-4.7-Flash-shaped model with {layers} layers to {dir} …");
            SyntheticCheckpoint.Write(dir, SyntheticCheckpoint.Glm47FlashConfig(layers));
        }
        int cores = Environment.ProcessorCount;
        long bytes = new FileInfo(Path.Combine(dir, "model.safetensors")).Length;
        Console.WriteLine($"\n## quantize-on-load of a {bytes / 1e9:F1} GB BF16 Flash-shaped checkpoint: 1 thread against {cores} (best of two, interleaved)");
        Console.WriteLine($"| policy | on load, 1 thread s | on load, {cores} threads s | speed-up | quantize verb s | load its output s | output vs on load ({cores} threads) |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (string name in policies)
        {
            var policy = QuantizationPolicy.Resolve(name);
            double one = double.MaxValue, all = double.MaxValue;
            for (int round = 0; round < 2; round++)
            {
                one = Math.Min(one, Load(dir, policy, 1));
                all = Math.Min(all, Load(dir, policy, cores));
            }
            string stored = Path.Combine(Path.GetTempPath(), $"glm-bench-flash-{layers}l-{name}");
            var sw = Stopwatch.StartNew();
            QuantizedCheckpointWriter.Write(dir, stored, policy);
            double write = sw.Elapsed.TotalSeconds, read = double.MaxValue;
            for (int round = 0; round < 2; round++) read = Math.Min(read, Load(stored, QuantizationPolicy.Resolve("none"), cores));
            Console.WriteLine($"| {name} | {one:F1} | {all:F1} | {one / all:F2}x | {write:F1} | {read:F1} | {all / read:F1}x faster |");
            Directory.Delete(stored, recursive: true);
        }
        return 0;
    }

    private static double Load(string dir, QuantizationPolicy policy, int threads)
    {
        MatMul.Threads = threads;
        var sw = Stopwatch.StartNew();
        using (ModelLoader.Load(dir, ckpt => new QuantizingWeightBuilder(ckpt, policy))) { }
        return sw.Elapsed.TotalSeconds;
    }
}
