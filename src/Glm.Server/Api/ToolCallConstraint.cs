using System.Runtime.CompilerServices;
using Glm.Engine;
using Glm.Text.Parsing;
using Glm.Text.Tokenization;

namespace Glm.Server.Api;

/// <summary>
/// Constrains decoding to the GLM tool-call grammar (tool_choice "required" or a named function): each step,
/// tokens whose text would leave the grammar are masked, and end-of-turn tokens are allowed only once a call
/// is complete. GLM emits calls as XML, never JSON, so this is the form the constraint enforces.
/// </summary>
public sealed class ToolCallConstraint(ToolCallGrammar grammar, BpeTokenizer tokenizer, IReadOnlyCollection<int> endTokens) : ITokenConstraint
{
    private static readonly ConditionalWeakTable<BpeTokenizer, string[]> TokenTexts = new();

    public void Apply(IReadOnlyList<int> generated, Span<float> logits)
    {
        var texts = TokenTexts.GetValue(tokenizer, t => Enumerable.Range(0, t.VocabSize).Select(id => t.Decode([id])).ToArray());
        var ids = new int[generated.Count];
        for (int i = 0; i < ids.Length; i++) ids[i] = generated[i];
        var state = grammar.Advance(grammar.Initial, tokenizer.Decode(ids)) ?? grammar.Initial;
        for (int id = 0; id < logits.Length; id++)
        {
            if (float.IsNegativeInfinity(logits[id])) continue;
            bool allowed = endTokens.Contains(id)
                ? state.CanEnd
                : id < texts.Length && texts[id].Length > 0 && grammar.Advance(state, texts[id]) is not null;
            if (!allowed) logits[id] = float.NegativeInfinity;
        }
    }
}
