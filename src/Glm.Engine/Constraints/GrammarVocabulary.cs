using System.Runtime.CompilerServices;
using Glm.Text.Grammar;
using Glm.Text.Tokenization;

namespace Glm.Engine.Constraints;

/// <summary>
/// One tokenizer's vocabulary as grammar text: each token's bytes (null for special tokens; added tokens such as
/// &lt;tool_call&gt; by their text, marked so that JSON answers can keep them out), the trie over them, and a
/// bounded cache of compiled grammars with their maskers, so a schema sent again is neither compiled nor masked
/// from scratch.
/// </summary>
public sealed class GrammarVocabulary
{
    public const int CacheSize = 64;

    private static readonly ConditionalWeakTable<BpeTokenizer, GrammarVocabulary> ByTokenizer = new();

    public byte[]?[] Bytes { get; }
    /// <summary>The added (non-special) tokens, one bit per id: GLM's markup, never part of a JSON answer.</summary>
    public ulong[] Added { get; }
    public TokenTrie Trie { get; }

    private readonly LinkedList<(string Key, (Grammar Grammar, TokenMasker Masker) Value)> _lru = new();
    private readonly Dictionary<string, LinkedListNode<(string, (Grammar, TokenMasker))>> _index = [];

    /// <param name="bytes">each token's bytes, null for tokens never part of constrained text</param>
    /// <param name="added">the added tokens (GLM's markup), one bit per id</param>
    public GrammarVocabulary(byte[]?[] bytes, ulong[] added)
    {
        Bytes = bytes;
        Added = added;
        Trie = new TokenTrie(bytes.Length, id => Bytes[id]);
    }

    private GrammarVocabulary(BpeTokenizer tokenizer) : this(TokenBytes(tokenizer, out var added), added) { }

    private static byte[]?[] TokenBytes(BpeTokenizer tokenizer, out ulong[] addedBits)
    {
        var bytes = new byte[]?[tokenizer.VocabSize];
        var added = new ulong[(tokenizer.VocabSize + 63) / 64];
        var buffer = new List<byte>();
        for (int id = 0; id < tokenizer.VocabSize; id++)
        {
            if (tokenizer.IsSpecial(id)) continue;
            if (tokenizer.IsAdded(id))
            {
                bytes[id] = System.Text.Encoding.UTF8.GetBytes(tokenizer.IdToToken(id)!);
                added[id >> 6] |= 1UL << id;
                continue;
            }
            buffer.Clear();
            tokenizer.TokenBytes(id, buffer);
            bytes[id] = [.. buffer];
        }
        addedBits = added;
        return bytes;
    }

    public static GrammarVocabulary For(BpeTokenizer tokenizer) => ByTokenizer.GetValue(tokenizer, t => new GrammarVocabulary(t));

    /// <summary>The compiled grammar for <paramref name="key"/>, compiled by <paramref name="compile"/> on first use.</summary>
    public (Grammar Grammar, TokenMasker Masker) Get(string key, Func<Grammar> compile)
    {
        lock (_lru)
        {
            if (_index.TryGetValue(key, out var node))
            {
                _lru.Remove(node);
                _lru.AddFirst(node);
                return node.Value.Item2;
            }
        }
        var grammar = compile();
        var value = (grammar, new TokenMasker(grammar, Trie));
        lock (_lru)
        {
            if (_index.TryGetValue(key, out var raced)) return raced.Value.Item2;
            _index[key] = _lru.AddFirst((key, value));
            while (_lru.Count > CacheSize) { _index.Remove(_lru.Last!.Value.Key); _lru.RemoveLast(); }
        }
        return value;
    }
}
