using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Glm.Text.Parsing;

/// <summary>Something the tool-call parser recognised in the output stream.</summary>
public abstract record ToolParseEvent;
public sealed record ContentEvent(string Text) : ToolParseEvent;
/// <summary>A call begins: its index in the turn, a fresh id and the function name.</summary>
public sealed record ToolCallStartEvent(int Index, string Id, string Name) : ToolParseEvent;
/// <summary>A piece of the call's arguments JSON; the pieces of one call concatenate to a JSON object.</summary>
public sealed record ToolCallArgumentsEvent(int Index, string Delta) : ToolParseEvent;

/// <summary>A complete tool call, as a non-streaming response carries it.</summary>
public sealed record ParsedToolCall(string Id, string Name, string Arguments);

/// <summary>
/// GLM-4.5/4.6/4.7 tool calls: &lt;tool_call&gt;NAME then pairs of &lt;arg_key&gt;K&lt;/arg_key&gt;&lt;arg_value&gt;V&lt;/arg_value&gt;
/// (with newlines in 4.5/4.6, without in 4.7, none for a call without arguments), then &lt;/tool_call&gt;.
/// Streaming: the name goes out once the call's structure is confirmed, each argument as soon as its value
/// closes. Text outside calls is content. A call that breaks the grammar before its name went out is given
/// back as content; after that, its JSON object is closed and the rest of the text is content.
/// </summary>
public sealed class ToolCallParser(ToolSchemas schemas)
{
    private const string CallOpen = "<tool_call>", CallClose = "</tool_call>";
    private const string KeyOpen = "<arg_key>", KeyClose = "</arg_key>", ValueOpen = "<arg_value>", ValueClose = "</arg_value>";

    private static readonly JsonSerializerOptions JsonOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly StringBuilder _buffer = new();
    private bool _inCall;
    private string? _name;          // set once the start event went out
    private int _argsEmitted;       // arguments of the current call already sent
    private int _callIndex = -1;
    private readonly List<ParsedToolCall> _calls = [];
    private StringBuilder? _currentArgs;
    private string? _currentId;

    public IReadOnlyList<ParsedToolCall> Calls => _calls;

    public List<ToolParseEvent> Push(string delta)
    {
        _buffer.Append(delta);
        var events = new List<ToolParseEvent>();
        Process(events, final: false);
        return events;
    }

    public List<ToolParseEvent> Finish()
    {
        var events = new List<ToolParseEvent>();
        Process(events, final: true);
        return events;
    }

    /// <summary>Parses a whole output: the content outside calls and the calls.</summary>
    public static (string Content, List<ParsedToolCall> Calls) ParseComplete(string text, ToolSchemas schemas)
    {
        var parser = new ToolCallParser(schemas);
        var content = new StringBuilder();
        foreach (var e in parser.Push(text).Concat(parser.Finish()))
            if (e is ContentEvent c) content.Append(c.Text);
        return (content.ToString(), parser._calls.ToList());
    }

    private void Process(List<ToolParseEvent> events, bool final)
    {
        while (true)
        {
            string text = _buffer.ToString();
            if (!_inCall)
            {
                int at = text.IndexOf(CallOpen, StringComparison.Ordinal);
                if (at >= 0)
                {
                    EmitContent(events, text[..at]);
                    _buffer.Remove(0, at + CallOpen.Length);
                    _inCall = true;
                    _name = null;
                    _argsEmitted = 0;
                    continue;
                }
                int hold = final ? 0 : StreamingMarkers.PartialSuffix(text, CallOpen);
                EmitContent(events, text[..^hold]);
                _buffer.Remove(0, text.Length - hold);
                return;
            }
            if (!StepCall(events, text, final)) return;
        }
    }

