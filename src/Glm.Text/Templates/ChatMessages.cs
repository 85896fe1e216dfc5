using System.Text.Json;

namespace Glm.Text.Templates;

/// <summary>
/// Turns OpenAI-style chat requests into template variables as vLLM does: tool-call arguments sent as JSON strings
/// become mappings (the GLM template iterates them), and request kwargs (enable_thinking, …) pass through.
/// </summary>
public static class ChatMessages
{
    /// <summary>The roles whose content is someone else's text (the user's, a tool's) rather than the model's or the operator's.</summary>
    public static readonly IReadOnlySet<string> ThirdPartyRoles = new HashSet<string> { "user", "tool" };

    /// <param name="literalContent">
    /// Applied to every string inside the content of user and tool messages before rendering; the server passes
    /// <see cref="Tokenization.BpeTokenizer.MarkAddedTokensAsText"/> so those texts cannot become control tokens.
    /// </param>
    public static Dictionary<string, object?> Variables(JsonElement messages, JsonElement? tools, bool addGenerationPrompt,
        IReadOnlyDictionary<string, object?>? kwargs = null, string? bosToken = null, string? eosToken = null,
        Func<string, string>? literalContent = null)
    {
        var list = new List<object?>();
        foreach (var m in messages.EnumerateArray())
        {
            var message = PrepareMessage((Dictionary<string, object?>)Values.FromJson(m)!);
            if (literalContent is not null && message.GetValueOrDefault("role") is string role && ThirdPartyRoles.Contains(role) && message.ContainsKey("content"))
                message["content"] = MapStrings(message["content"], literalContent);
            list.Add(message);
        }
        var vars = new Dictionary<string, object?>
        {
            ["messages"] = list,
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = bosToken ?? "",
            ["eos_token"] = eosToken ?? "",
        };
        if (tools is { ValueKind: JsonValueKind.Array } t && t.GetArrayLength() > 0) vars["tools"] = Values.FromJson(t);
        if (kwargs is not null) foreach (var (k, v) in kwargs) vars[k] = v;
        return vars;
    }

    private static object? MapStrings(object? value, Func<string, string> map) => value switch
    {
        string s => map(s),
        List<object?> list => list.Select(v => MapStrings(v, map)).ToList(),
        Dictionary<string, object?> dict => dict.ToDictionary(kv => kv.Key, kv => kv.Key == "type" ? kv.Value : MapStrings(kv.Value, map)),
        _ => value,
    };

    private static Dictionary<string, object?> PrepareMessage(Dictionary<string, object?> message)
    {
        // Earlier thinking sent back as "reasoning" (vLLM's newer name) reaches the template as reasoning_content,
        // which is what templates that replay thinking (GLM-4.7's preserved thinking) read (vLLM #27703).
        if (message.GetValueOrDefault("reasoning") is string reasoning && message.GetValueOrDefault("reasoning_content") is not string)
            message["reasoning_content"] = reasoning;
        if (message.GetValueOrDefault("tool_calls") is List<object?> calls)
            foreach (var call in calls.OfType<Dictionary<string, object?>>())
            {
                var fn = call.GetValueOrDefault("function") as Dictionary<string, object?> ?? call;
                if (fn.GetValueOrDefault("arguments") is string args)
                {
                    try
                    {
                        using var doc = JsonDocument.Parse(args.Length == 0 ? "{}" : args);
                        fn["arguments"] = Values.FromJson(doc.RootElement);
                    }
                    catch (JsonException)
                    {
                        // Left as a string: the template renders it verbatim, as vLLM does for unparsable arguments.
                    }
                }
            }
        return message;
    }
}
