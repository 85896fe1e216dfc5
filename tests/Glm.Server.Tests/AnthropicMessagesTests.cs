using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Anthropic;
using Anthropic.Models.Messages;
using Glm.TestSupport;

namespace Glm.Server.Tests;

/// <summary>
/// The demo model behind an API key, with a context past its trained 4096 positions (the long-context opt-in),
/// so agents' long first turns fit.
/// </summary>
public sealed class AgentServer : ServerFixture
{
    public const string Key = "sk-agent-key";
    protected override string ModelDirectory => Fixtures.DemoModel;
    protected override string ModelName => "glm-demo";
    protected override void Configure(Glm.Server.Cli.ServerOptions o)
    {
        o.ApiKey = Key;
        o.MaxModelLen = 16384;
        o.AllowLongMaxModelLen = true;
        o.KvCacheMemory = 256L << 20;
    }
}

/// <summary>/v1/messages through the official Anthropic SDK and on the wire, against /v1/chat/completions on the same conversation.</summary>
public class AnthropicMessagesTests(AgentServer server) : IClassFixture<AgentServer>
{
    private const string WeatherTool = """{"name":"get_weather","description":"Get the current weather for a city","input_schema":{"type":"object","properties":{"city":{"type":"string","description":"City name"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}}""";
    private const string OpenAiWeatherTool = """{"type":"function","function":{"name":"get_weather","description":"Get the current weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string","description":"City name"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}}}""";

    private AnthropicClient Sdk() => new() { BaseUrl = server.BaseUri.ToString().TrimEnd('/'), ApiKey = AgentServer.Key, MaxRetries = 0 };

