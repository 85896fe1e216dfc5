using System.Net;
using System.Text;
using System.Text.Json;
using Glm.Server.Cli;

namespace Glm.Server.Tests;

/// <summary>--speculative-config ngram on the real server: the same answers, and vLLM's spec-decode counters.</summary>
public class SpeculativeServingTests(DemoServer plain, SpeculativeDemoServer speculative) : IClassFixture<DemoServer>, IClassFixture<SpeculativeDemoServer>
{
    private static async Task<string> Complete(ServerFixture server, string prompt)
    {
        string body = JsonSerializer.Serialize(new { model = "glm-demo", prompt, max_tokens = 48, temperature = 0, ignore_eos = true });
        using var r = await server.Http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        string raw = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, raw);
        return JsonDocument.Parse(raw).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }

    [Fact]
    public async Task AnswersAreTheSameAndTheCountersMove()
    {
        // A prompt that repeats itself, as an agent's quoted file does.
        const string prompt = "<|user|>\nRepeat: the weather in Paris is sunny. the weather in Paris is sunny. the weather in Paris is sunny.<|assistant|>\n<think></think>\n";
        Assert.Equal(await Complete(plain, prompt), await Complete(speculative, prompt));
        string metrics = await speculative.Http.GetStringAsync("/metrics");
        Assert.Matches(@"vllm:spec_decode_num_draft_tokens_total\{[^}]*\} [1-9]", metrics);
        Assert.Contains("vllm:spec_decode_num_accepted_tokens_total", metrics);
    }

    [Theory]
    [InlineData("""{"method":"mtp"}""", "method 'mtp' is not supported")]
    [InlineData("""{"method":"ngram","num_speculative_tokens":0}""", "num_speculative_tokens must be an integer")]
    [InlineData("""{"method":"ngram","draft_model":"x"}""", "'draft_model' is not supported")]
    [InlineData("""not json""", "not valid JSON")]
    public void ABadSpeculativeConfigIsRefusedAtStart(string config, string message) =>
        Assert.Contains(message, Assert.Throws<CliException>(() => ServerOptions.Parse(["--speculative-config", config])).Message);
}
