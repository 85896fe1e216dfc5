using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Glm.Server.Tests;

/// <summary>Every kind of bad request gets an OpenAI-shaped error with the right status, and the server keeps serving.</summary>
public class BadInputTests(SecuredServer server) : IClassFixture<SecuredServer>
{
    private HttpRequestMessage Post(string path, HttpContent content, string? key = SecuredServer.Key)
    {
        var m = new HttpRequestMessage(HttpMethod.Post, path) { Content = content };
        if (key is not null) m.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return m;
    }

    private static StringContent JsonBody(string json) => new(json, Encoding.UTF8, "application/json");

    private async Task Expect(HttpRequestMessage request, HttpStatusCode status, string? param = null, string? code = null, string? messageContains = null)
    {
        using var r = await server.Http.SendAsync(request);
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(status == r.StatusCode, $"expected {status}, got {r.StatusCode}: {text}");
        using var doc = JsonDocument.Parse(text);
        var error = doc.RootElement.GetProperty("error");
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.True(error.TryGetProperty("type", out _) && error.TryGetProperty("param", out _) && error.TryGetProperty("code", out _));
        if (param is not null) Assert.Equal(param, error.GetProperty("param").GetString());
        if (code is not null) Assert.Equal(code, error.GetProperty("code").GetString());
        if (messageContains is not null) Assert.Contains(messageContains, error.GetProperty("message").GetString());
        await GoodRequestStillSucceeds();
    }

    private async Task GoodRequestStillSucceeds()
    {
        using var r = await server.Http.SendAsync(Post("/v1/chat/completions", JsonBody("""{"model":"secured","messages":[{"role":"user","content":"hi"}],"max_tokens":2}""")));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
    }

    [Fact] public Task MalformedJson() => Expect(Post("/v1/chat/completions", JsonBody("{\"model\": \"secured\", \"messages\": [")), HttpStatusCode.BadRequest);

    [Fact] public Task BodyNotAnObject() => Expect(Post("/v1/chat/completions", JsonBody("[1,2]")), HttpStatusCode.BadRequest);

    [Fact]
    public Task InvalidUtf8() => Expect(Post("/v1/chat/completions",
        new ByteArrayContent([.. "{\"model\":\"secured\",\"messages\":[{\"role\":\"user\",\"content\":\""u8.ToArray(), 0xC3, 0x28, .. "\"}]}"u8.ToArray()]) { Headers = { ContentType = new MediaTypeHeaderValue("application/json") } }),
        HttpStatusCode.BadRequest);

    [Fact] public Task WrongTypeNamesTheParameter() => Expect(Post("/v1/chat/completions", JsonBody("""{"model":"secured","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}""")), HttpStatusCode.BadRequest, "temperature");

    [Fact] public Task MessagesMissing() => Expect(Post("/v1/chat/completions", JsonBody("""{"model":"secured"}""")), HttpStatusCode.BadRequest, "messages");

    [Fact] public Task UnknownRole() => Expect(Post("/v1/chat/completions", JsonBody("""{"model":"secured","messages":[{"role":"robot","content":"hi"}]}""")), HttpStatusCode.BadRequest, "messages[0].role");

    [Fact] public Task UnknownModel() => Expect(Post("/v1/chat/completions", JsonBody("""{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}""")), HttpStatusCode.NotFound, "model", "model_not_found", "The model `gpt-9` does not exist.");

    [Fact]
    public Task PromptLongerThanTheContext() => Expect(Post("/v1/chat/completions", JsonBody(
        $$"""{"model":"secured","messages":[{"role":"user","content":"{{string.Join(" ", Enumerable.Repeat("word", 200))}}"}]}""")),
        HttpStatusCode.BadRequest, code: "context_length_exceeded", messageContains: "maximum context length is 64 tokens");

    [Fact] public Task PromptPlusMaxTokensTooLong() => Expect(Post("/v1/chat/completions", JsonBody("""{"model":"secured","messages":[{"role":"user","content":"hi"}],"max_tokens":60}""")), HttpStatusCode.BadRequest, code: "context_length_exceeded");

