using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Glm.TestSupport;
using OpenAI.Chat;

namespace Glm.Server.Tests;

/// <summary>The OpenAI surface on the transformers chat fixture model, driven by the OpenAI .NET SDK where it can be.</summary>
public class ApiTests(ChatFixtureServer server) : IClassFixture<ChatFixtureServer>
{
    private static JsonElement Case(int i)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Dir("chat_glm4_moe"), "expected_chat.json")));
        return doc.RootElement.GetProperty("cases")[i].Clone();
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public async Task GreedyChatOutputEqualsTheFixtureContinuation(int index)
    {
        var c = Case(index);
        var body = new Dictionary<string, object?>
        {
            ["model"] = server.Name, ["messages"] = c.GetProperty("messages"), ["temperature"] = 0, ["max_tokens"] = 16,
            ["ignore_eos"] = true, ["return_token_ids"] = true, ["chat_template_kwargs"] = c.GetProperty("kwargs"),
        };
        if (c.GetProperty("tools").ValueKind == JsonValueKind.Array) body["tools"] = c.GetProperty("tools");
        using var response = await server.Http.PostAsJsonAsync("/v1/chat/completions", body);
        var json = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        Assert.Equal(c.GetProperty("prompt_ids").EnumerateArray().Select(x => x.GetInt32()), json.GetProperty("prompt_token_ids").EnumerateArray().Select(x => x.GetInt32()));
        Assert.Equal(c.GetProperty("greedy_ids").EnumerateArray().Select(x => x.GetInt32()), json.GetProperty("choices")[0].GetProperty("token_ids").EnumerateArray().Select(x => x.GetInt32()));
    }

    [Fact]
    public async Task SdkChatReportsUsageAndStreamsTheSameText()
    {
        var messages = new List<ChatMessage> { new UserChatMessage("Hello there") };
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 };
        options.Patch.Set("$.ignore_eos"u8, true);
        var whole = (await server.Chat().CompleteChatAsync(messages, options)).Value;
        Assert.Equal(12, whole.Usage.OutputTokenCount);
        Assert.True(whole.Usage.InputTokenCount > 0);
        Assert.Equal(whole.Usage.InputTokenCount + 12, whole.Usage.TotalTokenCount);
        Assert.Equal(ChatFinishReason.Length, whole.FinishReason);

        var text = new StringBuilder();
        ChatTokenUsage? usage = null;
        options.Patch.Set("$.stream_options.include_usage"u8, true);
        await foreach (var u in server.Chat().CompleteChatStreamingAsync(messages, options))
        {
            foreach (var part in u.ContentUpdate) text.Append(part.Text);
            usage ??= u.Usage;
        }
        string wholeText = whole.Content.Count > 0 ? whole.Content[0].Text : "";
        whole.Patch.TryGetValue("$.choices[0].message.reasoning_content"u8, out string? reasoning);
        Assert.Equal(wholeText, text.ToString());
        Assert.NotNull(usage);
        Assert.Equal(12, usage!.OutputTokenCount);
        _ = reasoning;
    }

    [Fact]
    public async Task NTwoGivesTwoChoicesAndSeedsReproduce()
    {
        async Task<string[]> Run(long seed)
        {
            using var r = await server.Http.PostAsJsonAsync("/v1/chat/completions", new
            {
                model = server.Name, messages = new[] { new { role = "user", content = "Tell me something" } },
                temperature = 1.0, n = 2, seed, max_tokens = 10, ignore_eos = true, return_token_ids = true,
            });
            var json = await r.Content.ReadFromJsonAsync<JsonElement>();
            Assert.True(r.IsSuccessStatusCode, json.ToString());
            Assert.Equal(20, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
            return json.GetProperty("choices").EnumerateArray().Select(ch => string.Join(",", ch.GetProperty("token_ids").EnumerateArray())).ToArray();
        }
        var a = await Run(42);
        var b = await Run(42);
        var c = await Run(7);
        Assert.Equal(2, a.Length);
        Assert.Equal(a, b);
        Assert.NotEqual(a[0], a[1]);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public async Task StopStringsEndTheOutputWithoutTheStopText()
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 16 };
        options.Patch.Set("$.ignore_eos"u8, true);
        var messages = new List<ChatMessage> { new UserChatMessage("Hello there") };
        var free = (await server.Chat().CompleteChatAsync(messages, options)).Value;
        string text = free.Content.Count > 0 ? free.Content[0].Text : "";
        Assert.True(text.Length > 6, $"need some output to cut: '{text}'");
        string stop = text.Substring(text.Length / 2, 2);
        options.StopSequences.Add(stop);
        var cut = (await server.Chat().CompleteChatAsync(messages, options)).Value;
        string cutText = cut.Content.Count > 0 ? cut.Content[0].Text : "";
        Assert.Equal(ChatFinishReason.Stop, cut.FinishReason);
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], cutText);

        // Streamed, the stop text must not leak in a delta either.
        var streamed = new StringBuilder();
        await foreach (var u in server.Chat().CompleteChatStreamingAsync(messages, options))
            foreach (var part in u.ContentUpdate) streamed.Append(part.Text);
        Assert.Equal(cutText, streamed.ToString());
    }

    [Fact]
    public async Task ToolDefinitionsReachThePrompt()
    {
        var tools = Case(2).GetProperty("tools");
        using var r = await server.Http.PostAsJsonAsync("/tokenize", new { model = server.Name, messages = new[] { new { role = "user", content = "hi" } }, tools });
        var json = await r.Content.ReadFromJsonAsync<JsonElement>();
        using var d = await server.Http.PostAsJsonAsync("/detokenize", new { model = server.Name, tokens = json.GetProperty("tokens") });
        string prompt = (await d.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("prompt").GetString()!;
        Assert.Contains("<tools>", prompt);
        Assert.Contains("\"name\": \"get_weather\"", prompt);
    }

    /// <summary>/tokenize and the chat endpoint render the template the same way (kwargs, generation prompt, errors).</summary>
    [Fact]
    public async Task TokenizeCountsWhatTheChatEndpointFeedsTheModel()
    {
        var messages = new[] { new { role = "user", content = "What is 2 + 2?" } };
        var kwargs = new { enable_thinking = false };
        using var t = await server.Http.PostAsJsonAsync("/tokenize", new { model = server.Name, messages, chat_template_kwargs = kwargs });
        int count = (await t.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("count").GetInt32();
        using var c = await server.Http.PostAsJsonAsync("/v1/chat/completions", new { model = server.Name, messages, chat_template_kwargs = kwargs, max_tokens = 1 });
        var usage = (await c.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("usage");
        Assert.Equal(count, usage.GetProperty("prompt_tokens").GetInt32());

        foreach (var path in new[] { "/tokenize", "/v1/chat/completions" })
        {
            using var bad = await server.Http.PostAsJsonAsync(path, new { model = server.Name, messages, chat_template_kwargs = "no" });
            Assert.Equal(System.Net.HttpStatusCode.BadRequest, bad.StatusCode);
            Assert.Contains("chat_template_kwargs", await bad.Content.ReadAsStringAsync());
        }
    }

    [Fact]
    public async Task ModelsListNamesTheServedModel()
    {
        var json = await server.Http.GetFromJsonAsync<JsonElement>("/v1/models");
        Assert.Equal("list", json.GetProperty("object").GetString());
        Assert.Equal(server.Name, json.GetProperty("data")[0].GetProperty("id").GetString());
    }

    [Fact]
    public async Task SdkReceivesChatLogprobsWithAlternatives()
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 5, IncludeLogProbabilities = true, TopLogProbabilityCount = 3 };
        options.Patch.Set("$.ignore_eos"u8, true);
        var completion = (await server.Chat().CompleteChatAsync([new UserChatMessage("Hello there")], options)).Value;
        Assert.Equal(5, completion.ContentTokenLogProbabilities.Count);
        foreach (var token in completion.ContentTokenLogProbabilities)
        {
            Assert.True(token.LogProbability <= 0);
            Assert.Equal(3, token.TopLogProbabilities.Count);
            // Greedy: the chosen token is the most likely alternative.
            Assert.Equal(token.TopLogProbabilities[0].LogProbability, token.LogProbability, 1e-5);
            Assert.True(token.TopLogProbabilities[0].LogProbability >= token.TopLogProbabilities[1].LogProbability);
        }
    }

    [Fact]
    public async Task MetricsUseVllmNames()
    {
        using (await server.Http.PostAsJsonAsync("/v1/chat/completions", new { model = server.Name, messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 3 })) { }
        string metrics = await server.Http.GetStringAsync("/metrics");
        foreach (var name in new[]
        {
            "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:prompt_tokens_total",
            "vllm:generation_tokens_total", "vllm:time_to_first_token_seconds_bucket", "vllm:inter_token_latency_seconds_bucket",
            "vllm:e2e_request_latency_seconds_count", "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
            "vllm:request_success_total", "vllm:num_preemptions_total",
        })
            Assert.Contains(name + "{model_name=\"" + server.Name + "\"", metrics);
        Assert.Contains("process_", metrics); // prometheus-net's own process metrics beside them
    }

    [Fact]
    public async Task OpenApiDocumentDescribesTheEndpoints()
    {
        var doc = await server.Http.GetFromJsonAsync<JsonElement>("/openapi.json");
        var paths = doc.GetProperty("paths");
        foreach (var path in new[] { "/v1/chat/completions", "/v1/completions", "/v1/models", "/tokenize", "/detokenize", "/health" })
            Assert.True(paths.TryGetProperty(path, out _), $"{path} missing from the OpenAPI document");
        Assert.True(paths.GetProperty("/v1/chat/completions").GetProperty("post").TryGetProperty("requestBody", out _));
    }

    [Fact]
    public async Task CompletionsAcceptTextIdsAndListsAndRejectSuffix()
    {
        foreach (object prompt in new object[] { "Hello", new[] { 5, 6, 7 }, new object[] { "Hello", new[] { 5, 6, 7 } } })
        {
            using var r = await server.Http.PostAsJsonAsync("/v1/completions", new { model = server.Name, prompt, max_tokens = 4, temperature = 0, ignore_eos = true });
            var json = await r.Content.ReadFromJsonAsync<JsonElement>();
            Assert.True(r.IsSuccessStatusCode, json.ToString());
            Assert.Equal(prompt is object[] ? 2 : 1, json.GetProperty("choices").GetArrayLength());
        }
        using var bad = await server.Http.PostAsJsonAsync("/v1/completions", new { model = server.Name, prompt = "x", suffix = "y" });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal("suffix", (await bad.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task CompletionsEchoAndLogprobs()
    {
        // With echo, the prompt's tokens come first: the first has no logprob (null), the rest their logprob given
        // what precedes them; text_offset gives each token's start in the returned text.
        using var r = await server.Http.PostAsJsonAsync("/v1/completions", new { model = server.Name, prompt = "Hello there, friend", max_tokens = 3, temperature = 0, ignore_eos = true, echo = true, logprobs = 2 });
        var json = await r.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(r.IsSuccessStatusCode, json.ToString());
        var choice = json.GetProperty("choices")[0];
        string text = choice.GetProperty("text").GetString()!;
        Assert.StartsWith("Hello there, friend", text);
        var lp = choice.GetProperty("logprobs");
        int promptTokens = json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        var logprobs = lp.GetProperty("token_logprobs").EnumerateArray().ToList();
        Assert.Equal(promptTokens + 3, logprobs.Count);
        Assert.Equal(JsonValueKind.Null, logprobs[0].ValueKind);
        Assert.All(logprobs.Skip(1), x => Assert.True(x.GetDouble() <= 0));
        var tokens = lp.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToList();
        var offsets = lp.GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32()).ToList();
        Assert.Equal(0, offsets[0]);
        for (int i = 0; i < tokens.Count; i++) Assert.Equal(tokens[i], text.Substring(offsets[i], tokens[i].Length));
        Assert.Equal(2, lp.GetProperty("top_logprobs")[1].EnumerateObject().Count());

        // The prompt logprob of a token equals the logprob it had when it was generated.
        using var first = await server.Http.PostAsJsonAsync("/v1/completions", new { model = server.Name, prompt = "Hello there, friend", max_tokens = 1, temperature = 0, logprobs = 0, return_token_ids = true });
        var f = (await first.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("choices")[0];
        double generated = f.GetProperty("logprobs").GetProperty("token_logprobs")[0].GetDouble();
        var promptIds = f.GetProperty("prompt_token_ids").EnumerateArray().Select(x => x.GetInt32()).Append(f.GetProperty("token_ids")[0].GetInt32()).ToArray();
        using var second = await server.Http.PostAsJsonAsync("/v1/completions", new { model = server.Name, prompt = promptIds, max_tokens = 1, echo = true, logprobs = 0 });
        var s2 = (await second.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("choices")[0].GetProperty("logprobs").GetProperty("token_logprobs");
        Assert.Equal(generated, s2[promptIds.Length - 1].GetDouble(), 3);
    }

    [Fact]
    public async Task RequestIdsAreEchoedAndModelsAreListedWithoutPaths()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        request.Headers.Add("X-Request-Id", "trace-123");
        using var r = await server.Http.SendAsync(request);
        Assert.Equal("trace-123", r.Headers.GetValues("X-Request-Id").Single());
        var models = await r.Content.ReadFromJsonAsync<JsonElement>();
        string root = models.GetProperty("data")[0].GetProperty("root").GetString()!;
        Assert.DoesNotContain("/", root);
        using var generated = await server.Http.GetAsync("/v1/models");
        Assert.Equal(32, generated.Headers.GetValues("X-Request-Id").Single().Length);
        using var one = await server.Http.GetAsync($"/v1/models/{server.Name}");
        Assert.Equal(server.Name, (await one.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString());
        using var missing = await server.Http.GetAsync("/v1/models/gpt-9");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("model_not_found", (await missing.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("code").GetString());
    }
}
