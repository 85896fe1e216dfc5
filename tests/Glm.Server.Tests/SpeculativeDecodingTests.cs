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
    [InlineData("""{"method":"eagle"}""", "method 'eagle' is not supported")]
    [InlineData("""{"method":"mtp","num_speculative_tokens":2}""", "num_speculative_tokens must be an integer in [1, 1]")]
    [InlineData("""{"method":"mtp","prompt_lookup_max":3}""", "'prompt_lookup_max' is not supported with method 'mtp'")]
    [InlineData("""{"method":"ngram","num_speculative_tokens":0}""", "num_speculative_tokens must be an integer")]
    [InlineData("""{"method":"ngram","draft_model":"x"}""", "'draft_model' is not supported")]
    [InlineData("""not json""", "not valid JSON")]
    public void ABadSpeculativeConfigIsRefusedAtStart(string config, string message) =>
        Assert.Contains(message, Assert.Throws<CliException>(() => ServerOptions.Parse(["--speculative-config", config])).Message);

    [Theory]
    [InlineData("""{"method":"mtp"}""")]
    [InlineData("""{"method":"deepseek_mtp","num_speculative_tokens":1}""")]
    [InlineData("""{"method":"glm4_moe_mtp"}""")]
    public void TheMtpMethodAndVllmsOlderNamesForItAreAccepted(string config) =>
        Assert.True(ServerOptions.Parse(["--speculative-config", config]).Speculation()!.Mtp);

    [Fact]
    public void MtpOnAModelWithoutAnMtpLayerFailsAtLoadWithTheReason()
    {
        var o = ServerOptions.Parse(["--speculative-config", """{"method":"mtp"}"""]);
        var e = Assert.Throws<Glm.Models.ModelLoadException>(() => Glm.Server.Hosting.ModelHost.Load(o, Serilog.Core.Logger.None));
        Assert.Contains("the weights hold no model.layers.4.eh_proj.weight", e.Message);
    }
}

/// <summary>--speculative-config mtp on the real server (the demo with a random MTP layer), through the OpenAI SDK: the same answers, the counters move.</summary>
public class MtpServingTests(DemoServer plain, MtpDemoServer mtp) : IClassFixture<DemoServer>, IClassFixture<MtpDemoServer>
{
    [Fact]
    public async Task AnswersAreTheSameAndTheCountersMove()
    {
        var options = new OpenAI.Chat.ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 40 };
        foreach (var question in new[] { "What is the weather in Paris?", "Count from one to five." })
        {
            var a = await plain.Chat().CompleteChatAsync([new OpenAI.Chat.UserChatMessage(question)], options);
            var b = await mtp.Chat().CompleteChatAsync([new OpenAI.Chat.UserChatMessage(question)], options);
            Assert.Equal(a.Value.Content[0].Text, b.Value.Content[0].Text);
        }
        string metrics = await mtp.Http.GetStringAsync("/metrics");
        Assert.Matches(@"vllm:spec_decode_num_draft_tokens_total\{[^}]*\} [1-9]", metrics);
    }
}
