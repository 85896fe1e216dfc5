using System.Text;
using System.Text.Json;
using Glm.Text.Parsing;

namespace Glm.Text.Tests;

/// <summary>
/// GLM-4.5/4.6 and GLM-4.7 output parsing (reasoning, content, tool calls), each case whole, split at every
/// point, one character at a time and in random 3-7 character chunks, with the calls compared as parsed JSON,
/// types included. The cases are written from the formats and from the behaviour the peers (vLLM's
/// glm4_moe/glm47_moe tool parsers, SGLang's glm4_moe/glm47_moe detectors, llama.cpp's GLM handler) document.
/// </summary>
public class ParserTests
{
    private static readonly ToolSchemas Schemas = ToolSchemas.FromOpenAiTools(JsonDocument.Parse("""
        [{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"},"unit":{"type":"string","enum":["c","f"]}}}}},
         {"type":"function","function":{"name":"search","parameters":{"type":"object","properties":{"query":{"type":"string"},"filters":{"type":"object"},"tags":{"type":"array"},"exact":{"type":"boolean"},"limit":{"type":"number"}}}}},
         {"type":"function","function":{"name":"now","parameters":{"type":"object","properties":{}}}},
         {"type":"function","function":{"name":"typed","parameters":{"type":"object","$defs":{"Size":{"type":"integer"},"Node":{"type":"object","properties":{"next":{"$ref":"#/$defs/Node"}}}},
            "properties":{
              "size":{"$ref":"#/$defs/Size"},
              "id":{"type":["string","integer"]},
              "note":{"type":["string","null"]},
              "choice":{"enum":[null,"a",3]},
              "literal":{"const":"{\"x\": 1}"},
              "text":{"type":"string"},
              "either":{"anyOf":[{"type":"boolean"},{"type":"array","items":{"type":"integer"}}]},
              "exactly":{"oneOf":[{"type":"integer"},{"type":"string","pattern":"^x"}]},
              "tree":{"$ref":"#/$defs/Node"},
              "mixed":{"allOf":[{"type":"number"},{"minimum":0}]}}}}},
         {"type":"function","function":{"name":"shape","parameters":{"oneOf":[
            {"type":"object","properties":{"kind":{"const":"circle"},"radius":{"type":"number"}},"required":["kind"]},
            {"type":"object","properties":{"kind":{"const":"label"},"caption":{"type":"string"}},"required":["kind"]}]}}},
         {"type":"function","function":{"name":"write_file","parameters":{"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"}}}}},
         {"type":"function","function":{"name":"todo_write","parameters":{"type":"object","properties":{"todos":{"type":"array"}}}}}]
        """).RootElement);

    /// <summary>A call in the GLM-4.5/4.6 form (newlines) or the GLM-4.7 compact form.</summary>
    private static string Call(bool compact, string name, params (string Key, string Value)[] args)
    {
        string nl = compact ? "" : "\n";
        var sb = new StringBuilder("<tool_call>").Append(name).Append(args.Length > 0 ? nl : "");
        foreach (var (k, v) in args) sb.Append($"<arg_key>{k}</arg_key>{nl}<arg_value>{v}</arg_value>{nl}");
        return sb.Append("</tool_call>").ToString();
    }

    public sealed record Expected(string Reasoning, string Content, (string Name, string Args)[] Calls);

    private sealed record Outcome(string Reasoning, string Content, List<(string Name, string Args)> Streamed, List<ParsedToolCall> Final, List<string> Problems);

