namespace Glm.Text.Templates;

/// <summary>A compiled Jinja chat template with Hugging Face's settings (trim_blocks, lstrip_blocks, loop controls).</summary>
public sealed class ChatTemplate
{
    private readonly List<Node> _nodes;

    public ChatTemplate(string source)
    {
        Source = source;
        _nodes = new Parser(new Lexer(source).Tokenize()).ParseTemplate();
    }

    public string Source { get; }

    /// <summary>Renders with the given variables (messages, tools, add_generation_prompt, extra kwargs…).</summary>
    /// <exception cref="OperationCanceledException">When <paramref name="ct"/> fires during rendering.</exception>
    public string Render(IDictionary<string, object?> variables, CancellationToken ct = default) => new Renderer(variables, ct).Render(_nodes);
}
