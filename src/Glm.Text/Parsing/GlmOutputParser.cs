using System.Text;

namespace Glm.Text.Parsing;

/// <summary>What the parser recognised in the model's output, in order.</summary>
public abstract record OutputEvent;
public sealed record ReasoningEvent(string Text) : OutputEvent;
public sealed record ContentEvent(string Text) : OutputEvent;
/// <summary>A call begins: its index in the turn, a fresh id and the complete function name (sent once).</summary>
public sealed record ToolCallStartEvent(int Index, string Id, string Name) : OutputEvent;
/// <summary>A piece of the call's arguments JSON; the pieces of one call concatenate to exactly its final arguments.</summary>
public sealed record ToolCallArgumentsEvent(int Index, string Delta) : OutputEvent;
/// <summary>The call closed with &lt;/tool_call&gt;: it is final.</summary>
public sealed record ToolCallEndEvent(int Index, ParsedToolCall Call) : OutputEvent;
/// <summary>
/// The call never closed (the output ended, or broke the format): it is not a call. Its text follows as content;
/// anything already streamed for it is to be dropped by the consumer.
/// </summary>
public sealed record ToolCallAbandonedEvent(int Index) : OutputEvent;

/// <summary>A complete tool call, as a non-streaming response carries it.</summary>
public sealed record ParsedToolCall(string Id, string Name, string Arguments);

/// <summary>
/// One pass over GLM-4.5/4.6/4.7 output that sorts it into reasoning, content and tool calls, whole or streamed
/// in any chunking (the result does not depend on where the text was split):
/// <list type="bullet">
/// <item>&lt;think&gt;…&lt;/think&gt; is reasoning, at the start (also when the prompt opened the block: a repeated
/// &lt;think&gt; is dropped) and later in the turn (interleaved thinking). The whitespace GLM puts after a block is
/// not content.</item>
/// <item>&lt;tool_call&gt;NAME, then &lt;arg_key&gt;K&lt;/arg_key&gt;&lt;arg_value&gt;V&lt;/arg_value&gt; pairs (with newlines in
/// 4.5/4.6, without in 4.7), then &lt;/tool_call&gt;. A call may start inside reasoning (GLM-4.5 does this):
/// reasoning ends there. Values are typed by the tool's schema (<see cref="ToolSchemas"/>); a value whose schema
/// allows only strings is streamed character by character as it arrives. Calls written escaped (a literal
/// "\n" after the name, backslash-escaped values, as GLM-4.6 sometimes writes them) are read unescaped.</item>
/// <item>A call that does not close is no call: <see cref="ToolCallAbandonedEvent"/>, and its text is content.</item>
/// </list>
/// </summary>
public sealed class GlmOutputParser
{
    public const string ThinkOpen = "<think>", ThinkClose = "</think>";
    private const string CallOpen = "<tool_call>", CallClose = "</tool_call>";
    private const string KeyOpen = "<arg_key>", KeyClose = "</arg_key>", ValueOpen = "<arg_value>", ValueClose = "</arg_value>";
    private const string EscapedNewline = "\\n";

    private enum State { Content, Think, CallName, CallBody, Key, BetweenKeyAndValue, Value }

    private readonly ToolSchemas _schemas;
    private readonly bool _reasoning, _tools;
    private readonly StringBuilder _buffer = new();
    private readonly List<ParsedToolCall> _calls = [];
    private State _state;
    private bool _trimContent = true;      // drop the whitespace that starts the content, or follows a think block
    private readonly StringBuilder _callText = new(); // the raw text of the call in progress, from <tool_call> on
    private readonly StringBuilder _args = new();
    private int _index = -1;
    private string? _name, _id, _key;
    private bool _escaped;                 // the call is written with literal "\n" and backslash escapes
    private int _argCount;
    private bool _streamingValue;          // the current value streams as a string
    private readonly StringBuilder _value = new();

    /// <param name="parseReasoning">split out &lt;think&gt; blocks (--reasoning-parser)</param>
    /// <param name="parseTools">parse tool calls (tools were given and tool_choice is not "none")</param>
    /// <param name="promptOpenedThink">the rendered prompt ends inside an open &lt;think&gt; block</param>
    public GlmOutputParser(ToolSchemas schemas, bool parseReasoning = true, bool parseTools = true, bool promptOpenedThink = false)
    {
        _schemas = schemas;
        _reasoning = parseReasoning;
        _tools = parseTools;
        _trimContent = parseReasoning;
        if (parseReasoning && promptOpenedThink) _state = State.Think;
    }

