namespace Glm.Text.Tokenization;

public sealed class TokenizerLoadException(string message) : Exception(message);
