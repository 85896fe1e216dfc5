using System.Text.Json;
using Glm.Server.Hosting;
using Glm.Text.Templates;
using Glm.Text.Tokenization;

namespace Glm.Server.Api;

/// <summary>
/// Renders a request's messages through the model's chat template and tokenizes the result, the same way for
/// every endpoint that takes a chat (/v1/chat/completions, /tokenize): chat_template_kwargs (an object),
/// add_generation_prompt, the tokenizer's BOS/EOS strings, a template error as a 400 on "messages", and, unless
/// the server runs with --user-content-special-tokens parse, user and tool contents tokenized as plain text.
/// </summary>
public static class ChatPrompt
{
    /// <param name="tools">The tools the template should describe (null when tool_choice is "none").</param>
    public static string Render(ServedModel model, RequestReader r, JsonElement messages, JsonElement? tools, CancellationToken ct)
    {
        if (model.ChatTemplate is null) throw ApiException.BadRequest("This model has no chat template; use /v1/completions with a prompt.");
        var kwargs = new Dictionary<string, object?>();
        var k = r.Element("chat_template_kwargs");
        if (k is { } kw)
        {
            if (kw.ValueKind != JsonValueKind.Object) throw RequestReader.Wrong("chat_template_kwargs", "an object");
            foreach (var p in kw.EnumerateObject()) kwargs[p.Name] = Values.FromJson(p.Value);
        }
        ApplyReasoningEffort(r, kwargs);
        bool addGenerationPrompt = r.Bool("add_generation_prompt") ?? true;
        Func<string, string>? literal = null;
        if (model.LiteralThirdPartyContent && model.Tokenizer is { } tokenizer)
        {
            // Only the server may place the literal-text markers in the rendered prompt.
            RefuseMarkers(messages, "messages");
            if (tools is { } t) RefuseMarkers(t, "tools");
            if (k is { } kwElement) RefuseMarkers(kwElement, "chat_template_kwargs");
            literal = tokenizer.MarkAddedTokensAsText;
        }
        try
        {
            var vars = ChatMessages.Variables(messages, tools, addGenerationPrompt, kwargs, model.Settings.BosToken, model.Settings.EosToken, literal);
            return model.ChatTemplate.Render(vars, ct);
        }
        catch (TemplateException e)
        {
            throw ApiException.BadRequest($"The chat template could not render these messages: {e.Message}", "messages");
        }
    }

    /// <summary>OpenAI's reasoning efforts, and GLM-5.2+'s "max".</summary>
    public static readonly string[] ReasoningEfforts = ["none", "minimal", "low", "medium", "high", "xhigh", "max"];

    /// <summary>
    /// reasoning_effort reaches the template two ways, unless chat_template_kwargs sets them itself: as the
    /// template variable reasoning_effort (GLM-5.2 and later read it: low/high/max, anything else is their max),
    /// and, for none or minimal, as enable_thinking false (what GLM-4.5 to 5.2 templates read to skip thinking).
    /// </summary>
    private static void ApplyReasoningEffort(RequestReader r, Dictionary<string, object?> kwargs)
    {
        if (r.Element("reasoning_effort") is not { } e || e.ValueKind == JsonValueKind.Null) return;
        string? effort = e.ValueKind == JsonValueKind.String ? e.GetString() : null;
        if (effort is null || !ReasoningEfforts.Contains(effort))
            throw ApiException.BadRequest($"reasoning_effort must be one of {string.Join(", ", ReasoningEfforts)}.", "reasoning_effort");
        kwargs.TryAdd("reasoning_effort", effort);
        if (effort is "none" or "minimal") kwargs.TryAdd("enable_thinking", false);
    }

    /// <summary>The ids of a prompt from <see cref="Render"/>: the template's own tokens special, marked contents literal.</summary>
    public static int[] Encode(ServedModel model, string prompt, CancellationToken ct) =>
        (model.Tokenizer ?? throw ApiException.BadRequest("This model has no tokenizer.")).EncodeWithLiteralText(prompt, ct);

    /// <summary>The prompt as the model sees it (without the literal-text markers), for parsers that read it.</summary>
    public static string Visible(string prompt) =>
        LiteralText.ContainsMarker(prompt) ? prompt.Replace(LiteralText.Begin.ToString(), "").Replace(LiteralText.End.ToString(), "") : prompt;

    private static void RefuseMarkers(JsonElement e, string path) => JsonWalk.Strings(e, path,
        (p, at) =>
        {
            if (LiteralText.ContainsMarker(p.Name)) throw ApiException.BadRequest($"A property name in '{at}' contains U+FDD0 or U+FDD1.", at);
        },
        (value, at) =>
        {
            if (LiteralText.ContainsMarker(value.GetString()!))
                throw ApiException.BadRequest($"'{at}' contains U+FDD0 or U+FDD1, Unicode noncharacters this server reserves for its own use.", at);
        });
}
