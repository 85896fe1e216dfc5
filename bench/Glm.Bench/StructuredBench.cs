using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Glm.Engine;
using Glm.Engine.Constraints;
using Glm.Kernels.Cpu;
using Glm.Models.Architectures;
using Glm.Models.Inference;
using Glm.Models.Loading;
using Glm.Models.Synthetic;
using Glm.Text.Grammar;
using Glm.Text.Tokenization;
using Json.Schema;

namespace Glm.Bench;

/// <summary>
/// Structured outputs: compile time and per-token mask time per schema class over a 151,552-entry byte-level
/// vocabulary, beside the same run's unconstrained sampling step and a GLM-4.7-Flash-shaped decode step; and the
/// JSON Schema Bench coverage (compile rate, and the demo model's answers validated with JsonSchema.Net).
/// </summary>
public static class StructuredBench
{
    private static readonly (string Class, string Schema)[] Classes =
    [
        ("json_object (free-form)", """{"type":"object"}"""),
        ("flat object: enum, integer range, bounded string", """{"type":"object","properties":{"city":{"type":"string","maxLength":40},"unit":{"enum":["celsius","fahrenheit"]},"days":{"type":"integer","minimum":1,"maximum":14}},"required":["city","unit","days"],"additionalProperties":false}"""),
        ("recursive $ref tree", """{"$defs":{"node":{"type":"object","properties":{"name":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["name"]}},"$ref":"#/$defs/node"}"""),
        ("formats and patterns", """{"type":"object","properties":{"day":{"type":"string","format":"date"},"ts":{"type":"string","format":"date-time"},"id":{"type":"string","format":"uuid"},"mail":{"type":"string","format":"email"},"code":{"type":"string","pattern":"^[A-Z]{2}-[0-9]{3,6}$"}},"required":["day","ts","id","mail","code"]}"""),
        ("arrays of objects, optional keys", """{"type":"array","items":{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"number"},"c":{"type":"boolean"},"d":{"type":"string"},"e":{"type":["string","null"]}},"required":["a"]},"maxItems":20}"""),
    ];

