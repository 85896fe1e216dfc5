using System.Diagnostics;
using Glm.Engine;
using Glm.Kernels.Attention;
using Glm.Models.Architectures;
using Glm.Text.Tokenization;

namespace Glm.Bench;

/// <summary>
/// Prompt-lookup speculative decoding on the demo model, batch 1, greedy: the same requests decoded with and
/// without drafts, interleaved over three rounds (medians), and the acceptance rate. Two kinds of request: the
/// demo's own probes (chat: little to look up), and an agent-like one that asks for text quoted in the prompt.
/// usage: Glm.Bench spec [--tokens 4]
/// </summary>
public static class SpecBench
{
    public static int Run(string[] args, string root)
    {
        int k = args.Contains("--tokens") ? int.Parse(args[Array.IndexOf(args, "--tokens") + 1]) : 4;
        string dir = Path.Combine(root, "models", "glm-demo");
        using var model = ModelLoader.Load(dir);
        var tokenizer = BpeTokenizer.Load(Path.Combine(dir, "tokenizer.json"));
        var probes = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected_probes.json"))).RootElement
            .EnumerateArray().Select(p => p.GetProperty("prompt_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToList();
        string quoted = string.Join(" ", Enumerable.Repeat("The weather in Paris is sunny and the time in Tokyo is nine.", 6));
        var echo = new List<int[]> { tokenizer.Encode($"[gMASK]<sop><|user|>\nRepeat this: {quoted}<|assistant|>\n<think></think>\n{quoted[..60]}") };
        Console.WriteLine($"\n## speculative decoding (prompt lookup, {k} draft tokens) on glm-demo, batch 1, greedy, 64 new tokens (median of 3 interleaved rounds)");
        Console.WriteLine("| requests | plain tokens/s | speculative tokens/s | speed-up | acceptance (accepted / drafted) | tokens per step |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (var (name, prompts) in new[] { ("demo probes (chat)", probes), ("quoting the prompt (agent-like)", echo) })
        {
            var plain = new List<double>();
            var spec = new List<double>();
            EngineStats? stats = null;
            for (int round = 0; round < 3; round++)
            {
                plain.Add(TokensPerSecond(model, prompts, null, out _));
                spec.Add(TokensPerSecond(model, prompts, new NgramProposer(k), out stats));
            }
            plain.Sort();
            spec.Sort();
            double accept = stats!.SpecDraftTokens == 0 ? 0 : (double)stats.SpecAcceptedTokens / stats.SpecDraftTokens;
            Console.WriteLine($"| {name} | {plain[1]:F1} | {spec[1]:F1} | {spec[1] / plain[1]:F2}x | {accept:P0} | {(double)stats.GenerationTokens / stats.Steps:F2} |");
        }
        StepCost(k);
        return 0;
    }

    /// <summary>
    /// What a verify step costs against a decode step where decode is bandwidth-bound: a GLM-4.7-Flash-shaped
    /// model (2 layers, BF16), one token against 1 + k at the same context, median of 5 each.
    /// </summary>
    private static void StepCost(int k)
    {
        string flash = Path.Combine(Path.GetTempPath(), "glm-bench-flash-2l");
        if (!File.Exists(Path.Combine(flash, "model.safetensors"))) Glm.Models.Synthetic.SyntheticCheckpoint.Write(flash, Glm.Models.Synthetic.SyntheticCheckpoint.Glm47FlashConfig(2));
        using var model = ModelLoader.Load(flash);
        var rng = new Random(2);
        int[] Ids(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(model.VocabSize)).ToArray();
        double Step(int tokens)
        {
            var times = new List<double>();
            for (int i = 0; i < 6; i++)
            {
                using var r = new Glm.Models.Inference.SequenceRunner(model, 64 + tokens);
                r.Feed(Ids(32));
                var sw = Stopwatch.StartNew();
                r.Feed(Ids(tokens));
                if (i > 0) times.Add(sw.Elapsed.TotalSeconds);
            }
            times.Sort();
            return times[times.Count / 2];
        }
        double one = Step(1), verify = Step(1 + k);
        Console.WriteLine($"\nGLM-4.7-Flash-shaped (2 layers, BF16): a decode step {one * 1e3:F0} ms, a verify step of 1 + {k} tokens {verify * 1e3:F0} ms ({verify / one:F2}x): " +
            $"where decode reads the weights once per step, s tokens per step give about s x {one / verify:F2} of plain decoding's speed.");
    }

    /// <summary>Greedy decoding of each prompt in turn (batch 1, 64 new tokens): output tokens per second, and the engine's counters.</summary>
    internal static double TokensPerSecond(CausalLM model, List<int[]> prompts, NgramProposer? speculation, out EngineStats stats, bool mtp = false)
    {
        var runner = new ModelRunner(model, KvCacheDType.F32, 512, 16, ownsModel: false);
        using var engine = new LlmEngine(runner, new EngineOptions
        {
            MaxNumSeqs = 1, MaxNumBatchedTokens = 2048, MaxModelLen = 4096, EnablePrefixCaching = false, Speculation = speculation, MtpDrafting = mtp,
        });
        long tokens = 0;
        var sw = Stopwatch.StartNew();
        foreach (var prompt in prompts)
        {
            var seq = engine.Submit(prompt, new SamplingParams { Temperature = 0, MaxTokens = 64, IgnoreEos = true });
            foreach (var o in seq.Output.Reader.ReadAllAsync().ToBlockingEnumerable())
                if (o.Token >= 0) tokens++;
        }
        double seconds = sw.Elapsed.TotalSeconds;
        stats = engine.Stats;
        return tokens / seconds;
    }
}
