using System.Security.Cryptography;
using System.Text;
using Glm.Engine;
using Glm.Server.Hosting;

namespace Glm.Server.Api;

/// <summary>Checks shared by the OpenAI endpoints.</summary>
public static class Endpoints
{
    public static ServedModel RequireModel(ModelHost host)
    {
        if (host.Draining) throw new ApiException(503, "The server is shutting down and no longer accepts requests.", type: "service_unavailable", code: "shutting_down");
        return host.Model ?? throw new ApiException(503, "The model is still loading; retry shortly.", type: "service_unavailable", code: "model_loading");
    }

    public static void CheckModelName(RequestReader r, ServedModel model)
    {
        string name = r.RequiredString("model");
        if (!model.Names.Contains(name)) throw ModelNotFound(name);
    }

    public static ApiException ModelNotFound(string name) => new(404, $"The model `{name}` does not exist.", "model", "model_not_found", "invalid_request_error");

    /// <summary>
    /// Admits a request's sequences (prompts × n) together or not at all, so a refused request never holds queue
    /// places that other clients needed while it was being refused.
    /// </summary>
    public static IReadOnlyList<Sequence> SubmitAll(ServedModel model, IReadOnlyList<(IReadOnlyList<int> Prompt, SamplingParams Sampling)> requests, string promptParam = "messages")
    {
        try
        {
            return model.Engine.SubmitAll(requests);
        }
        catch (AdmissionException e)
        {
            throw e.Kind switch
            {
                AdmissionFailure.ContextTooLong => new ApiException(400, e.Message, promptParam, "context_length_exceeded"),
                AdmissionFailure.QueueFull => new ApiException(429, e.Message, type: "rate_limit_error", code: "queue_full"),
                AdmissionFailure.TooManySequences => new ApiException(400, e.Message, promptParam == "messages" ? "n" : promptParam, "too_many_sequences"),
                AdmissionFailure.ShuttingDown => new ApiException(503, e.Message, type: "service_unavailable", code: "shutting_down"),
                _ => ApiException.BadRequest(e.Message, promptParam),
            };
        }
    }

    /// <summary>What every model endpoint starts with: the model, the request's lifetime token, its body read and checked.</summary>
    public sealed class ModelRequest(ServedModel model, RequestReader reader, System.Text.Json.JsonDocument document, CancellationToken ct) : IDisposable
    {
        public ServedModel Model { get; } = model;
        public RequestReader Reader { get; } = reader;
        public CancellationToken Ct { get; } = ct;
        public void Dispose() => document.Dispose();
    }

    /// <param name="modelRequired">false where "model" may be left out (/tokenize); a given one must still name this model</param>
    public static async Task<ModelRequest> Begin(HttpContext ctx, ModelHost host, bool modelRequired = true)
    {
        var model = RequireModel(host);
        var ct = RequestLifetime(ctx, host);
        var (r, doc) = await RequestReader.Read(ctx.Request, ct);
        try
        {
            if (modelRequired || r.Has("model")) CheckModelName(r, model);
            return new ModelRequest(model, r, doc, ct);
        }
        catch
        {
            doc.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The token a request's work runs under: cancelled when the client goes away, and when a graceful
    /// shutdown's grace period ends (the error handler then ends the response with a 503 error).
    /// </summary>
    public static CancellationToken RequestLifetime(HttpContext ctx, ModelHost host)
    {
        var cts = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted, host.GraceEnded);
        ctx.Response.RegisterForDispose(cts);
        return cts.Token;
    }

    /// <summary>Aborts whatever of a request's sequences is still running when its handler exits, however it exits.</summary>
    public sealed class AbortOnExit(LlmEngine engine, IReadOnlyList<Sequence> sequences) : IDisposable
    {
        public void Dispose()
        {
            foreach (var s in sequences) engine.Abort(s);
        }
    }

    /// <summary>Compares API keys in constant time (hashing first so lengths do not leak either).</summary>
    public static bool KeyMatches(string? presented, string expected)
    {
        if (presented is null) return false;
        return CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(presented)), SHA256.HashData(Encoding.UTF8.GetBytes(expected)));
    }
}
