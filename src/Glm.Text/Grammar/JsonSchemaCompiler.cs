using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Glm.Text.Parsing;

namespace Glm.Text.Grammar;

/// <summary>A schema this engine cannot turn into a grammar: invalid, too large, impossible, or using a keyword it cannot enforce.</summary>
public sealed class SchemaException(string message) : Exception(message);

/// <summary>
/// Compiles a JSON Schema (drafts 4, 6, 7, 2019-09 and 2020-12 spellings) into grammar expressions whose every
/// text is compact JSON that validates against the schema. Where the schema allows more than a grammar can say
/// cheaply, the grammar allows a subset (valid, never wrong): properties come in the schema's order; an object
/// with declared properties gets no undeclared ones unless additionalProperties asks for them (xgrammar's strict
/// mode); uniqueItems is kept by at most one item; numbers with bounds carry no exponent. A keyword it cannot
/// enforce at all (not, if/then/else, contains, propertyNames, ...) is refused with a <see cref="SchemaException"/>
/// naming it and where it is, never dropped. Unknown formats are annotations (the spec's default) and ignored.
/// </summary>
public sealed class JsonSchemaCompiler
{
    public const int MaxSchemaDepth = 64;

    private static readonly HashSet<string> Unsupported =
        ["contains", "minContains", "maxContains", "propertyNames", "unevaluatedItems", "$dynamicRef", "$recursiveRef"];

    /// <summary>Keywords that constrain a value (the rest are annotations or not JSON Schema at all).</summary>
    private static readonly HashSet<string> Validation =
    [
        "type", "enum", "const", "properties", "required", "additionalProperties", "patternProperties", "items", "prefixItems",
        "additionalItems", "minItems", "maxItems", "uniqueItems", "anyOf", "oneOf", "allOf", "$ref", "minLength", "maxLength", "pattern",
        "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minProperties", "maxProperties",
        "dependencies", "dependentRequired", "dependentSchemas", "unevaluatedProperties", "if", "then", "else", "not", .. Unsupported,
    ];

