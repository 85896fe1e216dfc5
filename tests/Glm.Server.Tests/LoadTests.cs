using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Glm.Server.Tests;

/// <summary>A bounded loopback load test: 200 requests, 32 at a time, half streaming, one in ten walking away early.</summary>
public class LoadTests(ChatFixtureServer server) : IClassFixture<ChatFixtureServer>
{
    [Fact]
    public async Task TwoHundredMixedRequestsAllCompleteAndThePoolDrains()
    {
        using var gate = new SemaphoreSlim(32);
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        int completed = 0, abandoned = 0;
        var healthChecks = Task.Run(async () =>
        {
            while (!deadline.IsCancellationRequested && Volatile.Read(ref completed) + Volatile.Read(ref abandoned) < 200)
            {
                using var h = await server.Http.GetAsync("/health");
                Assert.True(h.IsSuccessStatusCode, "health failed under load");
                await Task.Delay(100);
            }
        });
        var tasks = Enumerable.Range(0, 200).Select(async i =>
        {
            await gate.WaitAsync(deadline.Token);
            try
            {
                bool stream = i % 2 == 0, disconnect = i % 10 == 3;
                var body = JsonContent.Create(new
                {
                    model = server.Name, messages = new[] { new { role = "user", content = $"Request {i}: say something" } },
                    max_tokens = 8 + i % 9, ignore_eos = true, temperature = 0.7, seed = i, stream,
                });
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token);
                using var r = await server.Http.PostAsync("/v1/chat/completions", body, cts.Token);
                if (disconnect)
                {
                    cts.Cancel();
                    Interlocked.Increment(ref abandoned);
                    return;
                }
                string text = await r.Content.ReadAsStringAsync(deadline.Token);
                Assert.True(r.IsSuccessStatusCode, text);
                if (stream)
                {
                    Assert.EndsWith("data: [DONE]\n\n", text);
                    Assert.Contains("\"finish_reason\":\"length\"", text);
                }
                else
                {
                    using var doc = JsonDocument.Parse(text);
                    Assert.Equal(8 + i % 9, doc.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
                    Assert.Equal("length", doc.RootElement.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
                }
                Interlocked.Increment(ref completed);
            }
            catch (OperationCanceledException) when (!deadline.IsCancellationRequested)
            {
                Interlocked.Increment(ref abandoned);
            }
            finally
            {
                gate.Release();
            }
        }).ToList();
        await Task.WhenAll(tasks);
        await healthChecks;
        Assert.Equal(180, completed);

        var engine = server.Host.Model!.Engine;
        for (int i = 0; i < 400 && (engine.InFlight > 0 || engine.Stats.KvUsage > 0); i++) await Task.Delay(25);
        string metrics = await server.Http.GetStringAsync("/metrics");
        Assert.Contains($"vllm:kv_cache_usage_perc{{model_name=\"{server.Name}\"}} 0\n", metrics);
        Assert.Contains($"vllm:num_requests_running{{model_name=\"{server.Name}\"}} 0\n", metrics);
        Assert.True(engine.PoolIsConsistent(out var problem), problem);
    }
}