    private static Outcome Run(IEnumerable<string> chunks, bool promptOpened, bool reasoning = true)
    {
        var parser = new GlmOutputParser(Schemas, reasoning, parseTools: true, promptOpened);
        var events = new List<OutputEvent>();
        foreach (var chunk in chunks) events.AddRange(parser.Push(chunk));
        events.AddRange(parser.Finish());
        var problems = new List<string>();
        var names = new Dictionary<int, string>();
        var args = new Dictionary<int, StringBuilder>();
        var dropped = new HashSet<int>();
        foreach (var e in events)
            switch (e)
            {
                case ToolCallStartEvent s:
                    if (!names.TryAdd(s.Index, s.Name)) problems.Add($"call {s.Index} started twice");
                    args[s.Index] = new StringBuilder();
                    break;
                case ToolCallArgumentsEvent a:
                    if (!args.TryGetValue(a.Index, out var sb)) problems.Add($"arguments for call {a.Index} before its start");
                    else sb.Append(a.Delta);
                    break;
                case ToolCallAbandonedEvent x: dropped.Add(x.Index); break;
            }
        var streamed = names.Keys.Order().Where(i => !dropped.Contains(i)).Select(i => (names[i], args[i].ToString())).ToList();
        return new Outcome(string.Concat(events.OfType<ReasoningEvent>().Select(r => r.Text)), string.Concat(events.OfType<ContentEvent>().Select(c => c.Text)),
            streamed, parser.Calls.ToList(), problems);
    }

    /// <summary>The chunkings every case runs under.</summary>
    private static IEnumerable<(string How, string[] Chunks)> Chunkings(string text, int seed)
    {
        yield return ("whole", [text]);
        yield return ("by character", text.Select(c => c.ToString()).ToArray());
        for (int split = 1; split < text.Length; split++) yield return ($"split at {split}", [text[..split], text[split..]]);
        var rng = new Random(seed);
        for (int round = 0; round < 5; round++)
        {
            var chunks = new List<string>();
            for (int i = 0; i < text.Length;)
            {
                int n = Math.Min(rng.Next(3, 8), text.Length - i);
                chunks.Add(text.Substring(i, n));
                i += n;
            }
            yield return ($"random chunks (seed {seed}, round {round})", chunks.ToArray());
        }
    }

    private static void Check(string output, Expected expected, bool promptOpened = false, bool reasoning = true)
    {
        foreach (var (how, chunks) in Chunkings(output, output.Length))
        {
            var o = Run(chunks, promptOpened, reasoning);
            string where = $"{how} of {JsonSerializer.Serialize(output)}";
            Assert.True(o.Problems.Count == 0, $"{where}: {string.Join("; ", o.Problems)}");
            Assert.True(expected.Reasoning == o.Reasoning, $"{where}: reasoning {JsonSerializer.Serialize(o.Reasoning)}");
            Assert.True(expected.Content == o.Content, $"{where}: content {JsonSerializer.Serialize(o.Content)}");
            Assert.True(expected.Calls.Length == o.Final.Count, $"{where}: {o.Final.Count} calls");
            Assert.True(expected.Calls.Length == o.Streamed.Count, $"{where}: {o.Streamed.Count} streamed calls");
            for (int i = 0; i < expected.Calls.Length; i++)
            {
                Assert.Equal(expected.Calls[i].Name, o.Final[i].Name);
                Assert.Equal(expected.Calls[i].Name, o.Streamed[i].Name);
                Assert.True(JsonElement.DeepEquals(JsonDocument.Parse(expected.Calls[i].Args).RootElement, JsonDocument.Parse(o.Final[i].Arguments).RootElement),
                    $"{where}: call {i} arguments {o.Final[i].Arguments}");
                Assert.True(o.Streamed[i].Args == o.Final[i].Arguments, $"{where}: streamed {o.Streamed[i].Args} but final {o.Final[i].Arguments}");
                Assert.StartsWith("call_", o.Final[i].Id);
            }
        }
    }

    public static TheoryData<bool> Forms() => new() { false, true };

