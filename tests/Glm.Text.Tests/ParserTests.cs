using System.Text;
using System.Text.Json;
using Glm.Text.Parsing;

namespace Glm.Text.Tests;

/// <summary>GLM-4.5 tool-call and reasoning parsing on realistic recorded outputs, whole and streamed at every split.</summary>
public class ParserTests
{
    private static readonly ToolSchemas Schemas = ToolSchemas.FromOpenAiTools(JsonDocument.Parse("""
        [{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"},"unit":{"type":"string","enum":["c","f"]}}}}},
         {"type":"function","function":{"name":"search","parameters":{"type":"object","properties":{"query":{"type":"string"},"filters":{"type":"object"},"tags":{"type":"array"},"exact":{"type":"boolean"},"limit":{"type":"number"}}}}},
         {"type":"function","function":{"name":"now","parameters":{"type":"object","properties":{}}}}]
        """).RootElement);

    public static TheoryData<string, string, string[]> Outputs() => new()
    {
        { "glm45 two calls, Chinese value", "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>北京</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>上海</arg_value>\n</tool_call>",
            ["""get_weather {"city": "北京", "days": 3}""", """get_weather {"city": "上海"}"""] },
        { "glm47 compact with nested JSON", """<tool_call>search<arg_key>query</arg_key><arg_value>a "quoted" term</arg_value><arg_key>filters</arg_key><arg_value>{"year": [2023, 2024], "lang": "zh"}</arg_value><arg_key>tags</arg_key><arg_value>["x","y"]</arg_value><arg_key>exact</arg_key><arg_value>true</arg_value><arg_key>limit</arg_key><arg_value>2.5</arg_value></tool_call>""",
            ["""search {"query": "a \"quoted\" term", "filters": {"year":[2023,2024],"lang":"zh"}, "tags": ["x","y"], "exact": true, "limit": 2.5}"""] },
        { "zero arguments", "<tool_call>now</tool_call>", ["now {}"] },
        { "unknown key kept", "<tool_call>now\n<arg_key>tz</arg_key>\n<arg_value>UTC</arg_value>\n</tool_call>", ["""now {"tz": "UTC"}"""] },
        { "text around a call", "Let me check.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n</tool_call>", ["""get_weather {"city": "Oslo"}"""] },
        { "malformed call is content", "<tool_call>get_weather city=Oslo", [] },
        { "no call at all", "The capital of Japan is Tokyo. 1 < 2 and <tool is not a tag.", [] },
    };

    [Theory]
    [MemberData(nameof(Outputs))]
    public void WholeOutputParsesToTypedCalls(string name, string output, string[] expected)
    {
        var (content, calls) = ToolCallParser.ParseComplete(output, Schemas);
        Assert.Equal(expected.Length, calls.Count);
        for (int i = 0; i < expected.Length; i++)
        {
            string expectedName = expected[i][..expected[i].IndexOf(' ')];
            Assert.Equal(expectedName, calls[i].Name);
            Assert.True(JsonElement.DeepEquals(JsonDocument.Parse(expected[i][(expectedName.Length + 1)..]).RootElement, JsonDocument.Parse(calls[i].Arguments).RootElement),
                $"{name}: {calls[i].Arguments}");
            Assert.StartsWith("call_", calls[i].Id);
        }
        if (expected.Length == 0) Assert.Equal(output, content);
        Assert.DoesNotContain("<tool_call>", expected.Length > 0 ? content : "");
    }

    [Theory]
    [MemberData(nameof(Outputs))]
    public void StreamingAtEveryByteBoundaryGivesTheSameResult(string name, string output, string[] expected)
    {
        var (wholeContent, wholeCalls) = ToolCallParser.ParseComplete(output, Schemas);
        Assert.Equal(expected.Length, wholeCalls.Count);
        var bytes = Encoding.UTF8.GetBytes(output);
        for (int split = 1; split < bytes.Length; split++)
        {
            // A UTF-8 decoder sits in front of the parser, as the detokenizer does.
            var decoder = Encoding.UTF8.GetDecoder();
            var parser = new ToolCallParser(Schemas);
            var events = new List<ToolParseEvent>();
            foreach (var (from, to) in new[] { (0, split), (split, bytes.Length) })
            {
                var chars = new char[to - from + 4];
                int n = decoder.GetChars(bytes, from, to - from, chars, 0, flush: to == bytes.Length);
                events.AddRange(parser.Push(new string(chars, 0, n)));
            }
            events.AddRange(parser.Finish());
            Assert.Equal(wholeContent, string.Concat(events.OfType<ContentEvent>().Select(e => e.Text)));
            var starts = events.OfType<ToolCallStartEvent>().ToList();
            Assert.Equal(wholeCalls.Count, starts.Count);
            for (int i = 0; i < starts.Count; i++)
            {
                string args = string.Concat(events.OfType<ToolCallArgumentsEvent>().Where(e => e.Index == i).Select(e => e.Delta));
                Assert.Equal(wholeCalls[i].Name, starts[i].Name);
                Assert.True(JsonElement.DeepEquals(JsonDocument.Parse(wholeCalls[i].Arguments).RootElement, JsonDocument.Parse(args).RootElement), $"{name} split {split}: {args}");
            }
        }
    }

    [Theory]
    [InlineData("\n<think>The user greets me.</think>\nHello! I am GLM-Demo.", false, "The user greets me.", "Hello! I am GLM-Demo.")]
    [InlineData("\nThe capital of Japan is Tokyo.", false, "", "The capital of Japan is Tokyo.")]
    [InlineData("I should call get_weather.</think>\n<tool_call>x</tool_call>", true, "I should call get_weather.", "<tool_call>x</tool_call>")]
    [InlineData("\n<think>still thinking", false, "still thinking", "")]
    [InlineData("<think></think>Answer", false, "", "Answer")]
    public void ReasoningIsSeparatedWholeAndStreamed(string output, bool promptOpened, string reasoning, string content)
    {
        for (int split = 0; split <= output.Length; split++)
        {
            var parser = new ReasoningParser(promptOpened);
            var a = parser.Push(output[..split]);
            var b = parser.Push(output[split..]);
            var c = parser.Finish();
            Assert.Equal(reasoning, a.Reasoning + b.Reasoning + c.Reasoning);
            Assert.Equal(content, a.Content + b.Content + c.Content);
        }
    }

    [Fact]
    public void PromptWithOpenThinkIsDetected()
    {
        Assert.True(ReasoningParser.PromptOpensThink("<|assistant|>\n<think>"));
        Assert.False(ReasoningParser.PromptOpensThink("<|assistant|>\n<think></think>"));
        Assert.False(ReasoningParser.PromptOpensThink("<|assistant|>"));
    }
}
