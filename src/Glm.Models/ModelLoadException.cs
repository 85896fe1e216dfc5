namespace Glm.Models;

/// <summary>A model directory that cannot be served; the message is written for the user and names the culprit.</summary>
public sealed class ModelLoadException(string message, Exception? inner = null) : Exception(message, inner);
