using Glm.Engine;
using Glm.Text.Grammar;

namespace Glm.Engine.Constraints;

/// <summary>
/// Enforces a grammar on a sequence's output through the engine's constraint slot. With reasoning on, the model
/// may first think freely: a &lt;think&gt; as its first token (after GLM's one leading newline) opens a block
/// that runs unconstrained to &lt;/think&gt;, and the grammar starts after it, as vLLM does with a reasoning
/// parser; otherwise the grammar starts at once. End-of-turn tokens are allowed only where the grammar may end,
/// and are the only tokens allowed once it must.
/// </summary>
/// <param name="thinkOpen">the &lt;think&gt; token, or null when the model may not think first</param>
/// <param name="promptOpenedThink">the prompt ends inside an open think block, so generation starts thinking</param>
/// <param name="markup">whether GLM's added tokens (&lt;tool_call&gt;, &lt;arg_key&gt;, ...) may stand for their text: yes for a tool-call grammar, no for an answer</param>
public sealed class GrammarConstraint(Grammar grammar, TokenMasker masker, GrammarVocabulary vocabulary, IReadOnlyCollection<int> endTokens,
    int? thinkOpen, int? thinkClose, bool promptOpenedThink, bool markup = false) : ITokenConstraint
{
    private enum Phase { Start, Thinking, Constrained, Ended }

    private sealed class Progress(Phase phase, Grammar.State state, int words)
    {
        public Phase Phase = phase;
        public Grammar.State State = state;
        public int Scanned;
        /// <summary>What the grammar was given: nothing (0), GLM's leading newline only (1), more, or a finished think block (2).</summary>
        public int Fed;
        public readonly ulong[] Mask = new ulong[words];
    }

    private readonly HashSet<int> _end = [.. endTokens];

    public Grammar Grammar => grammar;

    public void Apply(ReadOnlySpan<int> generated, Span<float> logits, ref object? state)
    {
        var p = state as Progress ?? new Progress(promptOpenedThink && thinkClose is not null ? Phase.Thinking : Phase.Start, grammar.Initial, masker.Words);
        state = p;
        for (; p.Scanned < generated.Length; p.Scanned++) Consume(p, generated[p.Scanned]);
        if (p.Phase is Phase.Thinking or Phase.Ended) return;

        masker.Allowed(p.State, p.Mask);
        if (!markup) for (int w = 0; w < p.Mask.Length; w++) p.Mask[w] &= ~vocabulary.Added[w];
        bool canEnd = grammar.CanEnd(p.State);
        bool mayThink = p.Phase == Phase.Start && thinkOpen is not null && thinkClose is not null;
        var mask = p.Mask;
        for (int id = 0; id < logits.Length; id++)
        {
            bool allowed = id < vocabulary.Bytes.Length && (mask[id >> 6] >> id & 1) != 0
                || (canEnd && _end.Contains(id))
                || (mayThink && id == thinkOpen);
            if (!allowed) logits[id] = float.NegativeInfinity;
        }
    }

    private void Consume(Progress p, int token)
    {
        switch (p.Phase)
        {
            case Phase.Thinking:
                if (token == thinkClose) { p.Phase = Phase.Constrained; p.State = grammar.Initial; p.Fed = 2; }
                return;
            case Phase.Ended:
                return;
        }
        if (p.Phase == Phase.Start && token == thinkOpen && thinkClose is not null) { p.Phase = Phase.Thinking; return; }
        if (_end.Contains(token)) { p.Phase = Phase.Ended; return; }
        if ((uint)token < (uint)vocabulary.Bytes.Length && vocabulary.Bytes[token] is { } bytes && grammar.Advance(p.State, bytes) is { } next)
        {
            p.State = next;
            p.Fed = p.Fed == 0 && bytes is [(byte)'\n'] ? 1 : 2;
        }
        // After GLM's leading newline the model may still open <think>; after anything else the answer has begun.
        if (p.Fed >= 2) p.Phase = Phase.Constrained;
        // A token the mask did not allow (a stop sequence, a forced token from another constraint) leaves the state as it was.
    }
}
