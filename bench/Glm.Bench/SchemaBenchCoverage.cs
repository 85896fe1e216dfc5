using System.Text.Json;
using System.Text.Json.Nodes;
using Glm.Engine;
using Glm.Engine.Constraints;
using Glm.Kernels.Attention;
using Glm.Models.Architectures;
using Glm.Text.Grammar;
using Glm.Text.Tokenization;
using Json.Schema;

namespace Glm.Bench;

/// <summary>
/// JSON Schema Bench coverage: for each schema of a {id, category, schema} list (../shared/structured's sample,
/// given by path), whether it compiles, and whether the demo model's greedy answer under it validates
/// (JsonSchema.Net, format assertions on; draft-04 schemas checked as their draft-07 equivalent). Per category:
/// compiled / total and valid / total (the paper's empirical coverage), and the commonest refusal reasons.
/// usage: Glm.Bench schemabench --schemas PATH [--max-tokens N]; GLM_BENCH_SHOW=1 prints each answer that does not
/// validate with the validator's errors, GLM_BENCH_PROBE=1 times random mask walks per schema instead of answering.
/// </summary>
public static class SchemaBenchCoverage
{
    public static int Run(string path, int maxTokens, string root)
    {
        var entries = JsonNode.Parse(File.ReadAllText(path))!.AsArray();
        string demo = Path.Combine(root, "models", "glm-demo");
        using var model = ModelLoader.Load(demo);
        var tokenizer = BpeTokenizer.Load(Path.Combine(demo, "tokenizer.json"));
        var vocabulary = GrammarVocabulary.For(tokenizer);
        int? open = tokenizer.TokenToId("<think>"), close = tokenizer.TokenToId("</think>");
        var runner = new ModelRunner(model, KvCacheDType.Bf16, 8192, 16, ownsModel: false);
        using var engine = new LlmEngine(runner, new EngineOptions { MaxNumSeqs = 64, MaxNumBatchedTokens = 4096, MaxModelLen = 2048, EnablePrefixCaching = true, MaxWaiting = 4096 });
        var prompt = new List<int> { 2, 4, 7 };
        prompt.AddRange(tokenizer.Encode("\nGive an example JSON value for this schema."));
        prompt.Add(8);

        var rows = new List<(string Category, bool Compiled, bool? Valid, string? Reason)>();
        var pending = new List<(string Category, string Schema, SamplingParams Sampling)>();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        foreach (var e in entries)
        {
            string category = e!["category"]!.GetValue<string>();
            var schema = e["schema"]!;
            string text = schema.ToJsonString();
            Grammar grammar;
            try
            {
                var b = new GrammarBuilder();
                var value = new JsonSchemaCompiler(b, schema).Value(schema);
                grammar = b.Build(Expr.Seq(Expr.Optional(Expr.Char('\n')), value));
            }
            catch (Exception ex) when (ex is SchemaException or GrammarException)
            {
                rows.Add((category, false, null, Reason(ex.Message)));
                continue;
            }
            var masker = new TokenMasker(grammar, vocabulary.Trie);
            var constraint = new GrammarConstraint(grammar, masker, vocabulary, model.Config.EosTokenIds, open, close, false);
            if (Environment.GetEnvironmentVariable("GLM_BENCH_PROBE") is not null) { Probe(e["id"]?.ToString() ?? "?", grammar, masker, vocabulary); continue; }
            pending.Add((category, text, new SamplingParams { Temperature = 0, MaxTokens = maxTokens, Constraint = constraint }));
        }
        double compileSeconds = sw.Elapsed.TotalSeconds;
        // In waves of the engine's batch: every answer runs concurrently with 63 others.
        var answers = new List<(string Category, string Schema, Sequence Seq, List<int> Ids)>();
        foreach (var wave in pending.Chunk(64))
        {
            var seqs = wave.Select(p => (p.Category, p.Schema, Seq: engine.Submit(prompt, p.Sampling))).ToList();
            foreach (var (category, schema, seq) in seqs)
                answers.Add((category, schema, seq, seq.Output.Reader.ReadAllAsync().ToBlockingEnumerable().Select(o => o.Token).ToList()));
        }
        foreach (var (category, schemaText, seq, ids) in answers)
        {
            int think = close is int c ? ids.LastIndexOf(c) : -1;
            var answer = ids.Skip(think + 1).Where(t => !model.Config.EosTokenIds.Contains(t)).ToArray();
            string text = tokenizer.Decode(answer).Trim();
            bool finished = seq.FinishReason == FinishReason.Stop;
            rows.Add((category, true, finished && Validates(schemaText, text), finished ? null : "ran out of tokens"));
        }
        Console.WriteLine($"\n## JSON Schema Bench sample ({entries.Count} schemas): compile rate and demo-model answers that validate (greedy, {maxTokens} tokens, thinking allowed)");
        Console.WriteLine($"compiling all took {compileSeconds:F1} s; generating {sw.Elapsed.TotalSeconds - compileSeconds:F0} s");
        Console.WriteLine("| category | schemas | compile | answers valid (of all) | answers valid (of compiled) |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: |");
        foreach (var g in rows.GroupBy(r => r.Category).OrderBy(g => g.Key))
        {
            int n = g.Count(), compiled = g.Count(r => r.Compiled), valid = g.Count(r => r.Valid == true);
            Console.WriteLine($"| {g.Key} | {n} | {compiled / (double)n:F2} | {valid / (double)n:F2} | {(compiled == 0 ? 0 : valid / (double)compiled):F2} |");
        }
        int all = rows.Count;
        Console.WriteLine($"| **all** | {all} | {rows.Count(r => r.Compiled) / (double)all:F2} | {rows.Count(r => r.Valid == true) / (double)all:F2} | {rows.Count(r => r.Valid == true) / (double)Math.Max(1, rows.Count(r => r.Compiled)):F2} |");
        Console.WriteLine("\nrefusals and failures, commonest first:");
        foreach (var g in rows.Where(r => r.Valid != true).GroupBy(r => r.Reason ?? "answer does not validate").OrderByDescending(g => g.Count()).Take(14))
            Console.WriteLine($"  {g.Count(),4}  {g.Key}");
        return 0;
    }

