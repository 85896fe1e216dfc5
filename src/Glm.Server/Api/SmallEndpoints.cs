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
        return new
        {
            @object = "list",
            data = new[]
            {
                new { id = m.Name, @object = "model", created = m.Created, owned_by = "glm-server", root = m.Directory, max_model_len = m.MaxModelLen, description = m.Description },
            },
        };
    }

    public static async Task Tokenize(HttpContext ctx, ModelHost host)
    {
        var m = Endpoints.RequireModel(host);
        var (r, doc) = await RequestReader.Read(ctx.Request, ctx.RequestAborted);
        using var _ = doc;
        if (r.String("model") is { } name && name != m.Name) throw new ApiException(404, $"The model `{name}` does not exist.", "model", "model_not_found");
        if (m.Tokenizer is null) throw ApiException.BadRequest("This model has no tokenizer.");
        int[] ids;
        if (r.Element("messages") is { } messages)
        {
            ids = m.Tokenizer.Encode(ChatPrompt.Render(m, r, messages, r.Element("tools")));
        }
        else ids = m.Tokenizer.Encode(r.RequiredString("prompt"));
        bool tokenStrings = r.Bool("return_token_strs") ?? false;
        await ctx.Response.WriteAsync(Json.Serialize(new
        {
            count = ids.Length, max_model_len = m.MaxModelLen, tokens = ids,
            token_strs = tokenStrings ? ids.Select(i => m.Tokenizer.IdToToken(i)).ToArray() : null,
        }), ctx.RequestAborted);
    }

    public static async Task Detokenize(HttpContext ctx, ModelHost host)
    {
        var m = Endpoints.RequireModel(host);
        var (r, doc) = await RequestReader.Read(ctx.Request, ctx.RequestAborted);
        using var _ = doc;
        if (m.Tokenizer is null) throw ApiException.BadRequest("This model has no tokenizer.");
        var ids = r.IntList("tokens");
        foreach (int id in ids)
            if (m.Tokenizer.IdToToken(id) is null) throw ApiException.BadRequest($"Token id {id} is out of vocabulary.", "tokens");
        await ctx.Response.WriteAsync(Json.Serialize(new { prompt = m.Tokenizer.Decode(ids.ToArray()) }), ctx.RequestAborted);
    }

    public static IResult Health(ModelHost host) =>
        host.Ready ? Results.Ok() : Results.Json(ErrorResponses.Body(host.Draining ? "shutting down" : host.LoadError?.Message ?? "model loading", "service_unavailable", null, null), statusCode: 503);

    public static object Version() => new
    {
        version = typeof(SmallEndpoints).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0",
    };
}
