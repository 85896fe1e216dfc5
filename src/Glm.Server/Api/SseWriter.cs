namespace Glm.Server.Api;

/// <summary>
/// Server-sent events: as OpenAI's chat API streams them ("data: {json}\n\n" … "data: [DONE]\n\n"), or named
/// ("event: TYPE\ndata: {json}\n\n") as Anthropic's Messages and OpenAI's Responses APIs stream them.
/// </summary>
public sealed class SseWriter
{
    private readonly HttpResponse _response;
    private readonly SemaphoreSlim _lock = new(1, 1);

    public SseWriter(HttpResponse response)
    {
        _response = response;
        response.StatusCode = 200;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
    }

    public async Task Send(object payload, CancellationToken ct) => await SendRaw(Json.Serialize(payload), ct);

    public async Task SendRaw(string data, CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            await _response.WriteAsync("data: " + data + "\n\n", ct);
            await _response.Body.FlushAsync(ct);
        }
        finally
        {
            _lock.Release();
        }
    }

    public Task Done(CancellationToken ct) => SendRaw("[DONE]", ct);

    /// <summary>A named event: "event: TYPE" then its data line.</summary>
    public async Task SendEvent(string type, string json, CancellationToken ct)
    {
        await _lock.WaitAsync(ct);
        try
        {
            await _response.WriteAsync($"event: {type}\ndata: {json}\n\n", ct);
            await _response.Body.FlushAsync(ct);
        }
        finally
        {
            _lock.Release();
        }
    }
}
