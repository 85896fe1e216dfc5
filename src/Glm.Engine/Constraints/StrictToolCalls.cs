using Glm.Engine;
using Glm.Text.Grammar;

namespace Glm.Engine.Constraints;

/// <summary>
/// Tools marked "strict": true under tool_choice "auto": the model writes freely, and once it opens a call
/// (the &lt;tool_call&gt; token) the call's body is held to the tools' grammar (strict tools typed, others free)
/// through &lt;/tool_call&gt;, after which it is free again.
/// </summary>
public sealed class StrictToolCalls(Grammar body, TokenMasker masker, GrammarVocabulary vocabulary, int callOpen) : ITokenConstraint
{
    private sealed class Progress(int words)
    {
        public int Scanned;
        public Grammar.State? State; // null: outside a call
        public readonly ulong[] Mask = new ulong[words];
    }

    public void Apply(ReadOnlySpan<int> generated, Span<float> logits, ref object? state)
    {
        var p = state as Progress ?? new Progress(masker.Words);
        state = p;
        for (; p.Scanned < generated.Length; p.Scanned++)
        {
            int token = generated[p.Scanned];
            if (p.State is null) { if (token == callOpen) p.State = body.Initial; continue; }
            if ((uint)token < (uint)vocabulary.Bytes.Length && vocabulary.Bytes[token] is { } bytes && body.Advance(p.State, bytes) is { } next)
                p.State = body.MustEnd(next) ? null : next;
            else p.State = null; // a token the mask did not allow (another constraint forced it): stop holding this call
        }
        if (p.State is null) return;
        masker.Allowed(p.State, p.Mask);
        var mask = p.Mask;
        for (int id = 0; id < logits.Length; id++)
            if (id >= vocabulary.Bytes.Length || (mask[id >> 6] >> id & 1) == 0) logits[id] = float.NegativeInfinity;
    }
}
