using System.Diagnostics;
using System.Numerics.Tensors;
using Glm.Engine;
using Glm.Kernels.Attention;
using Glm.Models;
using Glm.Models.Architectures;
using Glm.Models.Loading;
using Glm.Models.Synthetic;

namespace Glm.Bench;

/// <summary>
/// MTP speculative decoding, measured. The embedded demo ships no MTP layer, so `mtp-fit` makes one for it: an
/// MTP layer in the released layout whose eh_proj is a ridge regression, fitted on the demo's own generations,
/// from [enorm(embed(t_{p+1})), hnorm(h_p)] to the main model's next final hidden state h_{p+1} (its block adds
/// nothing; shared_head.head is lm_head), so its draft is the demo's guess at the token after next. A real
/// checkpoint's trained MTP layer drafts better (vLLM reports 80-90 % acceptance on GLM-4.6); this gives the
/// mechanism a real, non-trivial acceptance to measure on this machine.
/// `mtp` then decodes the demo's probes with and without drafting (three interleaved rounds, medians) and times a
/// decode step against a verify step plus the MTP pass on benchmark-shaped models.
/// usage: Glm.Bench mtp-fit [--output DIR] [--samples-per-probe 6] ; Glm.Bench mtp [--model DIR]
/// </summary>
public static class MtpBench
{
    private static string DefaultFitted => Path.Combine(Path.GetTempPath(), "glm-demo-mtp-fit");

