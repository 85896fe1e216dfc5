namespace Glm.Engine;

/// <summary>
/// A thinking budget (Anthropic's thinking.budget_tokens): once a sequence has generated that many tokens inside
/// &lt;think&gt; blocks, the only token allowed while still thinking is &lt;/think&gt;, so the answer starts. Other
/// constraints (<paramref name="inner"/>) apply as before; outside thinking this one changes nothing.
/// </summary>
/// <param name="thinkOpen">the &lt;think&gt; token id</param>
/// <param name="thinkClose">the &lt;/think&gt; token id</param>
/// <param name="promptOpenedThink">the prompt ends inside an open think block, so generation starts thinking</param>
public sealed class ThinkingBudget(int budget, int thinkOpen, int thinkClose, bool promptOpenedThink, ITokenConstraint? inner) : ITokenConstraint
{
    /// <summary>How far a sequence's tokens were scanned, whether it is thinking there, and its thinking tokens so far.</summary>
    private sealed class Progress(bool thinking)
    {
        public int Scanned;
        public bool Thinking = thinking;
        public int Spent;
        public object? Inner;
    }

    public void Apply(ReadOnlySpan<int> generated, Span<float> logits, ref object? state)
    {
        var p = state as Progress ?? new Progress(promptOpenedThink);
        state = p;
        for (; p.Scanned < generated.Length; p.Scanned++)
        {
            int token = generated[p.Scanned];
            if (token == thinkOpen) p.Thinking = true;
            else if (token == thinkClose) p.Thinking = false;
            else if (p.Thinking) p.Spent++;
        }
        inner?.Apply(generated, logits, ref p.Inner);
        if (!p.Thinking || p.Spent < budget || (uint)thinkClose >= (uint)logits.Length) return;
        float close = logits[thinkClose];
        logits.Fill(float.NegativeInfinity);
        logits[thinkClose] = float.IsNegativeInfinity(close) ? 0 : close;
    }
}
