using System.Text;

namespace Glm.Text.Parsing;

/// <summary>A piece of model output sorted into reasoning or answer text.</summary>
public readonly record struct ReasoningDelta(string Reasoning, string Content);

/// <summary>
/// GLM-4.5 reasoning parser: text inside &lt;think&gt;…&lt;/think&gt; is reasoning, the rest is content. Works on
/// deltas (tags may arrive split), starts inside the block when the prompt already opened it, drops the
/// whitespace GLM puts around the block, and never loses text: an unclosed block at the end is reasoning.
/// </summary>
public sealed class ReasoningParser
{
    public const string Open = "<think>", Close = "</think>";

    private enum State { BeforeThink, InThink, AfterThink }

    private State _state;
    private readonly StringBuilder _pending = new();
    private bool _contentStarted;

    /// <param name="promptOpenedThink">the rendered prompt ends inside an open &lt;think&gt; block</param>
    public ReasoningParser(bool promptOpenedThink = false) => _state = promptOpenedThink ? State.InThink : State.BeforeThink;

    /// <summary>Whether a rendered prompt leaves a &lt;think&gt; block open for the model to continue.</summary>
    public static bool PromptOpensThink(string prompt) => prompt.LastIndexOf(Open, StringComparison.Ordinal) > prompt.LastIndexOf(Close, StringComparison.Ordinal);

    public ReasoningDelta Push(string delta)
    {
        _pending.Append(delta);
        var reasoning = new StringBuilder();
        var content = new StringBuilder();
        while (true)
        {
            string text = _pending.ToString();
            if (_state == State.BeforeThink)
            {
                int at = text.IndexOf(Open, StringComparison.Ordinal);
                if (at >= 0 && text[..at].Trim().Length == 0)
                {
                    _pending.Remove(0, at + Open.Length);
                    _state = State.InThink;
                    continue;
                }
                // Only leading whitespace may precede the block; anything else means there is no reasoning.
                string trimmed = text.TrimStart();
                if (trimmed.Length == 0 || (trimmed.Length < Open.Length && Open.StartsWith(trimmed, StringComparison.Ordinal))) break;
                _state = State.AfterThink;
                continue;
            }
            if (_state == State.InThink)
            {
                int at = text.IndexOf(Close, StringComparison.Ordinal);
                if (at >= 0)
                {
                    reasoning.Append(text, 0, at);
                    _pending.Remove(0, at + Close.Length);
                    _state = State.AfterThink;
                    continue;
                }
                int hold = StreamingMarkers.PartialSuffix(text, Close);
                reasoning.Append(text, 0, text.Length - hold);
                _pending.Remove(0, text.Length - hold);
                break;
            }
            // AfterThink: content, without the whitespace that separates it from the block.
            if (!_contentStarted)
            {
                string trimmed = text.TrimStart();
                if (trimmed.Length == 0) { _pending.Clear(); break; }
                _contentStarted = true;
                content.Append(trimmed);
            }
            else content.Append(text);
            _pending.Clear();
            break;
        }
        return new ReasoningDelta(reasoning.ToString(), content.ToString());
    }

    /// <summary>Flushes held-back text at the end of the output.</summary>
    public ReasoningDelta Finish()
    {
        string rest = _pending.ToString();
        _pending.Clear();
        return _state switch
        {
            State.InThink => new ReasoningDelta(rest, ""),
            _ when !_contentStarted && rest.Trim().Length == 0 => new ReasoningDelta("", ""),
            _ => new ReasoningDelta("", _contentStarted ? rest : rest.TrimStart()),
        };
    }
}