    public static int Fit(string[] args, string root)
    {
        string source = Path.Combine(root, "models", "glm-demo");
        string output = Program.Arg(args, "--output") ?? DefaultFitted;
        int perProbe = int.Parse(Program.Arg(args, "--samples-per-probe") ?? "6");
        using var model = ModelLoader.Load(source);
        var config = model.Config;
        int h = config.HiddenSize, vocab = config.VocabSize;
        float[] embed, lmHead;
        using (var ckpt = new Checkpoint(source))
        {
            embed = ckpt.ReadFloats("model.embed_tokens.weight", vocab, h);
            lmHead = ckpt.ReadFloats("lm_head.weight", vocab, h);
        }

        // The demo's own text: each probe continued with sampling under several seeds (prompt and output both used).
        var sw = Stopwatch.StartNew();
        var sequences = new List<int[]>();
        var heldOut = new List<int[]>();
        var heldOutPrompts = new List<int>();
        var runner = new ModelRunner(model, KvCacheDType.F32, 1024, 16, ownsModel: false);
        using (var engine = new LlmEngine(runner, new EngineOptions { MaxNumSeqs = 16, MaxNumBatchedTokens = 2048, MaxModelLen = 4096 }))
        {
            // The even probes sampled under several seeds (the first greedy) to fit on; the odd ones greedy, held out.
            var probes = Probes(source);
            var submitted = new List<(int[] Prompt, Sequence Seq, bool HeldOut)>();
            for (int p = 0; p < probes.Count; p++)
                if (p % 2 == 1) submitted.Add((probes[p], engine.Submit(probes[p], new SamplingParams { Temperature = 0, MaxTokens = 64, IgnoreEos = true }), true));
                else
                    for (int s = 0; s < perProbe; s++)
                        submitted.Add((probes[p], engine.Submit(probes[p], new SamplingParams { Temperature = s == 0 ? 0 : 0.8f, MaxTokens = 96, IgnoreEos = true, Seed = (ulong)(1000 + s) }), false));
            foreach (var (prompt, seq, isHeldOut) in submitted)
            {
                var generated = seq.Output.Reader.ReadAllAsync().ToBlockingEnumerable().Where(o => o.Token >= 0).Select(o => o.Token);
                (isHeldOut ? heldOut : sequences).Add([.. prompt, .. generated]);
                if (isHeldOut) heldOutPrompts.Add(prompt.Length);
            }
        }
        Console.WriteLine($"generated {sequences.Count} sequences from the even probes ({sequences.Sum(s => s.Length)} tokens) and {heldOut.Count} from the odd ones, in {sw.Elapsed.TotalSeconds:F1} s");

        // The odd probes' generations are held out to measure the fit.
        int features = 2 * h;
        var gram = new double[features * features];
        var cross = new double[features * h];
        var held = new List<(float[] Feature, float[] Target)>();
        var f = new float[features];
        long samples = 0;
        var all = sequences.Concat(heldOut).ToList();
        for (int s = 0; s < all.Count; s++)
        {
            var tokens = all[s];
            var hidden = FinalHiddenStates(model, tokens);
            for (int p = 1; p + 1 < tokens.Length; p++)
            {
                Normalize(embed.AsSpan(tokens[p + 1] * h, h), f.AsSpan(0, h), config.RmsNormEps);
                Normalize(hidden.AsSpan(p * h, h), f.AsSpan(h, h), config.RmsNormEps);
                var target = hidden.AsSpan((p + 1) * h, h);
                if (s >= sequences.Count)
                {
                    // Where decoding drafts: the positions of the generated tokens.
                    if (p + 1 >= heldOutPrompts[s - sequences.Count]) held.Add((f.ToArray(), target.ToArray()));
                    continue;
                }
                for (int i = 0; i < features; i++)
                {
                    double fi = f[i];
                    for (int j = 0; j <= i; j++) gram[i * features + j] += fi * f[j];
                    for (int j = 0; j < h; j++) cross[i * h + j] += fi * target[j];
                }
                samples++;
            }
        }
        for (int i = 0; i < features; i++)
            for (int j = 0; j < i; j++) gram[j * features + i] = gram[i * features + j];
        double lambda = 1e-2 * samples / features;
        for (int i = 0; i < features; i++) gram[i * features + i] += lambda;
        var solution = CholeskySolve(gram, cross, features, h); // [features, h]: W^T
        var eh = new float[h * features];
        for (int o = 0; o < h; o++)
            for (int i = 0; i < features; i++) eh[o * features + i] = (float)solution[i * h + o];

        // Held out: how often the fitted draft is the token the main model then predicts (acceptance under greedy, teacher-forced).
        // The checkpoint stores eh_proj in BF16, as releases do: measured as stored.
        var stored = eh.Select(v => Glm.Kernels.Formats.BFloat16.ToFloat(Glm.Kernels.Formats.BFloat16.FromFloat(v))).ToArray();
        int agree = 0, agreeStored = 0;
        var x = new float[h];
        foreach (var (feature, target) in held)
        {
            int expected = Argmax(lmHead, target, h);
            for (int o = 0; o < h; o++) x[o] = TensorPrimitives.Dot(eh.AsSpan(o * features, features), feature);
            if (Argmax(lmHead, x, h) == expected) agree++;
            for (int o = 0; o < h; o++) x[o] = TensorPrimitives.Dot(stored.AsSpan(o * features, features), feature);
            if (Argmax(lmHead, x, h) == expected) agreeStored++;
        }
        Console.WriteLine($"ridge fit on {samples} positions (lambda {lambda:G3}); on the {held.Count} generated positions of the held-out probes (greedy) the draft is the main model's " +
            $"next greedy token at {(double)agree / held.Count:P1} (eh_proj in float32), {(double)agreeStored / held.Count:P1} (in BF16, as stored)");

        if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
        Directory.CreateDirectory(output);
        foreach (var file in Directory.GetFiles(source)) File.Copy(file, Path.Combine(output, Path.GetFileName(file)));
        string p0 = $"model.layers.{config.NumLayers}";
        var values = new Dictionary<string, float[]>
        {
            [$"{p0}.eh_proj.weight"] = eh,
            [$"{p0}.shared_head.head.weight"] = lmHead,
            [$"{p0}.self_attn.o_proj.weight"] = new float[h * config.NumHeads * config.HeadDim],
            [$"{p0}.mlp.shared_experts.down_proj.weight"] = new float[h * config.MoeIntermediateSize * config.NumSharedExperts],
        };
        for (int e = 0; e < config.NumRoutedExperts; e++) values[$"{p0}.mlp.experts.{e}.down_proj.weight"] = new float[h * config.MoeIntermediateSize];
        SyntheticCheckpoint.AddMtpLayer(output, seed: 11, values);
        File.AppendAllText(Path.Combine(output, "ABOUT.md"), "\n\nThis copy carries an MTP layer fitted by `Glm.Bench mtp-fit` (a ridge regression of the next hidden state; not a trained GLM MTP layer).\n");
        Console.WriteLine($"wrote {output}");
        return 0;
    }