    [Theory]
    [MemberData(nameof(Forms))]
    public void BasicCallsContentAndReasoning(bool compact)
    {
        Check("\n<think>The user greets me.</think>\nHello! I am GLM-Demo.", new("The user greets me.", "Hello! I am GLM-Demo.", []));
        Check("\nThe capital of Japan is Tokyo.", new("", "The capital of Japan is Tokyo.", []));
        Check("The capital of Japan is Tokyo. 1 < 2 and <tool is not a tag.", new("", "The capital of Japan is Tokyo. 1 < 2 and <tool is not a tag.", []));
        Check("<think></think>Answer", new("", "Answer", []));
        Check("\n<think>still thinking", new("still thinking", "", []));
        string two = Call(compact, "get_weather", ("city", "北京"), ("days", "3")) + "\n" + Call(compact, "get_weather", ("city", "上海"));
        // The newline between two calls is content here; the server drops whitespace-only content in a turn with calls.
        Check("<think>Two cities.</think>\n" + two, new("Two cities.", "\n", [("get_weather", """{"city": "北京", "days": 3}"""), ("get_weather", """{"city": "上海"}""")]));
        Check(Call(compact, "now"), new("", "", [("now", "{}")]));
        Check("Let me check.\n" + Call(compact, "get_weather", ("city", "Oslo")), new("", "Let me check.\n", [("get_weather", """{"city": "Oslo"}""")]));
        Check(Call(compact, "search", ("query", "a \"quoted\" term"), ("filters", """{"year": [2023, 2024], "lang": "zh"}"""), ("tags", """["x","y"]"""), ("exact", "true"), ("limit", "2.5")),
            new("", "", [("search", """{"query": "a \"quoted\" term", "filters": {"year": [2023, 2024], "lang": "zh"}, "tags": ["x", "y"], "exact": true, "limit": 2.5}""")]));
    }

    // 1. Arguments typed by the schema, fully.

    [Theory]
    [MemberData(nameof(Forms))]
    public void ArgumentsAreTypedByTheirSchema(bool compact)
    {
        void Typed(string key, string text, string json) =>
            Check(Call(compact, "typed", (key, text)), new("", "", [("typed", $"{{\"{key}\": {json}}}")]));
        Typed("size", "42", "42");                 // $ref to an integer
        Typed("size", "\"42\"", "42");             // a quoted number for an integer becomes the number
        Typed("id", "42", "42");                   // ["string", "integer"]: both readings fit, the non-string wins
        Typed("id", "abc", "\"abc\"");
        Typed("note", "null", "null");             // ["string", "null"]
        Typed("note", "none of it", "\"none of it\"");
        Typed("choice", "null", "null");           // null in an enum stays null
        Typed("choice", "3", "3");
        Typed("choice", "a", "\"a\"");
        Typed("literal", "{\"x\": 1}", "\"{\\\"x\\\": 1}\""); // a const string that looks like JSON stays a string
        Typed("text", "{\"looks\": \"like json\"}", "\"{\\\"looks\\\": \\\"like json\\\"}\"");
        Typed("text", "123", "\"123\"");
        Typed("text", "true", "\"true\"");
        Typed("either", "true", "true");           // anyOf
        Typed("either", "[1, 2]", "[1, 2]");
        Typed("either", "True", "true");           // Python's spelling
        Typed("exactly", "7", "7");                // oneOf
        Typed("tree", """{"next": {"next": {}}}""", """{"next": {"next": {}}}"""); // a recursive $ref
        Typed("mixed", "2.5", "2.5");              // allOf
        Typed("undeclared", "[1]", "[1]");         // a key the schema does not declare: JSON when it parses
        Typed("undeclared", "plain", "\"plain\"");
    }

    [Theory]
    [MemberData(nameof(Forms))]
    public void ARootOneOfIsToldApartByItsDiscriminator(bool compact)
    {
        Check(Call(compact, "shape", ("kind", "circle"), ("radius", "2.5")), new("", "", [("shape", """{"kind": "circle", "radius": 2.5}""")]));
        Check(Call(compact, "shape", ("kind", "label"), ("caption", "42")), new("", "", [("shape", """{"kind": "label", "caption": "42"}""")]));
    }

    // 2. Arguments JSON without needless escapes.

