using System.Text;
using System.Text.Json;

namespace Glm.Text.Tokenization;

/// <summary>
/// Byte-level BPE from a Hugging Face tokenizer.json, giving the ids HF tokenizers gives: added tokens are matched
/// on the raw text first (longest at the leftmost position), the rest is pre-tokenized, byte-mapped and merged by rank.
/// </summary>
public sealed class BpeTokenizer
{
    private readonly Dictionary<string, int> _vocab;
    private readonly string[] _idToToken;
    private readonly Dictionary<(string, string), int> _mergeRanks;
    private readonly PreTokenizer _preTokenizer;
    private readonly AddedToken[] _added;
    private readonly Dictionary<int, AddedToken> _addedById;
    private readonly Dictionary<char, AddedToken[]> _addedByFirstChar;
    private readonly bool _ignoreMerges;
    private readonly Dictionary<string, int[]> _cache = new();
    private readonly Lock _cacheLock = new();

    private BpeTokenizer(Dictionary<string, int> vocab, Dictionary<(string, string), int> mergeRanks, PreTokenizer pre, AddedToken[] added, bool ignoreMerges)
    {
        _vocab = vocab;
        _mergeRanks = mergeRanks;
        _preTokenizer = pre;
        _added = added;
        _ignoreMerges = ignoreMerges;
        _addedById = added.ToDictionary(a => a.Id);
        int size = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max() + 1, added.Length == 0 ? 0 : added.Max(a => a.Id) + 1);
        _idToToken = new string[size];
        foreach (var (token, id) in vocab) _idToToken[id] = token;
        foreach (var a in added) _idToToken[a.Id] = a.Content;
        _addedByFirstChar = added.Where(a => a.Content.Length > 0).GroupBy(a => a.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(a => a.Content.Length).ToArray());
    }

    public int VocabSize => _idToToken.Length;
    public IReadOnlyList<AddedToken> AddedTokens => _added;

    public static BpeTokenizer Load(string path)
    {
        if (!File.Exists(path)) throw new TokenizerLoadException($"No tokenizer.json at '{path}'.");
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        var model = root.GetProperty("model");
        string type = model.TryGetProperty("type", out var t) ? t.GetString() ?? "" : "BPE";
        if (type != "BPE") throw new TokenizerLoadException($"tokenizer model type '{type}' is not supported (only byte-level BPE).");
        if (root.TryGetProperty("normalizer", out var norm) && norm.ValueKind != JsonValueKind.Null)
            throw new TokenizerLoadException($"normalizer '{norm.GetProperty("type").GetString()}' is not supported (byte-level BPE tokenizers have none).");
        if (root.TryGetProperty("decoder", out var dec) && dec.ValueKind != JsonValueKind.Null && dec.GetProperty("type").GetString() != "ByteLevel")
            throw new TokenizerLoadException($"decoder '{dec.GetProperty("type").GetString()}' is not supported (only ByteLevel).");
        var pre = PreTokenizer.FromJson(root.TryGetProperty("pre_tokenizer", out var p) ? p : default)
            ?? throw new TokenizerLoadException("tokenizer.json has no pre_tokenizer; only byte-level BPE is supported.");
        if (!ContainsByteLevel(root.GetProperty("pre_tokenizer")))
            throw new TokenizerLoadException("tokenizer.json's pre_tokenizer has no ByteLevel step; only byte-level BPE is supported.");

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in model.GetProperty("vocab").EnumerateObject()) vocab[entry.Name] = entry.Value.GetInt32();
        var ranks = new Dictionary<(string, string), int>();
        int rank = 0;
        foreach (var m in model.GetProperty("merges").EnumerateArray())
        {
            (string a, string b) pair;
            if (m.ValueKind == JsonValueKind.Array) pair = (m[0].GetString()!, m[1].GetString()!);
            else
            {
                var s = m.GetString()!;
                int space = s.IndexOf(' ', 1);
                pair = (s[..space], s[(space + 1)..]);
            }
            ranks.TryAdd(pair, rank++);
        }
        var added = root.TryGetProperty("added_tokens", out var at)
            ? at.EnumerateArray().Select(a => new AddedToken(
                a.GetProperty("id").GetInt32(), a.GetProperty("content").GetString()!,
                a.TryGetProperty("special", out var sp) && sp.GetBoolean(),
                a.TryGetProperty("lstrip", out var ls) && ls.GetBoolean(),
                a.TryGetProperty("rstrip", out var rs) && rs.GetBoolean(),
                a.TryGetProperty("single_word", out var sw) && sw.GetBoolean(),
                a.TryGetProperty("normalized", out var nz) && nz.GetBoolean())).ToArray()
            : [];
        bool ignoreMerges = model.TryGetProperty("ignore_merges", out var im) && im.ValueKind == JsonValueKind.True;
        return new BpeTokenizer(vocab, ranks, pre, added, ignoreMerges);
    }

    private static bool ContainsByteLevel(JsonElement e) =>
        e.GetProperty("type").GetString() == "ByteLevel" ||
        (e.TryGetProperty("pretokenizers", out var list) && list.EnumerateArray().Any(ContainsByteLevel));

    public int? TokenToId(string token) =>
        _vocab.TryGetValue(token, out int id) ? id : _added.FirstOrDefault(a => a.Content == token)?.Id;

    public string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    public bool IsSpecial(int id) => _addedById.TryGetValue(id, out var a) && a.Special;
    public bool IsAdded(int id) => _addedById.ContainsKey(id);

    public int[] Encode(string text)
    {
        var ids = new List<int>();
        foreach (var (segment, addedId) in SplitOnAddedTokens(text))
        {
            if (addedId is int id) { ids.Add(id); continue; }
            foreach (var piece in _preTokenizer.Apply([segment])) ids.AddRange(EncodeWord(piece));
        }
        return ids.ToArray();
    }

    /// <summary>Text segments between added tokens, and the added tokens themselves (with their lstrip/rstrip whitespace).</summary>
    private List<(string Text, int? AddedId)> SplitOnAddedTokens(string text)
    {
        var parts = new List<(string, int?)>();
        int segmentStart = 0, i = 0;
        while (i < text.Length)
        {
            AddedToken? match = null;
            if (_addedByFirstChar.TryGetValue(text[i], out var candidates))
                foreach (var c in candidates)
                    if (string.CompareOrdinal(text, i, c.Content, 0, c.Content.Length) == 0 && (!c.SingleWord || IsWordBoundary(text, i, i + c.Content.Length)))
                    {
                        match = c;
                        break;
                    }
            if (match is null) { i++; continue; }
            int start = i, end = i + match.Content.Length;
            if (match.LStrip) while (start > segmentStart && char.IsWhiteSpace(text[start - 1])) start--;
            if (match.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
            if (start > segmentStart) parts.Add((text[segmentStart..start], null));
            parts.Add((match.Content, match.Id));
            segmentStart = i = end;
        }
        if (segmentStart < text.Length) parts.Add((text[segmentStart..], null));
        return parts;
    }

    private static bool IsWordBoundary(string text, int start, int end) =>
        (start == 0 || !IsWordChar(text[start - 1])) && (end >= text.Length || !IsWordChar(text[end]));

    private static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_';

    private int[] EncodeWord(string word)
    {
        lock (_cacheLock) if (_cache.TryGetValue(word, out var cached)) return cached;
        int[] ids;
        if (_ignoreMerges && _vocab.TryGetValue(word, out int whole)) ids = [whole];
        else
        {
            var symbols = new List<string>(word.Length);
            foreach (char c in word) symbols.Add(c.ToString());
            while (symbols.Count > 1)
            {
                int bestRank = int.MaxValue, bestAt = -1;
                for (int k = 0; k < symbols.Count - 1; k++)
                    if (_mergeRanks.TryGetValue((symbols[k], symbols[k + 1]), out int r) && r < bestRank) { bestRank = r; bestAt = k; }
                if (bestAt < 0) break;
                symbols[bestAt] += symbols[bestAt + 1];
                symbols.RemoveAt(bestAt + 1);
            }
            ids = new int[symbols.Count];
            for (int k = 0; k < symbols.Count; k++)
                ids[k] = _vocab.TryGetValue(symbols[k], out int id) ? id
                    : throw new InvalidOperationException($"BPE symbol '{symbols[k]}' is not in the vocabulary");
        }
        lock (_cacheLock) if (_cache.Count < 100_000) _cache[word] = ids;
        return ids;
    }

    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var sb = new StringBuilder();
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            if (_addedById.TryGetValue(id, out var added))
            {
                if (skipSpecialTokens && added.Special) continue;
                FlushBytes(bytes, sb);
                sb.Append(added.Content);
                continue;
            }
            // Like HF tokenizers, ids without a token (a model's padded vocabulary) decode to nothing.
            if (IdToToken(id) is { } token) ByteLevel.Decode(token, bytes);
        }
        FlushBytes(bytes, sb);
        return sb.ToString();
    }

    /// <summary>The bytes a regular token stands for; empty for added tokens and for ids without a token.</summary>
    public void TokenBytes(int id, List<byte> into)
    {
        if (_addedById.ContainsKey(id) || IdToToken(id) is not { } token) return;
        ByteLevel.Decode(token, into);
    }

    private static void FlushBytes(List<byte> bytes, StringBuilder sb)
    {
        if (bytes.Count == 0) return;
        sb.Append(Encoding.UTF8.GetString(bytes.ToArray()));
        bytes.Clear();
    }
}
