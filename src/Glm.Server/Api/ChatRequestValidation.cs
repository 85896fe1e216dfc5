using System.Text.Json;

namespace Glm.Server.Api;

/// <summary>
/// The shape checks of a chat request's <c>messages</c> and <c>tools</c>, shared by every endpoint that renders a
/// chat (chat completions, /tokenize), so a malformed part is a 400 naming its path (as OpenAI answers), never
/// something the template renders oddly or a 500 further down.
/// </summary>
public static class ChatRequestValidation
{
    private static readonly HashSet<string> Roles = ["system", "developer", "user", "assistant", "tool"];

    public static void Messages(JsonElement? messagesOrNull)
    {
        var messages = messagesOrNull ?? throw ApiException.BadRequest("'messages' is required.", "messages");
        if (messages.ValueKind != JsonValueKind.Array) throw RequestReader.Wrong("messages", "an array");
        if (messages.GetArrayLength() == 0) throw ApiException.BadRequest("'messages' must contain at least one message.", "messages");
        int i = 0;
        foreach (var m in messages.EnumerateArray())
        {
            string where = $"messages[{i++}]";
            if (m.ValueKind != JsonValueKind.Object) throw RequestReader.Wrong(where, "an object");
            if (!m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
                throw ApiException.BadRequest($"'{where}.role' is required.", where + ".role");
            string r = role.GetString()!;
            if (!Roles.Contains(r))
                throw ApiException.BadRequest($"'{where}.role' must be one of system, developer, user, assistant, tool; got '{r}'.", where + ".role");
            if (m.TryGetProperty("content", out var content)) Content(content, where + ".content", r);
            OptionalString(m, "name", where);
            OptionalString(m, "reasoning_content", where);
            OptionalString(m, "reasoning", where);
            if (r == "tool") OptionalString(m, "tool_call_id", where);
            if (m.TryGetProperty("tool_calls", out var calls) && calls.ValueKind != JsonValueKind.Null)
            {
                if (r != "assistant") throw ApiException.BadRequest($"'{where}.tool_calls' is only allowed on assistant messages.", where + ".tool_calls");
                ToolCalls(calls, where + ".tool_calls");
            }
        }
    }

    private static void Content(JsonElement content, string where, string role)
    {
        switch (content.ValueKind)
        {
            case JsonValueKind.String or JsonValueKind.Null: return;
            case JsonValueKind.Array: break;
            default: throw RequestReader.Wrong(where, "a string or an array of content parts");
        }
        int k = 0;
        foreach (var part in content.EnumerateArray())
        {
            string at = $"{where}[{k++}]";
            if (part.ValueKind != JsonValueKind.Object) throw RequestReader.Wrong(at, "a content part object");
            if (!part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                throw ApiException.BadRequest($"'{at}.type' is required.", at + ".type");
            switch (type.GetString())
            {
                case "text":
                    if (!part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                        throw ApiException.BadRequest($"'{at}.text' must be a string.", at + ".text");
                    break;
                case "image_url" or "input_image" or "image" or "input_audio" or "audio_url" or "video_url" or "file":
                    throw ApiException.BadRequest($"'{at}' is a '{type.GetString()}' part; this model reads text only.", at + ".type", "unsupported_content_type");
                default:
                    throw ApiException.BadRequest($"'{at}.type' must be 'text', got '{type.GetString()}'.", at + ".type");
            }
        }
    }

    private static void ToolCalls(JsonElement calls, string where)
    {
        if (calls.ValueKind != JsonValueKind.Array) throw RequestReader.Wrong(where, "an array");
        int k = 0;
        foreach (var call in calls.EnumerateArray())
        {
            string at = $"{where}[{k++}]";
            if (call.ValueKind != JsonValueKind.Object) throw RequestReader.Wrong(at, "an object");
            OptionalString(call, "id", at);
            if (!call.TryGetProperty("function", out var fn) || fn.ValueKind != JsonValueKind.Object)
                throw ApiException.BadRequest($"'{at}.function' must be an object.", at + ".function");
            if (!fn.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString()!.Length == 0)
                throw ApiException.BadRequest($"'{at}.function.name' must be a non-empty string.", at + ".function.name");
            if (fn.TryGetProperty("arguments", out var args) && args.ValueKind is not (JsonValueKind.String or JsonValueKind.Object or JsonValueKind.Null))
                throw RequestReader.Wrong(at + ".function.arguments", "a JSON string");
        }
    }

    /// <summary>OpenAI function tools: [{"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}].</summary>
    public static void Tools(JsonElement? toolsOrNull)
    {
        if (toolsOrNull is not { } tools) return;
        if (tools.ValueKind != JsonValueKind.Array) throw RequestReader.Wrong("tools", "an array");
        var names = new HashSet<string>(StringComparer.Ordinal);
        int i = 0;
        foreach (var tool in tools.EnumerateArray())
        {
            string at = $"tools[{i++}]";
            if (tool.ValueKind != JsonValueKind.Object) throw RequestReader.Wrong(at, "a tool object");
            if (tool.TryGetProperty("type", out var type) && !(type.ValueKind == JsonValueKind.String && type.GetString() == "function"))
                throw ApiException.BadRequest($"'{at}.type' must be 'function'.", at + ".type");
            if (!tool.TryGetProperty("function", out var fn) || fn.ValueKind != JsonValueKind.Object)
                throw ApiException.BadRequest($"'{at}.function' must be an object with a 'name'.", at + ".function");
            if (!fn.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String)
                throw ApiException.BadRequest($"'{at}.function.name' is required and must be a string.", at + ".function.name");
            string n = name.GetString()!;
            // OpenAI's rule for function names; it also keeps names out of the template's XML tags.
            if (n.Length is 0 or > 64 || !n.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.'))
                throw ApiException.BadRequest($"'{at}.function.name' must be 1 to 64 letters, digits, '_', '-' or '.', got '{n}'.", at + ".function.name");
            if (!names.Add(n)) throw ApiException.BadRequest($"'tools' declares the function '{n}' twice.", at + ".function.name");
            OptionalString(fn, "description", at + ".function");
            if (fn.TryGetProperty("parameters", out var p) && p.ValueKind is not (JsonValueKind.Object or JsonValueKind.Null))
                throw RequestReader.Wrong(at + ".function.parameters", "a JSON Schema object");
            if (fn.TryGetProperty("strict", out var s) && s.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
                throw RequestReader.Wrong(at + ".function.strict", "a boolean");
        }
    }

    private static void OptionalString(JsonElement obj, string name, string where)
    {
        if (obj.TryGetProperty(name, out var v) && v.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
            throw RequestReader.Wrong($"{where}.{name}", "a string");
    }
}