    private async Task<(HttpStatusCode Status, JsonElement Body, string Raw)> Post(string path, string json, string? key = AgentServer.Key, bool bearer = false)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        if (key is not null)
        {
            if (bearer) request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
            else request.Headers.Add("x-api-key", key);
        }
        request.Headers.Add("anthropic-version", "2023-06-01");
        using var r = await server.Http.SendAsync(request);
        string raw = await r.Content.ReadAsStringAsync();
        JsonElement body = default;
        if (r.Content.Headers.ContentType?.MediaType == "application/json") body = JsonDocument.Parse(raw).RootElement.Clone();
        return (r.StatusCode, body, raw);
    }

    /// <summary>The same conversation through /v1/chat/completions: content, reasoning, the first call, prompt tokens.</summary>
    private async Task<(string Content, string Reasoning, JsonElement? Call, int PromptTokens, string Finish)> Chat(string messages, bool thinking, string? tools = null, string? toolChoice = null, int maxTokens = 200)
    {
        string extra = (tools is null ? "" : $",\"tools\":[{tools}]") + (toolChoice is null ? "" : $",\"tool_choice\":{toolChoice}");
        var (s, body, raw) = await Post("/v1/chat/completions", $$"""{"model":"glm-demo","temperature":0,"max_tokens":{{maxTokens}},"messages":{{messages}},"chat_template_kwargs":{"enable_thinking":{{(thinking ? "true" : "false")}}}{{extra}}}""", bearer: true);
        Assert.True(s == HttpStatusCode.OK, raw);
        var choice = body.GetProperty("choices")[0];
        var m = choice.GetProperty("message");
        var calls = m.GetProperty("tool_calls");
        return (m.GetProperty("content").GetString() ?? "", m.TryGetProperty("reasoning_content", out var rc) ? rc.GetString() ?? "" : "",
            calls.GetArrayLength() > 0 ? calls[0].GetProperty("function").Clone() : null, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(),
            choice.GetProperty("finish_reason").GetString()!);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task TheAnswerEqualsChatCompletionsWithAndWithoutThinking(bool thinking)
    {
        string thinkingField = thinking ? ",\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1024}" : "";
        var (s, message, raw) = await Post("/v1/messages",
            """{"model":"glm-demo","max_tokens":200,"temperature":0,"system":[{"type":"text","text":"You are GLM-Demo.","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"Hello!"}]""" + thinkingField + "}");
        Assert.True(s == HttpStatusCode.OK, raw);
        var expected = await Chat("""[{"role":"system","content":"You are GLM-Demo."},{"role":"user","content":"Hello!"}]""", thinking);
        var content = message.GetProperty("content").EnumerateArray().ToList();
        string text = string.Concat(content.Where(b => b.GetProperty("type").GetString() == "text").Select(b => b.GetProperty("text").GetString()));
        string reasoning = string.Concat(content.Where(b => b.GetProperty("type").GetString() == "thinking").Select(b => b.GetProperty("thinking").GetString()));
        Assert.Equal(expected.Content, text);
        Assert.Equal(expected.Reasoning, reasoning);
        Assert.Equal(thinking, reasoning.Length > 0);
        Assert.Equal(expected.PromptTokens, message.GetProperty("usage").GetProperty("input_tokens").GetInt32());
        Assert.StartsWith("msg_", message.GetProperty("id").GetString());
        Assert.Equal("message", message.GetProperty("type").GetString());
        Assert.Equal("end_turn", message.GetProperty("stop_reason").GetString());
        if (thinking) Assert.Equal("thinking", content[0].GetProperty("type").GetString());
    }

    /// <summary>The official SDK parses what the server sends, whole and streamed (the SDK leaves temperature to the server).</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task TheOfficialSdkReadsMessagesAndStreams(bool thinking)
    {
        var parameters = new MessageCreateParams
        {
            Model = "glm-demo", MaxTokens = 200, System = "You are GLM-Demo.",
            Messages = [new UserMessageParam { Content = "Hello!" }],
        };
        if (thinking) parameters = parameters with { Thinking = new ThinkingConfigEnabled { BudgetTokens = 1024 } };
        var message = await Sdk().Messages.Create(parameters);
        Assert.StartsWith("msg_", message.ID);
        Assert.NotEmpty(message.Content);
        Assert.True(message.Usage.InputTokens > 0);
        Assert.Contains(message.StopReason?.Raw(), new[] { "end_turn", "max_tokens" });
        if (thinking && message.Content[0].TryPickThinking(out var block)) Assert.True(block.Signature.Length > 0);

        int events = 0, deltas = 0;
        await foreach (var e in Sdk().Messages.CreateStreaming(parameters))
        {
            events++;
            if (e.TryPickContentBlockDelta(out _)) deltas++;
        }
        Assert.True(deltas > 0 && events > deltas);
    }

    [Fact]
    public async Task StreamingGivesTheSameMessageAsNonStreaming()
    {
        string body = """{"model":"glm-demo","max_tokens":200,"temperature":0,"thinking":{"type":"enabled","budget_tokens":512},"messages":[{"role":"user","content":"What's the weather in Lisbon?"}],"tools":[WEATHER]}""".Replace("WEATHER", WeatherTool);
        var (s, whole, raw) = await Post("/v1/messages", body);
        Assert.True(s == HttpStatusCode.OK, raw);
        var (s2, _, streamed) = await Post("/v1/messages", body.Replace("\"max_tokens\":200", "\"max_tokens\":200,\"stream\":true"));
        Assert.Equal(HttpStatusCode.OK, s2);

        // Rebuild the message from the events, checking their order and that event: equals each payload's type.
        var blocks = new List<Dictionary<string, string>>();
        string? stopReason = null;
        var types = new List<string>();
        foreach (var evt in streamed.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            var lines = evt.Split('\n');
            Assert.StartsWith("event: ", lines[0]);
            Assert.StartsWith("data: ", lines[1]);
            var data = JsonDocument.Parse(lines[1][6..]).RootElement;
            string type = data.GetProperty("type").GetString()!;
            Assert.Equal(lines[0][7..], type);
            types.Add(type);
            switch (type)
            {
                case "content_block_start":
                    Assert.Equal(blocks.Count, data.GetProperty("index").GetInt32());
                    var cb = data.GetProperty("content_block");
                    blocks.Add(new() { ["type"] = cb.GetProperty("type").GetString()!, ["text"] = "", ["name"] = cb.TryGetProperty("name", out var n) ? n.GetString()! : "" });
                    break;
                case "content_block_delta":
                    var d = data.GetProperty("delta");
                    var b = blocks[data.GetProperty("index").GetInt32()];
                    b["text"] += d.GetProperty("type").GetString() switch
                    {
                        "text_delta" => d.GetProperty("text").GetString(),
                        "thinking_delta" => d.GetProperty("thinking").GetString(),
                        "input_json_delta" => d.GetProperty("partial_json").GetString(),
                        _ => "",
                    };
                    break;
                case "message_delta":
                    stopReason = data.GetProperty("delta").GetProperty("stop_reason").GetString();
                    break;
            }
        }
        Assert.Equal("message_start", types[0]);
        Assert.Equal("message_stop", types[^1]);
        Assert.DoesNotContain("[DONE]", streamed);
        var content = whole.GetProperty("content");
        Assert.Equal(content.GetArrayLength(), blocks.Count);
        for (int i = 0; i < blocks.Count; i++)
        {
            var w = content[i];
            Assert.Equal(w.GetProperty("type").GetString(), blocks[i]["type"]);
            switch (blocks[i]["type"])
            {
                case "text": Assert.Equal(w.GetProperty("text").GetString(), blocks[i]["text"]); break;
                case "thinking": Assert.Equal(w.GetProperty("thinking").GetString(), blocks[i]["text"]); break;
                case "tool_use":
                    Assert.Equal(w.GetProperty("name").GetString(), blocks[i]["name"]);
                    Assert.True(JsonElement.DeepEquals(w.GetProperty("input"), JsonDocument.Parse(blocks[i]["text"]).RootElement));
                    break;
            }
        }
        Assert.Equal(whole.GetProperty("stop_reason").GetString(), stopReason);
    }

    [Fact]
    public async Task AToolRoundTripMatchesChatCompletions()
    {
        string ask = """{"role":"user","content":"What's the weather in Lisbon?"}""";
        var (s, first, raw) = await Post("/v1/messages", $$"""{"model":"glm-demo","max_tokens":200,"temperature":0,"messages":[{{ask}}],"tools":[{{WeatherTool}}]}""");
        Assert.True(s == HttpStatusCode.OK, raw);
        Assert.Equal("tool_use", first.GetProperty("stop_reason").GetString());
        var use = first.GetProperty("content").EnumerateArray().Single(b => b.GetProperty("type").GetString() == "tool_use");
        Assert.StartsWith("toolu_", use.GetProperty("id").GetString());
        var expected = await Chat($"[{ask}]", thinking: false, OpenAiWeatherTool);
        Assert.Equal(expected.Call!.Value.GetProperty("name").GetString(), use.GetProperty("name").GetString());
        Assert.True(JsonElement.DeepEquals(JsonDocument.Parse(expected.Call.Value.GetProperty("arguments").GetString()!).RootElement, use.GetProperty("input")));

        // Send the result back: the answer must match chat completions given the same history.
        string assistant = $$"""{"role":"assistant","content":[{"type":"tool_use","id":"{{use.GetProperty("id").GetString()}}","name":"get_weather","input":{{use.GetProperty("input").GetRawText()}}}]}""";
        string result = $$"""{"role":"user","content":[{"type":"tool_result","tool_use_id":"{{use.GetProperty("id").GetString()}}","content":[{"type":"text","text":"18 C, sunny"}]}]}""";
        var (s2, second, raw2) = await Post("/v1/messages", $$"""{"model":"glm-demo","max_tokens":200,"temperature":0,"messages":[{{ask}},{{assistant}},{{result}}],"tools":[{{WeatherTool}}]}""");
        Assert.True(s2 == HttpStatusCode.OK, raw2);
        string arguments = JsonSerializer.Serialize(use.GetProperty("input").GetRawText());
        string openAiHistory = "[" + ask + """,{"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":""" + arguments
            + """}}]},{"role":"tool","tool_call_id":"c1","content":"18 C, sunny"}]""";
        var expected2 = await Chat(openAiHistory, thinking: false, OpenAiWeatherTool);
        string text = string.Concat(second.GetProperty("content").EnumerateArray().Where(b => b.GetProperty("type").GetString() == "text").Select(b => b.GetProperty("text").GetString()));
        Assert.Equal(expected2.Content, text);
        Assert.Equal(expected2.PromptTokens, second.GetProperty("usage").GetProperty("input_tokens").GetInt32());
    }

    /// <summary>budget_tokens is enforced: once spent, the thinking closes and the answer follows.</summary>
    [Fact]
    public async Task TheThinkingBudgetCutsThinkingShort()
    {
        string Body(int budget) => $$"""{"model":"glm-demo","max_tokens":100,"temperature":0,"thinking":{"type":"enabled","budget_tokens":{{budget}}},"messages":[{"role":"user","content":"Hello!"}]}""";
        static string Thinking(JsonElement m) => string.Concat(m.GetProperty("content").EnumerateArray().Where(b => b.GetProperty("type").GetString() == "thinking").Select(b => b.GetProperty("thinking").GetString()));
        static string Text(JsonElement m) => string.Concat(m.GetProperty("content").EnumerateArray().Where(b => b.GetProperty("type").GetString() == "text").Select(b => b.GetProperty("text").GetString()));
        var (_, full, _) = await Post("/v1/messages", Body(1024));
        var (s, cut, raw) = await Post("/v1/messages", Body(2));
        Assert.True(s == HttpStatusCode.OK, raw);
        string fullThinking = Thinking(full), cutThinking = Thinking(cut);
        Assert.True(fullThinking.Length > cutThinking.Length, $"'{cutThinking}' should be shorter than '{fullThinking}'");
        Assert.StartsWith(cutThinking, fullThinking);
        var tokenizer = server.Host.Model!.Tokenizer!;
        Assert.True(tokenizer.Encode(cutThinking).Length <= 2, cutThinking);
        Assert.False(string.IsNullOrEmpty(Text(cut)));
    }

    [Fact]
    public async Task ForcedToolsStopSequencesAndMaxTokens()
    {
        var (s, forced, raw) = await Post("/v1/messages", """{"model":"glm-demo","max_tokens":100,"temperature":0,"messages":[{"role":"user","content":"Hello!"}],"tools":[WEATHER],"tool_choice":{"type":"tool","name":"get_weather"}}""".Replace("WEATHER", WeatherTool));
        Assert.True(s == HttpStatusCode.OK, raw);
        Assert.Equal("tool_use", forced.GetProperty("stop_reason").GetString());
        Assert.Contains(forced.GetProperty("content").EnumerateArray(), b => b.GetProperty("type").GetString() == "tool_use" && b.GetProperty("name").GetString() == "get_weather");

        var (_, plain, _) = await Post("/v1/messages", """{"model":"glm-demo","max_tokens":100,"temperature":0,"messages":[{"role":"user","content":"Hello!"}]}""");
        string text = plain.GetProperty("content")[0].GetProperty("text").GetString()!;
        string stop = text.Split(' ')[1];
        var (_, stopped, _) = await Post("/v1/messages", $$"""{"model":"glm-demo","max_tokens":100,"temperature":0,"messages":[{"role":"user","content":"Hello!"}],"stop_sequences":["{{stop}}"]}""");
        Assert.Equal("stop_sequence", stopped.GetProperty("stop_reason").GetString());
        Assert.Equal(stop, stopped.GetProperty("stop_sequence").GetString());

        var (_, cut, _) = await Post("/v1/messages", """{"model":"glm-demo","max_tokens":3,"temperature":0,"messages":[{"role":"user","content":"Hello!"}]}""");
        Assert.Equal("max_tokens", cut.GetProperty("stop_reason").GetString());
        Assert.Equal(3, cut.GetProperty("usage").GetProperty("output_tokens").GetInt32());
    }

    [Fact]
    public async Task CountTokensEqualsTheMessagesInputTokens()
    {
        var count = await Sdk().Messages.CountTokens(new MessageCountTokensParams
        {
            Model = "glm-demo", System = "Be brief.", Messages = [new UserMessageParam { Content = "What is the capital of Japan?" }],
        });
        var message = await Sdk().Messages.Create(new MessageCreateParams
        {
            Model = "glm-demo", MaxTokens = 5, System = "Be brief.", Messages = [new UserMessageParam { Content = "What is the capital of Japan?" }],
        });
        Assert.Equal(message.Usage.InputTokens, count.InputTokens);
    }

    [Theory]
    [InlineData("""{"model":"glm-demo","messages":[{"role":"user","content":"hi"}]}""", HttpStatusCode.BadRequest, "invalid_request_error")]
    [InlineData("""{"model":"claude-9","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}""", HttpStatusCode.NotFound, "not_found_error")]
    [InlineData("""{"model":"glm-demo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]}]}""", HttpStatusCode.BadRequest, "invalid_request_error")]
    [InlineData("""{"model":"glm-demo","max_tokens":5,"messages":[{"role":"robot","content":"hi"}]}""", HttpStatusCode.BadRequest, "invalid_request_error")]
    [InlineData("""{"model":"glm-demo","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"web_search_20250305","name":"web_search"}]}""", HttpStatusCode.BadRequest, "invalid_request_error")]
    [InlineData("""{"model":"glm-demo","max_tokens":5,"messages":"hi"}""", HttpStatusCode.BadRequest, "invalid_request_error")]
    public async Task ErrorsTakeAnthropicsShape(string json, HttpStatusCode status, string type)
    {
        var (s, body, raw) = await Post("/v1/messages", json);
        Assert.True(s == status, raw);
        Assert.Equal("error", body.GetProperty("type").GetString());
        Assert.Equal(type, body.GetProperty("error").GetProperty("type").GetString());
        Assert.False(string.IsNullOrEmpty(body.GetProperty("error").GetProperty("message").GetString()));
    }

    [Theory]
    [InlineData(400, "invalid_request_error")]
    [InlineData(401, "authentication_error")]
    [InlineData(403, "permission_error")]
    [InlineData(404, "not_found_error")]
    [InlineData(413, "request_too_large")]
    [InlineData(429, "rate_limit_error")]
    [InlineData(500, "api_error")]
    [InlineData(503, "overloaded_error")]
    public void EveryStatusMapsToAnthropicsErrorType(int status, string type)
    {
        var body = JsonDocument.Parse(JsonSerializer.Serialize(Glm.Server.Api.ErrorResponses.AnthropicBody(status, "m"))).RootElement;
        Assert.Equal("error", body.GetProperty("type").GetString());
        Assert.Equal(type, body.GetProperty("error").GetProperty("type").GetString());
    }

    [Fact]
    public async Task TheKeyIsTakenFromXApiKeyOrBearerAndAWrongOneIsAnAuthenticationError()
    {
        string ok = """{"model":"glm-demo","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}""";
        Assert.Equal(HttpStatusCode.OK, (await Post("/v1/messages", ok)).Status);
        Assert.Equal(HttpStatusCode.OK, (await Post("/v1/messages", ok, bearer: true)).Status);
        var (s, body, _) = await Post("/v1/messages?beta=true", ok, key: "sk-wrong");
        Assert.Equal(HttpStatusCode.Unauthorized, s);
        Assert.Equal("authentication_error", body.GetProperty("error").GetProperty("type").GetString());
        await Assert.ThrowsAnyAsync<Exception>(() => new AnthropicClient { BaseUrl = server.BaseUri.ToString().TrimEnd('/'), ApiKey = "sk-wrong", MaxRetries = 0 }
            .Messages.Create(new MessageCreateParams { Model = "glm-demo", MaxTokens = 2, Messages = [new UserMessageParam { Content = "hi" }] }));
    }

    /// <summary>
    /// A first turn shaped like Claude Code's (written from the Messages API documentation: system blocks with
    /// cache_control, a long system prompt, many tools with JSON schemas, metadata, thinking, streaming, the
    /// ?beta=true query and anthropic-beta header): 200 and a well-formed stream.
    /// </summary>
    [Fact]
    public async Task AClaudeCodeShapedFirstTurnStreams()
    {
        string json = AgentRecordings.ClaudeCodeFirstTurn();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/messages?beta=true") { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        request.Headers.Add("x-api-key", AgentServer.Key);
        request.Headers.Add("anthropic-version", "2023-06-01");
        request.Headers.Add("anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14");
        using var r = await server.Http.SendAsync(request);
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, text);
        var types = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => JsonDocument.Parse(e.Split('\n')[1][6..]).RootElement.GetProperty("type").GetString()).ToList();
        Assert.Equal("message_start", types[0]);
        Assert.Equal("message_delta", types[^2]);
        Assert.Equal("message_stop", types[^1]);
        var start = JsonDocument.Parse(text.Split("\n\n")[0].Split('\n')[1][6..]).RootElement;
        Assert.True(start.GetProperty("message").GetProperty("usage").GetProperty("input_tokens").GetInt32() > 4096, "the recording should exceed the trained context");
    }
}
