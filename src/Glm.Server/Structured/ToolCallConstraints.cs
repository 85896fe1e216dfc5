using System.Text.Json;
using System.Text.Json.Nodes;
using Glm.Engine;
using Glm.Engine.Constraints;
using Glm.Server.Api;
using Glm.Server.Hosting;
using Glm.Text.Grammar;
using Glm.Text.Parsing;

namespace Glm.Server.Structured;

/// <summary>
/// The constraint a request's tools call for: tool_choice "required" or a named function holds the whole answer
/// to GLM's call form with typed arguments (after free thinking, when reasoning is parsed); under "auto", tools
/// marked "strict": true hold each call the model opens. GLM emits calls as XML, never JSON, so that is the form enforced.
/// </summary>
public static class ToolCallConstraints
{
    public static ITokenConstraint? For(ServedModel model, JsonElement? tools, string toolChoice, string? forcedName, bool parallelToolCalls,
        bool reasoning, bool promptOpenedThink)
    {
        if (tools is not { ValueKind: JsonValueKind.Array } array || toolChoice == "none") return null;
        var all = Read(array);
        bool forced = forcedName is not null || toolChoice == "required";
        if (!forced && !all.Any(t => t.Typed)) return null;
        var tokenizer = model.Tokenizer!;
        var vocabulary = GrammarVocabulary.For(tokenizer);
        try
        {
            if (forced)
            {
                var chosen = (forcedName is null ? all : all.Where(t => t.Name == forcedName)).Select(t => t with { Typed = true }).ToList();
                bool single = forcedName is not null || !parallelToolCalls;
                var (grammar, masker) = vocabulary.Get($"tool-calls\n{single}\n{forcedName}\n{array.GetRawText()}", () => ToolCallGrammar.Calls(chosen, single));
                int? open = reasoning ? tokenizer.TokenToId(GlmOutputParser.ThinkOpen) : null;
                int? close = reasoning ? tokenizer.TokenToId(GlmOutputParser.ThinkClose) : null;
                return new GrammarConstraint(grammar, masker, vocabulary, model.Config.EosTokenIds, open, close, reasoning && promptOpenedThink, markup: true);
            }
            if (tokenizer.TokenToId(ToolCallGrammar.CallOpen) is not int callOpen)
                throw ApiException.BadRequest("This model's tokenizer has no <tool_call> token, so strict tools cannot be enforced under tool_choice \"auto\".", "tools");
            var (body, bodyMasker) = vocabulary.Get($"tool-call-body\n{array.GetRawText()}", () => ToolCallGrammar.Body(all));
            return new StrictToolCalls(body, bodyMasker, vocabulary, callOpen);
        }
        catch (SchemaException e)
        {
            throw ApiException.BadRequest($"'tools': {e.Message}.", "tools", "invalid_schema");
        }
        catch (Exception e) when (e is InvalidCastException or InvalidOperationException or FormatException or ArgumentException or KeyNotFoundException)
        {
            throw ApiException.BadRequest($"'tools': a parameters schema is not valid JSON Schema: {e.Message}", "tools", "invalid_schema");
        }
    }

    /// <summary>Each function with its parameters, typed when it is marked strict.</summary>
    private static List<ToolCallGrammar.Tool> Read(JsonElement tools)
    {
        var result = new List<ToolCallGrammar.Tool>();
        foreach (var tool in tools.EnumerateArray())
        {
            if (!tool.TryGetProperty("function", out var fn) || fn.ValueKind != JsonValueKind.Object || !fn.TryGetProperty("name", out var name)) continue;
            var parameters = fn.TryGetProperty("parameters", out var p) && p.ValueKind is JsonValueKind.Object or JsonValueKind.True or JsonValueKind.False
                ? JsonNode.Parse(p.GetRawText()) : null;
            bool strict = fn.TryGetProperty("strict", out var s) && s.ValueKind == JsonValueKind.True;
            result.Add(new ToolCallGrammar.Tool(name.GetString()!, parameters, strict));
        }
        return result;
    }
}
