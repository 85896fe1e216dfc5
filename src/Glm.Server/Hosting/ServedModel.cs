using Glm.Engine;
using Glm.Models;
using Glm.Text.Templates;
using Glm.Text.Tokenization;

namespace Glm.Server.Hosting;

/// <summary>Everything a request needs once the model is loaded.</summary>
public sealed class ServedModel(string name, string directory, ModelConfig config, BpeTokenizer? tokenizer,
    ChatTemplateLoader.TokenizerSettings settings, LlmEngine engine, long created, string description)
{
    public string Name { get; } = name;
    public string Directory { get; } = directory;
    public ModelConfig Config { get; } = config;
    public BpeTokenizer? Tokenizer { get; } = tokenizer;
    public ChatTemplate? ChatTemplate => Settings.Template;
    public ChatTemplateLoader.TokenizerSettings Settings { get; } = settings;
    public LlmEngine Engine { get; } = engine;
    public long Created { get; } = created;
    public string Description { get; } = description;
    /// <summary>User and tool message contents are tokenized as plain text (their "&lt;|user|&gt;" is characters, not a turn).</summary>
    public bool LiteralThirdPartyContent { get; init; } = true;
    /// <summary>All names requests may use for this model (the first is <see cref="Name"/>).</summary>
    public IReadOnlyList<string> Names { get; init; } = [name];
    /// <summary>What is served, as /v1/models reports it: a repository id or the model directory's name.</summary>
    public string Root { get; init; } = name;
    public int MaxModelLen => (int)Math.Min(Engine.Options.MaxModelLen, Engine.CapacityTokens);
}
