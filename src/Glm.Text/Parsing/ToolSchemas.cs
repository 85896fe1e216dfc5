using System.Text.Json;

namespace Glm.Text.Parsing;

/// <summary>
/// Each tool's parameters schema, used to type GLM's textual argument values. GLM writes every value as text
/// between &lt;arg_value&gt; tags; the schema decides what JSON value that text stands for.
/// </summary>
/// <remarks>
/// The rule, in order: (1) the text parsed as a non-string JSON value (42, true, null, [..], {..}) if the
/// property's schema accepts it; (2) a quoted text ("42") unquoted and parsed, for a number or other non-string
/// the schema wants; (3) Python's True / False / None; (4) the text itself as a string, if the schema accepts a
/// string. So where two readings both satisfy the schema, the non-string one wins (the peers do the same), a
/// JSON-looking text for a string-only property stays a string, and a const or enum decides between them. When
/// no reading satisfies the schema: a string if the schema's types include string, else the parsed JSON if the
/// text is JSON, else the text as a string. Properties are looked up through $ref, allOf, and the branches of a
/// root anyOf/oneOf (a discriminated union: a key's schema is the union of the branches that declare it).
/// </remarks>
public sealed class ToolSchemas
{
    private readonly Dictionary<string, SchemaCheck> _tools = new(StringComparer.Ordinal);

    public static ToolSchemas Empty { get; } = new();

    /// <summary>From an OpenAI "tools" array: [{type: function, function: {name, parameters}}].</summary>
    public static ToolSchemas FromOpenAiTools(JsonElement? tools)
    {
        var s = new ToolSchemas();
        if (tools is not { ValueKind: JsonValueKind.Array } arr) return s;
        foreach (var tool in arr.EnumerateArray())
        {
            if (tool.ValueKind != JsonValueKind.Object || !tool.TryGetProperty("function", out var fn) || fn.ValueKind != JsonValueKind.Object
                || !fn.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String) continue;
            var parameters = fn.TryGetProperty("parameters", out var p) && p.ValueKind == JsonValueKind.Object ? p.Clone() : JsonDocument.Parse("{}").RootElement.Clone();
            s._tools[name.GetString()!] = new SchemaCheck(parameters);
        }
        return s;
    }

    public bool HasTool(string name) => _tools.ContainsKey(name);

    /// <summary>The schemas that may govern one argument (one per declaring branch), resolved; empty when none declares it.</summary>
    private static List<JsonElement> PropertySchemas(SchemaCheck check, JsonElement schema, string key, int depth)
    {
        var found = new List<JsonElement>();
        if (depth > 16) return found;
        schema = check.Resolve(schema);
        if (schema.ValueKind != JsonValueKind.Object) return found;
        if (schema.TryGetProperty("properties", out var props) && props.ValueKind == JsonValueKind.Object && props.TryGetProperty(key, out var s))
            found.Add(check.Resolve(s));
        foreach (string k in new[] { "allOf", "anyOf", "oneOf" })
            if (schema.TryGetProperty(k, out var parts) && parts.ValueKind == JsonValueKind.Array)
                foreach (var part in parts.EnumerateArray()) found.AddRange(PropertySchemas(check, part, key, depth + 1));
        return found;
    }

    /// <summary>
    /// Whether a value for this key can only be a string: its schema's types are exactly {"string"}. Such a value
    /// is streamed as it is generated (its JSON is the text itself, quoted), whatever else the schema says.
    /// </summary>
    public bool IsStringOnly(string tool, string key)
    {
        if (!_tools.TryGetValue(tool, out var check)) return false;
        var schemas = PropertySchemas(check, check.Root, key, 0);
        if (schemas.Count == 0) return false;
        foreach (var s in schemas)
            if (check.AllowedTypes(s) is not { Count: 1 } types || !types.Contains("string")) return false;
        return true;
    }

    /// <summary>The JSON text of one argument value (see the rule above), written without needless escapes.</summary>
    public string ArgumentJson(string tool, string key, string raw)
    {
        string trimmed = raw.Trim();
        var parsed = JsonText.TryParse(trimmed);
        if (!_tools.TryGetValue(tool, out var check) || PropertySchemas(check, check.Root, key, 0) is not { Count: > 0 } schemas)
            // An undeclared key: JSON when the text is JSON, else the text.
            return parsed is { } p0 ? JsonText.Write(p0) : JsonText.Quote(raw);

        bool Accepts(JsonElement v) => schemas.Any(s => check.Satisfies(v, s));
        if (parsed is { ValueKind: not JsonValueKind.String } p1 && Accepts(p1)) return JsonText.Write(p1);
        if (parsed is { ValueKind: JsonValueKind.String } quoted && JsonText.TryParse(quoted.GetString()!.Trim()) is { ValueKind: not JsonValueKind.String } inner && Accepts(inner))
            return JsonText.Write(inner);
        if (trimmed is "True" or "False" or "None")
        {
            var literal = JsonText.TryParse(trimmed switch { "True" => "true", "False" => "false", _ => "null" })!.Value;
            if (Accepts(literal)) return JsonText.Write(literal);
        }
        if (Accepts(JsonText.StringElement(raw))) return JsonText.Quote(raw);
        if (trimmed != raw && Accepts(JsonText.StringElement(trimmed))) return JsonText.Quote(trimmed);
        // Nothing satisfies the schema: keep the model's intent as far as it can be read.
        bool stringAllowed = schemas.Any(s => check.AllowedTypes(s) is not { } t || t.Contains("string"));
        if (stringAllowed || parsed is null) return JsonText.Quote(raw);
        return JsonText.Write(parsed.Value);
    }
}