    [Fact]
    public void ArgumentsAreWrittenWithoutNeedlessEscapes()
    {
        var (_, _, calls) = GlmOutputParser.ParseComplete(Call(false, "write_file", ("path", "a+b's <file>.txt"), ("content", "你好 🎉 \"quoted\" \\ tab\tend")), Schemas);
        string args = calls.Single().Arguments;
        Assert.Equal("{\"path\": \"a+b's <file>.txt\", \"content\": \"你好 🎉 \\\"quoted\\\" \\\\ tab\\tend\"}", args);
        var (_, _, nested) = GlmOutputParser.ParseComplete(Call(true, "search", ("filters", "{\"名\": \"🎉<>\"}")), Schemas);
        Assert.Equal("{\"filters\": {\"名\": \"🎉<>\"}}", nested.Single().Arguments);
    }

    // 3. Long string values stream as they arrive.

    [Fact]
    public void AStringValueStreamsWhileItIsGenerated()
    {
        string body = string.Concat(Enumerable.Range(0, 200).Select(i => $"line {i}: x < y && \"z\"\n"));
        string output = Call(false, "write_file", ("path", "notes.txt"), ("content", body));
        var parser = new GlmOutputParser(Schemas);
        int cut = output.IndexOf("line 150", StringComparison.Ordinal);
        var before = parser.Push(output[..cut]);
        string streamedSoFar = string.Concat(before.OfType<ToolCallArgumentsEvent>().Select(a => a.Delta));
        Assert.Contains("line 149", streamedSoFar); // sent before </arg_value> arrived
        Assert.Contains("\"content\": \"", streamedSoFar);
        var after = parser.Push(output[cut..]).Concat(parser.Finish()).ToList();
        string all = streamedSoFar + string.Concat(after.OfType<ToolCallArgumentsEvent>().Select(a => a.Delta));
        Assert.Equal(parser.Calls.Single().Arguments, all);
        Assert.Equal(body, JsonDocument.Parse(all).RootElement.GetProperty("content").GetString());
        Check(output, new("", "", [("write_file", JsonSerializer.Serialize(new { path = "notes.txt", content = body }))]));
    }

    [Fact]
    public void APartialClosingTagInsideAValueIsHeldBackNotSent()
    {
        var parser = new GlmOutputParser(Schemas);
        var events = parser.Push("<tool_call>write_file<arg_key>content</arg_key><arg_value>a </arg");
        string sent = string.Concat(events.OfType<ToolCallArgumentsEvent>().Select(a => a.Delta));
        Assert.EndsWith("a ", sent);
        events = parser.Push("ument> is not the end</arg_value></tool_call>");
        sent += string.Concat(events.OfType<ToolCallArgumentsEvent>().Select(a => a.Delta));
        Assert.Equal("{\"content\": \"a </argument> is not the end\"}", sent);
    }

    // 4-6. Reasoning: a call inside it, a repeated <think>, interleaved thinking.

    [Theory]
    [MemberData(nameof(Forms))]
    public void ACallThatStartsInsideReasoningEndsTheReasoning(bool compact)
    {
        string call = Call(compact, "get_weather", ("city", "Paris"));
        Check("<think>I should check the weather.\n" + call, new("I should check the weather.\n", "", [("get_weather", """{"city": "Paris"}""")]));
        // The prompt already opened the block (GLM-4.7's template does).
        Check("I should check the weather." + call, new("I should check the weather.", "", [("get_weather", """{"city": "Paris"}""")]), promptOpened: true);
    }

    [Fact]
    public void ARepeatedThinkTagIsNotReasoningText()
    {
        Check("<think>Let me think.</think>\nDone.", new("Let me think.", "Done.", []), promptOpened: true);
        // Only the tag goes: the text around it is reasoning as written.
        Check("\n<think>\nLet me think.</think>Done.", new("\n\nLet me think.", "Done.", []), promptOpened: true);
    }

