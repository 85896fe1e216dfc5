using Glm.Engine;
using Glm.Text.Tokenization;

namespace Glm.Server.Api;

/// <summary>OpenAI's logprob entries: token text, its UTF-8 bytes, and the top alternatives.</summary>
public static class LogprobFormat
{
    public static string TokenText(BpeTokenizer? tokenizer, int id) => tokenizer?.Decode([id]) ?? $"token_id:{id}";

    public static object ChatEntry(BpeTokenizer? tokenizer, TextPiece p) => new
    {
        token = TokenText(tokenizer, p.Token),
        logprob = p.Logprob ?? 0,
        bytes = System.Text.Encoding.UTF8.GetBytes(TokenText(tokenizer, p.Token)).Select(b => (int)b).ToArray(),
        top_logprobs = (p.TopLogprobs ?? []).Select(t => new
        {
            token = TokenText(tokenizer, t.Token),
            logprob = t.Logprob,
            bytes = System.Text.Encoding.UTF8.GetBytes(TokenText(tokenizer, t.Token)).Select(b => (int)b).ToArray(),
        }).ToArray(),
    };
}
