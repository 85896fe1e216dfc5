using System.Text.Json;
using System.Text.RegularExpressions;

namespace Glm.Text.Tokenization;

/// <summary>Splits text into the pieces BPE runs on, as tokenizers' pre_tokenizer does (Split, ByteLevel, Sequence).</summary>
public abstract class PreTokenizer
{
    /// <summary>Splits each piece further; ByteLevel also maps the pieces' bytes to characters.</summary>
    public abstract List<string> Apply(List<string> pieces);

    public static PreTokenizer? FromJson(JsonElement e)
    {
        if (e.ValueKind == JsonValueKind.Null || e.ValueKind == JsonValueKind.Undefined) return null;
        string type = e.GetProperty("type").GetString() ?? "";
        return type switch
        {
            "Sequence" => new SequencePreTokenizer(e.GetProperty("pretokenizers").EnumerateArray().Select(x => FromJson(x)!).ToArray()),
            "Split" => SplitPreTokenizer.Create(e),
            "ByteLevel" => new ByteLevelPreTokenizer(
                e.TryGetProperty("add_prefix_space", out var aps) && aps.GetBoolean(),
                !e.TryGetProperty("use_regex", out var ur) || ur.GetBoolean()),
            _ => throw new TokenizerLoadException($"pre_tokenizer type '{type}' is not supported (supported: Sequence, Split, ByteLevel)."),
        };
    }

    /// <summary>Pieces for the matches of <paramref name="regex"/> and for the gaps between them (behaviour "Isolated").</summary>
    protected static void SplitIsolated(Regex regex, string text, List<string> into)
    {
        int last = 0;
        for (var m = regex.Match(text); m.Success; m = m.NextMatch())
        {
            if (m.Length == 0) continue;
            if (m.Index > last) into.Add(text[last..m.Index]);
            into.Add(m.Value);
            last = m.Index + m.Length;
        }
        if (last < text.Length) into.Add(text[last..]);
    }
}

public sealed class SequencePreTokenizer(PreTokenizer[] steps) : PreTokenizer
{
    public override List<string> Apply(List<string> pieces)
    {
        foreach (var step in steps) pieces = step.Apply(pieces);
        return pieces;
    }
}

public sealed class SplitPreTokenizer(Regex regex, string behavior) : PreTokenizer
{
    public static SplitPreTokenizer Create(JsonElement e)
    {
        var pattern = e.GetProperty("pattern");
        string regex = pattern.TryGetProperty("Regex", out var r) ? r.GetString()!
            : Regex.Escape(pattern.GetProperty("String").GetString()!);
        string behavior = e.GetProperty("behavior").GetString() ?? "Isolated";
        if (e.TryGetProperty("invert", out var inv) && inv.GetBoolean())
            throw new TokenizerLoadException("Split pre_tokenizer with invert = true is not supported.");
        if (behavior is not ("Isolated" or "Removed" or "MergedWithPrevious" or "MergedWithNext"))
            throw new TokenizerLoadException($"Split behavior '{behavior}' is not supported.");
        return new SplitPreTokenizer(new Regex(regex, RegexOptions.Compiled | RegexOptions.CultureInvariant), behavior);
    }

    public override List<string> Apply(List<string> pieces)
    {
        var result = new List<string>();
        foreach (var piece in pieces)
        {
            if (behavior == "Isolated") { SplitIsolated(regex, piece, result); continue; }
            // Other behaviours: attach or drop the matched delimiters.
            var parts = new List<(string Text, bool Match)>();
            int last = 0;
            for (var m = regex.Match(piece); m.Success; m = m.NextMatch())
            {
                if (m.Length == 0) continue;
                if (m.Index > last) parts.Add((piece[last..m.Index], false));
                parts.Add((m.Value, true));
                last = m.Index + m.Length;
            }
            if (last < piece.Length) parts.Add((piece[last..], false));
            string pending = "";
            foreach (var (text, match) in parts)
            {
                switch (behavior)
                {
                    case "Removed": if (!match) result.Add(text); break;
                    case "MergedWithPrevious":
                        if (match && result.Count > 0 && pending.Length == 0) result[^1] += text; else result.Add(text);
                        break;
                    case "MergedWithNext":
                        if (match) pending += text; else { result.Add(pending + text); pending = ""; }
                        break;
                }
            }
            if (pending.Length > 0) result.Add(pending);
        }
        return result;
    }
}

public sealed class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex) : PreTokenizer
{
    private static readonly Regex Gpt2 = new(ByteLevel.Gpt2Pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);

    public override List<string> Apply(List<string> pieces)
    {
        var split = new List<string>();
        foreach (var p in pieces)
        {
            string piece = addPrefixSpace && !p.StartsWith(' ') ? " " + p : p;
            if (useRegex) SplitIsolated(Gpt2, piece, split); else split.Add(piece);
        }
        for (int i = 0; i < split.Count; i++) split[i] = ByteLevel.Encode(System.Text.Encoding.UTF8.GetBytes(split[i]));
        return split;
    }
}
