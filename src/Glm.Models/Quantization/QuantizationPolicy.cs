using System.Text.Json;
using System.Text.RegularExpressions;
using Glm.Kernels.Cpu;

namespace Glm.Models.Quantization;

/// <summary>A storage format a policy can choose for a linear layer. "keep" leaves the checkpoint's own format.</summary>
public sealed record WeightFormat(string Kind, int GroupSize = 128, bool Symmetric = true, Fp8Scaling Scaling = Fp8Scaling.PerChannel)
{
    public static readonly WeightFormat Keep = new("keep");
    public static readonly WeightFormat Fp8 = new("fp8");
    public static readonly WeightFormat Int4G128 = new("int4", 128);
    public static readonly WeightFormat Int8 = new("int8");

    public override string ToString() => Kind switch
    {
        "int4" => $"int4 g{GroupSize}{(Symmetric ? "" : " asym")}",
        "fp8" => $"fp8 ({Scaling})",
        "int8" => "int8 (per channel)",
        _ => "as stored",
    };
}

/// <summary>One rule: modules whose name matches <see cref="Pattern"/> are stored as <see cref="Format"/>.</summary>
public sealed record QuantRule(string Pattern, WeightFormat Format)
{
    private readonly Regex _regex = new(Pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
    public bool Matches(string module) => _regex.IsMatch(module);
}

/// <summary>
/// Which format each linear layer gets, as data: an ordered rule list, first match wins, unmatched modules keep
/// their checkpoint format. Presets follow --quantization; a JSON file can replace them.
/// </summary>
public sealed class QuantizationPolicy(string name, IReadOnlyList<QuantRule> rules)
{
    public string Name { get; } = name;
    public IReadOnlyList<QuantRule> Rules { get; } = rules;

    /// <summary>
    /// Under every preset the LM head (and the MTP layer's own copy of it, shared_head.head) is Int8 with one scale
    /// per output channel: on the demo model that head alone costs 6e-6 of mean KL and changes 3 of 1,274 greedy
    /// tokens (FP8 per channel: 5e-5 and 9), for half the bytes every decoded token reads through it
    /// (bench/RESULTS.md). Embeddings stay BF16: Int8 would save memory only (a token reads one row), and under
    /// the int4 preset it raised the demo's mean KL from 3.9e-4 to 5.4e-4 (one sensitive position, moved to a KL
    /// of 0.35). A tied head is the embedding table, so it stays BF16 with it. Router gates and GLM-5's
    /// indexer head weights stay BF16 (tiny, and they choose experts and tokens), as the official FP8 releases
    /// leave them.
    /// </summary>
    private static readonly QuantRule[] Sensitive =
    [
        new(@"^model\.embed_tokens$", WeightFormat.Keep),
        new(@"^lm_head$", WeightFormat.Int8),
        new(@"\.shared_head\.head$", WeightFormat.Int8),
        new(@"\.mlp\.gate$", WeightFormat.Keep),
        new(@"\.self_attn\.indexer\.weights_proj$", WeightFormat.Keep),
    ];

    public static QuantizationPolicy Preset(string name) => name switch
    {
        "none" => new("none", []),
        "fp8" => new("fp8", [.. Sensitive, new(".*", WeightFormat.Fp8)]),
        "int4" => new("int4", [.. Sensitive, new(".*", WeightFormat.Int4G128)]),
        // The product's default for MoE models: routed experts (the bulk of the parameters) in Int4, the
        // numerically sensitive attention, shared experts and dense MLPs in FP8.
        "fp8-int4" => new("fp8-int4", [.. Sensitive, new(@"\.mlp\.experts\.\d+\.", WeightFormat.Int4G128), new(".*", WeightFormat.Fp8)]),
        _ => throw new ArgumentException($"unknown quantization '{name}' (none, fp8, int4, fp8-int4, or a JSON policy file)"),
    };

    /// <summary>
    /// A preset name or the path of a JSON policy: {"name": …, "rules": [{"pattern", "format", "group_size",
    /// "symmetric", "scaling"}]}, format one of keep (or bf16), fp8, int4, int8 (per channel).
    /// </summary>
    public static QuantizationPolicy Resolve(string nameOrPath) =>
        nameOrPath.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? FromJsonFile(nameOrPath) : Preset(nameOrPath);

    public static QuantizationPolicy FromJsonFile(string path)
    {
        if (!File.Exists(path)) throw new ModelLoadException($"Quantization policy file '{path}' does not exist.");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            var rules = new List<QuantRule>();
            foreach (var r in root.GetProperty("rules").EnumerateArray())
            {
                string kind = r.GetProperty("format").GetString() ?? "keep";
                if (kind is not ("keep" or "bf16" or "fp8" or "int4" or "int8")) throw new ModelLoadException($"{path}: unknown format '{kind}' (keep, bf16, fp8, int4, int8).");
                if (kind == "int8" && (r.TryGetProperty("group_size", out _) || r.TryGetProperty("symmetric", out _) || r.TryGetProperty("scaling", out _)))
                    throw new ModelLoadException($"{path}: int8 is symmetric with one scale per output channel; it takes no group_size, symmetric or scaling.");
                var format = new WeightFormat(kind == "bf16" ? "keep" : kind,
                    r.TryGetProperty("group_size", out var g) ? g.GetInt32() : 128,
                    !r.TryGetProperty("symmetric", out var s) || s.GetBoolean(),
                    r.TryGetProperty("scaling", out var sc) ? sc.GetString() switch
                    {
                        "tensor" => Fp8Scaling.PerTensor,
                        "block" => Fp8Scaling.Block,
                        _ => Fp8Scaling.PerChannel,
                    } : Fp8Scaling.PerChannel);
                if (format.Kind == "int4" && (format.GroupSize % 32 != 0 || format.GroupSize <= 0))
                    throw new ModelLoadException($"{path}: int4 group_size must be a positive multiple of 32, got {format.GroupSize}.");
                rules.Add(new QuantRule(r.GetProperty("pattern").GetString() ?? ".*", format));
            }
            return new QuantizationPolicy(root.TryGetProperty("name", out var n) ? n.GetString() ?? path : path, rules);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or ArgumentException)
        {
            throw new ModelLoadException($"Quantization policy '{path}' is invalid: {e.Message}", e);
        }
    }

    public WeightFormat For(string module)
    {
        foreach (var rule in Rules) if (rule.Matches(module)) return rule.Format;
        return WeightFormat.Keep;
    }

    public string Describe() => Name + ": " + (Rules.Count == 0 ? "weights as stored" : string.Join("; ", Rules.Select(r => $"/{r.Pattern}/ → {r.Format}")));
}
