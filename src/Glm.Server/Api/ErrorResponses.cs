using System.Text.Json;

namespace Glm.Server.Api;

/// <summary>
/// Writes errors in the shape of the API a request spoke: OpenAI's {"error": {"message", "type", "param",
/// "code"}}, or on /v1/messages Anthropic's {"type": "error", "error": {"type", "message"}}.
/// </summary>
public static class ErrorResponses
{
    public static object Body(string message, string type, string? param, string? code) =>
        new { error = new { message, type, param, code } };

    /// <summary>Whether a request is Anthropic's (its errors take Anthropic's shape and types).</summary>
    public static bool IsAnthropic(HttpContext ctx) => ctx.Request.Path.StartsWithSegments("/v1/messages");

    /// <summary>Anthropic's error body; the type follows the status as Anthropic assigns them.</summary>
    public static object AnthropicBody(int status, string message) => new
    {
        type = "error",
        error = new
        {
            type = status switch
            {
                400 or 415 or 422 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                408 => "timeout_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                503 or 529 => "overloaded_error",
                _ => "api_error",
            },
            message,
        },
    };

    public static object BodyFor(HttpContext ctx, int status, string message, string type, string? param, string? code) =>
        IsAnthropic(ctx) ? AnthropicBody(status, message) : Body(message, type, param, code);

    public static async Task Write(HttpContext ctx, int status, string message, string type = "invalid_request_error", string? param = null, string? code = null,
        CancellationToken? ct = null)
    {
        if (ctx.Response.HasStarted) return;
        ctx.Response.StatusCode = status;
        if (status is 429 or 503) ctx.Response.Headers.RetryAfter = "1";
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(JsonSerializer.Serialize(BodyFor(ctx, status, message, type, param, code)), ct ?? ctx.RequestAborted);
    }

    public static Task Write(HttpContext ctx, ApiException e) => Write(ctx, e.Status, e.Message, e.Type, e.Param, e.Code);
}
