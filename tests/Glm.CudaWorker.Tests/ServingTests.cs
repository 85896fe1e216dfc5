using System.ClientModel;
using Glm.Engine;
using Glm.Kernels.Attention;
using Glm.Models.Architectures;
using Glm.Server.Cli;
using Glm.Server.Hosting;
using Glm.TestSupport;
using OpenAI;
using OpenAI.Chat;

namespace Glm.CudaWorker.Tests;

/// <summary>The engine and the server on the CUDA worker: continuous batching, prefix caching, the OpenAI API.</summary>
public class ServingTests
{
    private static readonly SamplingParams Greedy = new() { Temperature = 0, MaxTokens = 10, IgnoreEos = true };

    private static async Task<int[]> Collect(Sequence seq)
    {
        var tokens = new List<int>();
        await foreach (var o in seq.Output.Reader.ReadAllAsync())
            if (o.Token >= 0) tokens.Add(o.Token);
        return tokens.ToArray();
    }

    private static LlmEngine Engine(CausalLM model, KvCacheDType kv) => new(new ModelRunner(model, kv, 128, 4), new EngineOptions
    {
        MaxNumSeqs = 8, MaxNumBatchedTokens = 48, MaxModelLen = 512, EnablePrefixCaching = true,
    }, e => throw new Xunit.Sdk.XunitException("engine fault: " + e));

    [HostBuildTheory]
    [InlineData("glm4_moe", KvCacheDType.Bf16)]
    [InlineData("glm4_moe_lite", KvCacheDType.Int4)]
    public async Task BatchedRequestsOnTheCudaWorkerEqualTheCpuWorkersOneByOne(string arch, KvCacheDType kv)
    {
        var rng = new Random(11);
        var shared = Enumerable.Range(0, 9).Select(_ => rng.Next(3, 1000)).ToArray(); // a common prefix: cached blocks are shared
        var prompts = Enumerable.Range(0, 8)
            .Select(i => shared.Concat(Enumerable.Range(0, 1 + 5 * i).Select(_ => rng.Next(3, 1000))).ToArray()).ToList();

        var expected = new List<int[]>();
        using (var cpu = Engine(ModelLoader.Load(Fixtures.Dir(arch)), kv))
            foreach (var p in prompts) expected.Add(await Collect(cpu.Submit(p, Greedy)));

        using var worker = HostBuild.Open();
        using var engine = Engine(ModelLoader.Load(Fixtures.Dir(arch), worker: worker), kv);
        var results = await Task.WhenAll(prompts.Select(p => engine.Submit(p, Greedy)).ToList().Select(Collect));
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(expected[i], results[i]);
        Assert.True(engine.Stats.PrefixHits > 0, "the shared prefix should hit the cache");
    }

    [HostBuildTheory]
    [InlineData("glm4_moe")]
    [InlineData("glm4_moe_lite")]
    public async Task MtpDraftingOnTheCudaWorkerDraftsAsTheCpuWorkerDoes(string arch)
    {
        // The MTP layer's ops (norms written into the halves of a concatenation, its KV in the pool's extra
        // layer) through the CUDA worker's C ABI: the same outputs, and the same drafts accepted, as on the CPU.
        string dir = MtpModels.With(Fixtures.Dir(arch), MtpKind.HiddenEcho);
        var rng = new Random(5);
        var prompts = Enumerable.Range(0, 5).Select(i => Enumerable.Range(0, 2 + 7 * i).Select(_ => rng.Next(3, 1000)).ToArray()).ToList();
        var greedy = Greedy with { MaxTokens = 24 };
        LlmEngine Start(CausalLM model) => new(new ModelRunner(model, KvCacheDType.F32, 128, 4), new EngineOptions
        {
            MaxNumSeqs = 8, MaxNumBatchedTokens = 48, MaxModelLen = 512, MtpDrafting = true,
        }, e => throw new Xunit.Sdk.XunitException("engine fault: " + e));

        int[][] expected;
        (long, long) expectedStats;
        using (var cpu = Start(ModelLoader.Load(dir, withMtp: true)))
        {
            expected = await Task.WhenAll(prompts.Select(p => cpu.Submit(p, greedy)).ToList().Select(Collect));
            expectedStats = (cpu.Stats.SpecDraftTokens, cpu.Stats.SpecAcceptedTokens);
        }
        using var worker = HostBuild.Open();
        using var engine = Start(ModelLoader.Load(dir, worker: worker, withMtp: true));
        var results = await Task.WhenAll(prompts.Select(p => engine.Submit(p, greedy)).ToList().Select(Collect));
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(expected[i], results[i]);
        Assert.True(expectedStats.Item2 > 0, "the hidden-echo layer should have drafts accepted");
        Assert.Equal(expectedStats, (engine.Stats.SpecDraftTokens, engine.Stats.SpecAcceptedTokens));
    }

