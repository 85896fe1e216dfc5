using System.Text.Json;
using Glm.Engine;
using Glm.Models;
using Glm.Server.Cli;
using Glm.Server.Hosting;
using Glm.Text.Templates;
using Glm.Text.Tokenization;
using Serilog;
using Serilog.Events;

namespace Glm.Server;

public static class Program
{
    private const string Usage = """
        usage: glm-server [serve] [--model DIR] [--port 8000] [--host 127.0.0.1] [options]
               glm-server complete --model DIR (--prompt-ids 1,2,3 | --prompt TEXT) --max-tokens N [--temperature 0] [--ignore-eos]
               glm-server chat [--url http://127.0.0.1:8000 | --model DIR] [--demo-tools] [--temperature 0.6] [--max-tokens 512]
               glm-server health [--port 8000]
               glm-server eval --model DIR --quantization {fp8,int4,fp8-int4,FILE.json} [--kv-cache-dtype …] [--prompts FILE | --prompt-ids …]
               glm-server quantize --model DIR --quantization {fp8,int4,fp8-int4,FILE.json} --output DIR
        Options follow vLLM's names: --served-model-name, --api-key, --max-model-len, --max-num-seqs,
        --max-num-batched-tokens, --block-size, --kv-cache-memory BYTES, --kv-cache-dtype {auto,f32,bf16,fp8,int4},
        --enable-prefix-caching/--no-enable-prefix-caching, --tool-call-parser glm45, --reasoning-parser glm45,
        --device {cpu,cuda,cuda:N}, --gpu-memory-utilization 0.9, --threads N, --shutdown-grace-seconds N. Without --model the embedded glm-demo model is served.
        """;

    public static int Main(string[] args)
    {
        string verb = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : "serve";
        var rest = verb == "serve" && (args.Length == 0 || args[0].StartsWith('-')) ? args : args.Skip(1).ToArray();
        if (args.Contains("--help") || args.Contains("-h")) { Console.WriteLine(Usage); return 0; }
        var log = new LoggerConfiguration()
            .MinimumLevel.Information()
            .MinimumLevel.Override("Microsoft", LogEventLevel.Warning)
            .MinimumLevel.Override("Microsoft.Hosting.Lifetime", LogEventLevel.Information)
            .Enrich.FromLogContext() // the request id of the request a line is about
            .WriteTo.Console(outputTemplate: "[{Timestamp:HH:mm:ss} {Level:u3}]{RequestIdTag} {Message:lj}{NewLine}{Exception}",
                standardErrorFromLevel: verb == "serve" ? null : LogEventLevel.Verbose)
            .CreateLogger();
        try
        {
            var options = ServerOptions.Parse(rest);
            return verb switch
            {
                "serve" => Serve(options, log),
                "complete" => Complete(options, log),
                "eval" => EvalCommand.Run(options, log),
                "quantize" => QuantizeCommand.Run(options, log),
                "health" => Health(options),
                "chat" => ChatCommand.Run(options, log, Console.In, Console.Out),
                _ => throw new CliException($"unknown verb '{verb}' (serve, complete, eval, quantize, chat, health)"),
            };
        }
        catch (CliException e)
        {
            Console.Error.WriteLine($"error: {e.Message}\n{Usage}");
            return 2;
        }
        catch (Exception e) when (e is ModelLoadException or Kernels.Cuda.CudaException or TokenizerLoadException or TemplateException or Hub.HubException or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
        finally
        {
            Log.CloseAndFlush();
            log.Dispose();
        }
    }

    private static int Serve(ServerOptions options, Serilog.Core.Logger log)
    {
        var app = ServerApp.Build(options, log);
        var host = app.Services.GetRequiredService<ModelHost>(); // resolved now: the container is disposed after Run
        var signals = ServerApp.HandleTermination(app, options, log);
        try
        {
            app.Run();
        }
        finally
        {
            foreach (var s in signals) s.Dispose();
        }
        if (host.LoadError is { } e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
        return 0;
    }

    /// <summary>Container health check without curl: exit 0 when the local server's /health answers 200.</summary>
    private static int Health(ServerOptions options)
    {
        string host = options.Host is "0.0.0.0" or "::" or "[::]" ? "127.0.0.1" : options.Host;
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(4) };
        try
        {
            using var response = http.GetAsync($"http://{host}:{options.Port}/health").GetAwaiter().GetResult();
            return response.IsSuccessStatusCode ? 0 : 1;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return 1;
        }
    }

    /// <summary>Offline generation for scripts and checks, through the same engine as the server.</summary>
    private static int Complete(ServerOptions options, Serilog.Core.Logger log)
    {
        if (options.Model is null && options.PromptIds.Count == 0 && options.Prompt is null)
            throw new CliException("complete needs --prompt-ids or --prompt");
        var model = ModelHost.Load(options, log);
        try
        {
            var prompt = options.PromptIds.Count > 0 ? options.PromptIds.ToArray()
                : model.Tokenizer?.Encode(options.Prompt ?? throw new CliException("complete needs --prompt-ids or --prompt"))
                  ?? throw new CliException("this model has no tokenizer; use --prompt-ids");
            var seq = model.Engine.Submit(prompt, new SamplingParams
            {
                Temperature = options.Temperature ?? 1f, MaxTokens = options.MaxTokens ?? 16, IgnoreEos = options.IgnoreEos, Seed = options.Seed,
            });
            var ids = new List<int>();
            foreach (var o in seq.Output.Reader.ReadAllAsync().ToBlockingEnumerable())
                if (o.Token >= 0) ids.Add(o.Token);
            string text = model.Tokenizer?.Decode(ids.ToArray(), skipSpecialTokens: true) ?? "";
            Console.WriteLine(JsonSerializer.Serialize(new { token_ids = ids, text }, Api.Json.Options));
            return 0;
        }
        catch (AdmissionException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
        finally
        {
            model.Engine.Dispose();
        }
    }
}
