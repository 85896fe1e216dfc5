using System.Text;

namespace Glm.Server.Api;

/// <summary>
/// Groups a choice's deltas into the segments block-structured APIs report, in order: a run of reasoning, a
/// run of content, a closed tool call, and again when reasoning is interleaved. A tool call is one segment,
/// handed over when it closes (a call that never closes never becomes one). Anthropic's content blocks and the
/// Responses API's output items are both this sequence; the subclasses only write each API's events.
/// </summary>
public abstract class TurnSegments<TEvent>
{
    public enum Kind { Reasoning, Content }

    private Kind? _open;
    private readonly StringBuilder _text = new();

    public List<TEvent> Add(TurnDelta delta)
    {
        var events = new List<TEvent>();
        switch (delta)
        {
            case ReasoningDelta r: Append(Kind.Reasoning, r.Text, events); break;
            case ContentDelta c: Append(Kind.Content, c.Text, events); break;
            case ToolCallFinished f:
                CloseOpen(events);
                OnToolCall(f.Call, events);
                break;
        }
        return events;
    }

    /// <summary>The end of the choice: closes the open segment.</summary>
    public List<TEvent> Close()
    {
        var events = new List<TEvent>();
        CloseOpen(events);
        return events;
    }

    private void Append(Kind kind, string text, List<TEvent> events)
    {
        if (_open != kind)
        {
            CloseOpen(events);
            _open = kind;
            _text.Clear();
            OnOpen(kind, events);
        }
        _text.Append(text);
        OnText(kind, text, events);
    }

    private void CloseOpen(List<TEvent> events)
    {
        if (_open is not { } kind) return;
        _open = null;
        OnClose(kind, _text.ToString(), events);
    }

    /// <summary>A reasoning or content segment begins.</summary>
    protected abstract void OnOpen(Kind kind, List<TEvent> events);

    /// <summary>Text of the open segment, as it arrives.</summary>
    protected abstract void OnText(Kind kind, string text, List<TEvent> events);

    /// <summary>The segment ends, with all of its text.</summary>
    protected abstract void OnClose(Kind kind, string text, List<TEvent> events);

    /// <summary>A closed tool call, whole.</summary>
    protected abstract void OnToolCall(Text.Parsing.ParsedToolCall call, List<TEvent> events);
}
