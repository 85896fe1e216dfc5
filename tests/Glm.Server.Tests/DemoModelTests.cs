using System.Net.Http.Json;
using System.Text.Json;
using Glm.TestSupport;
using OpenAI.Chat;

namespace Glm.Server.Tests;

/// <summary>The embedded demo model through the real server and the OpenAI .NET SDK, against transformers' greedy probes.</summary>
public class DemoModelTests(DemoServer server) : IClassFixture<DemoServer>
{
    public static TheoryData<int> Probes() => new(Enumerable.Range(0, 8));

    private static JsonElement Probe(int i)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.DemoModel, "expected_probes.json")));
        return doc.RootElement[i].Clone();
    }

    private static object Request(JsonElement probe, bool stream, object? extra = null)
    {
        var body = new Dictionary<string, object?>
        {
            ["model"] = "glm-demo",
            ["messages"] = new[] { new { role = "user", content = probe.GetProperty("user").GetString() } },
            ["temperature"] = 0,
            ["max_tokens"] = 64,
            ["return_token_ids"] = true,
            ["stream"] = stream,
            ["chat_template_kwargs"] = probe.GetProperty("kwargs"),
        };
        if (probe.GetProperty("tools").ValueKind == JsonValueKind.Array) body["tools"] = probe.GetProperty("tools");
        return body;
    }

    [Theory]
    [MemberData(nameof(Probes))]
    public async Task ProbeIsReproducedTokenForToken(int index)
    {
        var probe = Probe(index);
        using var response = await server.Http.PostAsJsonAsync("/v1/chat/completions", Request(probe, stream: false));
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(response.IsSuccessStatusCode, body.ToString());
        Assert.Equal(probe.GetProperty("prompt_ids").EnumerateArray().Select(x => x.GetInt32()), body.GetProperty("prompt_token_ids").EnumerateArray().Select(x => x.GetInt32()));
        Assert.Equal(probe.GetProperty("greedy_ids").EnumerateArray().Select(x => x.GetInt32()), body.GetProperty("choices")[0].GetProperty("token_ids").EnumerateArray().Select(x => x.GetInt32()));
    }

    [Theory]
    [MemberData(nameof(Probes))]
    public async Task SdkReceivesReasoningContentAndTypedToolCalls(int index)
    {
        var probe = Probe(index);
        string greedy = probe.GetProperty("greedy_text").GetString()!;
        var messages = new List<ChatMessage> { new UserChatMessage(probe.GetProperty("user").GetString()) };
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 64 };
        if (probe.GetProperty("tools").ValueKind == JsonValueKind.Array)
            foreach (var t in probe.GetProperty("tools").EnumerateArray())
            {
                var fn = t.GetProperty("function");
                options.Tools.Add(ChatTool.CreateFunctionTool(fn.GetProperty("name").GetString(), fn.GetProperty("description").GetString(),
                    BinaryData.FromString(fn.GetProperty("parameters").GetRawText())));
            }
        if (probe.GetProperty("kwargs").TryGetProperty("enable_thinking", out var thinking))
            options.Patch.Set("$.chat_template_kwargs.enable_thinking"u8, thinking.GetBoolean());

        var completion = (await server.Chat().CompleteChatAsync(messages, options)).Value;

        string expectedReasoning = greedy.Contains("</think>") ? greedy[(greedy.IndexOf("<think>") + 7)..greedy.IndexOf("</think>")] : "";
        Assert.True(completion.Patch.TryGetValue("$.choices[0].message.reasoning_content"u8, out string? reasoning) || expectedReasoning.Length == 0);
        Assert.Equal(expectedReasoning, reasoning ?? "");
        if (greedy.Contains("<tool_call>"))
        {
            Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
            var (_, _, calls) = Glm.Text.Parsing.GlmOutputParser.ParseComplete(greedy[(greedy.IndexOf("</think>") + 1)..], Glm.Text.Parsing.ToolSchemas.Empty, parseReasoning: false);
            Assert.Equal(calls.Count, completion.ToolCalls.Count);
            for (int i = 0; i < calls.Count; i++)
            {
                Assert.Equal(calls[i].Name, completion.ToolCalls[i].FunctionName);
                using var args = JsonDocument.Parse(completion.ToolCalls[i].FunctionArguments);
                Assert.Equal(JsonValueKind.Object, args.RootElement.ValueKind);
                Assert.True(JsonElement.DeepEquals(JsonDocument.Parse(calls[i].Arguments).RootElement, args.RootElement));
            }
        }
        else
        {
            Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
            string answer = greedy[(greedy.Contains("</think>") ? greedy.IndexOf("</think>") + 8 : 0)..].Replace("<|user|>", "").Trim();
            Assert.Equal(answer, completion.Content[0].Text);
        }
    }

    [Theory]
    [MemberData(nameof(Probes))]
    public async Task StreamingGivesTheSameMessageAsNonStreaming(int index)
    {
        var probe = Probe(index);
        var messages = new List<ChatMessage> { new UserChatMessage(probe.GetProperty("user").GetString()) };
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 64 };
        if (probe.GetProperty("tools").ValueKind == JsonValueKind.Array)
            foreach (var t in probe.GetProperty("tools").EnumerateArray())
            {
                var fn = t.GetProperty("function");
                options.Tools.Add(ChatTool.CreateFunctionTool(fn.GetProperty("name").GetString(), null, BinaryData.FromString(fn.GetProperty("parameters").GetRawText())));
            }
        if (probe.GetProperty("kwargs").TryGetProperty("enable_thinking", out var thinking))
            options.Patch.Set("$.chat_template_kwargs.enable_thinking"u8, thinking.GetBoolean());
        var whole = (await server.Chat().CompleteChatAsync(messages, options)).Value;

        var content = new System.Text.StringBuilder();
        var reasoning = new System.Text.StringBuilder();
        var names = new Dictionary<int, string>();
        var args = new Dictionary<int, System.Text.StringBuilder>();
        ChatFinishReason? finish = null;
        await foreach (var update in server.Chat().CompleteChatStreamingAsync(messages, options))
        {
            foreach (var part in update.ContentUpdate) content.Append(part.Text);
            if (update.Patch.TryGetValue("$.choices[0].delta.reasoning_content"u8, out string? r)) reasoning.Append(r);
            foreach (var call in update.ToolCallUpdates)
            {
                if (call.FunctionName is { } n) names[call.Index] = n;
                if (call.FunctionArgumentsUpdate is { } a) (args.TryGetValue(call.Index, out var sb) ? sb : args[call.Index] = new()).Append(a.ToString());
            }
            finish ??= update.FinishReason;
        }
        Assert.Equal(whole.FinishReason, finish);
        Assert.Equal(whole.Content.Count > 0 ? whole.Content[0].Text : "", content.ToString());
        whole.Patch.TryGetValue("$.choices[0].message.reasoning_content"u8, out string? wholeReasoning);
        Assert.Equal(wholeReasoning ?? "", reasoning.ToString());
        Assert.Equal(whole.ToolCalls.Count, names.Count);
        for (int i = 0; i < whole.ToolCalls.Count; i++)
        {
            Assert.Equal(whole.ToolCalls[i].FunctionName, names[i]);
            Assert.Equal(whole.ToolCalls[i].FunctionArguments.ToString(), args[i].ToString());
        }
    }

    private static readonly string WeatherTool = """
        {"type":"function","function":{"name":"get_weather","description":"Get the current weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string","description":"City name"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}}}
        """;
    private static readonly string CalculatorTool = """
        {"type":"function","function":{"name":"calculator","description":"Evaluate an arithmetic expression exactly","parameters":{"type":"object","properties":{"expression":{"type":"string"}},"required":["expression"]}}}
        """;

    [Theory]
    [InlineData("Hello!", "named")]
    [InlineData("What is the capital of Japan?", "required")]
    public async Task ToolChoiceForcesAValidGlmCallEvenWhereTheModelWouldAnswer(string user, string mode)
    {
        object toolChoice = mode == "named" ? new { type = "function", function = new { name = "get_weather" } } : "required";
        using var response = await server.Http.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "glm-demo", temperature = 0, max_tokens = 64,
            messages = new[] { new { role = "user", content = user } },
            tools = new[] { JsonDocument.Parse(WeatherTool).RootElement, JsonDocument.Parse(CalculatorTool).RootElement },
            tool_choice = toolChoice,
        });
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(response.IsSuccessStatusCode, body.ToString());
        var choice = body.GetProperty("choices")[0];
        Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
        var calls = choice.GetProperty("message").GetProperty("tool_calls");
        Assert.True(calls.GetArrayLength() >= 1);
        foreach (var call in calls.EnumerateArray())
        {
            string name = call.GetProperty("function").GetProperty("name").GetString()!;
            if (mode == "named") Assert.Equal("get_weather", name);
            else Assert.Contains(name, new[] { "get_weather", "calculator" });
            using var args = JsonDocument.Parse(call.GetProperty("function").GetProperty("arguments").GetString()!);
            var allowed = name == "get_weather" ? new[] { "city", "unit" } : new[] { "expression" };
            foreach (var p in args.RootElement.EnumerateObject()) Assert.Contains(p.Name, allowed);
            // Every required key is there: the grammar does not let the call close without it.
            Assert.True(args.RootElement.TryGetProperty(name == "get_weather" ? "city" : "expression", out _), $"{name} without its required key: {args.RootElement}");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ParallelToolCallsFalseKeepsOnlyTheFirstCall(bool stream)
    {
        // Probe 6 makes two get_time calls when parallel calls are allowed.
        var probe = Probe(6);
        var body = (Dictionary<string, object?>)Request(probe, stream);
        body["parallel_tool_calls"] = false;
        using var response = await server.Http.PostAsJsonAsync("/v1/chat/completions", body);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        if (!stream)
        {
            var calls = JsonDocument.Parse(text).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("tool_calls");
            Assert.Equal(1, calls.GetArrayLength());
            Assert.Contains("Oslo", calls[0].GetProperty("function").GetProperty("arguments").GetString());
        }
        else
        {
            Assert.Contains("\"index\":0", text);
            Assert.DoesNotContain("\"index\":1,\"id\"", text);
            Assert.Contains("\"finish_reason\":\"tool_calls\"", text);
        }
    }

    /// <summary>A forced call cut off by max_tokens is no call: its text is content and the finish reason is length.</summary>
    [Fact]
    public async Task ACallCutOffByMaxTokensIsContentNotAnEmptyCall()
    {
        using var response = await server.Http.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "glm-demo", temperature = 0, max_tokens = 5,
            messages = new[] { new { role = "user", content = "What's the weather in Lisbon?" } },
            tools = new[] { JsonDocument.Parse(WeatherTool).RootElement }, tool_choice = "required",
            chat_template_kwargs = new { enable_thinking = false },
        });
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(response.IsSuccessStatusCode, body.ToString());
        var choice = body.GetProperty("choices")[0];
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        var message = choice.GetProperty("message");
        Assert.Equal(0, message.GetProperty("tool_calls").GetArrayLength());
        Assert.StartsWith("<tool_call>", message.GetProperty("content").GetString());
    }
}
