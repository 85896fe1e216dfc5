using System.Runtime.InteropServices;
using System.Text.Json;

namespace Glm.Server.Api;

/// <summary>
/// The one way a JSON request body is read: the Content-Type, UTF-8, JSON syntax, an object at the root, and
/// every string in it (names and values) readable as UTF-16, so a lone surrogate escape such as "\ud800" is a
/// 400 naming where it is instead of an exception wherever a handler first reads that string. Then typed
/// access; a wrong type or range is a 400 naming the parameter.
/// </summary>
public sealed class RequestReader(JsonElement root, int bodyBytes = 0)
{
    public JsonElement Root { get; } = root;

    /// <summary>The body's size in bytes: how heavy the request's prompt work will be.</summary>
    public int BodyBytes { get; } = bodyBytes;

    /// <summary>
    /// JSON is required by its declared type: a JSON body sent as text/plain or form data (curl's default -d) is
    /// refused with 415, as is a body with no Content-Type. Browsers send those types cross-origin without a
    /// CORS preflight, so accepting them would let any web page drive a local server.
    /// </summary>
    public static bool IsJsonContentType(string? contentType)
    {
        if (contentType is null) return false;
        string media = contentType.Split(';', 2)[0].Trim();
        return media.Equals("application/json", StringComparison.OrdinalIgnoreCase) || media.EndsWith("+json", StringComparison.OrdinalIgnoreCase);
    }

    public static ApiException UnsupportedMediaType(string? contentType) => new(415, contentType is { } type
        ? $"Content-Type must be application/json, got '{type}'. With curl, add -H 'Content-Type: application/json'."
        : "Content-Type must be application/json; the request has none. With curl, add -H 'Content-Type: application/json'.",
        code: "unsupported_media_type");

    public static async Task<(RequestReader Reader, JsonDocument Doc)> Read(HttpRequest request, CancellationToken ct)
    {
        if (!IsJsonContentType(request.ContentType)) throw UnsupportedMediaType(request.ContentType);
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
        try
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest("The request body must be a JSON object.");
            CheckStrings(doc.RootElement, "");
        }
        catch
        {
            doc.Dispose();
            throw;
        }
        return (new RequestReader(doc.RootElement, bytes.Length), doc);
    }

    /// <summary>Valid UTF-8 cannot hold a lone surrogate, but a JSON escape can: find any, and say where.</summary>
    private static void CheckStrings(JsonElement root, string path) => JsonWalk.Strings(root, path,
        (p, at) =>
        {
            try { _ = p.Name; }
            catch (InvalidOperationException) { throw LoneSurrogate(at.Length == 0 ? "a property name" : $"a property name in '{at}'", at); }
        },
        (value, at) =>
        {
            // Only a string with an escape can hold one; most have none and skip the decode.
            if (JsonMarshal.GetRawUtf8Value(value).IndexOf("\\u"u8) < 0) return;
            try { _ = value.GetString(); }
            catch (InvalidOperationException) { throw LoneSurrogate($"'{at}'", at); }
        });

    private static ApiException LoneSurrogate(string where, string path) =>
        ApiException.BadRequest($"{where} holds an unpaired UTF-16 surrogate escape (such as \\ud800), which is not text.", path.Length == 0 ? null : path);

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
