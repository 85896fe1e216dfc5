using System.Text.Json;
using Glm.Kernels.Attention;
using Glm.Models;
using Glm.Models.Architectures;
using Glm.Models.Inference;
using Glm.Models.Quantization;
using Glm.Text.Tokenization;

namespace Glm.Server.Cli;

/// <summary>
/// eval: top-1 agreement, mean KL divergence and perplexity of a quantization and KV-dtype choice against the
/// unquantized model with a float32 (or --reference-kv-cache-dtype) cache, on the same token sequences. The
/// reference runs on the CPU worker; the candidate on --device (so eval --device cuda measures the GPU's path).
/// </summary>
public static class EvalCommand
{
    public static int Run(ServerOptions o, Serilog.ILogger log)
    {
        string dir = Hosting.ModelHost.ResolveModelDirectory(o, log);
        var sequences = Sequences(o, dir);
        var kv = o.KvCacheDType == "auto" ? KvCacheDType.F32 : KvCacheDTypes.Parse(o.KvCacheDType);
        var referenceKv = KvCacheDTypes.Parse(o.ReferenceKvCacheDType);
        using var reference = ModelLoader.Load(dir);
        using var worker = Hosting.ModelHost.OpenWorker(o, log);
        using var candidate = ModelLoader.Load(dir, ckpt => new QuantizingWeightBuilder(ckpt, QuantizationPolicy.Resolve(o.Quantization)) { Int4Activations = o.ResolveInt4Activations() },
            worker: worker);
        var result = Evaluator.Compare(reference, referenceKv, candidate, kv, sequences);
        log.Information("{Model} on {Worker}: quantization {Quantization} ({Activations} activations for Int4), KV {Kv} vs none/{RefKv} on cpu: {Result}",
            o.ModelName, worker.Name, o.Quantization, o.Int4Activations, kv.Name(), referenceKv.Name(), result);
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            model = o.ModelName, device = worker.Name, quantization = o.Quantization, int4_activations = o.Int4Activations, kv_cache_dtype = kv.Name(), reference_kv_cache_dtype = referenceKv.Name(),
            sequences = sequences.Count, positions = result.Positions, top1_agreement = result.Top1Agreement, mean_kl = result.MeanKl,
            max_kl = result.MaxKl, reference_perplexity = result.ReferencePerplexity, perplexity = result.CandidatePerplexity,
        }));
        return 0;
    }

    /// <summary>--prompt-ids, or --prompts FILE (a JSON id array or a line of text per line), or the model folder's own probes.</summary>
    private static List<int[]> Sequences(ServerOptions o, string dir)
    {
        if (o.PromptIds.Count > 0) return [o.PromptIds.ToArray()];
        if (o.PromptsFile is { } file)
        {
            BpeTokenizer? tokenizer = null;
            var list = new List<int[]>();
            foreach (var line in File.ReadLines(file).Where(l => l.Trim().Length > 0))
            {
                if (line.TrimStart().StartsWith('[')) list.Add(JsonSerializer.Deserialize<int[]>(line)!);
                else
                {
                    tokenizer ??= BpeTokenizer.Load(Path.Combine(o.Tokenizer ?? dir, "tokenizer.json"));
                    list.Add(tokenizer.Encode(line));
                }
            }
            return list;
        }
        string expected = Path.Combine(dir, "expected.json"), probes = Path.Combine(dir, "expected_probes.json");
        if (File.Exists(expected))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(expected));
            return doc.RootElement.GetProperty("cases").EnumerateArray()
                .Select(c => c.GetProperty("prompt").EnumerateArray().Concat(c.GetProperty("greedy").EnumerateArray()).Select(x => x.GetInt32()).ToArray()).ToList();
        }
        if (File.Exists(probes))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(probes));
            return doc.RootElement.EnumerateArray()
                .Select(c => c.GetProperty("prompt_ids").EnumerateArray().Concat(c.GetProperty("greedy_ids").EnumerateArray()).Select(x => x.GetInt32()).ToArray()).ToList();
        }
        throw new CliException("eval needs --prompt-ids or --prompts FILE (this model folder has no probes of its own)");
    }
}