    /// <summary>Whether a rendered prompt leaves a &lt;think&gt; block open for the model to continue.</summary>
    /// <summary>Whether the prompt ends with a closed think block (thinking turned off): the answer comes next.</summary>
    public static bool PromptClosesThink(string prompt) => prompt.TrimEnd().EndsWith(ThinkClose, StringComparison.Ordinal);

    public static bool PromptOpensThink(string prompt) => prompt.LastIndexOf(ThinkOpen, StringComparison.Ordinal) > prompt.LastIndexOf(ThinkClose, StringComparison.Ordinal);

    /// <summary>The calls that closed so far, in order.</summary>
    public IReadOnlyList<ParsedToolCall> Calls => _calls;

    public List<OutputEvent> Push(string text)
    {
        _buffer.Append(text);
        var events = new List<OutputEvent>();
        Run(events, final: false);
        return events;
    }

    /// <summary>The end of the output: flushes held-back text; an open call is abandoned (every call state gives up when final).</summary>
    public List<OutputEvent> Finish()
    {
        var events = new List<OutputEvent>();
        Run(events, final: true);
        string rest = _buffer.ToString();
        _buffer.Clear();
        if (_state == State.Think) Emit(events, new ReasoningEvent(rest));
        else EmitContent(events, rest);
        return events;
    }

    /// <summary>Parses a whole output.</summary>
    public static (string Reasoning, string Content, List<ParsedToolCall> Calls) ParseComplete(string text, ToolSchemas schemas,
        bool parseReasoning = true, bool parseTools = true, bool promptOpenedThink = false)
    {
        var parser = new GlmOutputParser(schemas, parseReasoning, parseTools, promptOpenedThink);
        var reasoning = new StringBuilder();
        var content = new StringBuilder();
        foreach (var e in parser.Push(text).Concat(parser.Finish()))
        {
            if (e is ReasoningEvent r) reasoning.Append(r.Text);
            else if (e is ContentEvent c) content.Append(c.Text);
        }
        return (reasoning.ToString(), content.ToString(), parser._calls.ToList());
    }

    private void Run(List<OutputEvent> events, bool final)
    {
        while (Step(events, final)) { }
    }

