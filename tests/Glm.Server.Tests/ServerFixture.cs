using System.ClientModel;
using Glm.Server.Cli;
using Glm.Server.Hosting;
using Glm.TestSupport;
using Microsoft.AspNetCore.Builder;
using OpenAI;
using OpenAI.Chat;
using Serilog;

namespace Glm.Server.Tests;

/// <summary>A real server on a free loopback port, serving one model directory; waits for /health.</summary>
public abstract class ServerFixture : IAsyncLifetime
{
    private WebApplication? _app;

    protected abstract string ModelDirectory { get; }
    protected virtual string ModelName => "test-model";
    protected virtual void Configure(ServerOptions o) { }

    public Uri BaseUri { get; private set; } = null!;
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(120) };
    public string Name => ModelName;
    public ServerOptions Options { get; private set; } = null!;
    public ModelHost Host => (ModelHost)_app!.Services.GetService(typeof(ModelHost))!;

    public async Task InitializeAsync()
    {
        Options = ServerOptions.Parse(["--model", ModelDirectory, "--served-model-name", ModelName, "--port", "0", "--kv-cache-memory", "67108864"]);
        Configure(Options);
        var log = new Serilog.LoggerConfiguration().MinimumLevel.Warning().WriteTo.Console().CreateLogger();
        _app = ServerApp.Build(Options, log);
        await _app.StartAsync();
        BaseUri = new Uri(_app.Urls.First());
        Http.BaseAddress = BaseUri;
        for (int i = 0; i < 600; i++)
        {
            using var r = await Http.GetAsync("/health");
            if (r.IsSuccessStatusCode) return;
            await Task.Delay(50);
        }
        throw new TimeoutException("server did not become healthy");
    }

    public ChatClient Chat(string? apiKey = null) =>
        new(Name, new ApiKeyCredential(apiKey ?? Options.ApiKey ?? "unused"), new OpenAIClientOptions { Endpoint = new Uri(BaseUri, "/v1") });

    public async Task DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
        Http.Dispose();
    }
}

public sealed class DemoServer : ServerFixture
{
    protected override string ModelDirectory => Fixtures.DemoModel;
    protected override string ModelName => "glm-demo";
}

public sealed class ChatFixtureServer : ServerFixture
{
    protected override string ModelDirectory => Fixtures.Dir("chat_glm4_moe");
    protected override string ModelName => "chat-glm4-moe";
}

/// <summary>The chat fixture model behind an API key, with a short context to exercise overflow.</summary>
public sealed class SecuredServer : ServerFixture
{
    public const string Key = "sk-test-123";
    protected override string ModelDirectory => Fixtures.Dir("chat_glm4_moe");
    protected override string ModelName => "secured";
    protected override void Configure(Glm.Server.Cli.ServerOptions o)
    {
        o.ApiKey = Key;
        o.MaxModelLen = 64;
    }
}

/// <summary>One sequence at a time and no waiting room: the second concurrent request must be refused.</summary>
public sealed class TinyQueueServer : ServerFixture
{
    protected override string ModelDirectory => Fixtures.Dir("chat_glm4_moe");
    protected override string ModelName => "tiny-queue";
    protected override void Configure(Glm.Server.Cli.ServerOptions o)
    {
        o.MaxNumSeqs = 1;
        o.MaxQueueLength = 0;
    }
}

/// <summary>The demo model with a random MTP layer added, drafting with it (vLLM's "mtp" method).</summary>
public sealed class MtpDemoServer : ServerFixture
{
    protected override string ModelDirectory => MtpModels.With(Fixtures.DemoModel, MtpKind.Random);
    protected override string ModelName => "glm-demo";
    protected override void Configure(Glm.Server.Cli.ServerOptions o) => o.SpeculativeConfig = """{"method":"mtp","num_speculative_tokens":1}""";
}

/// <summary>The demo model with prompt-lookup speculative decoding.</summary>
public sealed class SpeculativeDemoServer : ServerFixture
{
    protected override string ModelDirectory => Fixtures.DemoModel;
    protected override string ModelName => "glm-demo";
    protected override void Configure(Glm.Server.Cli.ServerOptions o) =>
        o.SpeculativeConfig = """{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_max":3}""";
}