    /// <summary>A random walk of 150 masks through one grammar, timed: finds grammars whose masks are slow.</summary>
    private static void Probe(string id, Grammar grammar, TokenMasker masker, GrammarVocabulary vocabulary)
    {
        var rng = new Random(1);
        var mask = new ulong[masker.Words];
        var state = grammar.Initial;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        double worst = 0;
        int steps = 0;
        for (; steps < 150; steps++)
        {
            var t = sw.Elapsed.TotalMilliseconds;
            masker.Allowed(state, mask);
            worst = Math.Max(worst, sw.Elapsed.TotalMilliseconds - t);
            var allowed = Enumerable.Range(0, vocabulary.Bytes.Length).Where(i => (mask[i >> 6] >> i & 1) != 0 && (vocabulary.Added[i >> 6] >> i & 1) == 0).ToArray();
            if (allowed.Length == 0) break;
            state = grammar.Advance(state, vocabulary.Bytes[allowed[rng.Next(allowed.Length)]]!)!;
            if (sw.Elapsed.TotalSeconds > 20) break;
        }
        Console.WriteLine($"PROBE {id}: {steps} steps, {sw.Elapsed.TotalMilliseconds:F0} ms, worst {worst:F1} ms, {state.Configs.Length} configs, {grammar.NodeCount} nodes");
    }

    private static string Reason(string message)
    {
        int at = message.IndexOf(" at /", StringComparison.Ordinal);
        string m = at > 0 ? message[..at] : message;
        return m.Length > 110 ? m[..110] : m;
    }

    private static bool Validates(string schemaText, string answer)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(answer); }
        catch (JsonException) { return false; }
        using (doc)
        {
            try
            {
                var result = Validator(schemaText).Evaluate(doc.RootElement, new EvaluationOptions { RequireFormatValidation = true, OutputFormat = OutputFormat.List });
                if (!result.IsValid && Environment.GetEnvironmentVariable("GLM_BENCH_SHOW") is not null)
                    Console.WriteLine($"INVALID {answer[..Math.Min(300, answer.Length)]}\n   " + string.Join("; ", (result.Details ?? []).Where(d => d.Errors is not null).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}")).Take(4)));
                return result.IsValid;
            }
            catch (Exception e)
            {
                if (Environment.GetEnvironmentVariable("GLM_BENCH_SHOW") is not null) Console.WriteLine($"VALIDATOR {e.Message[..Math.Min(200, e.Message.Length)]}");
                return false;
            }
        }
    }

    /// <summary>JsonSchema.Net knows drafts 6 and later: a draft-04 schema is checked as its draft-07 equivalent.</summary>
    private static JsonSchema Validator(string schemaText)
    {
        var node = JsonNode.Parse(schemaText)!;
        if (schemaText.Contains("draft-04") || schemaText.Contains("draft-03"))
        {
            Draft4Bounds(node);
            schemaText = node.ToJsonString();
        }
        // Without $schema, 2020-12 (which lets unknown keywords be), not the library's strict default dialect.
        return JsonSchema.FromText(schemaText, new BuildOptions { SchemaRegistry = new SchemaRegistry(), Dialect = Dialect.Draft202012 });
    }

    private static void Draft4Bounds(JsonNode? n)
    {
        if (n is JsonObject o)
        {
            if (o["$schema"] is JsonValue v && v.TryGetValue(out string? uri) && (uri.Contains("draft-04") || uri.Contains("draft-03")))
                o["$schema"] = "http://json-schema.org/draft-07/schema#";
            foreach (var (flag, bound) in new[] { ("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum") })
                if (o[flag] is JsonValue f && f.GetValueKind() is JsonValueKind.True or JsonValueKind.False)
                {
                    if (f.GetValueKind() == JsonValueKind.True && o[bound] is { } b) { o[flag] = b.DeepClone(); o.Remove(bound); }
                    else o.Remove(flag);
                }
            foreach (var (_, child) in o.ToList()) Draft4Bounds(child);
        }
        else if (n is JsonArray a) foreach (var child in a) Draft4Bounds(child);
    }
}
