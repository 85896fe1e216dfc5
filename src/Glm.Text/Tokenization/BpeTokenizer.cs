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

    /// <summary>Token ids for <paramref name="text"/>; stops with OperationCanceledException once <paramref name="ct"/> fires.</summary>
    public int[] Encode(string text, CancellationToken ct = default) => Encode(text, ct, null);

    private int[] Encode(string text, CancellationToken ct, List<(int Start, int End)>? literal)
    {
        var ids = new List<int>();
        foreach (var (segment, addedId) in SplitOnAddedTokens(text, literal))
        {
            ct.ThrowIfCancellationRequested();
            if (addedId is int id) { ids.Add(id); continue; }
            foreach (var piece in _preTokenizer.Apply([segment]))
            {
                ct.ThrowIfCancellationRequested();
                ids.AddRange(EncodeWord(piece));
            }
        }
        return ids.ToArray();
    }

    /// <summary>
    /// Marks the added-token strings inside <paramref name="content"/> (text a user or a tool wrote) as literal text,
    /// so that <see cref="EncodeWithLiteralText"/> tokenizes them as the characters they are: a user who types
    /// "&lt;|assistant|&gt;" or "&lt;tool_call&gt;" gets those characters, not the control tokens, and cannot forge a
    /// turn or a tool result. Text without added-token strings comes back unchanged (the same instance).
    /// </summary>
    public string MarkAddedTokensAsText(string content)
    {
        System.Text.StringBuilder? sb = null;
        int copied = 0;
        for (int i = 0; i < content.Length; i++)
        {
            if (!_addedByFirstChar.TryGetValue(content[i], out var candidates)) continue;
            foreach (var c in candidates)
            {
                if (string.CompareOrdinal(content, i, c.Content, 0, c.Content.Length) != 0) continue;
                sb ??= new System.Text.StringBuilder(content.Length + 16);
                sb.Append(content, copied, i - copied).Append(LiteralText.Begin).Append(c.Content).Append(LiteralText.End);
                i += c.Content.Length - 1;
                copied = i + 1;
                break;
            }
        }
        return sb is null ? content : sb.Append(content, copied, content.Length - copied).ToString();
    }

    /// <summary>
    /// Like <see cref="Encode"/> for a rendered chat prompt whose user and tool contents went through
    /// <see cref="MarkAddedTokensAsText"/>: the markers are removed, and no added token is matched inside what
    /// they enclose. Everything else (the template's own tokens) is matched as usual, and pre-tokenization runs
    /// over the text as if the markers were never there.
    /// </summary>
    public int[] EncodeWithLiteralText(string text, CancellationToken ct = default)
    {
        if (text.IndexOf(LiteralText.Begin) < 0) return Encode(text, ct);
        var plain = new System.Text.StringBuilder(text.Length);
        var literal = new List<(int Start, int End)>();
        int start = -1;
        foreach (char c in text)
        {
            if (c == LiteralText.Begin) start = plain.Length;
            else if (c == LiteralText.End)
            {
                if (start >= 0 && plain.Length > start) literal.Add((start, plain.Length));
                start = -1;
            }
            else plain.Append(c);
        }
        return Encode(plain.ToString(), ct, literal);
    }

    /// <summary>Text segments between added tokens, and the added tokens themselves (with their lstrip/rstrip whitespace).</summary>
    /// <param name="literal">Sorted character ranges where no added token may start (see <see cref="EncodeWithLiteralText"/>).</param>
    private List<(string Text, int? AddedId)> SplitOnAddedTokens(string text, List<(int Start, int End)>? literal = null)
    {
        var parts = new List<(string, int?)>();
        int segmentStart = 0, i = 0, nextLiteral = 0;
        while (i < text.Length)
        {
            AddedToken? match = null;
            while (literal is not null && nextLiteral < literal.Count && literal[nextLiteral].End <= i) nextLiteral++;
            bool inLiteral = literal is not null && nextLiteral < literal.Count && literal[nextLiteral].Start <= i;
            if (!inLiteral && _addedByFirstChar.TryGetValue(text[i], out var candidates))
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

    /// <summary>Words longer than this are not cached: they are rare, and each would pin its own large entry.</summary>
    private const int MaxCachedWordLength = 256;

    private int[] EncodeWord(string word)
    {
        bool cacheable = word.Length <= MaxCachedWordLength;
        if (cacheable) lock (_cacheLock) if (_cache.TryGetValue(word, out var cached)) return cached;
        int[] ids = _ignoreMerges && _vocab.TryGetValue(word, out int whole) ? [whole] : MergeWord(word);
        if (cacheable) lock (_cacheLock) if (_cache.Count < 100_000) _cache[word] = ids;
        return ids;
    }

    /// <summary>
    /// Applies merges lowest rank first, leftmost first among equal ranks, as HF tokenizers' Word::merge_all does:
    /// a min-heap of (rank, position) over adjacent pairs, with entries that a merge made stale skipped when they
    /// surface. O(n log n) in the word's length, where rescanning every pair per merge was O(n²).
    /// </summary>
    private int[] MergeWord(string word)
    {
        int n = word.Length;
        if (n == 0) return [];
        var symbols = new string[n];
        var next = new int[n];
        var prev = new int[n];
        var version = new int[n]; // bumped whenever the symbol starting at a position changes or disappears
        for (int k = 0; k < n; k++)
        {
            symbols[k] = word[k].ToString();
            prev[k] = k - 1;
            next[k] = k + 1 < n ? k + 1 : -1;
        }
        var heap = new PriorityQueue<(int Left, int LeftVersion, int Right, int RightVersion), long>();
        void Offer(int left)
        {
            int right = next[left];
            if (right >= 0 && _mergeRanks.TryGetValue((symbols[left], symbols[right]), out int rank))
                heap.Enqueue((left, version[left], right, version[right]), ((long)rank << 32) | (uint)left);
        }
        for (int k = 0; k + 1 < n; k++) Offer(k);
        while (heap.TryDequeue(out var pair, out _))
        {
            var (left, leftVersion, right, rightVersion) = pair;
            if (version[left] != leftVersion || version[right] != rightVersion || next[left] != right) continue; // stale
            symbols[left] += symbols[right];
            symbols[right] = null!;
            version[left]++;
            version[right]++;
            next[left] = next[right];
            if (next[left] >= 0) prev[next[left]] = left;
            if (prev[left] >= 0) Offer(prev[left]);
            Offer(left);
        }
        int count = 0;
        for (int k = 0; k >= 0; k = next[k]) count++;
        var ids = new int[count];
        int at = 0;
        for (int k = 0; k >= 0; k = next[k])
            ids[at++] = _vocab.TryGetValue(symbols[k], out int id) ? id
                : throw new InvalidOperationException($"BPE symbol '{symbols[k]}' is not in the vocabulary");
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