    public static int Run()
    {
        Console.WriteLine("\n## Structured outputs: mask cost per token (151,552-token synthetic byte-level vocabulary)");
        var bytes = SyntheticVocabulary(151_552, seed: 3);
        var sw = Stopwatch.StartNew();
        var vocabulary = new GrammarVocabulary(bytes, new ulong[(bytes.Length + 63) / 64]);
        Console.WriteLine($"vocabulary trie: {vocabulary.Trie.NodeCount:N0} nodes, built in {sw.Elapsed.TotalMilliseconds:F0} ms (once per tokenizer)");

        var (decodeMs, sampleMs) = Baselines(bytes.Length);
        Console.WriteLine($"baselines in this run: GLM-4.7-Flash-shaped decode step (2 layers, BF16, batch 1) {decodeMs:F2} ms; unconstrained sampling step (temperature 1, top-p 0.95, 151,552 logits) {sampleMs:F3} ms");
        Console.WriteLine("| schema class | compile (ms) | mask median (ms) | mask p99 (ms) | median / p99 vs decode step | first answer: first mask / slowest mask (ms) |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (var (name, schema) in Classes)
        {
            var compile = new List<double>();
            Grammar grammar = null!;
            for (int i = 0; i < 5; i++)
            {
                sw.Restart();
                grammar = JsonSchemaCompiler.Compile(JsonNode.Parse(schema)!);
                compile.Add(sw.Elapsed.TotalMilliseconds);
            }
            var times = new List<double>();
            double first = 0, coldMax = 0;
            var rng = new Random(9);
            var logits = new float[bytes.Length];
            // Eleven answers walking random allowed tokens (biased to end strings soon) through one masker, as the
            // server keeps one per schema: the first answer fills its caches (cold), the other ten are measured.
            var masker = new TokenMasker(grammar, vocabulary.Trie);
            for (int walk = 0; walk < 11; walk++)
            {
                var constraint = new GrammarConstraint(grammar, masker, vocabulary, [bytes.Length - 1], null, null, false);
                var generated = new List<int>();
                object? state = null;
                for (int step = 0; step < 120; step++)
                {
                    Array.Fill(logits, 0f);
                    sw.Restart();
                    constraint.Apply(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(generated), logits, ref state);
                    double ms = sw.Elapsed.TotalMilliseconds;
                    if (walk == 0) { if (step == 0) first = ms; coldMax = Math.Max(coldMax, ms); }
                    else times.Add(ms);
                    var allowed = Enumerable.Range(0, logits.Length).Where(i => !float.IsNegativeInfinity(logits[i])).ToArray();
                    if (allowed.Length == 0 || allowed.All(i => i == bytes.Length - 1)) break;
                    var closing = allowed.Where(i => i != bytes.Length - 1 && bytes[i]!.AsSpan().IndexOfAny("\"]}"u8) >= 0).ToArray();
                    int pick = closing.Length > 0 && rng.NextDouble() < 0.3 ? closing[rng.Next(closing.Length)] : allowed[rng.Next(allowed.Length)];
                    if (pick == bytes.Length - 1) break;
                    generated.Add(pick);
                }
            }
            times.Sort();
            double median = times[times.Count / 2], p99 = times[(int)(times.Count * 0.99)];
            compile.Sort();
            Console.WriteLine($"| {name} | {compile[2]:F2} | {median:F3} | {p99:F2} | {median / decodeMs * 100:F1} % / {p99 / decodeMs * 100:F1} % | {first:F1} / {coldMax:F1} |");
        }
        return 0;
    }

    /// <summary>The decode step and the sampling step the mask is compared with, measured now.</summary>
    private static (double DecodeMs, double SampleMs) Baselines(int vocab)
    {
        string flash = Path.Combine(Path.GetTempPath(), "glm-bench-flash-2l");
        if (!File.Exists(Path.Combine(flash, "model.safetensors"))) SyntheticCheckpoint.Write(flash, SyntheticCheckpoint.Glm47FlashConfig(2));
        using var model = ModelLoader.Load(flash);
        using var runner = new SequenceRunner(model, 256);
        runner.Feed(Enumerable.Range(0, 16).ToArray());
        int next = 1;
        double decode = Measure.MedianSeconds(() => next = Activations.ArgMax(runner.Feed([next])), repeats: 12, warmup: 3);
        var sampler = new Sampler();
        var rng = new Random(2);
        var logits = Enumerable.Range(0, vocab).Select(_ => (float)rng.NextDouble() * 10).ToArray();
        var seq = new Sequence([1, 2, 3], new SamplingParams { Temperature = 1, TopP = 0.95f, MaxTokens = 1000 }, 7);
        double sample = Measure.MedianSeconds(() => sampler.Sample(seq, logits, []), repeats: 21, warmup: 3);
        return (decode * 1000, sample * 1000);
    }

    /// <summary>
    /// A byte-level vocabulary shaped like GLM's: the 256 bytes, digit groups, JSON punctuation runs, common
    /// words with and without a leading space and capitalised, CJK characters, and random word pieces.
    /// </summary>
    public static byte[]?[] SyntheticVocabulary(int size, int seed)
    {
        var rng = new Random(seed);
        var set = new HashSet<string>(StringComparer.Ordinal);
        var list = new List<byte[]>();
        void Add(byte[] b) { if (list.Count < size && set.Add(Convert.ToBase64String(b))) list.Add(b); }
        void AddText(string s) => Add(Encoding.UTF8.GetBytes(s));
        for (int b = 0; b < 256; b++) Add([(byte)b]);
        for (int n = 0; n < 1000; n++) { AddText(n.ToString()); if (n < 100) AddText(n.ToString("D2")); if (n < 1000) AddText(n.ToString("D3")); }
        string[] punct = ["\"", ",", ":", "{", "}", "[", "]", " ", "\n", "\\", "\"\"", "\",", "\":", "{\"", "\"}", "\"]", "[\"", "},", "],", "}}", "]]", "\": \"", "\", \"", "\":\"", "\",\"", "\n\n", "  ", "    ", "\\n", "\\\"", "null", "true", "false", "},{", "}]", "\": ", ", \""];
        foreach (var p in punct) AddText(p);
        const string letters = "etaoinshrdlcumwfgypbvkjxqz";
        while (list.Count < size * 0.9)
        {
            int len = 1 + (int)Math.Min(11, -Math.Log(1 - rng.NextDouble()) * 3.5);
            var sb = new StringBuilder();
            for (int i = 0; i < len; i++) sb.Append(letters[(int)Math.Min(letters.Length - 1, -Math.Log(1 - rng.NextDouble()) * 7)]);
            string w = sb.ToString();
            switch (rng.Next(4)) { case 0: AddText(w); break; case 1: AddText(" " + w); break; case 2: AddText(" " + char.ToUpperInvariant(w[0]) + w[1..]); break; default: AddText(w + (rng.Next(2) == 0 ? "\"" : "\",")); break; }
        }
        while (list.Count < size)
        {
            if (rng.Next(3) == 0) AddText(char.ConvertFromUtf32(0x4E00 + rng.Next(0x5000)));
            else AddText(char.ConvertFromUtf32(0x4E00 + rng.Next(0x5000)) + char.ConvertFromUtf32(0x4E00 + rng.Next(0x5000)));
        }
        return [.. list];
    }
}