    /// <summary>Advances by one decision; false when more text is needed.</summary>
    private bool Step(List<OutputEvent> events, bool final)
    {
        string text = _buffer.ToString();
        switch (_state)
        {
            case State.Content:
            {
                var (at, tag) = FirstOf(text, _reasoning ? ThinkOpen : null, _tools ? CallOpen : null);
                if (at < 0)
                {
                    int hold = final ? 0 : Math.Max(_reasoning ? StreamingMarkers.PartialSuffix(text, ThinkOpen) : 0, _tools ? StreamingMarkers.PartialSuffix(text, CallOpen) : 0);
                    // Leading whitespace is held too while it may still turn out to precede a think block.
                    if (!final && _trimContent && text[..^hold].Trim().Length == 0) return false;
                    EmitContent(events, text[..^hold]);
                    Consume(text.Length - hold);
                    return false;
                }
                EmitContent(events, text[..at]);
                Consume(at + tag!.Length);
                if (tag == ThinkOpen) _state = State.Think;
                else BeginCall();
                return true;
            }
            case State.Think:
            {
                var (at, tag) = FirstOf(text, ThinkClose, _tools ? CallOpen : null, ThinkOpen);
                if (at < 0)
                {
                    int hold = final ? 0 : Math.Max(Math.Max(StreamingMarkers.PartialSuffix(text, ThinkClose), StreamingMarkers.PartialSuffix(text, ThinkOpen)),
                        _tools ? StreamingMarkers.PartialSuffix(text, CallOpen) : 0);
                    Emit(events, new ReasoningEvent(text[..^hold]));
                    Consume(text.Length - hold);
                    return false;
                }
                Emit(events, new ReasoningEvent(text[..at]));
                Consume(at + tag!.Length);
                if (tag == ThinkClose) { _state = State.Content; _trimContent = true; }
                else if (tag == CallOpen) { _trimContent = true; BeginCall(); } // reasoning ends where a call begins
                // a repeated <think> inside the block is not reasoning text: dropped
                return true;
            }
            case State.CallName:
            {
                // The name runs to the first tag; a literal "\n" before it marks an escaped call.
                var (at, _) = FirstOf(text, KeyOpen, CallClose);
                if (at < 0)
                {
                    if (final || text.Contains('<') && !IsTagPrefixAfterLastLt(text)) return Malformed(events);
                    return false;
                }
                string name = text[..at];
                string trimmed = name.Trim();
                while (trimmed.EndsWith(EscapedNewline, StringComparison.Ordinal)) { _escaped = true; trimmed = trimmed[..^EscapedNewline.Length].TrimEnd(); }
                if (trimmed.Length == 0 || trimmed.Contains('<') || trimmed.Contains('\n') || trimmed.Contains(EscapedNewline)) return Malformed(events);
                Take(at);
                _name = trimmed;
                _id = "call_" + Guid.NewGuid().ToString("N")[..24];
                _index++;
                _argCount = 0;
                _args.Clear();
                Emit(events, new ToolCallStartEvent(_index, _id, _name));
                _state = State.CallBody;
                return true;
            }
            case State.CallBody:
            {
                int skip = SkipSeparators(text);
                string rest = text[skip..];
                if (rest.StartsWith(CallClose, StringComparison.Ordinal))
                {
                    Take(skip + CallClose.Length);
                    EndCall(events);
                    return true;
                }
                if (rest.StartsWith(KeyOpen, StringComparison.Ordinal))
                {
                    Take(skip + KeyOpen.Length);
                    _state = State.Key;
                    return true;
                }
                if (!final && (KeyOpen.StartsWith(rest, StringComparison.Ordinal) || CallClose.StartsWith(rest, StringComparison.Ordinal) || EscapedNewline.StartsWith(rest, StringComparison.Ordinal)))
                    return false;
                return Malformed(events);
            }
            case State.Key:
            {
                int close = text.IndexOf(KeyClose, StringComparison.Ordinal);
                if (close < 0)
                {
                    if (final || text.Contains(ValueOpen) || text.Contains(CallClose)) return Malformed(events);
                    return false;
                }
                _key = text[..close].Trim();
                if (_key.Length == 0 || _key.Contains('<')) return Malformed(events);
                Take(close + KeyClose.Length);
                _state = State.BetweenKeyAndValue;
                return true;
            }
            case State.BetweenKeyAndValue:
            {
                int skip = SkipSeparators(text);
                string rest = text[skip..];
                if (rest.StartsWith(ValueOpen, StringComparison.Ordinal))
                {
                    Take(skip + ValueOpen.Length);
                    _state = State.Value;
                    _value.Clear();
                    _streamingValue = !_escaped && _schemas.IsStringOnly(_name!, _key!);
                    if (_streamingValue) EmitArgs(events, ArgumentPrefix() + "\"");
                    return true;
                }
                if (!final && (ValueOpen.StartsWith(rest, StringComparison.Ordinal) || EscapedNewline.StartsWith(rest, StringComparison.Ordinal))) return false;
                return Malformed(events);
            }
            case State.Value:
            {
                int close = text.IndexOf(ValueClose, StringComparison.Ordinal);
                if (close < 0)
                {
                    if (final) return Malformed(events);
                    int hold = StreamingMarkers.PartialSuffix(text, ValueClose);
                    string part = text[..^hold];
                    _value.Append(part);
                    Take(part.Length);
                    if (_streamingValue && part.Length > 0) EmitArgs(events, JsonText.Escape(part));
                    return false;
                }
                string last = text[..close];
                _value.Append(last);
                Take(close + ValueClose.Length);
                if (_streamingValue)
                {
                    EmitArgs(events, JsonText.Escape(last) + "\"");
                }
                else
                {
                    string raw = _value.ToString();
                    if (_escaped) raw = Unescape(raw);
                    EmitArgs(events, ArgumentPrefix() + _schemas.ArgumentJson(_name!, _key!, raw));
                }
                _argCount++;
                _state = State.CallBody;
                return true;
            }
        }
        return false;
    }

