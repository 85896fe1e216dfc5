using System.Text.Json;
using Glm.Text.Templates;
using Glm.Text.Tokenization;
using Glm.TestSupport;

namespace Glm.Text.Tests;

/// <summary>The real GLM-4.6 template against prompts rendered by transformers' apply_chat_template.</summary>
public class ChatTemplateTests
{
    public static TheoryData<int> Conversations() => new(Enumerable.Range(0, 8));

    private static string Dir => Fixtures.Dir("chat_glm4_moe");

    [Theory]
    [MemberData(nameof(Conversations))]
    public void RenderedPromptAndIdsMatchTransformers(int index)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "expected_chat.json")));
        var c = doc.RootElement.GetProperty("cases")[index];
        var settings = ChatTemplateLoader.Load(Dir);
        var kwargs = c.GetProperty("kwargs").EnumerateObject().ToDictionary(p => p.Name, p => Values.FromJson(p.Value));
        var vars = ChatMessages.Variables(OpenAiStyle(c.GetProperty("messages")), c.GetProperty("tools"), addGenerationPrompt: true, kwargs);
        string prompt = settings.Template!.Render(vars);
        Assert.Equal(c.GetProperty("prompt_text").GetString(), prompt);

        var tokenizer = BpeTokenizer.Load(Path.Combine(Dir, "tokenizer.json"));
        Assert.Equal(c.GetProperty("prompt_ids").EnumerateArray().Select(x => x.GetInt32()), tokenizer.Encode(prompt));
    }

    /// <summary>Earlier thinking sent back as "reasoning" renders exactly as when sent as "reasoning_content" (vLLM #27703).</summary>
    [Fact]
    public void ReasoningSentBackAsReasoningReachesTheTemplate()
    {
        var template = ChatTemplateLoader.Load(Dir).Template!;
        string Render(string field) => template.Render(ChatMessages.Variables(JsonDocument.Parse("""
            [{"role": "user", "content": "Weather in Oslo?"},
             {"role": "assistant", "content": "", "FIELD": "I should call get_weather.",
              "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
             {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
            """.Replace("FIELD", field)).RootElement, null, addGenerationPrompt: true));
        string withReasoning = Render("reasoning");
        Assert.Contains("<think>I should call get_weather.</think>", withReasoning);
        Assert.Equal(Render("reasoning_content"), withReasoning);
    }

    /// <summary>The fixture stores tool-call arguments as mappings; an OpenAI client sends them as JSON strings.</summary>
    private static JsonElement OpenAiStyle(JsonElement messages)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(messages.GetRawText())!.AsArray();
        foreach (var m in node)
            if (m?["tool_calls"] is System.Text.Json.Nodes.JsonArray calls)
                foreach (var call in calls)
                {
                    var fn = call!["function"] ?? call;
                    if (fn["arguments"] is System.Text.Json.Nodes.JsonObject args) fn["arguments"] = args.ToJsonString();
                }
        return JsonDocument.Parse(node.ToJsonString()).RootElement;
    }

    [Fact]
    public void TemplateErrorsNameLineAndColumn()
    {
        var e = Assert.Throws<TemplateException>(() => new ChatTemplate("hello\n{% if x %}\n{{ 1 + }}\n{% endif %}"));
        Assert.Equal(3, e.Line);
        var r = Assert.Throws<TemplateException>(() => new ChatTemplate("a\n\n  {{ raise_exception('bad role') }}").Render(new Dictionary<string, object?>()));
        Assert.Contains("bad role", r.Message);
        Assert.Equal(3, r.Line);
    }
}
