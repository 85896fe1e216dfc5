using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI.Responses;

namespace Glm.Server.Tests;

/// <summary>/v1/responses through the OpenAI .NET SDK's Responses client and on the wire, against /v1/chat/completions.</summary>
#pragma warning disable OPENAI001 // the Responses client is marked experimental
public class OpenAiResponsesTests(AgentServer server) : IClassFixture<AgentServer>
{
    private const string WeatherTool = """{"type":"function","name":"get_weather","description":"Get the current weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string","description":"City name"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]},"strict":false}""";
    private const string ChatWeatherTool = """{"type":"function","function":{"name":"get_weather","description":"Get the current weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string","description":"City name"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}}}""";

    private async Task<(HttpStatusCode Status, JsonElement Body, string Raw)> Post(string path, string json)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", AgentServer.Key);
        using var r = await server.Http.SendAsync(request);
        string raw = await r.Content.ReadAsStringAsync();
        return (r.StatusCode, r.Content.Headers.ContentType?.MediaType == "application/json" ? JsonDocument.Parse(raw).RootElement.Clone() : default, raw);
    }

    private async Task<(string Content, string Reasoning, JsonElement? Call, int PromptTokens)> Chat(string messages, bool thinking, string? tools = null)
    {
        string extra = tools is null ? "" : $",\"tools\":[{tools}]";
        var (s, body, raw) = await Post("/v1/chat/completions", $$"""{"model":"glm-demo","temperature":0,"max_tokens":200,"messages":{{messages}},"chat_template_kwargs":{"enable_thinking":{{(thinking ? "true" : "false")}}}{{extra}}}""");
        Assert.True(s == HttpStatusCode.OK, raw);
        var m = body.GetProperty("choices")[0].GetProperty("message");
        var calls = m.GetProperty("tool_calls");
        return (m.GetProperty("content").GetString() ?? "", m.GetProperty("reasoning_content").GetString() ?? "",
            calls.GetArrayLength() > 0 ? calls[0].GetProperty("function").Clone() : null, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    private static string OutputText(JsonElement response) => string.Concat(response.GetProperty("output").EnumerateArray()
        .Where(i => i.GetProperty("type").GetString() == "message")
        .SelectMany(i => i.GetProperty("content").EnumerateArray()).Select(p => p.GetProperty("text").GetString()));

    private static string ReasoningText(JsonElement response) => string.Concat(response.GetProperty("output").EnumerateArray()
        .Where(i => i.GetProperty("type").GetString() == "reasoning")
        .SelectMany(i => i.GetProperty("content").EnumerateArray()).Select(p => p.GetProperty("text").GetString()));

    [Theory]
    [InlineData("none", false)]
    [InlineData("minimal", false)]
    [InlineData("high", true)]
    public async Task ChatCompletionsReasoningEffortTurnsThinkingOffOrLeavesItOn(string effort, bool thinking)
    {
        const string messages = """[{"role":"user","content":"Hello!"}]""";
        var expected = await Chat(messages, thinking);
        var (s, body, raw) = await Post("/v1/chat/completions", $$"""{"model":"glm-demo","temperature":0,"max_tokens":200,"messages":{{messages}},"reasoning_effort":"{{effort}}"}""");
        Assert.True(s == HttpStatusCode.OK, raw);
        var m = body.GetProperty("choices")[0].GetProperty("message");
        Assert.Equal(expected.Content, m.GetProperty("content").GetString() ?? "");
        Assert.Equal(expected.Reasoning, m.GetProperty("reasoning_content").GetString() ?? "");
        Assert.Equal(expected.PromptTokens, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task AnUnknownReasoningEffortIsA400()
    {
        var (s, body, raw) = await Post("/v1/chat/completions", """{"model":"glm-demo","messages":[{"role":"user","content":"Hi"}],"reasoning_effort":"extreme"}""");
        Assert.True(s == HttpStatusCode.BadRequest, raw);
        Assert.Equal("reasoning_effort", body.GetProperty("error").GetProperty("param").GetString());
        (s, body, raw) = await Post("/v1/responses", """{"model":"glm-demo","input":"Hi","reasoning":{"effort":7}}""");
        Assert.True(s == HttpStatusCode.BadRequest, raw);
        Assert.Equal("reasoning.effort", body.GetProperty("error").GetProperty("param").GetString());
    }

    [Theory]
    [InlineData("minimal", false)]
    [InlineData("medium", true)]
    public async Task TheAnswerEqualsChatCompletions(string effort, bool thinking)
    {
        var (s, response, raw) = await Post("/v1/responses", $$"""{"model":"glm-demo","temperature":0,"max_output_tokens":200,"instructions":"You are GLM-Demo.","input":"Hello!","reasoning":{"effort":"{{effort}}","summary":"auto"},"store":false}""");
        Assert.True(s == HttpStatusCode.OK, raw);
        var expected = await Chat("""[{"role":"system","content":"You are GLM-Demo."},{"role":"user","content":"Hello!"}]""", thinking);
        Assert.Equal(expected.Content, OutputText(response));
        Assert.Equal(expected.Reasoning, ReasoningText(response));
        Assert.Equal("response", response.GetProperty("object").GetString());
        Assert.StartsWith("resp_", response.GetProperty("id").GetString());
        Assert.Equal("completed", response.GetProperty("status").GetString());
        var usage = response.GetProperty("usage");
        Assert.Equal(expected.PromptTokens, usage.GetProperty("input_tokens").GetInt32());
        Assert.True(usage.GetProperty("input_tokens_details").TryGetProperty("cached_tokens", out _));
        Assert.Equal(thinking, usage.GetProperty("output_tokens_details").GetProperty("reasoning_tokens").GetInt32() > 0);
    }

    [Fact]
    public async Task StreamingGivesTheSameOutputAsNonStreaming()
    {
        string body = $$$"""{"model":"glm-demo","temperature":0,"max_output_tokens":200,"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"What's the weather in Lisbon?"}]}],"tools":[{{{WeatherTool}}}],"reasoning":{"effort":"high"}}""";
        var (_, whole, raw) = await Post("/v1/responses", body);
        var (s, _, streamed) = await Post("/v1/responses", body.Replace("\"temperature\":0", "\"temperature\":0,\"stream\":true"));
        Assert.Equal(HttpStatusCode.OK, s);
        int last = -1;
        JsonElement completed = default;
        var text = new StringBuilder();
        var reasoning = new StringBuilder();
        var args = new StringBuilder();
        foreach (var evt in streamed.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            var lines = evt.Split('\n');
            var data = JsonDocument.Parse(lines[1][6..]).RootElement.Clone();
            string type = data.GetProperty("type").GetString()!;
            Assert.Equal(lines[0][7..], type);
            int seq = data.GetProperty("sequence_number").GetInt32();
            Assert.True(seq > last, $"sequence_number {seq} after {last}");
            last = seq;
            switch (type)
            {
                case "response.output_text.delta": text.Append(data.GetProperty("delta").GetString()); break;
                case "response.reasoning_text.delta": reasoning.Append(data.GetProperty("delta").GetString()); break;
                case "response.function_call_arguments.delta": args.Append(data.GetProperty("delta").GetString()); break;
                case "response.completed": completed = data.GetProperty("response"); break;
            }
        }
        Assert.StartsWith("event: response.created", streamed);
        Assert.Equal(OutputText(whole), text.ToString());
        Assert.Equal(ReasoningText(whole), reasoning.ToString());
        Assert.Equal(OutputText(whole), OutputText(completed));
        var calls = whole.GetProperty("output").EnumerateArray().Where(i => i.GetProperty("type").GetString() == "function_call").ToList();
        Assert.Equal(string.Concat(calls.Select(c => c.GetProperty("arguments").GetString())), args.ToString());
        Assert.Equal(whole.GetProperty("output").EnumerateArray().Select(i => i.GetProperty("type").GetString()), completed.GetProperty("output").EnumerateArray().Select(i => i.GetProperty("type").GetString()));
    }

    [Fact]
    public async Task AFunctionCallRoundTripMatchesChatCompletions()
    {
        string ask = """{"role":"user","content":"What's the weather in Lisbon?"}""";
        var (s, first, raw) = await Post("/v1/responses", $$$"""{"model":"glm-demo","temperature":0,"input":[{{{ask}}}],"tools":[{{{WeatherTool}}}],"reasoning":{"effort":"minimal"}}""");
        Assert.True(s == HttpStatusCode.OK, raw);
        var call = first.GetProperty("output").EnumerateArray().Single(i => i.GetProperty("type").GetString() == "function_call");
        var expected = await Chat($"[{ask}]", thinking: false, ChatWeatherTool);
        Assert.Equal(expected.Call!.Value.GetProperty("name").GetString(), call.GetProperty("name").GetString());
        Assert.True(JsonElement.DeepEquals(JsonDocument.Parse(expected.Call.Value.GetProperty("arguments").GetString()!).RootElement,
            JsonDocument.Parse(call.GetProperty("arguments").GetString()!).RootElement));

        string callId = call.GetProperty("call_id").GetString()!;
        string input = $$"""[{{ask}},{"type":"function_call","call_id":"{{callId}}","name":"get_weather","arguments":{{JsonSerializer.Serialize(call.GetProperty("arguments").GetString())}}},{"type":"function_call_output","call_id":"{{callId}}","output":"18 C, sunny"}]""";
        var (s2, second, raw2) = await Post("/v1/responses", $$$"""{"model":"glm-demo","temperature":0,"input":{{{input}}},"tools":[{{{WeatherTool}}}],"reasoning":{"effort":"minimal"}}""");
        Assert.True(s2 == HttpStatusCode.OK, raw2);
        string history = "[" + ask + """,{"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":""" + JsonSerializer.Serialize(call.GetProperty("arguments").GetString()) + """}}]},{"role":"tool","tool_call_id":"c1","content":"18 C, sunny"}]""";
        var expected2 = await Chat(history, thinking: false, ChatWeatherTool);
        Assert.Equal(expected2.Content, OutputText(second));
        Assert.Equal(expected2.PromptTokens, second.GetProperty("usage").GetProperty("input_tokens").GetInt32());
    }

    [Fact]
    public async Task AForcedFunctionIsCalledWithItsRequiredArguments()
    {
        var (s, response, raw) = await Post("/v1/responses", """{"model":"glm-demo","temperature":0,"input":"Hello!","tools":[WEATHER],"tool_choice":{"type":"function","name":"get_weather"},"reasoning":{"effort":"minimal"}}""".Replace("WEATHER", WeatherTool));
        Assert.True(s == HttpStatusCode.OK, raw);
        var call = response.GetProperty("output").EnumerateArray().Single(i => i.GetProperty("type").GetString() == "function_call");
        Assert.Equal("get_weather", call.GetProperty("name").GetString());
        Assert.True(JsonDocument.Parse(call.GetProperty("arguments").GetString()!).RootElement.TryGetProperty("city", out _));
        Assert.StartsWith("fc_", call.GetProperty("id").GetString());
        Assert.StartsWith("call_", call.GetProperty("call_id").GetString());
    }

    [Fact]
    public async Task MaxOutputTokensMakesTheResponseIncomplete()
    {
        var (_, response, _) = await Post("/v1/responses", """{"model":"glm-demo","input":"Hello!","max_output_tokens":3}""");
        Assert.Equal("incomplete", response.GetProperty("status").GetString());
        Assert.Equal("max_output_tokens", response.GetProperty("incomplete_details").GetProperty("reason").GetString());
    }

    [Theory]
    [InlineData("""{"model":"glm-demo","input":"hi","previous_response_id":"resp_123"}""", "previous_response_id")]
    [InlineData("""{"model":"glm-demo","input":[{"type":"message","role":"user","content":[{"type":"input_image","image_url":"http://x/y.png"}]}]}""", "input[0].content[0].type")]
    [InlineData("""{"model":"glm-demo","input":"hi","text":{"format":{"type":"yaml"}}}""", "text.format")]
    [InlineData("""{"model":"glm-demo"}""", "input")]
    [InlineData("""{"model":"glm-demo","input":[{"type":"web_search_call","id":"ws_1"}]}""", "input[0].type")]
    public async Task UnsupportedInputsAreClear400s(string json, string param)
    {
        var (s, body, raw) = await Post("/v1/responses", json);
        Assert.True(s == HttpStatusCode.BadRequest, raw);
        Assert.Equal(param, body.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task TheOfficialSdkReadsResponsesAndStreams()
    {
        var client = new ResponsesClient(new ApiKeyCredential(AgentServer.Key), new ResponsesClientOptions { Endpoint = new Uri(server.BaseUri, "/v1") });
        var options = new CreateResponseOptions { Model = "glm-demo", MaxOutputTokenCount = 100 };
        options.InputItems.Add(ResponseItem.CreateUserMessageItem("What is the capital of Japan?"));
        options.Patch.Set("$.temperature"u8, 0);
        var result = (await client.CreateResponseAsync(options)).Value;
        Assert.False(string.IsNullOrEmpty(result.GetOutputText()));
        var (_, raw, _) = await Post("/v1/responses", """{"model":"glm-demo","temperature":0,"max_output_tokens":100,"input":[{"type":"message","role":"user","content":"What is the capital of Japan?"}]}""");
        Assert.Equal(OutputText(raw), result.GetOutputText());

        options.StreamingEnabled = true;
        var text = new StringBuilder();
        await foreach (var update in await client.CreateResponseStreamingAsync(options))
            if (update is StreamingResponseOutputTextDeltaUpdate delta) text.Append(delta.Delta);
        Assert.Equal(result.GetOutputText(), text.ToString());
    }

    /// <summary>
    /// A first turn shaped like Codex's (written from the Responses API documentation: instructions, developer
    /// and user messages with input_text parts, function tools with strict, a namespace tool, a built-in tool,
    /// reasoning effort and summary, store false, include, prompt_cache_key, streaming): 200 and a well-formed stream.
    /// </summary>
    [Fact]
    public async Task ACodexShapedFirstTurnStreams()
    {
        var (s, _, streamed) = await Post("/v1/responses", AgentRecordings.CodexFirstTurn());
        Assert.True(s == HttpStatusCode.OK, streamed);
        var events = streamed.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => JsonDocument.Parse(e.Split('\n')[1][6..]).RootElement.Clone()).ToList();
        Assert.Equal("response.created", events[0].GetProperty("type").GetString());
        Assert.Contains(events[^1].GetProperty("type").GetString(), new[] { "response.completed", "response.incomplete" });
        Assert.True(events[^1].GetProperty("response").GetProperty("usage").GetProperty("input_tokens").GetInt32() > 4096, "the recording should exceed the trained context");
    }
}
#pragma warning restore OPENAI001
