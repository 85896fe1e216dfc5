using System.Text.Json;
using System.Text.Json.Nodes;
using Glm.Engine;
using Glm.Engine.Constraints;
using Glm.Server.Api;
using Glm.Server.Hosting;
using Glm.Text.Grammar;

namespace Glm.Server.Structured;

/// <summary>
/// What a request asks its output to be: OpenAI's response_format (json_object, json_schema), vLLM's
/// structured_outputs (json, regex, choice, json_object) and its older guided_json / guided_regex /
/// guided_choice spellings. At most one may be given; anything this server cannot enforce is a 400.
/// </summary>
public sealed class StructuredOutputRequest
{
    /// <summary>Schemas larger than this are refused (a schema is compiled per request when not cached).</summary>
    public const int MaxSchemaBytes = 512 * 1024;

    private readonly string _kind;
    private readonly string _text;
    private readonly JsonNode? _schema;

    /// <summary>The request field it came from, for error messages.</summary>
    public string Param { get; }

    private StructuredOutputRequest(string param, string kind, string text, JsonNode? schema)
    {
        Param = param;
        _kind = kind;
        _text = text;
        _schema = schema;
    }

    /// <summary>The request's structured-output field, or null when it asks for free text.</summary>
    public static StructuredOutputRequest? Parse(RequestReader r)
    {
        var found = new List<StructuredOutputRequest>();
        if (r.Element("response_format") is { } rf) { if (ResponseFormat(rf) is { } s) found.Add(s); }
        if (r.Element("structured_outputs") is { } so) found.Add(StructuredOutputs(so));
        foreach (string unsupported in new[] { "guided_grammar", "guided_whitespace_pattern", "guided_decoding_backend" })
            if (r.Has(unsupported))
                throw ApiException.BadRequest($"'{unsupported}' is not supported: this server enforces guided_json, guided_regex and guided_choice with its own engine.", unsupported);
        if (r.Element("guided_json") is { } gj) found.Add(Schema("guided_json", gj));
        if (r.Element("guided_regex") is { } gr) found.Add(Regex("guided_regex", gr));
        if (r.Element("guided_choice") is { } gc) found.Add(Choice("guided_choice", gc));
        if (found.Count > 1)
            throw ApiException.BadRequest($"Only one structured output may be asked for; this request gives {string.Join(", ", found.Select(f => f.Param))}.", found[1].Param);
        return found.FirstOrDefault();
    }

    private static StructuredOutputRequest? ResponseFormat(JsonElement rf)
    {
        if (rf.ValueKind != JsonValueKind.Object || !rf.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw RequestReader.Wrong("response_format", "an object with a 'type'");
        switch (type.GetString())
        {
            case "text": return null;
            case "json_object": return new StructuredOutputRequest("response_format", "json_object", "", null);
            case "json_schema":
                if (!rf.TryGetProperty("json_schema", out var js) || js.ValueKind != JsonValueKind.Object)
                    throw RequestReader.Wrong("response_format.json_schema", "an object with 'name' and 'schema'");
                if (js.TryGetProperty("strict", out var strict) && strict.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
                    throw RequestReader.Wrong("response_format.json_schema.strict", "a boolean");
                // strict or not, the schema is enforced: this server never lets an answer leave it.
                if (!js.TryGetProperty("schema", out var schema) || schema.ValueKind == JsonValueKind.Null)
                    return new StructuredOutputRequest("response_format", "json_object", "", null);
                return Schema("response_format.json_schema.schema", schema);
            case var other:
                throw ApiException.BadRequest($"response_format type '{other}' is not supported (text, json_object, json_schema).", "response_format");
        }
    }

    private static StructuredOutputRequest StructuredOutputs(JsonElement so)
    {
        if (so.ValueKind != JsonValueKind.Object) throw RequestReader.Wrong("structured_outputs", "an object");
        var found = new List<StructuredOutputRequest>();
        foreach (var p in so.EnumerateObject())
        {
            string at = "structured_outputs." + p.Name;
            if (p.Value.ValueKind == JsonValueKind.Null) continue;
            switch (p.Name)
            {
                case "json": found.Add(Schema(at, p.Value)); break;
                case "regex": found.Add(Regex(at, p.Value)); break;
                case "choice": found.Add(Choice(at, p.Value)); break;
                case "json_object":
                    if (p.Value.ValueKind != JsonValueKind.True) throw RequestReader.Wrong(at, "true");
                    found.Add(new StructuredOutputRequest(at, "json_object", "", null));
                    break;
                default:
                    throw ApiException.BadRequest($"'{at}' is not supported (json, regex, choice, json_object).", at);
            }
        }
        if (found.Count != 1) throw ApiException.BadRequest("'structured_outputs' must give exactly one of json, regex, choice, json_object.", "structured_outputs");
        return found[0];
    }

    private static StructuredOutputRequest Schema(string param, JsonElement value)
    {
        string text = value.ValueKind == JsonValueKind.String ? value.GetString()! : value.GetRawText();
        if (text.Length > MaxSchemaBytes) throw ApiException.BadRequest($"The schema is larger than this server's limit of {MaxSchemaBytes / 1024} KiB.", param);
        JsonNode? schema;
        try { schema = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { MaxDepth = JsonSchemaCompiler.MaxSchemaDepth * 2 }); }
        catch (JsonException e) { throw ApiException.BadRequest($"The schema is not valid JSON: {e.Message}", param); }
        if (schema is not (JsonObject or JsonValue { } ) || (schema is JsonValue v && v.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False)))
            throw ApiException.BadRequest("The schema must be a JSON object (or true/false).", param);
        return new StructuredOutputRequest(param, "json_schema", text, schema);
    }

