namespace Glm.Text.Parsing;

/// <summary>
/// The GLM tool-call form as a character-level grammar, for constrained decoding of tool_choice "required" or a
/// named function: optional leading newlines, then one or more (or exactly one, for a named function)
/// <c>&lt;tool_call&gt;NAME\n(&lt;arg_key&gt;KEY&lt;/arg_key&gt;\n&lt;arg_value&gt;VALUE&lt;/arg_value&gt;\n)*&lt;/tool_call&gt;</c>
/// (the newlines optional, so GLM-4.7's compact form fits too),
/// NAME among the allowed functions, KEY among that function's schema keys (each at most once, the required ones
/// first, and the call closes only once every required key was given), VALUE any text without "&lt;/arg_value&gt;". <see cref="Advance"/>
/// answers whether a piece of text keeps the output a valid prefix.
/// </summary>
public sealed class ToolCallGrammar
{
    private const string CallOpen = "<tool_call>", CallClose = "</tool_call>", KeyOpen = "<arg_key>", KeyClose = "</arg_key>",
        ValueOpen = "<arg_value>", ValueClose = "</arg_value>";

    private readonly Dictionary<string, string[]> _keys;
    private readonly Dictionary<string, string[]> _required;
    private readonly bool _single;

    /// <param name="functions">allowed function names and each one's argument keys</param>
    /// <param name="singleCall">exactly one call (a named tool_choice) rather than one or more</param>
    /// <param name="required">each function's required keys: a call closes only once all of them were given</param>
    public ToolCallGrammar(IReadOnlyDictionary<string, string[]> functions, bool singleCall, IReadOnlyDictionary<string, string[]>? required = null)
    {
        if (functions.Count == 0) throw new ArgumentException("a tool-call grammar needs at least one function", nameof(functions));
        _required = functions.Keys.ToDictionary(f => f, f => required is not null && required.TryGetValue(f, out var r) ? r : [], StringComparer.Ordinal);
        // A required key the schema's properties do not list may still be given (else no call could ever close).
        _keys = functions.ToDictionary(kv => kv.Key, kv => kv.Value.Union(_required[kv.Key]).ToArray(), StringComparer.Ordinal);
        _single = singleCall;
    }

    public enum Phase { Start, Literal, Name, AfterName, Key, Value, AfterCall, Done }

    /// <summary>
    /// Where the grammar stands: the phase, text matched so far within it, the call's function, and the keys the
    /// call has given (each between separators, so a key is given once and required keys can be checked).
    /// </summary>
    public readonly record struct State(Phase At, string Pending, string Literal, string? Function, int Calls, string Given = "")
    {
        /// <summary>Whether the output may end here (a complete call has been made).</summary>
        public bool CanEnd => At is Phase.AfterCall or Phase.Done;
    }

    public State Initial => new(Phase.Start, "", "", null, 0);

    /// <summary>
    /// Whether every text without '&lt;' keeps <paramref name="state"/> valid and unchanged: inside a value, with
    /// no possible closing tag pending. Constrained decoders use it to skip walking most of the vocabulary.
    /// </summary>
    public static bool AcceptsAnyTextWithoutTag(State state) => state.At == Phase.Value && state.Pending.Length == 0;

    /// <summary>The state after <paramref name="text"/>, or null if the text leaves the grammar.</summary>
    public State? Advance(State state, ReadOnlySpan<char> text)
    {
        foreach (char c in text)
        {
            if (Step(state, c) is not { } next) return null;
            state = next;
        }
        return state;
    }

    private State? Step(State s, char c)
    {
        switch (s.At)
        {
            case Phase.Start:
                if (c == '\n') return s;
                return Literal(s with { At = Phase.Literal, Literal = CallOpen, Pending = "" }, c, Phase.Name);
            case Phase.Literal:
                return Literal(s, c, Phase.Name);
            case Phase.Name:
            {
                if (c is '\n' or '<')
                    return _keys.ContainsKey(s.Pending) ? s with { At = Phase.AfterName, Function = s.Pending, Pending = c == '<' ? "<" : "" } : null;
                string name = s.Pending + c;
                return _keys.Keys.Any(k => k.StartsWith(name, StringComparison.Ordinal)) ? s with { Pending = name } : null;
            }
            case Phase.AfterName:
            {
                // Either an argument or the end of the call, after optional newlines.
                if (c == '\n' && s.Pending.Length == 0) return s;
                string p = s.Pending + c;
                if (KeyOpen == p) return s with { At = Phase.Key, Pending = "" };
                // Not even a prefix of </tool_call> while a required key is missing: no prefix may lead to a dead end.
                bool mayClose = _required[s.Function!].All(k => s.Given.Contains(Marked(k), StringComparison.Ordinal));
                if (mayClose && CallClose == p) return EndCall(s);
                return KeyOpen.StartsWith(p, StringComparison.Ordinal) || (mayClose && CallClose.StartsWith(p, StringComparison.Ordinal)) ? s with { Pending = p } : null;
            }
            case Phase.Key:
            {
                string p = s.Pending + c;
                // Required keys come first: while one is missing, only missing required keys may start (a weak
                // model that would close the call early is led to the keys it must give, not into a loop).
                var missing = _required[s.Function!].Where(k => !s.Given.Contains(Marked(k), StringComparison.Ordinal)).ToArray();
                var keys = missing.Length > 0 ? missing : _keys[s.Function!];
                int close = p.IndexOf('<');
                if (close >= 0)
                {
                    string key = p[..close], tail = p[close..];
                    if (!keys.Contains(key, StringComparer.Ordinal) || s.Given.Contains(Marked(key), StringComparison.Ordinal)) return null;
                    string withNewline = KeyClose + "\n" + ValueOpen, compact = KeyClose + ValueOpen;
                    if (tail == withNewline || tail == compact) return s with { At = Phase.Value, Pending = "", Given = s.Given + Marked(key) };
                    return withNewline.StartsWith(tail, StringComparison.Ordinal) || compact.StartsWith(tail, StringComparison.Ordinal) ? s with { Pending = p } : null;
                }
                return keys.Any(k => k.StartsWith(p, StringComparison.Ordinal)) ? s with { Pending = p } : null;
            }
            case Phase.Value:
            {
                // Free text until "</arg_value>"; only a possible start of that tag is held in Pending.
                if (s.Pending.Length == 0 && c != '<') return s; // the common case, without building a string
                string p = s.Pending + c;
                if (p == ValueClose) return s with { At = Phase.AfterName, Pending = "" };
                if (ValueClose.StartsWith(p, StringComparison.Ordinal)) return s with { Pending = p };
                return s with { Pending = c == '<' ? "<" : "" };
            }
            case Phase.AfterCall:
                if (_single) return null;
                if (c == '\n') return s;
                return Literal(s with { At = Phase.Literal, Literal = CallOpen, Pending = "" }, c, Phase.Name);
            default:
                return null;
        }
    }

    /// <summary>Matches one character of a fixed literal; on completion moves to <paramref name="then"/>.</summary>
    private State? Literal(State s, char c, Phase then)
    {
        string p = s.Pending + c;
        if (!s.Literal.StartsWith(p, StringComparison.Ordinal)) return null;
        return p.Length == s.Literal.Length ? s with { At = then, Pending = "", Literal = "" } : s with { Pending = p };
    }

    private State EndCall(State s) => s with { At = _single ? Phase.Done : Phase.AfterCall, Pending = "", Function = null, Calls = s.Calls + 1, Given = "" };

    /// <summary>A key as it is recorded in <see cref="State.Given"/>: between separators that no key contains.</summary>
    private static string Marked(string key) => "\u0001" + key + "\u0001";
}
