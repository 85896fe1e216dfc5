using System.Runtime.CompilerServices;
using Glm.Engine;
using Glm.Text.Tokenization;

namespace Glm.Server.Api;

/// <summary>A piece of one choice's output: new text (possibly empty), the token behind it, and the finish when it ends.</summary>
/// <remarks>StopReason is the matched stop string, or the stop token id, as vLLM reports it.</remarks>
public sealed record TextPiece(string Text, int Token, float? Logprob, TokenLogprob[]? TopLogprobs, string? FinishReason, object? StopReason = null);

/// <summary>
/// Turns a sequence's tokens into text pieces: incremental detokenization, then stop strings matched on the
/// text (held back while a stop string could still be completing, so one is never split across deltas).
/// A matched stop string or a cancelled client aborts the sequence, which frees its blocks at the next step.
/// </summary>
public sealed class TextStream(LlmEngine engine, BpeTokenizer? tokenizer, Sequence seq, IReadOnlyList<string> stops, bool skipSpecial, bool includeStop)
{
    private readonly int _hold = stops.Count == 0 ? 0 : stops.Max(s => s.Length) - 1;

    public Sequence Sequence => seq;
    public int CompletionTokens { get; private set; }
    public string FullText { get; private set; } = "";

    public async IAsyncEnumerable<TextPiece> Run([EnumeratorCancellation] CancellationToken ct)
    {
        var detok = tokenizer is null ? null : new IncrementalDetokenizer(tokenizer, skipSpecial);
        string held = "";
        var full = new System.Text.StringBuilder();
        bool done = false;
        using var reg = ct.Register(() => engine.Abort(seq));
        await foreach (var o in seq.Output.Reader.ReadAllAsync(CancellationToken.None))
        {
            if (done) continue; // drain what the engine wrote before it saw the abort
            if (o.Token >= 0) CompletionTokens++;
            string delta = o.Token >= 0 && o.StopToken is null && detok is not null ? detok.Push(o.Token) : "";
            if (o.Finish != FinishReason.None && detok is not null) delta += detok.Finish();
            string text = held + delta;
            int stopAt = -1;
            string? matched = null;
            foreach (var s in stops)
            {
                int i = text.IndexOf(s, StringComparison.Ordinal);
                if (i >= 0 && (stopAt < 0 || i < stopAt)) { stopAt = i; matched = s; }
            }
            if (stopAt >= 0)
            {
                string emit = text[..(stopAt + (includeStop ? matched!.Length : 0))];
                full.Append(emit);
                FullText = full.ToString();
                done = true;
                engine.Abort(seq);
                yield return new TextPiece(emit, o.Token, o.Logprob, o.TopLogprobs, "stop", matched);
                continue;
            }
            // Aborted because the request's token fired (client gone, shutdown grace over): not a finish to report.
            if (o.Finish == FinishReason.Abort) ct.ThrowIfCancellationRequested();
            if (o.Finish != FinishReason.None)
            {
                full.Append(text);
                FullText = full.ToString();
                done = true;
                yield return new TextPiece(text, o.Token, o.Logprob, o.TopLogprobs, FinishName(o.Finish), o.StopToken);
                continue;
            }
            int keep = Math.Min(_hold, text.Length);
            // Never hold back half of a surrogate pair.
            if (keep > 0 && keep < text.Length && char.IsLowSurrogate(text[^keep])) keep++;
            held = text[^keep..];
            string out1 = text[..^keep];
            full.Append(out1);
            yield return new TextPiece(out1, o.Token, o.Logprob, o.TopLogprobs, null);
        }
        FullText = full.ToString();
    }

    public static string FinishName(FinishReason r) => r switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        _ => "abort",
    };
}
