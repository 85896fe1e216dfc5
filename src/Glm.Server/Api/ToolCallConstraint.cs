using System.Runtime.CompilerServices;
using Glm.Engine;
using Glm.Text.Parsing;
using Glm.Text.Tokenization;

namespace Glm.Server.Api;

/// <summary>
/// Constrains decoding to the GLM tool-call grammar (tool_choice "required" or a named function): each step,
/// tokens whose text would leave the grammar are masked, and end-of-turn tokens are allowed only once a call
/// is complete. GLM emits calls as XML, never JSON, so this is the form the constraint enforces.
/// The grammar state is carried per sequence from step to step (only the new text is walked), and inside an
/// argument value, where most of a call's tokens are, tokens without '&lt;' are allowed without walking them.
/// </summary>
public sealed class ToolCallConstraint(ToolCallGrammar grammar, BpeTokenizer tokenizer, IReadOnlyCollection<int> endTokens) : ITokenConstraint
{
    /// <summary>Each token's text, and whether it contains '&lt;', once per tokenizer.</summary>
    private sealed class Vocabulary(BpeTokenizer t)
    {
        public readonly string[] Texts = Enumerable.Range(0, t.VocabSize).Select(id => t.Decode([id])).ToArray();
        public bool[] HasTag => _hasTag ??= Texts.Select(x => x.Contains('<')).ToArray();
        private bool[]? _hasTag;
    }

    /// <summary>One sequence's progress: the text decoded so far and the grammar state after it.</summary>
    private sealed class Progress(string text, ToolCallGrammar.State state)
    {
        public string Text = text;
        public ToolCallGrammar.State State = state;
    }

    private static readonly ConditionalWeakTable<BpeTokenizer, Vocabulary> Vocabularies = new();
    private readonly HashSet<int> _endTokens = [.. endTokens];

    public void Apply(ReadOnlySpan<int> generated, Span<float> logits, ref object? state)
    {
        var vocabulary = Vocabularies.GetValue(tokenizer, t => new Vocabulary(t));
        var current = Advance(generated, ref state);
        bool freeText = ToolCallGrammar.AcceptsAnyTextWithoutTag(current);
        var texts = vocabulary.Texts;
        var hasTag = vocabulary.HasTag;
        for (int id = 0; id < logits.Length; id++)
        {
            if (float.IsNegativeInfinity(logits[id])) continue;
            bool allowed;
            if (_endTokens.Contains(id)) allowed = current.CanEnd;
            else if (id >= texts.Length || texts[id].Length == 0) allowed = false;
            else allowed = (freeText && !hasTag[id]) || grammar.Advance(current, texts[id]) is not null;
            if (!allowed) logits[id] = float.NegativeInfinity;
        }
    }

    /// <summary>
    /// The grammar state after the generated text. The text is decoded whole (so characters split across tokens
    /// come out right); when it extends the last step's text only the new part is walked.
    /// </summary>
    private ToolCallGrammar.State Advance(ReadOnlySpan<int> generated, ref object? state)
    {
        string text = tokenizer.Decode(generated.ToArray());
        if (state is Progress p && text.StartsWith(p.Text, StringComparison.Ordinal))
        {
            if (grammar.Advance(p.State, text.AsSpan(p.Text.Length)) is { } next)
            {
                p.Text = text;
                p.State = next;
                return next;
            }
        }
        var fresh = grammar.Advance(grammar.Initial, text) ?? grammar.Initial;
        state = new Progress(text, fresh);
        return fresh;
    }
}