    /// <summary>"{" before the first argument, ", " before the others, then the key.</summary>
    private string ArgumentPrefix() => (_argCount == 0 ? "{" : ", ") + JsonText.Quote(_key!) + ": ";

    private void BeginCall()
    {
        _state = State.CallName;
        _callText.Clear().Append(CallOpen);
        _escaped = false;
        _name = null;
    }

    private void EndCall(List<OutputEvent> events)
    {
        EmitArgs(events, _argCount == 0 ? "{}" : "}");
        var call = new ParsedToolCall(_id!, _name!, _args.ToString());
        _calls.Add(call);
        Emit(events, new ToolCallEndEvent(_index, call));
        _state = State.Content;
        _trimContent = false;
        _name = null;
    }

    /// <summary>Not a call after all: what was read of it is content (a started call is abandoned first).</summary>
    private bool Malformed(List<OutputEvent> events)
    {
        Abandon(events);
        return true;
    }

    private void Abandon(List<OutputEvent> events)
    {
        if (_name is not null) Emit(events, new ToolCallAbandonedEvent(_index));
        _state = State.Content;
        _trimContent = false;
        _name = null;
        // The call's text so far (its opening tag included) goes back in front of what is still unread.
        string unread = _buffer.ToString();
        _buffer.Clear();
        EmitContent(events, _callText.ToString());
        _callText.Clear();
        // Content parsing resumes on the unread text: a later <tool_call> in it is a call of its own.
        _buffer.Append(unread);
    }

    private void EmitArgs(List<OutputEvent> events, string delta)
    {
        _args.Append(delta);
        Emit(events, new ToolCallArgumentsEvent(_index, delta));
    }

    /// <summary>Removes call text from the buffer, remembering it in case the call turns out not to be one.</summary>
    private void Take(int length)
    {
        _callText.Append(_buffer.ToString(0, length));
        _buffer.Remove(0, length);
    }

    private void Consume(int length) => _buffer.Remove(0, length);

    private void EmitContent(List<OutputEvent> events, string text)
    {
        if (text.Length == 0) return;
        if (_trimContent)
        {
            text = text.TrimStart();
            if (text.Length == 0) return;
            _trimContent = false;
        }
        events.Add(new ContentEvent(text));
    }

    private static void Emit(List<OutputEvent> events, OutputEvent e)
    {
        if (e is ReasoningEvent { Text.Length: 0 }) return;
        events.Add(e);
    }

    /// <summary>Whitespace, and in an escaped call the literal "\n" separators, at the start of <paramref name="text"/>.</summary>
    private int SkipSeparators(string text)
    {
        int i = 0;
        while (i < text.Length)
        {
            if (char.IsWhiteSpace(text[i])) i++;
            else if (_escaped && string.CompareOrdinal(text, i, EscapedNewline, 0, 2) == 0) i += 2;
            else break;
        }
        return i;
    }

    /// <summary>True when the text after its last '&lt;' could still grow into &lt;arg_key&gt; or &lt;/tool_call&gt;.</summary>
    private static bool IsTagPrefixAfterLastLt(string text)
    {
        string tail = text[text.LastIndexOf('<')..];
        return KeyOpen.StartsWith(tail, StringComparison.Ordinal) || CallClose.StartsWith(tail, StringComparison.Ordinal);
    }

    private static (int At, string? Tag) FirstOf(string text, params string?[] tags)
    {
        int best = -1;
        string? which = null;
        foreach (var tag in tags)
        {
            if (tag is null) continue;
            int i = text.IndexOf(tag, StringComparison.Ordinal);
            if (i >= 0 && (best < 0 || i < best)) { best = i; which = tag; }
        }
        return (best, which);
    }

    /// <summary>JSON string escapes written out literally by the model: \" \\ \/ \n \t \r.</summary>
    private static string Unescape(string s)
    {
        if (!s.Contains('\\')) return s;
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] != '\\' || i + 1 >= s.Length) { sb.Append(s[i]); continue; }
            char n = s[++i];
            sb.Append(n switch { 'n' => '\n', 't' => '\t', 'r' => '\r', '"' => '"', '\\' => '\\', '/' => '/', _ => '\0' });
            if (sb[^1] == '\0') { sb.Length--; sb.Append('\\').Append(n); }
        }
        return sb.ToString();
    }
}
