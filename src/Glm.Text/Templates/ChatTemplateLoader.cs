using System.Text.Json;

namespace Glm.Text.Templates;

/// <summary>Finds a model's chat template: chat_template.jinja, or tokenizer_config.json's chat_template (string or named list).</summary>
public static class ChatTemplateLoader
{
    public sealed record TokenizerSettings(ChatTemplate? Template, string? BosToken, string? EosToken, bool CleanUpTokenizationSpaces);

    public static TokenizerSettings Load(string modelDirectory, string? templateName = null)
    {
        string? source = null, bos = null, eos = null;
        bool cleanUp = false;
        string configPath = Path.Combine(modelDirectory, "tokenizer_config.json");
        if (File.Exists(configPath))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(configPath));
            var root = doc.RootElement;
            bos = TokenText(root, "bos_token");
            eos = TokenText(root, "eos_token");
            cleanUp = root.TryGetProperty("clean_up_tokenization_spaces", out var cu) && cu.ValueKind == JsonValueKind.True;
            if (root.TryGetProperty("chat_template", out var ct))
            {
                if (ct.ValueKind == JsonValueKind.String) source = ct.GetString();
                else if (ct.ValueKind == JsonValueKind.Array)
                {
                    string wanted = templateName ?? "default";
                    foreach (var entry in ct.EnumerateArray())
                        if (entry.GetProperty("name").GetString() == wanted) source = entry.GetProperty("template").GetString();
                }
            }
        }
        string jinjaPath = Path.Combine(modelDirectory, "chat_template.jinja");
        if (File.Exists(jinjaPath)) source = File.ReadAllText(jinjaPath);
        ChatTemplate? template = null;
        if (source is not null)
        {
            try { template = new ChatTemplate(source); }
            catch (TemplateException e) { throw new TemplateException($"chat template of '{modelDirectory}' does not parse: {e.Message}"); }
        }
        return new TokenizerSettings(template, bos, eos, cleanUp);
    }

    private static string? TokenText(JsonElement root, string name) =>
        root.TryGetProperty(name, out var t) ? t.ValueKind switch
        {
            JsonValueKind.String => t.GetString(),
            JsonValueKind.Object when t.TryGetProperty("content", out var c) => c.GetString(),
            _ => null,
        } : null;
}
