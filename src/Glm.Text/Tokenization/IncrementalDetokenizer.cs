using System.Text;

namespace Glm.Text.Tokenization;

/// <summary>
/// Turns a stream of token ids into text deltas. Bytes of an unfinished UTF-8 sequence are held back until the
/// next token completes it (or proves it invalid), so no delta carries a replacement character the full decode
/// would not have, and the deltas concatenate to exactly <see cref="BpeTokenizer.Decode"/> of all ids.
/// </summary>
public sealed class IncrementalDetokenizer(BpeTokenizer tokenizer, bool skipSpecialTokens)
{
    private readonly Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
    private readonly List<byte> _bytes = [];
    private char[] _chars = new char[64];

    /// <summary>Text made stable by this token (possibly empty).</summary>
    public string Push(int id)
    {
        if (tokenizer.IsAdded(id))
        {
            string pending = Drain(flush: true);
            if (skipSpecialTokens && tokenizer.IsSpecial(id)) return pending;
            return pending + tokenizer.IdToToken(id);
        }
        _bytes.Clear();
        tokenizer.TokenBytes(id, _bytes);
        return Drain(flush: false);
    }

    /// <summary>Whatever is still held back (an unfinished UTF-8 sequence at the end), as the full decode renders it.</summary>
    public string Finish()
    {
        _bytes.Clear();
        return Drain(flush: true);
    }

    private string Drain(bool flush)
    {
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_bytes);
        int needed = _utf8.GetCharCount(span, flush);
        if (needed > _chars.Length) _chars = new char[Math.Max(needed, _chars.Length * 2)];
        int n = _utf8.GetChars(span, _chars, flush);
        _bytes.Clear();
        return n == 0 ? "" : new string(_chars, 0, n);
    }
}
