using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Glm.Server.Tests;

public class QueueLimitTests(TinyQueueServer server) : IClassFixture<TinyQueueServer>
{
    [Fact]
    public async Task AFullQueueAnswers429WithRetryAfterAndRecovers()
    {
        var body = new { model = server.Name, messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 400, ignore_eos = true, stream = true };
        // The first request holds the only slot while it streams.
        using var firstStream = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(body) };
        using var running = await server.Http.SendAsync(firstStream, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, running.StatusCode);

        using var refused = await server.Http.PostAsJsonAsync("/v1/chat/completions", new { model = server.Name, messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 2 });
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.True(refused.Headers.RetryAfter is not null, "429 must carry Retry-After");
        var error = (await refused.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error");
        Assert.Equal("queue_full", error.GetProperty("code").GetString());

        running.Dispose(); // the client walks away; its sequence is aborted and the slot frees
        for (int i = 0; i < 200; i++)
        {
            using var retry = await server.Http.PostAsJsonAsync("/v1/chat/completions", new { model = server.Name, messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 2 });
            if (retry.StatusCode == HttpStatusCode.OK) return;
            Assert.Equal(HttpStatusCode.TooManyRequests, retry.StatusCode);
            await Task.Delay(50);
        }
        Assert.Fail("the slot never freed after the client disconnected");
    }
}
