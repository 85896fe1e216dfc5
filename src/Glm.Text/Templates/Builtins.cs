using System.Globalization;
using static Glm.Text.Templates.Values;

namespace Glm.Text.Templates;

/// <summary>Jinja's globals, filters, tests, operators and the Python methods templates call on strings, dicts and lists.</summary>
internal static class Builtins
{
    public static void AddGlobals(Dictionary<string, object?> g)
    {
        g["range"] = new TemplateFunction((a, _) =>
        {
            long start = a.Count > 1 ? (long)ToDouble(a[0]) : 0, stop = (long)ToDouble(a.Count > 1 ? a[1] : a[0]), step = a.Count > 2 ? (long)ToDouble(a[2]) : 1;
            var list = new List<object?>();
            for (long i = start; step > 0 ? i < stop : i > stop; i += step) list.Add(i);
            return list;
        });
        g["namespace"] = new TemplateFunction((a, kw) =>
        {
            var ns = new Namespace();
            foreach (var d in a.OfType<IDictionary<string, object?>>()) foreach (var (k, v) in d) ns[k] = v;
            foreach (var (k, v) in kw) ns[k] = v;
            return ns;
        });
        g["dict"] = new TemplateFunction((a, kw) =>
        {
            var d = new Dictionary<string, object?>();
            foreach (var src in a.OfType<IDictionary<string, object?>>()) foreach (var (k, v) in src) d[k] = v;
            foreach (var (k, v) in kw) d[k] = v;
            return d;
        });
        g["raise_exception"] = new TemplateFunction((a, _) => throw new TemplateException(a.Count > 0 ? ToStr(a[0]) : "raise_exception called"));
        g["strftime_now"] = new TemplateFunction((a, _) => StrFTime(DateTime.Now, a.Count > 0 ? ToStr(a[0]) : "%Y-%m-%d"));
    }

    private static string StrFTime(DateTime t, string format) =>
        format.Replace("%Y", t.ToString("yyyy", CultureInfo.InvariantCulture)).Replace("%m", t.ToString("MM", CultureInfo.InvariantCulture))
              .Replace("%d", t.ToString("dd", CultureInfo.InvariantCulture)).Replace("%B", t.ToString("MMMM", CultureInfo.InvariantCulture))
              .Replace("%b", t.ToString("MMM", CultureInfo.InvariantCulture)).Replace("%H", t.ToString("HH", CultureInfo.InvariantCulture))
              .Replace("%M", t.ToString("mm", CultureInfo.InvariantCulture)).Replace("%S", t.ToString("ss", CultureInfo.InvariantCulture));

    public static object? GetAttribute(object? target, string name)
    {
        switch (target)
        {
            case IDictionary<string, object?> dict:
                if (dict.TryGetValue(name, out var v)) return v;
                if (target is Namespace) return Undefined.Instance;
                return DictMethod(dict, name) ?? Undefined.Instance;
            case string s: return StringMethod(s, name) ?? Undefined.Instance;
            case IList<object?> list: return ListMethod(list, name) ?? Undefined.Instance;
            default: return Undefined.Instance;
        }
    }

    public static object? GetItem(object? target, object? index)
    {
        switch (target)
        {
            case IDictionary<string, object?> dict:
                return index is not null && dict.TryGetValue(ToStr(index), out var v) ? v : Undefined.Instance;
            case IList<object?> list when index is long i:
                if (i < 0) i += list.Count;
                return i >= 0 && i < list.Count ? list[(int)i] : Undefined.Instance;
            case string s when index is long i:
                if (i < 0) i += s.Length;
                return i >= 0 && i < s.Length ? s[(int)i].ToString() : Undefined.Instance;
            case IList<object?> or string when index is string name:
                return GetAttribute(target, name);
            default:
                return Undefined.Instance;
        }
    }

    public static object? Slice(object? target, object? start, object? stop, object? step)
    {
        var items = target is string s ? s.Select(c => (object?)c.ToString()).ToList() : Renderer.Iterate(target).ToList();
        int n = items.Count;
        int st = step is null ? 1 : (int)ToDouble(step);
        int Norm(object? v, int fallback)
        {
            if (v is null) return fallback;
            int i = (int)ToDouble(v);
            if (i < 0) i += n;
            return st > 0 ? Math.Clamp(i, 0, n) : Math.Clamp(i, -1, n - 1);
        }
        int a = Norm(start, st > 0 ? 0 : n - 1), b = Norm(stop, st > 0 ? n : -1);
        var result = new List<object?>();
        for (int i = a; st > 0 ? i < b : i > b; i += st) result.Add(items[i]);
        return target is string ? string.Concat(result.Select(x => (string)x!)) : result;
    }