    private static StructuredOutputRequest Regex(string param, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.String) throw RequestReader.Wrong(param, "a string");
        return new StructuredOutputRequest(param, "regex", value.GetString()!, null);
    }

    private static StructuredOutputRequest Choice(string param, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() == 0 || value.EnumerateArray().Any(c => c.ValueKind != JsonValueKind.String))
            throw RequestReader.Wrong(param, "a non-empty array of strings");
        return new StructuredOutputRequest(param, "choice", value.GetRawText(), null);
    }

    /// <summary>The grammar, with GLM's one optional newline before the answer when <paramref name="leadingNewline"/>.</summary>
    private Grammar Compile(bool leadingNewline)
    {
        var b = new GrammarBuilder();
        try
        {
            Expr root = _kind switch
            {
                "json_object" => AnyObject(b),
                "json_schema" => new JsonSchemaCompiler(b, _schema!).Value(_schema),
                "regex" => RegexSubset.Parse(_text, fullMatch: true),
                _ => Expr.Alt(JsonSerializer.Deserialize<string[]>(_text)!.Select(Expr.Literal)),
            };
            return b.Build(leadingNewline ? Expr.Seq(Expr.Optional(Expr.Char('\n')), root) : root);
        }
        catch (SchemaException e) { throw ApiException.BadRequest($"'{Param}': {e.Message}.", Param, "invalid_schema"); }
        catch (GrammarException e) { throw ApiException.BadRequest($"'{Param}' cannot be used: {e.Message}.", Param, "invalid_schema"); }
        catch (FormatException e) when (_kind == "regex") { throw ApiException.BadRequest($"'{Param}': this server cannot enforce the regular expression: {e.Message}.", Param, "invalid_schema"); }
        catch (Exception e) when (e is InvalidCastException or InvalidOperationException or FormatException or ArgumentException or KeyNotFoundException)
        {
            // A keyword whose value has the wrong JSON type (properties: 5, required: "a", ...).
            throw ApiException.BadRequest($"'{Param}' is not a valid JSON Schema: {e.Message}", Param, "invalid_schema");
        }
    }

    private static Expr AnyObject(GrammarBuilder b)
    {
        var schema = JsonNode.Parse("""{"type":"object"}""")!;
        return new JsonSchemaCompiler(b, schema).Value(schema);
    }

    /// <summary>
    /// The constraint for one request. A chat answer may start with GLM's newline, and with reasoning parsed it
    /// may think first (the constraint starts after &lt;/think&gt;); a completion is constrained from its first byte.
    /// </summary>
    public ITokenConstraint Constraint(ServedModel model, bool chat, bool reasoning, bool promptOpenedThink)
    {
        var tokenizer = model.Tokenizer ?? throw ApiException.BadRequest("Structured outputs need the model's tokenizer.", Param);
        var vocabulary = GrammarVocabulary.For(tokenizer);
        var (grammar, masker) = vocabulary.Get($"{_kind}\n{chat}\n{_text}", () => Compile(leadingNewline: chat));
        int? open = chat && reasoning ? tokenizer.TokenToId(Text.Parsing.GlmOutputParser.ThinkOpen) : null;
        int? close = chat && reasoning ? tokenizer.TokenToId(Text.Parsing.GlmOutputParser.ThinkClose) : null;
        return new GrammarConstraint(grammar, masker, vocabulary, model.Config.EosTokenIds, open, close, chat && reasoning && promptOpenedThink);
    }
}
