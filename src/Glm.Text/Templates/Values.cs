using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Glm.Text.Templates;

/// <summary>Jinja's undefined value: falsy, renders as nothing, and stays undefined under attribute access.</summary>
public sealed class Undefined
{
    public static readonly Undefined Instance = new();
    public override string ToString() => "";
}

/// <summary>The object namespace() returns: attributes assignable from inside loops.</summary>
public sealed class Namespace : Dictionary<string, object?>;

/// <summary>A callable value (macro or global function).</summary>
public delegate object? TemplateFunction(List<object?> args, Dictionary<string, object?> kwargs);

/// <summary>Python semantics for template values: null is None, long and double are numbers, lists and ordered dicts.</summary>
public static class Values
{
    public static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => e.EnumerateObject().Aggregate(new Dictionary<string, object?>(), (d, p) => { d[p.Name] = FromJson(p.Value); return d; }),
        JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => e.TryGetInt64(out long l) ? (object)l : e.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };

    public static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        System.Collections.ICollection c => c.Count > 0,
        _ => true,
    };

    /// <summary>str(v) as Python prints it.</summary>
    public static string ToStr(object? v) => v switch
    {
        null => "None",
        Undefined => "",
        string s => s,
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FormatFloat(d),
        _ => Repr(v),
    };

    public static string FormatFloat(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        if (d == Math.Floor(d) && Math.Abs(d) < 1e16) return d.ToString("0.0", CultureInfo.InvariantCulture);
        return d.ToString("R", CultureInfo.InvariantCulture);
    }

    /// <summary>repr(v) as Python prints it (lists and dicts use it for their items).</summary>
    public static string Repr(object? v) => v switch
    {
        string s => "'" + s.Replace("\\", "\\\\").Replace("'", "\\'").Replace("\n", "\\n") + "'",
        IList<object?> list => "[" + string.Join(", ", list.Select(Repr)) + "]",
        IDictionary<string, object?> dict => "{" + string.Join(", ", dict.Select(kv => Repr(kv.Key) + ": " + Repr(kv.Value))) + "}",
        TemplateFunction => "<function>",
        _ => ToStr(v),
    };

    public static bool Equal(object? a, object? b) => (a, b) switch
    {
        (null, null) => true,
        (Undefined, Undefined) => true,
        (long x, long y) => x == y,
        (long or double, long or double) when a is not bool && b is not bool => ToDouble(a) == ToDouble(b),
        (string x, string y) => x == y,
        (bool x, bool y) => x == y,
        (IList<object?> x, IList<object?> y) => x.Count == y.Count && x.Zip(y).All(p => Equal(p.First, p.Second)),
        (IDictionary<string, object?> x, IDictionary<string, object?> y) => x.Count == y.Count && x.All(kv => y.TryGetValue(kv.Key, out var o) && Equal(kv.Value, o)),
        _ => ReferenceEquals(a, b),
    };

    public static double ToDouble(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new InvalidOperationException($"'{TypeName(v)}' is not a number"),
    };

    public static int Compare(object? a, object? b) => (a, b) switch
    {
        (string x, string y) => string.CompareOrdinal(x, y),
        _ when a is long or double or bool && b is long or double or bool => ToDouble(a).CompareTo(ToDouble(b)),
        _ => throw new InvalidOperationException($"cannot compare '{TypeName(a)}' with '{TypeName(b)}'"),
    };

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        Undefined => "Undefined",
        string => "str",
        long => "int",
        double => "float",
        bool => "bool",
        IList<object?> => "list",
        IDictionary<string, object?> => "dict",
        _ => v.GetType().Name,
    };

    /// <summary>Python's json.dumps: ", " and ": " separators (or "," with indent), ensure_ascii optional.</summary>
    public static string ToJson(object? v, bool ensureAscii, int? indent, bool sortKeys = false)
    {
        var sb = new StringBuilder();
        WriteJson(sb, v, ensureAscii, indent, sortKeys, 0);
        return sb.ToString();
    }

    private static void WriteJson(StringBuilder sb, object? v, bool ascii, int? indent, bool sortKeys, int depth)
    {
        string itemSep = indent is null ? ", " : ",";
        void NewLine(int d) { if (indent is int n) sb.Append('\n').Append(' ', n * d); }
        switch (v)
        {
            case null or Undefined: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsInfinity(d) ? (d > 0 ? "Infinity" : "-Infinity") : FormatFloat(d));
                break;
            case string s: WriteJsonString(sb, s, ascii); break;
            case IList<object?> list:
                if (list.Count == 0) { sb.Append("[]"); break; }
                sb.Append('[');
                for (int i = 0; i < list.Count; i++)
                {
                    if (i > 0) sb.Append(itemSep);
                    NewLine(depth + 1);
                    WriteJson(sb, list[i], ascii, indent, sortKeys, depth + 1);
                }
                NewLine(depth);
                sb.Append(']');
                break;
            case IDictionary<string, object?> dict:
                if (dict.Count == 0) { sb.Append("{}"); break; }
                sb.Append('{');
                var entries = sortKeys ? dict.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList() : dict.ToList();
                for (int i = 0; i < entries.Count; i++)
                {
                    if (i > 0) sb.Append(itemSep);
                    NewLine(depth + 1);
                    WriteJsonString(sb, entries[i].Key, ascii);
                    sb.Append(": ");
                    WriteJson(sb, entries[i].Value, ascii, indent, sortKeys, depth + 1);
                }
                NewLine(depth);
                sb.Append('}');
                break;
            default: throw new InvalidOperationException($"Object of type {TypeName(v)} is not JSON serializable");
        }
    }

    private static void WriteJsonString(StringBuilder sb, string s, bool ascii) =>
        Glm.Text.Parsing.JsonText.AppendEscaped(sb.Append('"'), s, ascii).Append('"');
}