    [Theory]
    [MemberData(nameof(Forms))]
    public void InterleavedThinkingIsReasoningToo(bool compact)
    {
        Check("<think>First step.</think>\nPart one.\n<think>Second step.</think>\nPart two.", new("First step.Second step.", "Part one.\nPart two.", []));
        string call = Call(compact, "get_weather", ("city", "Rome"));
        Check("<think>Need weather.</think>" + call + "\n<think>Now answer.</think>\nIt is sunny.",
            new("Need weather.Now answer.", "\nIt is sunny.", [("get_weather", """{"city": "Rome"}""")]));
    }

    // 7. Unterminated calls.

    [Theory]
    [MemberData(nameof(Forms))]
    public void ACallThatNeverClosesIsNoCallAndItsTextIsContent(bool compact)
    {
        string full = Call(compact, "get_weather", ("city", "Paris"), ("days", "3"));
        foreach (int cut in new[] { 12, full.IndexOf("<arg_key>") + 4, full.IndexOf("Par") + 2, full.IndexOf("</arg_value>") + 3, full.Length - 5 })
        {
            string partial = full[..cut];
            Check("<think>Checking.</think>\n" + partial, new("Checking.", partial, []));
        }
        // A closed call before an unterminated one is kept.
        string done = Call(compact, "now");
        Check(done + "\n" + full[..^4], new("", "\n" + full[..^4], [("now", "{}")]));
    }

    [Fact]
    public void ABrokenCallIsContentAndALaterCallStillParses()
    {
        Check("<tool_call>get_weather city=Oslo", new("", "<tool_call>get_weather city=Oslo", []));
        string good = Call(true, "now");
        Check("<tool_call>get_weather\n<arg_key>city</arg_key>oops</tool_call>" + good,
            new("", "<tool_call>get_weather\n<arg_key>city</arg_key>oops</tool_call>", [("now", "{}")]));
    }

    // 8. Escaped output.

    [Fact]
    public void ACallWrittenWithLiteralEscapesIsReadUnescaped()
    {
        // As GLM-4.6 sometimes writes it: literal backslash-n separators and backslash-escaped JSON in the value.
        string output = "<tool_call>todo_write\\n<arg_key>todos</arg_key>\\n<arg_value>[{\\\"content\\\": \\\"Add tests\\\", \\\"status\\\": \\\"pending\\\"}]</arg_value>\\n</tool_call>";
        Check(output, new("", "", [("todo_write", """{"todos": [{"content": "Add tests", "status": "pending"}]}""")]));
        string text = "<tool_call>write_file\\n<arg_key>content</arg_key>\\n<arg_value>line one\\nline \\\"two\\\"</arg_value>\\n</tool_call>";
        Check(text, new("", "", [("write_file", "{\"content\": \"line one\\nline \\\"two\\\"\"}")]));
    }

    // 9. Names.

    [Theory]
    [MemberData(nameof(Forms))]
    public void AnUndeclaredNameIsStillReturnedAndEveryNameIsSentOnceComplete(bool compact)
    {
        Check(Call(compact, "mystery_tool", ("q", "1")), new("", "", [("mystery_tool", """{"q": 1}""")]));
        Assert.False(Schemas.HasTool("mystery_tool"));
        // The start event carries the whole name even when it arrives a character at a time (Check asserts one start per call).
        Check(Call(compact, "get_weather", ("city", "Lima")), new("", "", [("get_weather", """{"city": "Lima"}""")]));
    }

    [Fact]
    public void WithoutTheReasoningParserThinkTagsAreContent()
    {
        Check("<think>x</think>y", new("", "<think>x</think>y", []), reasoning: false);
    }

    [Fact]
    public void PromptWithOpenThinkIsDetected()
    {
        Assert.True(GlmOutputParser.PromptOpensThink("<|assistant|>\n<think>"));
        Assert.False(GlmOutputParser.PromptOpensThink("<|assistant|>\n<think></think>"));
        Assert.False(GlmOutputParser.PromptOpensThink("<|assistant|>"));
    }
}
