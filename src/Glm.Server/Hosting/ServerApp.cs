using System.Runtime.InteropServices;
using Glm.Server.Api;
using Glm.Server.Cli;
using Glm.Server.Metrics;
using Prometheus;
using Serilog;

namespace Glm.Server.Hosting;

/// <summary>Builds the ASP.NET Core host: routes, auth, error shaping, metrics, OpenAPI, graceful shutdown.</summary>
public static class ServerApp
{
    public const long MaxRequestBodyBytes = 32 * 1024 * 1024;

    public static WebApplication Build(ServerOptions options, Serilog.ILogger log, string[]? args = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args ?? [] });
        builder.Host.UseSerilog(log, dispose: false);
        builder.WebHost.UseUrls($"http://{(options.Host.Contains(':') ? $"[{options.Host}]" : options.Host)}:{options.Port}");
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = MaxRequestBodyBytes);
        builder.Services.AddOpenApi();
        builder.Services.AddSingleton<IHostLifetime, DrainingLifetime>();
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = TimeSpan.FromSeconds(options.ShutdownGraceSeconds + 5));

        var host = new ModelHost(options, log);
        var metrics = new EngineMetrics(host);
        builder.Services.AddSingleton(host);
        builder.Services.AddSingleton(metrics);
        var app = builder.Build();

        app.Use(async (ctx, next) =>
        {
            try
            {
                await next();
            }
            catch (ApiException e)
            {
                await ErrorResponses.Write(ctx, e);
            }
            catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
            {
                await ErrorResponses.Write(ctx, 413, $"The request body exceeds {MaxRequestBodyBytes} bytes.");
            }
            catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
            {
                // The client went away; its sequences were aborted through the cancellation token.
            }
            catch (Exception e)
            {
                log.Error(e, "Unhandled error on {Path}", ctx.Request.Path);
                if (ctx.Response.HasStarted && ctx.Response.ContentType?.StartsWith("text/event-stream") == true)
                {
                    // Mid-stream: the status is gone, so end the stream with an error event, as vLLM does.
                    await ctx.Response.WriteAsync("data: " + Json.Serialize(ErrorResponses.Body("Internal server error.", "internal_error", null, null)) + "\n\ndata: [DONE]\n\n");
                }
                else await ErrorResponses.Write(ctx, 500, "Internal server error.", "internal_error");
            }
        });
        app.Use(async (ctx, next) =>
        {
            string path = ctx.Request.Path.Value ?? "";
            if (options.ApiKey is { Length: > 0 } key && path is not ("/health" or "/live" or "/metrics"))
            {
                string? auth = ctx.Request.Headers.Authorization;
                string? presented = auth is not null && auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? auth[7..].Trim() : null;
                if (!Endpoints.KeyMatches(presented, key))
                {
                    await ErrorResponses.Write(ctx, 401, "Incorrect API key provided.", "invalid_request_error", null, "invalid_api_key");
                    return;
                }
            }
            await next();
        });

        var chat = new ChatCompletions(host, metrics, log);
        var completions = new Completions(host, metrics, log);
        app.MapPost("/v1/chat/completions", Handler(chat.Handle)).WithName("CreateChatCompletion").Accepts<ChatCompletionRequestSchema>("application/json");
        app.MapPost("/v1/completions", Handler(completions.Handle)).WithName("CreateCompletion").Accepts<CompletionRequestSchema>("application/json");
        app.MapGet("/v1/models", () => Results.Json(SmallEndpoints.Models(host), Json.Options)).WithName("ListModels");
        app.MapPost("/tokenize", Handler(ctx => SmallEndpoints.Tokenize(ctx, host))).WithName("Tokenize").Accepts<TokenizeRequestSchema>("application/json");
        app.MapPost("/detokenize", Handler(ctx => SmallEndpoints.Detokenize(ctx, host))).WithName("Detokenize").Accepts<DetokenizeRequestSchema>("application/json");
        app.MapGet("/health", () => SmallEndpoints.Health(host)).WithName("Health");
        // Liveness: the process serves HTTP. Unlike /health it stays 200 while loading and draining.
        app.MapGet("/live", () => Results.Ok()).WithName("Live");
        app.MapGet("/version", SmallEndpoints.Version).WithName("Version");
        app.MapGet("/metrics", (Delegate)metrics.Serve).ExcludeFromDescription();
        app.MapOpenApi("/openapi.json");
        app.MapFallback(async ctx => await ErrorResponses.Write(ctx, 404, $"No route for {ctx.Request.Method} {ctx.Request.Path}.", "invalid_request_error", null, "not_found"));

        var lifetime = app.Lifetime;
        lifetime.ApplicationStarted.Register(() => host.LoadInBackground(e =>
        {
            log.Fatal("Cannot serve the model: {Message}", e.Message);
            lifetime.StopApplication();
        }));
        lifetime.ApplicationStopped.Register(host.Dispose);
        return app;
    }

    /// <summary>A handler that writes its own response, typed as Delegate so OpenAPI metadata can be attached.</summary>
    private static Delegate Handler(Func<HttpContext, Task> handle) => (HttpContext ctx) => handle(ctx);

    /// <summary>
    /// SIGTERM/SIGINT: stop admitting (readiness and new requests answer 503), let in-flight requests finish for up
    /// to the grace period, then stop the host, which exits 0.
    /// </summary>
    public static IDisposable[] HandleTermination(WebApplication app, ServerOptions options, Serilog.ILogger log)
    {
        var host = app.Services.GetRequiredService<ModelHost>();
        int signalled = 0;
        void OnSignal(PosixSignalContext ctx)
        {
            ctx.Cancel = true;
            if (Interlocked.Exchange(ref signalled, 1) == 1) return;
            host.StartDraining();
            log.Information("{Signal}: draining {InFlight} in-flight requests for up to {Grace}s", ctx.Signal, host.Model?.Engine.InFlight ?? 0, options.ShutdownGraceSeconds);
            _ = Task.Run(async () =>
            {
                var deadline = DateTime.UtcNow.AddSeconds(options.ShutdownGraceSeconds);
                while (DateTime.UtcNow < deadline && (host.Model?.Engine.InFlight ?? 0) > 0) await Task.Delay(50);
                await Task.Delay(100); // let the last responses flush
                app.Lifetime.StopApplication();
            });
        }
        return [PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal), PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal)];
    }
}
