using System.Text.Json;

namespace Glm.Text.Templates;

/// <summary>
/// Turns OpenAI-style chat requests into template variables as vLLM does: tool-call arguments sent as JSON strings
/// become mappings (the GLM template iterates them), and request kwargs (enable_thinking, …) pass through.
/// </summary>
public static class ChatMessages
{
    public static Dictionary<string, object?> Variables(JsonElement messages, JsonElement? tools, bool addGenerationPrompt,
        IReadOnlyDictionary<string, object?>? kwargs = null, string? bosToken = null, string? eosToken = null)
    {
        var list = new List<object?>();
        foreach (var m in messages.EnumerateArray()) list.Add(PrepareMessage((Dictionary<string, object?>)Values.FromJson(m)!));
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

    private static Dictionary<string, object?> PrepareMessage(Dictionary<string, object?> message)
    {
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
