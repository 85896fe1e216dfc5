namespace Glm.Text.Templates;

/// <summary>A template that cannot be parsed or rendered; the message names the line and column.</summary>
public sealed class TemplateException(string message, int line = 0, int column = 0)
    : Exception(line > 0 ? $"{message} (line {line}, column {column})" : message)
{
    public int Line { get; } = line;
    public int Column { get; } = column;
}