    private static TemplateFunction Fn(Func<List<object?>, object?> f) => (a, _) => f(a);

    private static object? StringMethod(string s, string name) => name switch
    {
        "strip" => Fn(a => a.Count > 0 && a[0] is string c ? s.Trim(c.ToCharArray()) : s.Trim()),
        "lstrip" => Fn(a => a.Count > 0 && a[0] is string c ? s.TrimStart(c.ToCharArray()) : s.TrimStart()),
        "rstrip" => Fn(a => a.Count > 0 && a[0] is string c ? s.TrimEnd(c.ToCharArray()) : s.TrimEnd()),
        "split" => new TemplateFunction((a, kw) =>
        {
            object? sep = a.Count > 0 ? a[0] : kw.GetValueOrDefault("sep");
            long max = a.Count > 1 ? (long)ToDouble(a[1]) : kw.TryGetValue("maxsplit", out var m) ? (long)ToDouble(m) : -1;
            if (sep is string sepText)
                return (max < 0 ? s.Split(sepText) : s.Split(sepText, (int)max + 1)).Select(x => (object?)x).ToList();
            var parts = s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return parts.Select(x => (object?)x).ToList();
        }),
        "startswith" => Fn(a => a[0] is IList<object?> opts ? opts.Any(o => s.StartsWith(ToStr(o), StringComparison.Ordinal)) : s.StartsWith(ToStr(a[0]), StringComparison.Ordinal)),
        "endswith" => Fn(a => a[0] is IList<object?> opts ? opts.Any(o => s.EndsWith(ToStr(o), StringComparison.Ordinal)) : s.EndsWith(ToStr(a[0]), StringComparison.Ordinal)),
        "replace" => Fn(a => a.Count > 2 ? ReplaceCount(s, ToStr(a[0]), ToStr(a[1]), (int)ToDouble(a[2])) : s.Replace(ToStr(a[0]), ToStr(a[1]))),
        "upper" => Fn(_ => s.ToUpperInvariant()),
        "lower" => Fn(_ => s.ToLowerInvariant()),
        "title" => Fn(_ => Title(s)),
        "capitalize" => Fn(_ => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant()),
        "find" => Fn(a => (long)s.IndexOf(ToStr(a[0]), StringComparison.Ordinal)),
        "count" => Fn(a => (long)CountOccurrences(s, ToStr(a[0]))),
        "join" => Fn(a => string.Join(s, Renderer.Iterate(a[0]).Select(ToStr))),
        "isdigit" => Fn(_ => s.Length > 0 && s.All(char.IsDigit)),
        "format" => Fn(a => { int i = 0; return System.Text.RegularExpressions.Regex.Replace(s, @"\{\}", _ => ToStr(a[i++])); }),
        _ => null,
    };

    private static string ReplaceCount(string s, string from, string to, int count)
    {
        if (count < 0) return s.Replace(from, to);
        var sb = new System.Text.StringBuilder();
        int pos = 0;
        for (int n = 0; n < count; n++)
        {
            int i = s.IndexOf(from, pos, StringComparison.Ordinal);
            if (i < 0 || from.Length == 0) break;
            sb.Append(s, pos, i - pos).Append(to);
            pos = i + from.Length;
        }
        return sb.Append(s, pos, s.Length - pos).ToString();
    }

