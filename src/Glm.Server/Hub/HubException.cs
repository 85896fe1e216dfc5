namespace Glm.Server.Hub;

/// <summary>A model that cannot be fetched; the message says what to do about it.</summary>
public sealed class HubException(string message, Exception? inner = null) : Exception(message, inner);
