using System.Text.Json;

namespace Glm.Server.Api;

/// <summary>Typed access to a JSON request body; a wrong type or range is a 400 naming the parameter.</summary>
public sealed class RequestReader(JsonElement root)
{
    public JsonElement Root { get; } = root;

    public static async Task<(RequestReader Reader, JsonDocument Doc)> Read(HttpRequest request, CancellationToken ct)
    {
        if (request.ContentType is { } type && !type.Contains("json", StringComparison.OrdinalIgnoreCase))
            throw new ApiException(415, $"Content-Type must be application/json, got '{type}'.");
        // Read whole (Kestrel caps the size) so invalid UTF-8 is caught here, not when a string is first read.
        using var buffer = new MemoryStream();
        await request.Body.CopyToAsync(buffer, ct);
        var bytes = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
        if (!System.Text.Unicode.Utf8.IsValid(bytes.Span)) throw ApiException.BadRequest("The request body is not valid UTF-8.");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(bytes.ToArray());
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"The request body is not valid JSON: {e.Message}");
        }
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            doc.Dispose();
            throw ApiException.BadRequest("The request body must be a JSON object.");
        }
        return (new RequestReader(doc.RootElement), doc);
    }

    public bool Has(string name) => Root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null;

    public JsonElement? Element(string name) => Root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public string? String(string name) => Element(name) is { } v
        ? v.ValueKind == JsonValueKind.String ? v.GetString() : throw Wrong(name, "a string")
        : null;

    public string RequiredString(string name) => String(name) ?? throw ApiException.BadRequest($"'{name}' is required.", name);

    public bool? Bool(string name) => Element(name) is { } v
        ? v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw Wrong(name, "a boolean")
        : null;

    public double? Number(string name, double min = double.MinValue, double max = double.MaxValue)
    {
        if (Element(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number) throw Wrong(name, "a number");
        double d = v.GetDouble();
        if (d < min || d > max) throw ApiException.BadRequest($"'{name}' must be between {min} and {max}, got {d}.", name);
        return d;
    }

    public int? Int(string name, int min = int.MinValue, int max = int.MaxValue)
    {
        if (Element(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long l)) throw Wrong(name, "an integer");
        if (l < min || l > max) throw ApiException.BadRequest($"'{name}' must be between {min} and {max}, got {l}.", name);
        return (int)l;
    }

    /// <summary>stream_options.include_usage, which only means something for streamed responses.</summary>
    public bool StreamIncludeUsage(bool stream) => stream && Element("stream_options") is { ValueKind: JsonValueKind.Object } so
        && so.TryGetProperty("include_usage", out var iu) && iu.ValueKind == JsonValueKind.True;

    public List<string> Stop()
    {
        if (Element("stop") is not { } v) return [];
        if (v.ValueKind == JsonValueKind.String) return [v.GetString()!];
        if (v.ValueKind == JsonValueKind.Array && v.EnumerateArray().All(x => x.ValueKind == JsonValueKind.String))
        {
            var list = v.EnumerateArray().Select(x => x.GetString()!).Where(s => s.Length > 0).ToList();
            if (list.Count > 4) throw ApiException.BadRequest("'stop' may hold at most 4 sequences.", "stop");
            return list;
        }
        throw Wrong("stop", "a string or an array of strings");
    }

    public List<int> IntList(string name)
    {
        if (Element(name) is not { } v) return [];
        if (v.ValueKind != JsonValueKind.Array) throw Wrong(name, "an array of integers");
        return v.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Number && x.TryGetInt32(out int i) ? i : throw Wrong(name, "an array of integers")).ToList();
    }

    public static ApiException Wrong(string name, string expected) => ApiException.BadRequest($"'{name}' must be {expected}.", name);
}