    [Fact] public Task NegativeMaxTokens() => Expect(Post("/v1/chat/completions", JsonBody("""{"model":"secured","messages":[{"role":"user","content":"hi"}],"max_tokens":-1}""")), HttpStatusCode.BadRequest, "max_tokens");

    [Fact] public Task TemperatureOutOfRange() => Expect(Post("/v1/chat/completions", JsonBody("""{"model":"secured","messages":[{"role":"user","content":"hi"}],"temperature":5}""")), HttpStatusCode.BadRequest, "temperature");

    [Fact] public Task NOutOfRange() => Expect(Post("/v1/chat/completions", JsonBody("""{"model":"secured","messages":[{"role":"user","content":"hi"}],"n":0}""")), HttpStatusCode.BadRequest, "n");

    [Fact] public Task TopLogprobsWithoutLogprobs() => Expect(Post("/v1/chat/completions", JsonBody("""{"model":"secured","messages":[{"role":"user","content":"hi"}],"top_logprobs":3}""")), HttpStatusCode.BadRequest, "top_logprobs");

    [Fact] public Task ToolChoiceNamingAnUnknownFunction() => Expect(Post("/v1/chat/completions", JsonBody("""{"model":"secured","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"a","parameters":{}}}],"tool_choice":{"type":"function","function":{"name":"b"}}}""")), HttpStatusCode.BadRequest, "tool_choice");

    [Fact] public Task UnsupportedResponseFormat() => Expect(Post("/v1/chat/completions", JsonBody("""{"model":"secured","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"yaml"}}""")), HttpStatusCode.BadRequest, "response_format");

    [Fact] public Task WrongApiKey() => Expect(Post("/v1/chat/completions", JsonBody("""{"model":"secured","messages":[{"role":"user","content":"hi"}]}"""), key: "sk-wrong"), HttpStatusCode.Unauthorized, code: "invalid_api_key");

    [Fact] public Task MissingApiKey() => Expect(Post("/v1/models", JsonBody("{}"), key: null), HttpStatusCode.Unauthorized, code: "invalid_api_key");

    [Fact]
    public async Task HealthAndMetricsNeedNoKey()
    {
        Assert.Equal(HttpStatusCode.OK, (await server.Http.GetAsync("/health")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await server.Http.GetAsync("/metrics")).StatusCode);
    }

    [Fact]
    public async Task OversizedBodyIsRefusedBeforeItIsRead()
    {
        // A client cannot finish sending a body the server refuses, so announce one and read the answer.
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(server.BaseUri.Host, server.BaseUri.Port);
        var stream = tcp.GetStream();
        string head = $"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {SecuredServer.Key}\r\nContent-Type: application/json\r\nContent-Length: {64L * 1024 * 1024}\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
        await stream.WriteAsync(new byte[4096]);
        var reader = new StreamReader(stream);
        string? status = await reader.ReadLineAsync();
        Assert.StartsWith("HTTP/1.1 413", status);
        string rest = "";
        var buffer = new char[4096];
        int n;
        while ((n = await reader.ReadAsync(buffer)) > 0 && !rest.Contains("}}")) rest += new string(buffer, 0, n);
        Assert.Contains("\"error\"", rest);
        await GoodRequestStillSucceeds();
    }

    [Fact]
    public async Task ClientDisconnectingMidStreamFreesItsBlocks()
    {
        using var cts = new CancellationTokenSource();
        var request = Post("/v1/chat/completions", JsonBody("""{"model":"secured","messages":[{"role":"user","content":"hi"}],"max_tokens":50,"ignore_eos":true,"stream":true}"""));
        using (var r = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token))
        {
            var stream = await r.Content.ReadAsStreamAsync(cts.Token);
            var buffer = new byte[64];
            await stream.ReadAtLeastAsync(buffer, 1, throwOnEndOfStream: true, cts.Token); // the stream has started
            cts.Cancel();
        }
        var engine = server.Host.Model!.Engine;
        for (int i = 0; i < 200 && (engine.InFlight > 0 || engine.Stats.KvUsage > 0); i++) await Task.Delay(25);
        Assert.Equal(0, engine.InFlight);
        Assert.Equal(0, engine.Stats.KvUsage);
        await GoodRequestStillSucceeds();
    }
}