    private static readonly string[] ObjectKeywords = [ExcludeKey, "properties", "required", "additionalProperties", "patternProperties", "minProperties", "maxProperties", "dependencies", "dependentRequired", "dependentSchemas", "unevaluatedProperties"];
    private static readonly string[] ArrayKeywords = ["items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems"];
    private static readonly string[] StringKeywords = ["minLength", "maxLength", "pattern", "format"];
    private static readonly string[] NumberKeywords = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];

    private readonly GrammarBuilder _b;
    private readonly JsonNode _root;
    private readonly Dictionary<JsonNode, int> _rules = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<string, JsonNode> _anchors = [];
    private readonly Dictionary<JsonObject, string> _pointers = new(ReferenceEqualityComparer.Instance);
    private readonly string? _rootId;
    private readonly bool _draft4, _refIgnoresSiblings;
    private int _depth;
    private bool _draining;
    private readonly Queue<(int Rule, JsonObject Schema)> _queue = new();
    private int? _anyValue, _anyString, _escape;

    public JsonSchemaCompiler(GrammarBuilder builder, JsonNode root)
    {
        _b = builder;
        _root = root;
        string schemaUri = (root as JsonObject)?["$schema"] is JsonValue v && v.TryGetValue(out string? u) ? u : "";
        _draft4 = schemaUri.Contains("draft-04", StringComparison.Ordinal) || schemaUri.Contains("draft-03", StringComparison.Ordinal);
        _refIgnoresSiblings = _draft4 || schemaUri.Contains("draft-06", StringComparison.Ordinal) || schemaUri.Contains("draft-07", StringComparison.Ordinal);
        _rootId = (root as JsonObject)?["$id"] is JsonValue id && id.TryGetValue(out string? s) ? s
            : (root as JsonObject)?["id"] is JsonValue id4 && id4.TryGetValue(out string? s4) ? s4 : null;
        CollectAnchors(root, 0, "#");
        var problems = new List<string>();
        FindUnsupported(root, "", problems, 0);
        if (problems.Count > 0)
            throw new SchemaException("the schema uses keywords this server cannot enforce: " + string.Join(", ", problems.Distinct().Take(12)));
    }

    /// <summary>Compiles a whole schema into a grammar for one JSON value.</summary>
    public static Grammar Compile(JsonNode schema)
    {
        var b = new GrammarBuilder();
        var root = new JsonSchemaCompiler(b, schema).Value(schema);
        try { return b.Build(root); }
        catch (GrammarException e) { throw new SchemaException("the schema cannot be used: " + e.Message); }
    }

    /// <summary>The expression for a value of the schema (a rule call for an object schema, so recursion works).</summary>
    /// <remarks>
    /// A schema's rule body is compiled from a queue, not at once, so a document whose definitions refer to each
    /// other hundreds deep is compiled in constant stack.
    /// </remarks>
    public Expr Value(JsonNode? schema)
    {
        if (_draining) return ValueOf(schema);
        _draining = true;
        try
        {
            var e = ValueOf(schema);
            while (_queue.Count > 0)
            {
                var (id, o) = _queue.Dequeue();
                _b.Define(id, Body(o));
            }
            return e;
        }
        finally { _draining = false; }
    }

    private Expr ValueOf(JsonNode? schema)
    {
        if (schema is not JsonObject o) return Body(schema);
        if (_rules.TryGetValue(o, out int id)) return Expr.Rule(id);
        id = _b.Declare("schema");
        _rules[o] = id;
        _queue.Enqueue((id, o));
        return Expr.Rule(id);
    }

    /// <summary>
    /// The raw text of a GLM tool argument whose schema wants a string (written between tags, unquoted): an enum's
    /// or const's strings, a pattern or format, or any text without '&lt;' when a length is bounded, else any text
    /// that does not contain <paramref name="terminator"/>.
    /// </summary>
    public Expr RawString(JsonNode? schema, string terminator)
    {
        var o = Deref(schema) as JsonObject;
        if (o is not null && (o["enum"] is JsonArray || o.ContainsKey("const")))
        {
            var values = o["enum"] is JsonArray arr ? arr.ToList() : [o["const"]];
            return Expr.Alt(values.Where(v => v is JsonValue jv && jv.GetValueKind() == JsonValueKind.String).Select(v => Expr.Literal(v!.GetValue<string>())));
        }
        int minLength = Int(o, "minLength") ?? 0;
        int? maxLength = Int(o, "maxLength");
        if (o is not null && (Str(o, "pattern") is not null || FormatExpr(Str(o, "format")) is not null))
            return StringShape(o, minLength, maxLength, "");
        if (minLength > 0 || maxLength is not null)
            return Expr.Repeat(Expr.Chars(CharSet.Single('<').Complement()), minLength, maxLength ?? -1);
        return JsonGrammar.TextWithout(_b, terminator);
    }

    /// <summary>
    /// How a GLM tool argument of this schema is written: "raw" (the schema wants only strings: the text itself),
    /// "any" (a string is one of the choices: any text, read by the typing rule), or "json" (no string allowed:
    /// the value as JSON).
    /// </summary>
    public string ArgumentForm(JsonNode? schema)
    {
        var types = StringTypes(schema, 0);
        return types switch { null => "any", (true, false) => "raw", (true, true) => "any", _ => "json" };
    }

    /// <summary>(allows a string, allows something else); null when the schema says nothing (anything goes).</summary>
    private (bool String, bool Other)? StringTypes(JsonNode? schema, int depth)
    {
        if (depth > 16) return null;
        var s = Deref(schema);
        if (s is not JsonObject o) return s is JsonValue v && v.GetValueKind() == JsonValueKind.False ? (false, false) : null;
        if (o.ContainsKey("enum") || o.ContainsKey("const"))
        {
            var values = o.ContainsKey("const") ? [o["const"]] : o["enum"] is JsonArray a ? a.ToList() : [];
            return (values.Any(x => TypeOf(x) == "string"), values.Any(x => TypeOf(x) != "string"));
        }
        if (Types(o) is { } t) return (t.Contains("string"), t.Any(x => x != "string"));
        foreach (string key in new[] { "anyOf", "oneOf" })
            if (o[key] is JsonArray branches)
            {
                bool str = false, other = false;
                foreach (var b in branches)
                {
                    if (StringTypes(b, depth + 1) is not { } bt) return null;
                    str |= bt.String; other |= bt.Other;
                }
                return (str, other);
            }
        if (o["allOf"] is JsonArray parts)
            foreach (var part in parts) if (StringTypes(part, depth + 1) is { } pt) return pt;
        return Inferred(o) is { } inferred ? (inferred.Contains("string"), inferred.Any(x => x != "string")) : null;
    }

    private JsonNode? Deref(JsonNode? s)
    {
        for (int i = 0; i < 16 && s is JsonObject o && Str(o, "$ref") is { } r; i++) s = Resolve(r);
        return s;
    }

    private Expr Body(JsonNode? s)
    {
        if (++_depth > MaxSchemaDepth * 4) throw new SchemaException($"the schema nests deeper than {MaxSchemaDepth} levels");
        try { return BodyCore(s); }
        finally { _depth--; }
    }

    private Expr BodyCore(JsonNode? s)
    {
        switch (s)
        {
            case null: throw new SchemaException("a schema must be an object or a boolean, not null");
            case JsonValue v when v.GetValueKind() == JsonValueKind.True: return AnyValue();
            case JsonValue v when v.GetValueKind() == JsonValueKind.False: return Expr.Never;
            case not JsonObject: throw new SchemaException($"a schema must be an object or a boolean, not {s.ToJsonString()}");
        }
        var o = (JsonObject)s;

        if (o.ContainsKey("$ref"))
        {
            var target = Resolve(Str(o, "$ref") ?? throw new SchemaException("$ref must be a string"));
            var siblings = Without(o, "$ref");
            if (_refIgnoresSiblings || !HasValidation(siblings)) return Value(target);
            return Body(Merge([target, siblings]));
        }
        if (o["allOf"] is { } allOf)
        {
            if (allOf is not JsonArray parts || parts.Count == 0) throw new SchemaException("allOf must be a non-empty array");
            return Body(Merge([.. parts, Without(o, "allOf")]));
        }
        foreach (string key in new[] { "anyOf", "oneOf" })
            if (o[key] is { } branchesNode)
            {
                // oneOf is compiled as anyOf: the branches of real schemas are disjoint by type or by required keys.
                if (branchesNode is not JsonArray branches || branches.Count == 0) throw new SchemaException($"{key} must be a non-empty array");
                var rest = Without(o, key);
                if (!HasValidation(rest)) return Expr.Alt(branches.Select(Value));
                return Expr.Alt(branches.Select(br => Body(Merge([rest, br]))));
            }
        if (o.ContainsKey("not")) return Body(WithoutNot(o));
        if (o["if"] is not null && (o.ContainsKey("then") || o.ContainsKey("else")))
            throw new SchemaException("the schema uses keywords this server cannot enforce: if/then/else");

        var types = Types(o);
        if (o.ContainsKey("enum") || o.ContainsKey("const"))
        {
            IEnumerable<JsonNode?> values = o.ContainsKey("const") ? [o["const"]] : o["enum"] is JsonArray ea ? [.. ea] : throw new SchemaException("enum must be an array");
            if (o.ContainsKey("const") && o["enum"] is JsonArray both) values = values.Where(v => both.Any(x => JsonNode.DeepEquals(x, v)));
            return Expr.Alt(values.Where(v => types is null || types.Contains(TypeOf(v)) || (TypeOf(v) == "integer" && types.Contains("number")))
                .Select(v => Expr.Literal(Compact(v))));
        }
        var all = types ?? Inferred(o) ?? ["null", "boolean", "object", "array", "number", "string"];
        if (all.Contains("number")) all.Remove("integer");
        return Expr.Alt(all.OrderBy(t => t, StringComparer.Ordinal).Select(t => TypeExpr(t, o)));
    }

    /// <summary>
    /// "not" in the forms real schemas use, as restrictions the grammar can keep: not {} (nothing is valid);
    /// not {required: [...]} (not all of those keys: the last optional one is never given); not {anyOf:
    /// [{required: [a]}, ...]} (none of those keys is given); not {type: ...} (those types are removed).
    /// Anything else is refused.
    /// </summary>
    private JsonNode WithoutNot(JsonObject o)
    {
        var rest = Without(o, "not");
        var not = Deref(o["not"]);
        if (not is JsonValue nv) return nv.GetValueKind() == JsonValueKind.False ? rest : JsonValue.Create(false)!;
        if (not is not JsonObject n) throw new SchemaException("not must be a schema");
        var keys = n.Where(kv => Validation.Contains(kv.Key)).Select(kv => kv.Key).ToList();
        if (keys.Count == 0) return JsonValue.Create(false)!;
        var required = (rest["required"] as JsonArray)?.Select(x => x?.GetValue<string>()).ToHashSet() ?? [];
        var exclude = (rest[ExcludeKey] as JsonArray)?.Select(x => x!.GetValue<string>()).ToList() ?? [];
        if (keys is ["required"] && n["required"] is JsonArray all)
        {
            var names = all.Select(x => x!.GetValue<string>()).ToList();
            var optional = names.LastOrDefault(x => !required.Contains(x));
            if (optional is null) return JsonValue.Create(false)!;
            exclude.Add(optional);
        }
        else if (keys is ["anyOf"] && n["anyOf"] is JsonArray branches
            && branches.All(b => b is JsonObject bo && bo.Count == 1 && bo["required"] is JsonArray))
        {
            foreach (var name in branches.SelectMany(b => ((JsonArray)b!["required"]!).Select(x => x!.GetValue<string>())))
            {
                if (required.Contains(name)) return JsonValue.Create(false)!;
                exclude.Add(name);
            }
        }
        else if (keys is ["type"])
        {
            var banned = TypeSet(n["type"]);
            var allowed = (Types(rest) ?? Inferred(rest) ?? ["null", "boolean", "object", "array", "number", "string"]).ToHashSet();
            if (allowed.Contains("number") && !banned.Contains("number")) allowed.Add("integer");
            allowed.ExceptWith(banned);
            if (banned.Contains("integer") && allowed.Remove("number"))
                throw new SchemaException("the schema uses keywords this server cannot enforce: not {type: integer} on a number");
            if (allowed.Count == 0) return JsonValue.Create(false)!;
            rest["type"] = new JsonArray([.. allowed.Select(t => (JsonNode)JsonValue.Create(t)!)]);
            return rest;
        }
        else throw new SchemaException($"the schema uses keywords this server cannot enforce: 'not' with {n.ToJsonString()[..Math.Min(80, n.ToJsonString().Length)]}");
        rest[ExcludeKey] = new JsonArray([.. exclude.Distinct().Select(x => (JsonNode)JsonValue.Create(x)!)]);
        return rest;
    }

    /// <summary>Where <see cref="WithoutNot"/> leaves the keys an object must not be given (a name no schema uses).</summary>
    private const string ExcludeKey = "\u0000exclude";

    private Expr TypeExpr(string type, JsonObject o) => type switch
    {
        "null" => Expr.Literal("null"),
        "boolean" => Expr.Alt(Expr.Literal("true"), Expr.Literal("false")),
        "integer" => IntegerExpr(o),
        "number" => NumberExpr(o),
        "string" => !o.ContainsKey("pattern") && FormatExpr(Str(o, "format")) is null && (Int(o, "minLength") ?? 0) == 0 && Int(o, "maxLength") is null
            ? AnyString()
            : Expr.Seq(Expr.Char('"'), StringShape(o, Int(o, "minLength") ?? 0, Int(o, "maxLength"), "\""), Expr.Char('"')),
        "array" => ArrayExpr(o),
        "object" => ObjectExpr(o),
        _ => throw new SchemaException($"unknown type '{type}'"),
    };

    // ---- numbers ----

    private (double? Lo, bool LoEx, double? Hi, bool HiEx) Bounds(JsonObject o)
    {
        double? lo = Num(o, "minimum"), hi = Num(o, "maximum");
        bool loEx = false, hiEx = false;
        if (o["exclusiveMinimum"] is JsonValue em)
        {
            if (em.GetValueKind() == JsonValueKind.True) loEx = lo is not null;
            else if (em.GetValueKind() == JsonValueKind.Number) { double x = em.GetValue<double>(); if (lo is null || x >= lo) { lo = x; loEx = true; } }
        }
        if (o["exclusiveMaximum"] is JsonValue eM)
        {
            if (eM.GetValueKind() == JsonValueKind.True) hiEx = hi is not null;
            else if (eM.GetValueKind() == JsonValueKind.Number) { double x = eM.GetValue<double>(); if (hi is null || x <= hi) { hi = x; hiEx = true; } }
        }
        return (lo, loEx, hi, hiEx);
    }

    private Expr IntegerExpr(JsonObject o)
    {
        CheckMultipleOf(o, integer: true);
        var (lo, loEx, hi, hiEx) = Bounds(o);
        long? a = lo is { } l ? (long)Math.Clamp(loEx ? Math.Floor(l) + 1 : Math.Ceiling(l), long.MinValue / 2, long.MaxValue / 2) : null;
        long? b = hi is { } h ? (long)Math.Clamp(hiEx ? Math.Ceiling(h) - 1 : Math.Floor(h), long.MinValue / 2, long.MaxValue / 2) : null;
        return NumberGrammar.IntegerRange(a, b);
    }

    private Expr NumberExpr(JsonObject o)
    {
        if (CheckMultipleOf(o, integer: false)) return IntegerExpr(o);
        var (lo, loEx, hi, hiEx) = Bounds(o);
        return NumberGrammar.NumberRange(lo, loEx, hi, hiEx);
    }

    /// <summary>multipleOf 1 (or any integer step dividing 1, i.e. 1) makes a number an integer; other steps are refused.</summary>
    private static bool CheckMultipleOf(JsonObject o, bool integer)
    {
        if (Num(o, "multipleOf") is not { } m) return false;
        if (m <= 0) throw new SchemaException("multipleOf must be positive");
        if (m == 1) return true;
        if (integer && m < 1 && Math.Abs(1 / m - Math.Round(1 / m)) < 1e-9) return true; // 0.5, 0.25...: every integer is a multiple
        throw new SchemaException($"the schema uses keywords this server cannot enforce: multipleOf {m.ToString(CultureInfo.InvariantCulture)}");
    }

    // ---- strings ----

    /// <summary>The content of a string (between quotes when <paramref name="quote"/> is '"'; raw otherwise).</summary>
    private Expr StringShape(JsonObject o, int minLength, int? maxLength, string quote)
    {
        bool json = quote.Length > 0;
        string? pattern = Str(o, "pattern");
        var format = FormatExpr(Str(o, "format"));
        if (pattern is not null && format is not null) throw new SchemaException("the schema uses keywords this server cannot enforce: pattern together with a format");
        Expr? shape = null;
        if (pattern is not null)
        {
            try { shape = RegexSubset.Parse(pattern); }
            catch (FormatException e) { throw new SchemaException("the schema uses a pattern this server cannot enforce: " + e.Message); }
        }
        else if (format is not null) shape = format;
        if (shape is null)
        {
            if (maxLength is { } mx && mx < minLength) return Expr.Never;
            if (!json) return Expr.Repeat(Expr.Chars(CharSet.Any), minLength, maxLength ?? -1);
            return Expr.Repeat(JsonChar(), minLength, maxLength ?? -1);
        }
        if (minLength > 0 || maxLength is not null)
            shape = JsonGrammar.WithLength(shape, minLength, maxLength)
                ?? throw new SchemaException($"the schema uses keywords this server cannot enforce: minLength/maxLength together with {(pattern is not null ? "the pattern " + pattern : "a format")} that does not imply them");
        return json ? JsonGrammar.Encode(shape) : shape;
    }

    private static Expr Rx(string p) => RegexSubset.Parse(p);

    private static readonly Lazy<Dictionary<string, Expr>> Formats = new(() =>
    {
        const string date = "[0-9]{4}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))";
        const string time = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])";
        // Short, common shapes: a subset of each format (every member valid), small enough that a weak model
        // cannot wander inside a bounded repetition for hundreds of tokens.
        const string label = "[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?";
        const string host = label + "(\\." + label + "){0,3}";
        const string octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
        const string path = "(/[a-zA-Z0-9._~-]{0,16}){0,4}";
        const string tld = "[a-z]{2,6}";
        const string uri = "https?://" + label + "(\\." + label + "){0,2}\\." + tld + path + "(\\?[a-z0-9_]{1,12}=[a-zA-Z0-9_.-]{0,16})?";
        const string email = "^[a-zA-Z0-9_+-]{1,20}(\\.[a-zA-Z0-9_+-]{1,20}){0,2}@" + label + "(\\." + label + "){0,2}\\." + tld + "$";
        return new Dictionary<string, Expr>
        {
            ["date"] = Rx("^" + date + "$"),
            ["time"] = Rx("^" + time + "$"),
            ["date-time"] = Rx("^" + date + "T" + time + "$"),
            ["uuid"] = Rx("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
            ["email"] = Rx(email),
            ["idn-email"] = Rx(email),
            ["uri"] = Rx("^" + uri + "$"),
            ["iri"] = Rx("^" + uri + "$"),
            ["url"] = Rx("^" + uri + "$"),
            ["uri-reference"] = Rx("^(" + uri + "|" + path + ")$"),
            ["iri-reference"] = Rx("^(" + uri + "|" + path + ")$"),
            ["hostname"] = Rx("^" + host + "$"),
            ["idn-hostname"] = Rx("^" + host + "$"),
            ["ipv4"] = Rx("^" + octet + "(\\." + octet + "){3}$"),
            ["ipv6"] = Rx("^[0-9a-f]{1,4}(:[0-9a-f]{1,4}){7}$"),
        };
    });

    /// <summary>The grammar of a known format; null for an unknown one (an annotation, as the spec says).</summary>
    private static Expr? FormatExpr(string? format) => format is not null && Formats.Value.TryGetValue(format, out var e) ? e : null;

    private Expr JsonChar() => Expr.Alt(Expr.Chars(JsonGrammar.Plain), Expr.Rule(_escape ??= _b.Add("escape", JsonGrammar.Escape)));

    /// <summary>
    /// A string's content and its closing quote, as one shared rule. The quote belongs inside: a rule that could
    /// end after any character would make every trie position a place where the mask depends on the caller.
    /// </summary>
    private int StringRest()
    {
        if (_anyString is { } id) return id;
        id = _b.Declare("string-rest");
        _anyString = id;
        _b.Define(id, Expr.Seq(Expr.Star(JsonChar()), Expr.Char('"')));
        return id;
    }

    private Expr AnyString() => Expr.Seq(Expr.Char('"'), Expr.Rule(StringRest()));

    // ---- any value ----

    private Expr AnyValue()
    {
        if (_anyValue is { } v) return Expr.Rule(v);
        int value = _b.Declare("value");
        _anyValue = value;
        var member = Expr.Seq(AnyString(), JsonGrammar.Colon, Expr.Rule(value));
        int obj = _b.Add("object", Expr.Seq(Expr.Char('{'), Expr.Optional(Expr.Seq(member, Expr.Star(Expr.Seq(JsonGrammar.Comma, member)))), Expr.Char('}')));
        int arr = _b.Add("array", Expr.Seq(Expr.Char('['), Expr.Optional(Expr.Seq(Expr.Rule(value), Expr.Star(Expr.Seq(JsonGrammar.Comma, Expr.Rule(value))))), Expr.Char(']')));
        _b.Define(value, Expr.Alt(Expr.Rule(obj), Expr.Rule(arr), AnyString(), NumberGrammar.Number, Expr.Literal("true"), Expr.Literal("false"), Expr.Literal("null")));
        return Expr.Rule(value);
    }

    // ---- arrays ----

    private Expr ArrayExpr(JsonObject o)
    {
        var prefix = new List<JsonNode?>();
        JsonNode? rest = JsonValue.Create(true);
        if (o["prefixItems"] is JsonArray pi)
        {
            prefix.AddRange(pi);
            if (o.ContainsKey("items")) rest = o["items"];
        }
        else if (o["items"] is JsonArray tuple)
        {
            prefix.AddRange(tuple);
            if (o.ContainsKey("additionalItems")) rest = o["additionalItems"];
        }
        else if (o.ContainsKey("items")) rest = o["items"];
        int min = Int(o, "minItems") ?? 0;
        int? max = Int(o, "maxItems");
        if (o["uniqueItems"] is JsonValue u && u.GetValueKind() == JsonValueKind.True)
        {
            // Any one item is unique: the only arrays a grammar can promise unique without comparing items.
            if (min >= 2) throw new SchemaException("the schema uses keywords this server cannot enforce: uniqueItems with minItems of 2 or more");
            max = Math.Min(max ?? 1, 1);
        }
        if (max is { } mx && mx < min) return Expr.Never;
        bool restAllowed = rest is not JsonValue rv || rv.GetValueKind() != JsonValueKind.False;
        int k = max is { } m ? Math.Min(prefix.Count, m) : prefix.Count;
        var restItem = restAllowed ? Value(rest) : Expr.Never;

        int restMin = Math.Max(0, min - k);
        int restMax = max is { } m2 ? Math.Max(0, m2 - k) : -1;
        Expr tail;
        if (!restAllowed || restMax == 0) tail = restMin > 0 ? Expr.Never : Expr.Empty;
        else if (k == 0)
        {
            var more = Expr.Repeat(Expr.Seq(JsonGrammar.Comma, restItem), Math.Max(0, restMin - 1), restMax < 0 ? -1 : restMax - 1);
            tail = restMin == 0 ? Expr.Optional(Expr.Seq(restItem, more)) : Expr.Seq(restItem, more);
        }
        else tail = Expr.Repeat(Expr.Seq(JsonGrammar.Comma, restItem), restMin, restMax);
        for (int j = k - 1; j >= 0; j--)
        {
            var element = Expr.Seq(j > 0 ? JsonGrammar.Comma : Expr.Empty, Value(prefix[j]), tail);
            tail = j >= min ? Expr.Optional(element) : element;
        }
        if (k < prefix.Count && min > k) return Expr.Never;
        return Expr.Seq(Expr.Char('['), tail, Expr.Char(']'));
    }

    // ---- objects ----

    /// <summary>An object schema's members as a grammar sees them: each key (in order) with its schema and whether it must appear, and the schema of extra keys (null: none).</summary>
    public sealed record ObjectShape(IReadOnlyList<(string Name, JsonNode? Schema, bool Required)> Members, JsonNode? Extra, IReadOnlyCollection<string> Excluded);

    private Expr ObjectExpr(JsonObject o)
    {
        if (Shape(o) is not { } shape) return Expr.Never;
        var members = shape.Members.Select(x => Expr.Seq(Expr.Literal(JsonText.Quote(x.Name)), JsonGrammar.Colon, Value(x.Schema))).ToArray();
        var extra = shape.Extra is null ? null
            : Expr.Seq(KeyExcept(shape.Members.Select(x => x.Name).Concat(shape.Excluded)), JsonGrammar.Colon, Value(shape.Extra));
        return Expr.Seq(Expr.Char('{'), OrderedMembers(members, shape.Members.Select(x => x.Required).ToArray(), extra, JsonGrammar.Comma), Expr.Char('}'));
    }

    /// <summary>
    /// Members in order, the required ones always and the optional ones maybe, with <paramref name="separator"/>
    /// between any two, then any number of extra members. Each "rest of the members" is one shared expression, so
    /// the grammar grows linearly with the number of optional members, not exponentially.
    /// </summary>
    public static Expr OrderedMembers(Expr[] members, bool[] required, Expr? extra, Expr separator)
    {
        Expr tailAfter = extra is null ? Expr.Empty : Expr.Star(Expr.Seq(separator, extra));
        Expr tailFirst = extra is null ? Expr.Empty : Expr.Optional(Expr.Seq(extra, tailAfter));
        for (int i = members.Length - 1; i >= 0; i--)
        {
            var withAfter = Expr.Seq(separator, members[i], tailAfter);
            var withFirst = Expr.Seq(members[i], tailAfter);
            tailFirst = required[i] ? withFirst : Expr.Alt(withFirst, tailFirst);
            tailAfter = required[i] ? withAfter : Expr.Alt(withAfter, tailAfter);
        }
        return tailFirst;
    }

    /// <summary>
    /// The shapes an object schema allows: through $ref and allOf, one per anyOf/oneOf branch. Empty when the
    /// schema allows no object.
    /// </summary>
    public IReadOnlyList<ObjectShape> ObjectShapes(JsonNode? schema)
    {
        var s = Deref(schema);
        if (s is JsonValue v) return v.GetValueKind() == JsonValueKind.True ? [Shape(new JsonObject())!] : [];
        if (s is not JsonObject o) throw new SchemaException("a tool's parameters must be a JSON Schema object");
        if (o["allOf"] is JsonArray parts) return ObjectShapes(Merge([.. parts, Without(o, "allOf")]));
        foreach (string key in new[] { "anyOf", "oneOf" })
            if (o[key] is JsonArray branches)
            {
                var rest = Without(o, key);
                return branches.SelectMany(b => ObjectShapes(HasValidation(rest) ? Merge([rest, b]) : b)).ToList();
            }
        return Shape(o) is { } shape ? [shape] : [];
    }

    private ObjectShape? Shape(JsonObject o)
    {
        var props = new List<(string Name, JsonNode? Schema)>();
        if (o["properties"] is JsonObject p) foreach (var (name, schema) in p) props.Add((name, schema));
        else if (o.ContainsKey("properties")) throw new SchemaException("properties must be an object");
        var required = new List<string>();
        if (o["required"] is JsonArray req)
            foreach (var r in req) required.Add(r is JsonValue rv && rv.TryGetValue(out string? rs) ? rs : throw new SchemaException("required must list strings"));
        else if (o["required"] is JsonValue { } r4 && r4.GetValueKind() is JsonValueKind.True or JsonValueKind.False) { } // draft 3 style: ignore the flag
        else if (o.ContainsKey("required")) throw new SchemaException("required must list strings");
        var patterns = new List<(Regex Regex, JsonNode? Schema)>();
        if (o["patternProperties"] is JsonObject pp)
            foreach (var (pat, schema) in pp)
            {
                try { patterns.Add((new Regex(pat, RegexOptions.None, TimeSpan.FromMilliseconds(100)), schema)); }
                catch (ArgumentException) { throw new SchemaException($"patternProperties: '{pat}' is not a valid regular expression"); }
            }
        JsonNode? additional = o.ContainsKey("additionalProperties") ? o["additionalProperties"] : o.ContainsKey("unevaluatedProperties") ? o["unevaluatedProperties"] : null;
        bool additionalGiven = o.ContainsKey("additionalProperties") || o.ContainsKey("unevaluatedProperties");
        bool closedExplicitly = additional is JsonValue av && av.GetValueKind() == JsonValueKind.False;
        // Extra keys only when asked for (a schema or true), or when the object declares nothing at all.
        JsonNode? extra = closedExplicitly ? null
            : additionalGiven ? additional
            : props.Count == 0 && patterns.Count == 0 ? JsonValue.Create(true) : null;
        if (patterns.Count > 0) extra = null; // an extra key would have to be checked against the patterns: generate none

        // Dependencies: a key that brings others in is given only when it is required anyway.
        var dependentRequired = new Dictionary<string, List<string>>();
        var dependentSchemas = new Dictionary<string, JsonNode?>();
        foreach (string key in new[] { "dependencies", "dependentRequired", "dependentSchemas" })
            if (o[key] is JsonObject deps)
                foreach (var (name, dep) in deps)
                {
                    if (dep is JsonArray list) dependentRequired[name] = list.Select(x => x?.GetValue<string>() ?? "").ToList();
                    else dependentSchemas[name] = dep;
                }
        var excluded = new HashSet<string>(StringComparer.Ordinal);
        if (o[ExcludeKey] is JsonArray forbidden) foreach (var x in forbidden) excluded.Add(x!.GetValue<string>());
        var merged = new List<JsonNode?>();
        for (bool changed = true; changed;)
        {
            changed = false;
            foreach (var (name, list) in dependentRequired)
                if (required.Contains(name)) { foreach (var d in list) if (!required.Contains(d)) { required.Add(d); changed = true; } }
            foreach (var (name, dep) in dependentSchemas.ToList())
                if (required.Contains(name)) { merged.Add(dep); dependentSchemas.Remove(name); changed = true; }
        }
        if (merged.Count > 0) return Merge([Without(o, "dependencies", "dependentSchemas"), .. merged]) is JsonObject joined ? Shape(joined) : null;
        foreach (var name in dependentRequired.Keys.Concat(dependentSchemas.Keys)) if (!required.Contains(name)) excluded.Add(name);

        // Required keys the properties do not declare: their schema is the matching pattern's, or additionalProperties'.
        foreach (string name in required)
            if (!props.Any(x => x.Name == name))
            {
                var byPattern = patterns.FirstOrDefault(x => x.Regex.IsMatch(name));
                if (byPattern.Regex is not null) props.Add((name, byPattern.Schema));
                else if (closedExplicitly) return null;
                else props.Add((name, additionalGiven ? additional : JsonValue.Create(true)));
            }
        // Declared keys that a pattern also matches must satisfy both.
        for (int i = 0; i < props.Count; i++)
        {
            var matching = patterns.Where(x => x.Regex.IsMatch(props[i].Name)).Select(x => x.Schema).ToList();
            if (matching.Count > 0) props[i] = (props[i].Name, Merge([props[i].Schema, .. matching]));
        }
        props.RemoveAll(x => excluded.Contains(x.Name) && !required.Contains(x.Name));

        // minProperties: optional keys become required, in order; maxProperties: optional keys past the limit go.
        int? minP = Int(o, "minProperties"), maxP = Int(o, "maxProperties");
        var isRequired = props.Select(x => required.Contains(x.Name)).ToArray();
        int requiredCount = isRequired.Count(x => x);
        if (minP is { } mn && mn > requiredCount)
        {
            for (int i = 0; i < props.Count && requiredCount < mn; i++) if (!isRequired[i]) { isRequired[i] = true; requiredCount++; }
            if (requiredCount < mn) throw new SchemaException($"the schema uses keywords this server cannot enforce: minProperties {mn} with fewer declared properties");
        }
        if (maxP is { } mxp)
        {
            if (requiredCount > mxp) return null;
            extra = null;
            int room = mxp - requiredCount;
            var keep = new List<(string, JsonNode?)>();
            var keepRequired = new List<bool>();
            for (int i = 0; i < props.Count; i++)
                if (isRequired[i] || room-- > 0) { keep.Add(props[i]); keepRequired.Add(isRequired[i]); }
            props = keep;
            isRequired = [.. keepRequired];
        }

        return new ObjectShape(props.Select((x, i) => (x.Name, x.Schema, isRequired[i])).ToList(), extra, excluded);
    }

    /// <summary>A JSON string key that is none of <paramref name="names"/> (so an extra key never repeats a declared one).</summary>
    private Expr KeyExcept(IEnumerable<string> names)
    {
        var set = names.Distinct().ToList();
        if (set.Count == 0) return AnyString();
        var rest = Expr.Rule(StringRest());
        int escape = _escape ??= _b.Add("escape", JsonGrammar.Escape);
        Expr Node(string prefix)
        {
            var children = set.Where(s => s.Length > prefix.Length && s.StartsWith(prefix, StringComparison.Ordinal)).Select(s => s[prefix.Length]).Distinct().ToList();
            var options = new List<Expr>();
            if (!set.Contains(prefix)) options.Add(Expr.Char('"'));
            foreach (char c in children) if (JsonGrammar.Plain.Contains(c)) options.Add(Expr.Seq(Expr.Char(c), Node(prefix + c)));
            options.Add(Expr.Seq(Expr.Chars(JsonGrammar.Plain.Subtract(CharSet.Of(new string(children.ToArray())))), rest));
            options.Add(Expr.Seq(Expr.Rule(escape), rest));
            return Expr.Alt(options);
        }
        return Expr.Seq(Expr.Char('"'), Node(""));
    }

    // ---- schema plumbing ----

    private HashSet<string>? Types(JsonObject o)
    {
        if (!o.ContainsKey("type")) return null;
        var t = o["type"];
        if (t is JsonValue v && v.TryGetValue(out string? one)) return [one];
        if (t is JsonArray arr) return arr.Select(x => x is JsonValue xv && xv.TryGetValue(out string? s) ? s : throw new SchemaException("type must list strings")).ToHashSet();
        throw new SchemaException("type must be a string or an array of strings");
    }

    private static HashSet<string>? Inferred(JsonObject o)
    {
        var t = new HashSet<string>();
        if (ObjectKeywords.Any(o.ContainsKey)) t.Add("object");
        if (ArrayKeywords.Any(o.ContainsKey)) t.Add("array");
        if (StringKeywords.Any(o.ContainsKey)) t.Add("string");
        if (NumberKeywords.Any(o.ContainsKey)) t.Add("number");
        return t.Count > 0 ? t : null;
    }

    private static string TypeOf(JsonNode? v) => v switch
    {
        null => "null",
        JsonObject => "object",
        JsonArray => "array",
        JsonValue x => x.GetValueKind() switch
        {
            JsonValueKind.String => "string",
            JsonValueKind.True or JsonValueKind.False => "boolean",
            JsonValueKind.Number => x.ToJsonString().IndexOfAny(['.', 'e', 'E']) < 0 ? "integer" : "number",
            _ => "null",
        },
        _ => "null",
    };

    /// <summary>Compact JSON with only the escapes JSON requires (an enum or const value, written as the output would).</summary>
    private static string Compact(JsonNode? v) => v switch
    {
        null => "null",
        JsonObject o => "{" + string.Join(",", o.Select(kv => JsonText.Quote(kv.Key) + ":" + Compact(kv.Value))) + "}",
        JsonArray a => "[" + string.Join(",", a.Select(Compact)) + "]",
        JsonValue x when x.GetValueKind() == JsonValueKind.String => JsonText.Quote(x.GetValue<string>()),
        _ => v.ToJsonString(),
    };

    private static bool HasValidation(JsonObject o) => o.Any(kv => Validation.Contains(kv.Key));

    private JsonObject Without(JsonObject o, params string[] keys)
    {
        var copy = new JsonObject();
        foreach (var (k, v) in o) if (!keys.Contains(k)) copy[k] = CopyKeyword(k, v);
        return copy;
    }

    private static string? Str(JsonObject? o, string key) => o?[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    private static double? Num(JsonObject? o, string key) =>
        o?[key] is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? v.GetValue<double>() : null;

    private static int? Int(JsonObject? o, string key)
    {
        if (Num(o, key) is not { } d) return null;
        if (d < 0 || d != Math.Floor(d)) throw new SchemaException($"{key} must be a non-negative integer");
        return (int)Math.Min(d, 1_000_000);
    }

    /// <summary>
    /// allOf as one schema: types intersected, properties joined (a key in several parts must satisfy each),
    /// required keys joined, bounds tightened, enums intersected; a part that closes its properties keeps the
    /// others' extra keys out. What cannot be joined (two different patterns, two anyOf lists too large) is refused.
    /// </summary>
    private JsonNode Merge(IEnumerable<JsonNode?> parts)
    {
        var result = new JsonObject();
        var closedSets = new List<HashSet<string>>();
        foreach (var raw in parts)
        {
            var part = raw;
            for (int i = 0; part is JsonObject po && po.ContainsKey("$ref"); i++)
            {
                if (i > 16) throw new SchemaException("$ref chains more than 16 deep");
                var target = Resolve(Str(po, "$ref") ?? throw new SchemaException("$ref must be a string"));
                var siblings = Without(po, "$ref");
                part = _refIgnoresSiblings || !HasValidation(siblings) ? target : Merge([target, siblings]);
            }
            if (part is JsonValue pv)
            {
                if (pv.GetValueKind() == JsonValueKind.True) continue;
                if (pv.GetValueKind() == JsonValueKind.False) return JsonValue.Create(false)!;
                throw new SchemaException("a schema must be an object or a boolean");
            }
            if (part is not JsonObject obj) throw new SchemaException("a schema must be an object or a boolean");
            if (obj["allOf"] is JsonArray nested)
            {
                if (Merge([.. nested, Without(obj, "allOf")]) is not JsonObject joined) return JsonValue.Create(false)!;
                obj = joined;
            }
            if (obj["additionalProperties"] is JsonValue ap && ap.GetValueKind() == JsonValueKind.False)
                closedSets.Add(obj["properties"] is JsonObject cp ? cp.Select(kv => kv.Key).ToHashSet() : []);
            foreach (var (key, value) in obj)
            {
                if (!result.ContainsKey(key)) { result[key] = CopyKeyword(key, value); continue; }
                var have = result[key];
                if (JsonNode.DeepEquals(have, value)) continue;
                switch (key)
                {
                    case "type":
                    {
                        var a = TypeSet(have); var b = TypeSet(value);
                        if (a.Contains("number") && b.Contains("integer")) a.Add("integer");
                        if (b.Contains("number") && a.Contains("integer")) b.Add("integer");
                        a.IntersectWith(b);
                        if (a.Count == 0) return JsonValue.Create(false)!;
                        result[key] = new JsonArray([.. a.Select(t => (JsonNode)JsonValue.Create(t)!)]);
                        break;
                    }
                    case "properties" or "patternProperties":
                    {
                        var joined = (JsonObject)have!;
                        foreach (var (name, s) in (JsonObject)value!)
                            joined[name] = joined.ContainsKey(name) ? new JsonObject { ["allOf"] = new JsonArray(joined[name]?.DeepClone(), Share(s)) } : Share(s);
                        break;
                    }
                    case "required":
                        foreach (var r in (JsonArray)value!) if (!((JsonArray)have!).Any(x => JsonNode.DeepEquals(x, r))) ((JsonArray)have!).Add(r?.DeepClone());
                        break;
                    case "enum":
                        result[key] = new JsonArray([.. ((JsonArray)have!).Where(x => ((JsonArray)value!).Any(y => JsonNode.DeepEquals(x, y))).Select(x => x?.DeepClone())]);
                        break;
                    case "minimum" or "minLength" or "minItems" or "minProperties":
                        result[key] = Math.Max(have!.GetValue<double>(), value!.GetValue<double>());
                        break;
                    case "maximum" or "maxLength" or "maxItems" or "maxProperties":
                        result[key] = Math.Min(have!.GetValue<double>(), value!.GetValue<double>());
                        break;
                    case "exclusiveMinimum" when have is JsonValue h1 && h1.GetValueKind() == JsonValueKind.Number && value is JsonValue v1 && v1.GetValueKind() == JsonValueKind.Number:
                        result[key] = Math.Max(h1.GetValue<double>(), v1.GetValue<double>());
                        break;
                    case "exclusiveMaximum" when have is JsonValue h2 && h2.GetValueKind() == JsonValueKind.Number && value is JsonValue v2 && v2.GetValueKind() == JsonValueKind.Number:
                        result[key] = Math.Min(h2.GetValue<double>(), v2.GetValue<double>());
                        break;
                    case "items" or "additionalProperties" or "additionalItems" or "unevaluatedProperties" when have is not JsonArray && value is not JsonArray:
                        result[key] = new JsonObject { ["allOf"] = new JsonArray(have?.DeepClone(), Share(value)) };
                        break;
                    case "anyOf" or "oneOf":
                    {
                        var a = (JsonArray)have!; var b = (JsonArray)value!;
                        if (a.Count * b.Count > 64) throw new SchemaException("the schema combines anyOf/oneOf lists too large to join (more than 64 combinations)");
                        result[key] = new JsonArray([.. a.SelectMany(x => b.Select(y => (JsonNode)new JsonObject { ["allOf"] = new JsonArray(x?.DeepClone(), Share(y)) }))]);
                        break;
                    }
                    case "uniqueItems":
                        result[key] = true;
                        break;
                    default:
                        if (!Validation.Contains(key)) break; // annotations: the first one stands
                        throw new SchemaException($"the schema uses keywords this server cannot enforce: allOf parts with different '{key}'");
                }
            }
        }
        if (closedSets.Count > 0)
        {
            var allowed = closedSets.Aggregate((a, b) => a.Intersect(b).ToHashSet());
            if (result["properties"] is JsonObject props)
                foreach (var name in props.Select(kv => kv.Key).ToList()) if (!allowed.Contains(name)) props.Remove(name);
            if (result["required"] is JsonArray req && req.Any(r => r is JsonValue rv && rv.TryGetValue(out string? s) && !allowed.Contains(s)))
                return JsonValue.Create(false)!;
            result["additionalProperties"] = false;
        }
        return result;
    }

    private static HashSet<string> TypeSet(JsonNode? t) =>
        t is JsonArray a ? a.Select(x => x!.GetValue<string>()).ToHashSet() : t is JsonValue v && v.TryGetValue(out string? s) ? [s] : [];

    /// <summary>Resolves a local $ref: "#", a JSON pointer "#/...", an anchor "#name", or the root's own $id with either.</summary>
    private JsonNode? Resolve(string reference)
    {
        string r = reference;
        int hash = r.IndexOf('#');
        string uri = hash < 0 ? r : r[..hash];
        string fragment = hash < 0 ? "" : r[(hash + 1)..];
        if (uri.Length > 0 && !(_rootId is not null && (_rootId.TrimEnd('#') == uri || _rootId.EndsWith("/" + uri, StringComparison.Ordinal))))
            throw new SchemaException($"$ref '{reference}' points outside the schema (only local references are resolved)");
        if (fragment.Length == 0) return _root;
        if (!fragment.StartsWith('/'))
            return _anchors.TryGetValue(fragment, out var a) ? a : throw new SchemaException($"$ref '{reference}' names an anchor the schema does not define");
        JsonNode? target = _root;
        foreach (string part in fragment[1..].Split('/'))
        {
            string name = Uri.UnescapeDataString(part).Replace("~1", "/").Replace("~0", "~");
            target = target switch
            {
                JsonObject o when o.ContainsKey(name) => o[name],
                JsonArray arr when int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out int i) && i < arr.Count => arr[i],
                _ => throw new SchemaException($"$ref '{reference}' does not resolve within the schema"),
            };
        }
        return target;
    }

    private void CollectAnchors(JsonNode? s, int depth, string pointer)
    {
        if (depth > MaxSchemaDepth) throw new SchemaException($"the schema nests deeper than {MaxSchemaDepth} levels");
        switch (s)
        {
            case JsonObject o:
                _pointers[o] = pointer;
                if (Str(o, "$anchor") is { } anchor) _anchors.TryAdd(anchor, o);
                foreach (string idKey in new[] { "$id", "id" })
                    if (Str(o, idKey) is { } id && id.StartsWith('#') && id.Length > 1) _anchors.TryAdd(id[1..], o);
                foreach (var (k, v) in o) CollectAnchors(v, depth + 1, pointer + "/" + Uri.EscapeDataString(k.Replace("~", "~0").Replace("/", "~1")));
                break;
            case JsonArray a:
                for (int i = 0; i < a.Count; i++) CollectAnchors(a[i], depth + 1, pointer + "/" + i.ToString(CultureInfo.InvariantCulture));
                break;
        }
    }

    /// <summary>
    /// A subschema for a joined (allOf, anyOf-distributed) schema: one of the document's own schemas becomes a
    /// $ref to it, so it is compiled once however many joins mention it (copies would be compiled each time, and
    /// large documents that join through many definitions would grow without bound); anything else is copied.
    /// </summary>
    private JsonNode? Share(JsonNode? schema) =>
        schema is JsonObject o && _pointers.TryGetValue(o, out var pointer) ? new JsonObject { ["$ref"] = pointer } : schema?.DeepClone();

    /// <summary>One keyword's value for a joined schema: subschemas shared (see <see cref="Share"/>), data copied.</summary>
    private JsonNode? CopyKeyword(string key, JsonNode? value) => key switch
    {
        "properties" or "patternProperties" or "dependentSchemas" when value is JsonObject map =>
            new JsonObject(map.Select(kv => KeyValuePair.Create(kv.Key, Share(kv.Value)))),
        "dependencies" when value is JsonObject deps =>
            new JsonObject(deps.Select(kv => KeyValuePair.Create(kv.Key, kv.Value is JsonArray ? kv.Value.DeepClone() : Share(kv.Value)))),
        "anyOf" or "oneOf" or "allOf" or "prefixItems" or "items" when value is JsonArray list => new JsonArray([.. list.Select(Share)]),
        "items" or "additionalItems" or "additionalProperties" or "unevaluatedProperties" or "not" or "if" or "then" or "else" or "contains" or "propertyNames" => Share(value),
        _ => value?.DeepClone(),
    };

    /// <summary>Finds keywords that cannot be enforced, with where they are, walking every subschema.</summary>
    private static void FindUnsupported(JsonNode? s, string path, List<string> into, int depth)
    {
        if (s is not JsonObject o || depth > MaxSchemaDepth) return;
        foreach (var (key, value) in o)
        {
            if (Unsupported.Contains(key)) into.Add($"'{key}' at {(path.Length == 0 ? "/" : path)}");
            switch (key)
            {
                case "properties" or "patternProperties" or "$defs" or "definitions" or "dependentSchemas" or "dependencies" when value is JsonObject map:
                    foreach (var (name, sub) in map) FindUnsupported(sub, $"{path}/{key}/{name}", into, depth + 1);
                    break;
                case "items" or "prefixItems" or "anyOf" or "oneOf" or "allOf" when value is JsonArray list:
                    for (int i = 0; i < list.Count; i++) FindUnsupported(list[i], $"{path}/{key}/{i}", into, depth + 1);
                    break;
                case "items" or "additionalItems" or "additionalProperties" or "unevaluatedProperties" or "if" or "then" or "else" or "not" or "contains" or "propertyNames":
                    FindUnsupported(value, $"{path}/{key}", into, depth + 1);
                    break;
            }
        }
    }
}
