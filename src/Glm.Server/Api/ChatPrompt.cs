using System.Text.Json;
using Glm.Server.Hosting;
using Glm.Text.Templates;

namespace Glm.Server.Api;

/// <summary>
/// Renders a request's messages through the model's chat template, the same way for /v1/chat/completions and
/// /tokenize: chat_template_kwargs (an object), add_generation_prompt, the tokenizer's BOS/EOS strings, and a
/// template error as a 400 on "messages".
/// </summary>
public static class ChatPrompt
{
    /// <param name="tools">The tools the template should describe (null when tool_choice is "none").</param>
    public static string Render(ServedModel model, RequestReader r, JsonElement messages, JsonElement? tools)
    {
        if (model.ChatTemplate is null) throw ApiException.BadRequest("This model has no chat template; use /v1/completions with a prompt.");
        var kwargs = new Dictionary<string, object?>();
        if (r.Element("chat_template_kwargs") is { } k)
        {
            if (k.ValueKind != JsonValueKind.Object) throw RequestReader.Wrong("chat_template_kwargs", "an object");
            foreach (var p in k.EnumerateObject()) kwargs[p.Name] = Values.FromJson(p.Value);
        }
        bool addGenerationPrompt = r.Bool("add_generation_prompt") ?? true;
        try
        {
            var vars = ChatMessages.Variables(messages, tools, addGenerationPrompt, kwargs, model.Settings.BosToken, model.Settings.EosToken);
            return model.ChatTemplate.Render(vars);
        }
        catch (TemplateException e)
        {
            throw ApiException.BadRequest($"The chat template could not render these messages: {e.Message}", "messages");
        }
    }
}