    /// <summary>Advances inside a call; false when it needs more text.</summary>
    private bool StepCall(List<ToolParseEvent> events, string text, bool final)
    {
        if (_name is null)
        {
            // The name runs to the first tag or newline; the call is confirmed once an argument or the end follows.
            int tag = IndexOfFirst(text, KeyOpen, CallClose);
            if (tag < 0)
            {
                if (final) return Abandon(events, text);
                return false;
            }
            string name = text[..tag].Trim();
            if (name.Length == 0 || name.Contains('<') || name.Contains('\n')) return Abandon(events, text);
            StartCall(events, name);
            _buffer.Remove(0, tag);
            return true;
        }
        string rest = text.TrimStart();
        int skipped = text.Length - rest.Length;
        if (rest.StartsWith(CallClose, StringComparison.Ordinal))
        {
            EndCall(events);
            _buffer.Remove(0, skipped + CallClose.Length);
            return true;
        }
        if (rest.StartsWith(KeyOpen, StringComparison.Ordinal))
        {
            int keyEnd = rest.IndexOf(KeyClose, StringComparison.Ordinal);
            int valueOpen = keyEnd < 0 ? -1 : rest.IndexOf(ValueOpen, keyEnd, StringComparison.Ordinal);
            int valueClose = valueOpen < 0 ? -1 : rest.IndexOf(ValueClose, valueOpen, StringComparison.Ordinal);
            if (valueClose < 0)
            {
                if (final) return Abandon(events, text);
                return false;
            }
            if (rest[(keyEnd + KeyClose.Length)..valueOpen].Trim().Length != 0) return Abandon(events, text);
            string key = rest[KeyOpen.Length..keyEnd].Trim();
            string value = rest[(valueOpen + ValueOpen.Length)..valueClose];
            string piece = (_argsEmitted == 0 ? "{" : ", ") + JsonSerializer.Serialize(key, JsonOptions) + ": " + schemas.ArgumentJson(_name, key, value);
            _argsEmitted++;
            _currentArgs!.Append(piece);
            events.Add(new ToolCallArgumentsEvent(_callIndex, piece));
            _buffer.Remove(0, skipped + valueClose + ValueClose.Length);
            return true;
        }
        // Not yet decidable: a prefix of a tag may still be arriving.
        if (!final && (rest.Length == 0 || KeyOpen.StartsWith(rest, StringComparison.Ordinal) || CallClose.StartsWith(rest, StringComparison.Ordinal)))
            return false;
        return Abandon(events, text);
    }

    private void StartCall(List<ToolParseEvent> events, string name)
    {
        _callIndex++;
        _name = name;
        _currentArgs = new StringBuilder();
        _currentId = "call_" + Guid.NewGuid().ToString("N")[..24];
        events.Add(new ToolCallStartEvent(_callIndex, _currentId, name));
    }

    private void EndCall(List<ToolParseEvent> events)
    {
        string closing = _argsEmitted == 0 ? "{}" : "}";
        _currentArgs!.Append(closing);
        events.Add(new ToolCallArgumentsEvent(_callIndex, closing));
        _calls.Add(new ParsedToolCall(_currentId!, _name!, _currentArgs.ToString()));
        _inCall = false;
        _name = null;
    }

    /// <summary>The call text does not follow the grammar: give it back as content (closing a started call).</summary>
    private bool Abandon(List<ToolParseEvent> events, string text)
    {
        if (_name is not null)
        {
            EndCall(events);
            EmitContent(events, text);
        }
        else
        {
            EmitContent(events, CallOpen + text);
        }
        _buffer.Clear();
        _inCall = false;
        return false;
    }

    private static void EmitContent(List<ToolParseEvent> events, string text)
    {
        if (text.Length > 0) events.Add(new ContentEvent(text));
    }

    private static int IndexOfFirst(string text, string a, string b)
    {
        int i = text.IndexOf(a, StringComparison.Ordinal), j = text.IndexOf(b, StringComparison.Ordinal);
        return i < 0 ? j : j < 0 ? i : Math.Min(i, j);
    }
}
