using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Glm.Text.Parsing;

/// <summary>
/// JSON as Python's json.dumps(ensure_ascii=False) writes it, which is what the peers send as tool-call
/// arguments: only '"', '\' and control characters are escaped, so "你好", "🎉", "&lt;", "'" and "+" stay themselves
/// (System.Text.Json escapes all of those, and even its relaxed encoder escapes characters outside the BMP),
/// with ", " and ": " between items, and numbers exactly as the model wrote them.
/// </summary>
public static class JsonText
{
    public static string Quote(string s) => new StringBuilder(s.Length + 2).Append('"').AppendEscaped(s).Append('"').ToString();

    /// <summary>The inside of a JSON string for <paramref name="s"/>, per character, so pieces escaped apart concatenate to the whole.</summary>
    public static string Escape(string s) => new StringBuilder(s.Length).AppendEscaped(s).ToString();

    /// <summary>Appends the inside of a JSON string; <paramref name="ascii"/> also escapes non-ASCII (Python's ensure_ascii=True).</summary>
    internal static StringBuilder AppendEscaped(this StringBuilder sb, string s, bool ascii = false)
    {
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ascii && c > 0x7F)) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        return sb;
    }

    public static string Write(JsonElement e)
    {
        var sb = new StringBuilder();
        Write(e, sb);
        return sb.ToString();
    }

    private static void Write(JsonElement e, StringBuilder sb)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                sb.Append('{');
                bool first = true;
                foreach (var p in e.EnumerateObject())
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    sb.Append('"').AppendEscaped(p.Name).Append("\": ");
                    Write(p.Value, sb);
                }
                sb.Append('}');
                break;
            case JsonValueKind.Array:
                sb.Append('[');
                int i = 0;
                foreach (var item in e.EnumerateArray())
                {
                    if (i++ > 0) sb.Append(", ");
                    Write(item, sb);
                }
                sb.Append(']');
                break;
            case JsonValueKind.String:
                sb.Append('"').AppendEscaped(e.GetString()!).Append('"');
                break;
            default:
                sb.Append(e.GetRawText()); // numbers as written; true, false, null
                break;
        }
    }

    /// <summary>Parses one JSON value (any kind), or null when the text is not exactly one.</summary>
    public static JsonElement? TryParse(string text)
    {
        if (text.Length == 0) return null;
        try
        {
            using var doc = JsonDocument.Parse(text);
            return doc.RootElement.Clone();
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public static JsonElement StringElement(string s) => JsonDocument.Parse(Quote(s)).RootElement.Clone();
}