    public static int Run(string[] args, string root)
    {
        string dir = Program.Arg(args, "--model") ?? DefaultFitted;
        if (!File.Exists(Path.Combine(dir, "mtp.safetensors"))) Fit(["--output", dir], root);
        using var plainModel = ModelLoader.Load(dir);
        using var mtpModel = ModelLoader.Load(dir, withMtp: true);
        var tokenizer = Glm.Text.Tokenization.BpeTokenizer.Load(Path.Combine(dir, "tokenizer.json"));
        var unseen = new[] { "What is the capital of Italy?", "Hello! How are you today?", "What is 17 plus 25?", "What time is it in Berlin?" }
            .Select(q => tokenizer.Encode($"[gMASK]<sop><|user|>\n{q}<|assistant|>\n")).ToList();
        Console.WriteLine($"\n## speculative decoding with the MTP layer of {dir}, batch 1, greedy, 64 new tokens (median of 3 interleaved rounds)");
        Console.WriteLine("| requests | plain tokens/s | MTP tokens/s | speed-up | acceptance (accepted / drafted) | tokens per step |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (var (name, prompts) in new[] { ("the odd demo probes (not fitted on)", Probes(dir).Where((_, i) => i % 2 == 1).ToList()), ("new chat prompts", unseen) })
        {
            var plain = new List<double>();
            var spec = new List<double>();
            EngineStats? stats = null;
            for (int round = 0; round < 3; round++)
            {
                plain.Add(SpecBench.TokensPerSecond(plainModel, prompts, null, out _));
                spec.Add(SpecBench.TokensPerSecond(mtpModel, prompts, null, out stats, mtp: true));
            }
            plain.Sort();
            spec.Sort();
            double accept = stats!.SpecDraftTokens == 0 ? 0 : (double)stats.SpecAcceptedTokens / stats.SpecDraftTokens;
            Console.WriteLine($"| {name} | {plain[1]:F1} | {spec[1]:F1} | {spec[1] / plain[1]:F2}x | {accept:P0} | {(double)stats.GenerationTokens / stats.Steps:F2} |");
        }

        Console.WriteLine("\nWhat a drafting step costs against a decode step, 2-layer models with a random MTP layer, BF16, 64-token context; the full-depth column " +
            "scales the measured per-layer costs to the released depth and adds the heads and the MTP pass once:");
        Console.WriteLine("| shape | decode step ms | verify step, 2 tokens, ms | MTP pass, 2 rows, ms | LM head alone ms | drafting step / decode step | at full depth | speed-up at 85 % acceptance, full depth |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (var (name, json, full) in new[] { ("GLM-4.7-Flash", SyntheticCheckpoint.Glm47FlashConfig(2), 47), ("GLM-4.5-Air", SyntheticCheckpoint.Glm45AirConfig(2), 46) })
            StepCost(name, json, full);
        return 0;
    }

    /// <summary>
    /// A decode step (one token) against what MTP drafting does instead: a verify step of two tokens, then the MTP
    /// pass over the kept positions (two when the draft was accepted), on a 2-layer model of that shape with a
    /// random MTP layer (BF16) at a 64-token context, median of 7 each, two rounds. The LM head is timed alone too,
    /// so the cost can be carried to the full depth: per-layer costs times the layers, plus the heads and the MTP pass.
    /// </summary>
    private static void StepCost(string name, System.Text.Json.Nodes.JsonObject json, int fullLayers)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"glm-bench-mtp-{name}-2l");
        if (!File.Exists(Path.Combine(dir, "mtp.safetensors")))
        {
            SyntheticCheckpoint.Write(dir, json);
            SyntheticCheckpoint.AddMtpLayer(dir);
        }
        using var model = ModelLoader.Load(dir, withMtp: true);
        int layers = model.Config.NumLayers;
        var rng = new Random(2);
        var context = Enumerable.Range(0, 64).Select(_ => rng.Next(model.VocabSize)).ToArray();
        var logits = new float[2 * model.VocabSize];
        var draftLogits = new float[model.VocabSize];
        double Median(Func<double> once)
        {
            var times = new List<double>();
            for (int i = 0; i < 8; i++)
            {
                double t = once();
                if (i > 0) times.Add(t);
            }
            times.Sort();
            return times[times.Count / 2];
        }
        double Step(int tokens, bool mtp) => Median(() =>
        {
            using var cache = model.CreateKvCache(KvCacheDType.Bf16, 16, 16);
            var blocks = Enumerable.Range(0, 16).ToList();
            using (model.ForwardKeepingHiddenStates(new ForwardBatch(context, [new SequenceInput(0, context.Length, 0, blocks)]), cache, logits)) { }
            var ids = Enumerable.Range(0, tokens).Select(_ => rng.Next(model.VocabSize)).ToArray();
            var batch = new ForwardBatch(ids, [new SequenceInput(0, tokens, 64, blocks, tokens)]);
            if (!mtp)
            {
                var watch = Stopwatch.StartNew();
                model.Forward(batch, cache, logits);
                return watch.Elapsed.TotalSeconds;
            }
            using var hidden = model.ForwardKeepingHiddenStates(batch, cache, logits);
            var sw = Stopwatch.StartNew();
            model.ForwardMtp(new ForwardBatch([.. ids[1..], rng.Next(model.VocabSize)], [new SequenceInput(0, tokens, 64, blocks, 1)]), hidden, cache, draftLogits);
            return sw.Elapsed.TotalSeconds;
        });
        double Head(int rows) => Median(() =>
        {
            using var x = model.Worker.Embedding(model.Embedding, context.AsSpan(0, rows));
            var sw = Stopwatch.StartNew();
            model.Worker.LinearToHost(x, model.LmHead, logits);
            return sw.Elapsed.TotalSeconds;
        });
        double one = 0, two = 0, pass = 0, head1 = 0, head2 = 0;
        for (int round = 0; round < 2; round++)
        {
            one = Step(1, false);
            two = Step(2, false);
            pass = Step(2, true);
            head1 = Head(1);
            head2 = Head(2);
        }
        double layer1 = (one - head1) / layers, layer2 = (two - head2) / layers;
        double full1 = fullLayers * layer1 + head1, fullMtp = fullLayers * layer2 + head2 + pass;
        Console.WriteLine($"| {name} | {one * 1e3:F1} | {two * 1e3:F1} ({layer2 / layer1:F2}x a layer) | {pass * 1e3:F1} | {head1 * 1e3:F1} | " +
            $"{(two + pass) / one:F2}x | {fullMtp / full1:F2}x | {1.85 * full1 / fullMtp:F2}x |");
    }