    public static TheoryData<string> SamplingCases() => ["t0.8", "t1.2,k40", "t0.7,p0.9", "t1,k50,p0.8,m0.05", "t0.9,m0.1", "mixed"];

    private static SamplingParams Sampling(string spec, int i)
    {
        var p = new SamplingParams { MaxTokens = 12, IgnoreEos = true, Seed = (ulong)(1000 + i) };
        if (spec == "mixed") // every third request needs the host (logprobs, a penalty): those steps fall back, the rest stay on the device
            return i % 3 == 0 ? p with { Temperature = 0.8f, Logprobs = 2 } : i % 3 == 1 ? p with { Temperature = 0.8f, PresencePenalty = 0.5f } : p with { Temperature = 0.8f, TopP = 0.9f };
        foreach (var part in spec.Split(','))
        {
            float v = float.Parse(part[1..], System.Globalization.CultureInfo.InvariantCulture);
            p = part[0] switch
            {
                't' => p with { Temperature = v },
                'k' => p with { TopK = (int)v },
                'p' => p with { TopP = v },
                _ => p with { MinP = v },
            };
        }
        return p;
    }

    [HostBuildTheory]
    [MemberData(nameof(SamplingCases))]
    public async Task SeededSamplingOnTheDeviceDrawsTheHostSamplersTokens(string spec)
    {
        var rng = new Random(21);
        var prompts = Enumerable.Range(0, 6).Select(i => Enumerable.Range(0, 3 + 4 * i).Select(_ => rng.Next(3, 1000)).ToArray()).ToList();
        var expected = new List<int[]>();
        using (var cpu = Engine(ModelLoader.Load(Fixtures.Dir("glm4_moe")), KvCacheDType.F32))
        {
            Assert.False(cpu.Runner.SamplesOnDevice);
            for (int i = 0; i < prompts.Count; i++) expected.Add(await Collect(cpu.Submit(prompts[i], Sampling(spec, i))));
        }
        using var worker = HostBuild.Open();
        using var engine = Engine(ModelLoader.Load(Fixtures.Dir("glm4_moe"), worker: worker), KvCacheDType.F32);
        Assert.True(engine.Runner.SamplesOnDevice);
        var results = await Task.WhenAll(prompts.Select((p, i) => engine.Submit(p, Sampling(spec, i))).ToList().Select(Collect));
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(expected[i], results[i]);
        Assert.Contains(expected, e => e.Distinct().Count() > 2); // sampling, not a constant stream
    }

    [HostBuildFact]
    public async Task ServeDeviceCudaAnswersAChatCompletionAsTheCpuServerDoes()
    {
        var messages = new List<ChatMessage> { new UserChatMessage("What is 2 + 3?") };
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 24 };
        string cpuAnswer = await Answer("cpu", messages, options);
        string cudaAnswer = await Answer("cuda", messages, options);
        Assert.False(string.IsNullOrEmpty(cudaAnswer));
        Assert.Equal(cpuAnswer, cudaAnswer);
    }

    private static async Task<string> Answer(string device, List<ChatMessage> messages, ChatCompletionOptions options)
    {
        _ = HostBuild.Unavailable; // binds libglm_cuda to the host build before the options probe it
        var o = ServerOptions.Parse(["--device", device, "--port", "0", "--kv-cache-memory", "33554432", "--served-model-name", "glm-demo"]);
        var log = new Serilog.LoggerConfiguration().MinimumLevel.Warning().CreateLogger();
        var app = ServerApp.Build(o, log);
        await app.StartAsync();
        try
        {
            var uri = new Uri(app.Urls.First());
            using var http = new HttpClient { BaseAddress = uri };
            for (int i = 0; i < 600 && !(await http.GetAsync("/health")).IsSuccessStatusCode; i++) await Task.Delay(50);
            var chat = new ChatClient("glm-demo", new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(uri, "/v1") });
            var completion = (await chat.CompleteChatAsync(messages, options)).Value;
            return completion.Content.Count > 0 ? completion.Content[0].Text : "";
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    [Fact]
    public void AnUnusableDeviceIsRefusedWithItsReason()
    {
        Assert.Contains("--device must be cpu, cuda or cuda:N", Assert.Throws<CliException>(() => ServerOptions.Parse(["--device", "tpu"])).Message);
        Assert.Contains("--gpu-memory-utilization", Assert.Throws<CliException>(() => ServerOptions.Parse(["--gpu-memory-utilization", "1.5"])).Message);
        if (HostBuild.Unavailable is null)
        {
            var e = Assert.Throws<CliException>(() => ModelHost.Load(ServerOptions.Parse(["--device", "cuda:3"]), Serilog.Core.Logger.None));
            Assert.Contains("there is no CUDA device 3 (1 visible)", e.Message);
        }
    }
}
