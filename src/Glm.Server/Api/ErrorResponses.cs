using System.Text.Json;

namespace Glm.Server.Api;

/// <summary>Writes errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.</summary>
public static class ErrorResponses
{
    public static object Body(string message, string type, string? param, string? code) =>
        new { error = new { message, type, param, code } };

    public static async Task Write(HttpContext ctx, int status, string message, string type = "invalid_request_error", string? param = null, string? code = null,
        CancellationToken? ct = null)
    {
        if (ctx.Response.HasStarted) return;
        ctx.Response.StatusCode = status;
        if (status is 429 or 503) ctx.Response.Headers.RetryAfter = "1";
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(JsonSerializer.Serialize(Body(message, type, param, code)), ct ?? ctx.RequestAborted);
    }

    public static Task Write(HttpContext ctx, ApiException e) => Write(ctx, e.Status, e.Message, e.Type, e.Param, e.Code);
}
