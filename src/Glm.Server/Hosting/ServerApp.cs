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
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = MaxRequestBodyBytes;
            k.ConfigureEndpointDefaults(StrictContentLength.Use);
        });
        builder.Services.AddOpenApi();
        builder.Services.AddSingleton<IHostLifetime, DrainingLifetime>();
        // The grace period is ours (HandleTermination): once it ends every request is cut off, so the host needs
        // only a moment to close connections, not a second grace period of its own.
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = TimeSpan.FromSeconds(1));
        if (options.AllowedOrigins.Count > 0)
            builder.Services.AddCors(c => c.AddDefaultPolicy(p =>
            {
                if (options.AllowedOrigins.Contains("*")) p.AllowAnyOrigin(); else p.WithOrigins([.. options.AllowedOrigins]);
                if (options.AllowedMethods.Contains("*")) p.AllowAnyMethod(); else p.WithMethods([.. options.AllowedMethods]);
                if (options.AllowedHeaders.Contains("*")) p.AllowAnyHeader(); else p.WithHeaders([.. options.AllowedHeaders]);
            }));

        var host = new ModelHost(options, log);
        var metrics = new EngineMetrics(host);
        builder.Services.AddSingleton(host);
        builder.Services.AddSingleton(metrics);
        var app = builder.Build();

        app.Use(TagRequest);
        app.Use((ctx, next) => HandleErrors(ctx, next, host, log));
        var allowedHosts = options.EffectiveAllowedHosts();
        if (allowedHosts is not null) app.Use((ctx, next) => CheckHost(ctx, next, allowedHosts));
        if (options.AllowedOrigins.Count > 0) app.UseCors();
        app.Use(async (ctx, next) =>
        {
            string path = ctx.Request.Path.Value ?? "";
            if (options.ApiKey is { Length: > 0 } key && path is not ("/health" or "/live" or "/metrics"))
            {
                // OpenAI clients send Authorization: Bearer; Anthropic clients send x-api-key.
                string? auth = ctx.Request.Headers.Authorization;
                string? presented = auth is not null && auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? auth[7..].Trim()
                    : ctx.Request.Headers["x-api-key"].FirstOrDefault()?.Trim();
                if (!Endpoints.KeyMatches(presented, key))
                {
                    await ErrorResponses.Write(ctx, 401, "Incorrect API key provided.", "invalid_request_error", null, "invalid_api_key");
                    return;
                }
            }
            await next();
        });
        // Before routing, so a body of another type gets 415 here rather than no route (the routes' Accepts
        // metadata, kept for the OpenAPI document, would otherwise leave only the 404 fallback to match).
        app.Use((ctx, next) =>
        {
            if ((HttpMethods.IsPost(ctx.Request.Method) || HttpMethods.IsPut(ctx.Request.Method) || HttpMethods.IsPatch(ctx.Request.Method))
                && !RequestReader.IsJsonContentType(ctx.Request.ContentType))
                throw RequestReader.UnsupportedMediaType(ctx.Request.ContentType);
            return next();
        });
        app.UseRouting();

        var chat = new ChatCompletions(host, metrics, log);
        var completions = new Completions(host, metrics, log);
        var messages = new AnthropicMessages(host, metrics, log);
        var responses = new OpenAiResponses(host, metrics, log);
        app.MapPost("/v1/responses", Handler(responses.Handle)).WithName("CreateResponse").Accepts<object>("application/json");
        // Anthropic's SDKs add ?beta=true for beta features; the query string does not change the route.
        app.MapPost("/v1/messages", Handler(messages.Handle)).WithName("CreateMessage").Accepts<object>("application/json");
        app.MapPost("/v1/messages/count_tokens", Handler(messages.CountTokens)).WithName("CountMessageTokens").Accepts<object>("application/json");
        app.MapPost("/v1/chat/completions", Handler(chat.Handle)).WithName("CreateChatCompletion").Accepts<ChatCompletionRequestSchema>("application/json");
        app.MapPost("/v1/completions", Handler(completions.Handle)).WithName("CreateCompletion").Accepts<CompletionRequestSchema>("application/json");
        app.MapGet("/v1/models", () => Results.Json(SmallEndpoints.Models(host), Json.Options)).WithName("ListModels");
        app.MapGet("/v1/models/{**id}", (string id) => Results.Json(SmallEndpoints.Model(host, id), Json.Options)).WithName("RetrieveModel");
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

    /// <summary>
    /// Maps every failure to the API's error shape: a client's mistake to its 4xx (Kestrel's own framing and
    /// timeout errors included: 400, 408, 413, 431), a cut at the end of the shutdown grace to 503, only a real
    /// server fault to 500. Once a stream has started the status is gone, so the error becomes a last SSE event
    /// followed by [DONE], as vLLM ends a failed stream.
    /// </summary>
    private static async Task HandleErrors(HttpContext ctx, RequestDelegate next, ModelHost host, Serilog.ILogger log)
    {
        try
        {
            await next(ctx);
        }
        catch (ApiException e)
        {
            await WriteError(ctx, e.Status, e.Message, e.Type, e.Param, e.Code);
        }
        catch (BadHttpRequestException e)
        {
            // The connection's framing is no longer trustworthy: answer, then close it.
            if (!ctx.Response.HasStarted) ctx.Response.Headers.Connection = "close";
            string message = e.StatusCode switch
            {
                StatusCodes.Status413PayloadTooLarge => $"The request body exceeds {MaxRequestBodyBytes} bytes.",
                StatusCodes.Status408RequestTimeout => "The request body arrived too slowly (below the server's minimum data rate) and was abandoned.",
                _ => $"Malformed HTTP request: {e.Message}",
            };
            await WriteError(ctx, e.StatusCode, message, "invalid_request_error", null, e.StatusCode == 408 ? "request_timeout" : null);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The client went away; its sequences were aborted through the cancellation token.
        }
        catch (OperationCanceledException) when (host.GraceEnded.IsCancellationRequested)
        {
            await WriteError(ctx, 503, "The server shut down before this request finished.", "service_unavailable", null, "shutting_down");
        }
        catch (Exception e)
        {
            log.Error(e, "Unhandled error on {Path}", ctx.Request.Path);
            await WriteError(ctx, 500, "Internal server error.", "internal_error", null, null);
        }
    }

    private static async Task WriteError(HttpContext ctx, int status, string message, string type, string? param, string? code)
    {
        try
        {
            if (!ctx.Response.HasStarted)
            {
                await ErrorResponses.Write(ctx, status, message, type, param, code, CancellationToken.None);
                return;
            }
            if (ctx.Response.ContentType?.StartsWith("text/event-stream") != true) return;
            if (ErrorResponses.IsAnthropic(ctx))
                await ctx.Response.WriteAsync("event: error\ndata: " + Json.Serialize(ErrorResponses.AnthropicBody(status, message)) + "\n\n", CancellationToken.None);
            else
                await ctx.Response.WriteAsync("data: " + Json.Serialize(ErrorResponses.Body(message, type, param, code)) + "\n\ndata: [DONE]\n\n", CancellationToken.None);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // The connection is gone; there is nobody left to tell.
        }
    }

    /// <summary>
    /// X-Request-Id: the client's (when it is a plain token of up to 128 characters) or a new one, echoed on the
    /// response and carried by every log line written while the request is served.
    /// </summary>
    private static async Task TagRequest(HttpContext ctx, RequestDelegate next)
    {
        string? given = ctx.Request.Headers["X-Request-Id"].FirstOrDefault();
        string id = given is { Length: > 0 and <= 128 } && given.All(c => c is > ' ' and < (char)127) ? given : Guid.NewGuid().ToString("N");
        ctx.Response.Headers["X-Request-Id"] = id;
        using (Serilog.Context.LogContext.PushProperty("RequestId", id))
        using (Serilog.Context.LogContext.PushProperty("RequestIdTag", " " + id))
            await next(ctx);
    }

    /// <summary>Refuses a Host header the server does not answer to (DNS rebinding guard; see ServerOptions.EffectiveAllowedHosts).</summary>
    private static async Task CheckHost(HttpContext ctx, RequestDelegate next, IReadOnlySet<string> allowed)
    {
        string host = ServerOptions.NormalizeHost(ctx.Request.Host.Value ?? "");
        if (!allowed.Contains(host))
        {
            await ErrorResponses.Write(ctx, 403, $"Host '{ctx.Request.Host.Value}' is not allowed; start the server with --allowed-hosts to serve it.", "invalid_request_error", null, "host_not_allowed");
            return;
        }
        await next(ctx);
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
                if ((host.Model?.Engine.InFlight ?? 0) > 0)
                {
                    log.Warning("Grace period over: cutting off {InFlight} requests", host.Model?.Engine.InFlight ?? 0);
                    host.EndGrace();
                }
                await Task.Delay(150); // let the last responses (and the cut streams' error events) flush
                app.Lifetime.StopApplication();
            });
        }
        return [PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal), PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal)];
    }
}
