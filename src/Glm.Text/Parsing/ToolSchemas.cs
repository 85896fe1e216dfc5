using System.Text.Json;

namespace Glm.Text.Parsing;

/// <summary>The declared JSON-schema type of each tool parameter, used to type GLM's textual argument values.</summary>
public sealed class ToolSchemas
{
    private readonly Dictionary<string, Dictionary<string, string>> _types = new(StringComparer.Ordinal);

    public static ToolSchemas Empty { get; } = new();

    /// <summary>From an OpenAI "tools" array: [{type: function, function: {name, parameters: {properties: …}}}].</summary>
    public static ToolSchemas FromOpenAiTools(JsonElement? tools)
    {
        var s = new ToolSchemas();
        if (tools is not { ValueKind: JsonValueKind.Array } arr) return s;
        foreach (var tool in arr.EnumerateArray())
        {
            if (!tool.TryGetProperty("function", out var fn) || !fn.TryGetProperty("name", out var name)) continue;
            var props = new Dictionary<string, string>(StringComparer.Ordinal);
            if (fn.TryGetProperty("parameters", out var p) && p.ValueKind == JsonValueKind.Object &&
                p.TryGetProperty("properties", out var properties) && properties.ValueKind == JsonValueKind.Object)
                foreach (var prop in properties.EnumerateObject())
                    props[prop.Name] = TypeOf(prop.Value);
            s._types[name.GetString() ?? ""] = props;
        }
        return s;
    }

    private static string TypeOf(JsonElement schema)
    {
        if (schema.ValueKind != JsonValueKind.Object) return "";
        if (schema.TryGetProperty("type", out var t))
        {
            if (t.ValueKind == JsonValueKind.String) return t.GetString() ?? "";
            // ["string", "null"]: a string unless the text is null
            if (t.ValueKind == JsonValueKind.Array)
                foreach (var x in t.EnumerateArray()) if (x.GetString() is { } ty && ty != "null") return ty;
        }
        if (schema.TryGetProperty("enum", out var e) && e.ValueKind == JsonValueKind.Array && e.GetArrayLength() > 0)
            return e[0].ValueKind == JsonValueKind.String ? "string" : "";
        return "";
    }

    /// <summary>Each tool's argument keys, as declared in its JSON schema.</summary>
    public IReadOnlyDictionary<string, string[]> ArgumentKeys() => _types.ToDictionary(kv => kv.Key, kv => kv.Value.Keys.ToArray());

    /// <summary>
    /// The JSON text of one argument value: raw text for string parameters; parsed JSON for numbers, booleans,
    /// arrays and objects (kept as a string if it does not parse); unknown parameters parsed when they are JSON.
    /// </summary>
    public string ArgumentJson(string tool, string key, string raw)
    {
        string type = _types.TryGetValue(tool, out var props) && props.TryGetValue(key, out var t) ? t : "";
        if (type == "string") return JsonSerializer.Serialize(raw);
        string trimmed = raw.Trim();
        if (TryJson(trimmed, out var json)) return json;
        if (type is "boolean" && trimmed is "True" or "False") return trimmed.ToLowerInvariant();
        return JsonSerializer.Serialize(raw);
    }

    private static bool TryJson(string text, out string normalized)
    {
        normalized = "";
        if (text.Length == 0) return false;
        try
        {
            using var doc = JsonDocument.Parse(text);
            normalized = JsonSerializer.Serialize(doc.RootElement, new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }
}
