using System.Text.Json;

namespace Glm.Text.Parsing;

/// <summary>
/// Just enough JSON Schema to decide which reading of a tool argument's text its schema accepts: type (one or a
/// list; "integer" is a number without a fraction), enum, const, anyOf / oneOf / allOf, $ref into $defs or
/// definitions (the tool's own document), properties, required, additionalProperties false, items and
/// prefixItems. Keywords it does not know accept (this decides a reading; it does not police the model).
/// </summary>
public sealed class SchemaCheck(JsonElement root)
{
    private const int MaxDepth = 32;

    public JsonElement Root { get; } = root;

    /// <summary>Follows $ref (local JSON pointers only) to the schema it names; the schema itself otherwise.</summary>
    public JsonElement Resolve(JsonElement schema, int depth = 0)
    {
        while (depth++ < MaxDepth && schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("$ref", out var r) && r.ValueKind == JsonValueKind.String)
        {
            string reference = r.GetString()!;
            if (!reference.StartsWith('#')) return default;
            var target = Root;
            foreach (string part in reference[1..].Split('/', StringSplitOptions.RemoveEmptyEntries))
            {
                string name = Uri.UnescapeDataString(part).Replace("~1", "/").Replace("~0", "~");
                if (target.ValueKind != JsonValueKind.Object || !target.TryGetProperty(name, out target)) return default;
            }
            schema = target;
        }
        return schema;
    }

    public bool Satisfies(JsonElement value, JsonElement schema, int depth = 0)
    {
        if (depth > MaxDepth) return true;
        schema = Resolve(schema, depth);
        if (schema.ValueKind == JsonValueKind.True || schema.ValueKind == JsonValueKind.Undefined) return true;
        if (schema.ValueKind == JsonValueKind.False) return false;
        if (schema.ValueKind != JsonValueKind.Object) return true;

        if (schema.TryGetProperty("type", out var type) && !TypeMatches(value, type)) return false;
        if (schema.TryGetProperty("enum", out var en) && en.ValueKind == JsonValueKind.Array && !en.EnumerateArray().Any(x => JsonElement.DeepEquals(x, value))) return false;
        if (schema.TryGetProperty("const", out var cn) && !JsonElement.DeepEquals(cn, value)) return false;
        if (schema.TryGetProperty("allOf", out var all) && all.ValueKind == JsonValueKind.Array && !all.EnumerateArray().All(s => Satisfies(value, s, depth + 1))) return false;
        if (schema.TryGetProperty("anyOf", out var any) && any.ValueKind == JsonValueKind.Array && !any.EnumerateArray().Any(s => Satisfies(value, s, depth + 1))) return false;
        if (schema.TryGetProperty("oneOf", out var one) && one.ValueKind == JsonValueKind.Array && one.EnumerateArray().Count(s => Satisfies(value, s, depth + 1)) != 1) return false;

        if (value.ValueKind == JsonValueKind.Object)
        {
            var props = schema.TryGetProperty("properties", out var p) && p.ValueKind == JsonValueKind.Object ? p : default;
            if (schema.TryGetProperty("required", out var req) && req.ValueKind == JsonValueKind.Array)
                foreach (var name in req.EnumerateArray())
                    if (name.ValueKind == JsonValueKind.String && !value.TryGetProperty(name.GetString()!, out _)) return false;
            bool closed = schema.TryGetProperty("additionalProperties", out var ap) && ap.ValueKind == JsonValueKind.False;
            foreach (var member in value.EnumerateObject())
            {
                if (props.ValueKind == JsonValueKind.Object && props.TryGetProperty(member.Name, out var ps)) { if (!Satisfies(member.Value, ps, depth + 1)) return false; }
                else if (closed) return false;
                else if (ap.ValueKind == JsonValueKind.Object && !Satisfies(member.Value, ap, depth + 1)) return false;
            }
        }
        if (value.ValueKind == JsonValueKind.Array)
        {
            int index = 0, prefix = 0;
            if (schema.TryGetProperty("prefixItems", out var pi) && pi.ValueKind == JsonValueKind.Array)
            {
                prefix = pi.GetArrayLength();
                foreach (var item in value.EnumerateArray().Take(prefix))
                    if (!Satisfies(item, pi[index++], depth + 1)) return false;
            }
            if (schema.TryGetProperty("items", out var items) && items.ValueKind is JsonValueKind.Object or JsonValueKind.False or JsonValueKind.True)
                foreach (var item in value.EnumerateArray().Skip(prefix))
                    if (!Satisfies(item, items, depth + 1)) return false;
        }
        return true;
    }

    private static bool TypeMatches(JsonElement value, JsonElement type) => type.ValueKind switch
    {
        JsonValueKind.String => IsType(value, type.GetString()!),
        JsonValueKind.Array => type.EnumerateArray().Any(t => t.ValueKind == JsonValueKind.String && IsType(value, t.GetString()!)),
        _ => true,
    };

    public static bool IsType(JsonElement value, string type) => type switch
    {
        "string" => value.ValueKind == JsonValueKind.String,
        "number" => value.ValueKind == JsonValueKind.Number,
        "integer" => value.ValueKind == JsonValueKind.Number && (value.TryGetInt64(out _) || (value.TryGetDouble(out double d) && Math.Floor(d) == d && !double.IsInfinity(d))),
        "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "null" => value.ValueKind == JsonValueKind.Null,
        "object" => value.ValueKind == JsonValueKind.Object,
        "array" => value.ValueKind == JsonValueKind.Array,
        _ => true,
    };

    /// <summary>
    /// The types a schema allows ("string", "integer", …), through $ref and across anyOf/oneOf branches and allOf
    /// parts; null when it does not say (any type).
    /// </summary>
    public HashSet<string>? AllowedTypes(JsonElement schema, int depth = 0)
    {
        if (depth > MaxDepth) return null;
        schema = Resolve(schema, depth);
        if (schema.ValueKind != JsonValueKind.Object) return null;
        HashSet<string>? result = null;
        if (schema.TryGetProperty("type", out var type))
        {
            result = type.ValueKind == JsonValueKind.String ? [type.GetString()!]
                : type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Where(t => t.ValueKind == JsonValueKind.String).Select(t => t.GetString()!).ToHashSet() : null;
        }
        else if (schema.TryGetProperty("enum", out var en) && en.ValueKind == JsonValueKind.Array)
            result = en.EnumerateArray().Select(KindName).ToHashSet();
        else if (schema.TryGetProperty("const", out var cn))
            result = [KindName(cn)];
        foreach (string key in new[] { "anyOf", "oneOf" })
            if (schema.TryGetProperty(key, out var branches) && branches.ValueKind == JsonValueKind.Array)
            {
                var union = new HashSet<string>();
                foreach (var b in branches.EnumerateArray())
                {
                    var t = AllowedTypes(b, depth + 1);
                    if (t is null) return result; // a branch of any type: the branches say nothing more
                    union.UnionWith(t);
                }
                result = result is null ? union : result.Intersect(union).ToHashSet();
            }
        if (schema.TryGetProperty("allOf", out var parts) && parts.ValueKind == JsonValueKind.Array)
            foreach (var part in parts.EnumerateArray())
                if (AllowedTypes(part, depth + 1) is { } t) result = result is null ? t : result.Intersect(t).ToHashSet();
        return result;
    }

    private static string KindName(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Null => "null",
        JsonValueKind.Array => "array",
        _ => "object",
    };
}