    private static List<int[]> Probes(string dir) =>
        System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected_probes.json"))).RootElement
            .EnumerateArray().Select(p => p.GetProperty("prompt_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToList();

    /// <summary>Every position's final hidden state (after model.norm) for a whole sequence.</summary>
    private static float[] FinalHiddenStates(CausalLM model, int[] tokens)
    {
        int blocks = (tokens.Length + 15) / 16;
        using var cache = model.CreateKvCache(KvCacheDType.F32, blocks, 16);
        var logits = new float[model.VocabSize];
        using var hidden = model.ForwardKeepingHiddenStates(new ForwardBatch(tokens, [new SequenceInput(0, tokens.Length, 0, Enumerable.Range(0, blocks).ToList())]), cache, logits);
        var host = new float[hidden.Length];
        model.Worker.Download(hidden, host);
        return host;
    }

    /// <summary>RMSNorm with a unit weight (enorm and hnorm of a fresh MTP layer).</summary>
    private static void Normalize(ReadOnlySpan<float> x, Span<float> y, float eps)
    {
        float scale = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(x) / x.Length + eps);
        TensorPrimitives.Multiply(x, scale, y);
    }

    private static int Argmax(float[] head, ReadOnlySpan<float> x, int h)
    {
        int best = 0;
        float max = float.NegativeInfinity;
        for (int v = 0; v < head.Length / h; v++)
        {
            float d = TensorPrimitives.Dot(head.AsSpan(v * h, h), x);
            if (d > max) { max = d; best = v; }
        }
        return best;
    }

    /// <summary>Solves A X = B for a symmetric positive definite A [n, n] and B [n, m] (Cholesky, in double).</summary>
    private static double[] CholeskySolve(double[] a, double[] b, int n, int m)
    {
        var l = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++)
            {
                double sum = a[i * n + j];
                for (int k = 0; k < j; k++) sum -= l[i * n + k] * l[j * n + k];
                l[i * n + j] = i == j ? Math.Sqrt(sum) : sum / l[j * n + j];
            }
        var x = (double[])b.Clone();
        for (int c = 0; c < m; c++)
        {
            for (int i = 0; i < n; i++)
            {
                double sum = x[i * m + c];
                for (int k = 0; k < i; k++) sum -= l[i * n + k] * x[k * m + c];
                x[i * m + c] = sum / l[i * n + i];
            }
            for (int i = n - 1; i >= 0; i--)
            {
                double sum = x[i * m + c];
                for (int k = i + 1; k < n; k++) sum -= l[k * n + i] * x[k * m + c];
                x[i * m + c] = sum / l[i * n + i];
            }
        }
        return x;
    }
}
