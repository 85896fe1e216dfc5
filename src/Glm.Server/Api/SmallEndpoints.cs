using System.Reflection;
using System.Text.Json;
using Glm.Server.Hosting;

namespace Glm.Server.Api;

/// <summary>/v1/models, /tokenize, /detokenize, /health and /version.</summary>
public static class SmallEndpoints
{
    public static object Models(ModelHost host)
    {
        var m = Endpoints.RequireModel(host);
        return new { @object = "list", data = m.Names.Select(n => ModelCard(m, n)).ToArray() };
    }

    /// <summary>GET /v1/models/{id}: one model card, or 404 in the API's shape.</summary>
    public static object Model(ModelHost host, string id)
    {
        var m = Endpoints.RequireModel(host);
        if (!m.Names.Contains(id)) throw Endpoints.ModelNotFound(id);
        return ModelCard(m, id);
    }

    // root names what is served (a repository id or the directory's name), never the server's file-system path.
    private static object ModelCard(ServedModel m, string id) =>
        new { id, @object = "model", created = m.Created, owned_by = "glm-server", root = m.Root, parent = (string?)null, max_model_len = m.MaxModelLen, description = m.Description };

    public static async Task Tokenize(HttpContext ctx, ModelHost host)
    {
        using var request = await Endpoints.Begin(ctx, host, modelRequired: false);
        var (m, r, ct) = (request.Model, request.Reader, request.Ct);
        if (m.Tokenizer is null) throw ApiException.BadRequest("This model has no tokenizer.");
        int[] ids;
        if (r.Element("messages") is { } messages)
        {
            // The same checks and rendering as /v1/chat/completions, so the counts agree.
            ChatRequestValidation.Messages(messages);
            var tools = r.Element("tools");
            ChatRequestValidation.Tools(tools);
            ids = await host.PromptWork.Run(r.BodyBytes, c => ChatPrompt.Encode(m, ChatPrompt.Render(m, r, messages, tools, c), c), ct);
        }
        else
        {
            string prompt = r.RequiredString("prompt");
            ids = await host.PromptWork.Run(r.BodyBytes, c => m.Tokenizer.Encode(prompt, c), ct);
        }
        bool tokenStrings = r.Bool("return_token_strs") ?? false;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(Json.Serialize(new
        {
            count = ids.Length, max_model_len = m.MaxModelLen, tokens = ids,
            token_strs = tokenStrings ? ids.Select(i => m.Tokenizer.IdToToken(i)).ToArray() : null,
        }), ct);
    }

    public static async Task Detokenize(HttpContext ctx, ModelHost host)
    {
        using var request = await Endpoints.Begin(ctx, host, modelRequired: false);
        var (m, r, ct) = (request.Model, request.Reader, request.Ct);
        if (m.Tokenizer is null) throw ApiException.BadRequest("This model has no tokenizer.");
        if (!r.Has("tokens")) throw ApiException.BadRequest("'tokens' is required.", "tokens");
        var ids = r.IntList("tokens");
        foreach (int id in ids)
            if (m.Tokenizer.IdToToken(id) is null) throw ApiException.BadRequest($"Token id {id} is out of vocabulary.", "tokens");
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(Json.Serialize(new { prompt = m.Tokenizer.Decode(ids.ToArray()) }), ct);
    }

    public static IResult Health(ModelHost host) =>
        host.Ready ? Results.Ok() : Results.Json(ErrorResponses.Body(host.Draining ? "shutting down" : host.LoadError?.Message ?? "model loading", "service_unavailable", null, null), statusCode: 503);

    public static object Version() => new
    {
        version = typeof(SmallEndpoints).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0",
    };
}