    private static int CountOccurrences(string s, string sub)
    {
        if (sub.Length == 0) return s.Length + 1;
        int n = 0;
        for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    private static string Title(string s)
    {
        var chars = s.ToCharArray();
        bool start = true;
        for (int i = 0; i < chars.Length; i++)
        {
            chars[i] = start ? char.ToUpperInvariant(chars[i]) : char.ToLowerInvariant(chars[i]);
            start = !char.IsLetter(chars[i]);
        }
        return new string(chars);
    }

    private static object? DictMethod(IDictionary<string, object?> d, string name) => name switch
    {
        "items" => Fn(_ => d.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList()),
        "keys" => Fn(_ => d.Keys.Select(k => (object?)k).ToList()),
        "values" => Fn(_ => d.Values.ToList()),
        "get" => Fn(a => d.TryGetValue(ToStr(a[0]), out var v) ? v : a.Count > 1 ? a[1] : null),
        _ => null,
    };

    private static object? ListMethod(IList<object?> list, string name) => name switch
    {
        "append" => Fn(a => { list.Add(a[0]); return null; }),
        "index" => Fn(a => (long)list.ToList().FindIndex(x => Equal(x, a[0]))),
        "count" => Fn(a => (long)list.Count(x => Equal(x, a[0]))),
        _ => null,
    };

    public static object? Binary(string op, object? a, object? b)
    {
        switch (op)
        {
            case "==": return Equal(a, b);
            case "!=": return !Equal(a, b);
            case "<": return Compare(a, b) < 0;
            case ">": return Compare(a, b) > 0;
            case "<=": return Compare(a, b) <= 0;
            case ">=": return Compare(a, b) >= 0;
            case "in":
                return b switch
                {
                    string s => s.Contains(ToStr(a), StringComparison.Ordinal),
                    IDictionary<string, object?> d => a is not null && d.ContainsKey(ToStr(a)),
                    IList<object?> l => l.Any(x => Equal(x, a)),
                    null or Undefined => false,
                    _ => throw new InvalidOperationException($"argument of type '{TypeName(b)}' is not iterable"),
                };
            case "~": return ToStr(a) + ToStr(b);
            case "+":
                if (a is string sa && b is string sb) return sa + sb;
                if (a is IList<object?> la && b is IList<object?> lb) return la.Concat(lb).ToList();
                if (a is string || b is string) throw new InvalidOperationException($"can only concatenate str (not \"{TypeName(a is string ? b : a)}\") to str");
                return Arith(a, b, (x, y) => x + y, (x, y) => x + y);
            case "-": return Arith(a, b, (x, y) => x - y, (x, y) => x - y);
            case "*":
                if (a is string s1 && b is long n1) return string.Concat(Enumerable.Repeat(s1, (int)Math.Max(0, n1)));
                return Arith(a, b, (x, y) => x * y, (x, y) => x * y);
            case "/": return ToDouble(a) / ToDouble(b);
            case "//": return a is long x1 && b is long y1 ? (object)(long)Math.Floor((double)x1 / y1) : Math.Floor(ToDouble(a) / ToDouble(b));
            case "%":
                if (a is string fmt) return fmt.Replace("%s", ToStr(b)).Replace("%d", ToStr(b));
                return a is long x2 && b is long y2 ? (object)(((x2 % y2) + y2) % y2) : ToDouble(a) % ToDouble(b);
            case "**": return a is long x3 && b is long y3 && y3 >= 0 ? (object)(long)Math.Pow(x3, y3) : Math.Pow(ToDouble(a), ToDouble(b));
            default: throw new InvalidOperationException($"unknown operator {op}");
        }
    }

    private static object Arith(object? a, object? b, Func<long, long, long> ints, Func<double, double, double> floats) =>
        a is long x && b is long y ? (object)ints(x, y) : floats(ToDouble(a), ToDouble(b));

    public static bool Test(string name, object? v, List<object?> args) => name switch
    {
        "defined" => v is not Undefined,
        "undefined" => v is Undefined,
        "none" => v is null,
        "string" => v is string,
        "number" => v is long or double,
        "integer" => v is long,
        "float" => v is double,
        "boolean" => v is bool,
        "true" => v is true,
        "false" => v is false,
        "mapping" => v is IDictionary<string, object?>,
        "iterable" => v is string or IList<object?> or IDictionary<string, object?>,
        "sequence" => v is string or IList<object?>,
        "callable" => v is TemplateFunction,
        "odd" => v is long o && o % 2 != 0,
        "even" => v is long e && e % 2 == 0,
        "divisibleby" => v is long d && d % (long)ToDouble(args[0]) == 0,
        "eq" or "equalto" or "==" => Equal(v, args[0]),
        "ne" or "!=" => !Equal(v, args[0]),
        "in" => (bool)Binary("in", v, args[0])!,
        "lower" => v is string sl && sl == sl.ToLowerInvariant(),
        "upper" => v is string su && su == su.ToUpperInvariant(),
        _ => throw new InvalidOperationException($"no test named '{name}'"),
    };

    public static object? Filter(string name, object? v, List<object?> args, Dictionary<string, object?> kw)
    {
        object? Arg(int i, string key, object? fallback) => i < args.Count ? args[i] : kw.TryGetValue(key, out var x) ? x : fallback;
        switch (name)
        {
            case "tojson":
            {
                var indent = Arg(0, "indent", null);
                // HF's tojson defaults to ensure_ascii=False (unlike Jinja's HTML-safe one).
                return ToJson(v, Truthy(kw.GetValueOrDefault("ensure_ascii", false)), indent is null ? null : (int)ToDouble(indent), Truthy(kw.GetValueOrDefault("sort_keys", false)));
            }
            case "length" or "count": return v switch { string s => (long)s.Length, System.Collections.ICollection c => (long)c.Count, _ => 0L };
            case "first": return Renderer.Iterate(v).FirstOrDefault(Undefined.Instance);
            case "last": return v is IList<object?> l ? (l.Count > 0 ? l[^1] : Undefined.Instance) : Renderer.Iterate(v).LastOrDefault(Undefined.Instance);
            case "join":
            {
                string sep = ToStr(Arg(0, "d", ""));
                var attr = kw.GetValueOrDefault("attribute");
                return string.Join(sep, Renderer.Iterate(v).Select(x => ToStr(attr is null ? x : GetAttribute(x, ToStr(attr)))));
            }
            case "trim": return ToStr(v).Trim();
            case "upper": return ToStr(v).ToUpperInvariant();
            case "lower": return ToStr(v).ToLowerInvariant();
            case "title": return Title(ToStr(v));
            case "capitalize": { var s = ToStr(v); return s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant(); }
            case "replace": return ToStr(v).Replace(ToStr(args[0]), ToStr(args[1]));
            case "default" or "d":
            {
                bool boolean = Truthy(Arg(1, "boolean", false));
                return v is Undefined || (boolean && !Truthy(v)) ? Arg(0, "default_value", "") : v;
            }
            case "string": return ToStr(v);
            case "int": return v is string si ? (long.TryParse(si, out long li) ? li : 0L) : (object)(long)ToDouble(v);
            case "float": return v is string sf ? (double.TryParse(sf, CultureInfo.InvariantCulture, out double df) ? df : 0.0) : ToDouble(v);
            case "abs": return v is long la ? (object)Math.Abs(la) : Math.Abs(ToDouble(v));
            case "round": return Math.Round(ToDouble(v), (int)ToDouble(Arg(0, "precision", 0L)), MidpointRounding.ToEven);
            case "list": return Renderer.Iterate(v).ToList();
            case "reverse": return v is string rs ? new string(rs.Reverse().ToArray()) : Renderer.Iterate(v).Reverse().ToList();
            case "unique": return Renderer.Iterate(v).Aggregate(new List<object?>(), (acc, x) => { if (!acc.Any(y => Equal(x, y))) acc.Add(x); return acc; });
            case "sort":
            {
                var attr = kw.GetValueOrDefault("attribute");
                var list = Renderer.Iterate(v).ToList();
                list.Sort((x, y) => Compare(attr is null ? x : GetAttribute(x, ToStr(attr)), attr is null ? y : GetAttribute(y, ToStr(attr))));
                if (Truthy(Arg(0, "reverse", false))) list.Reverse();
                return list;
            }
            case "items": return v is IDictionary<string, object?> di ? di.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList() : new List<object?>();
            case "dictsort": return v is IDictionary<string, object?> ds ? ds.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList() : new List<object?>();
            case "sum": return Renderer.Iterate(v).Aggregate((object?)0L, (acc, x) => Binary("+", acc, x));
            case "min": return Renderer.Iterate(v).Aggregate((a, b) => Compare(a, b) <= 0 ? a : b);
            case "max": return Renderer.Iterate(v).Aggregate((a, b) => Compare(a, b) >= 0 ? a : b);
            case "map":
            {
                if (kw.TryGetValue("attribute", out var attr)) return Renderer.Iterate(v).Select(x => GetAttribute(x, ToStr(attr))).ToList();
                string f = ToStr(args[0]);
                return Renderer.Iterate(v).Select(x => Filter(f, x, args.Skip(1).ToList(), [])).ToList();
            }
            case "select" or "reject":
            {
                bool keep = name == "select";
                return Renderer.Iterate(v).Where(x => (args.Count == 0 ? Truthy(x) : Test(ToStr(args[0]), x, args.Skip(1).ToList())) == keep).ToList();
            }
            case "selectattr" or "rejectattr":
            {
                bool keep = name == "selectattr";
                string attr = ToStr(args[0]);
                return Renderer.Iterate(v).Where(x =>
                {
                    var a = GetAttribute(x, attr);
                    return (args.Count > 1 ? Test(ToStr(args[1]), a, args.Skip(2).ToList()) : Truthy(a)) == keep;
                }).ToList();
            }
            case "indent":
            {
                string pad = Arg(0, "width", 4L) is string ps ? ps : new string(' ', (int)ToDouble(Arg(0, "width", 4L)));
                bool first = Truthy(Arg(1, "first", false));
                var lines = ToStr(v).Split('\n');
                for (int i = 0; i < lines.Length; i++)
                    if ((i > 0 || first) && lines[i].Length > 0) lines[i] = pad + lines[i];
                return string.Join('\n', lines);
            }
            case "safe" or "escape" or "e" or "forceescape": return name == "safe" ? v : System.Net.WebUtility.HtmlEncode(ToStr(v));
            case "wordcount": return (long)ToStr(v).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
            default: throw new InvalidOperationException($"no filter named '{name}'");
        }
    }
}
