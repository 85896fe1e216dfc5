namespace Glm.Server.Api;

// Request shapes for the OpenAPI document. Handlers read bodies with RequestReader so that every wrong type or
// range becomes an OpenAI-shaped 400 naming the parameter; these records only describe the accepted fields.

public sealed record ChatMessageSchema(string Role, object? Content, string? Name, string? ToolCallId, object[]? ToolCalls, string? ReasoningContent);

public sealed record ChatCompletionRequestSchema(
    string Model, ChatMessageSchema[] Messages, bool? Stream, object? StreamOptions, int? N, int? MaxTokens, int? MaxCompletionTokens,
    double? Temperature, double? TopP, int? TopK, double? MinP, double? PresencePenalty, double? FrequencyPenalty, double? RepetitionPenalty,
    long? Seed, object? Stop, Dictionary<string, double>? LogitBias, bool? Logprobs, int? TopLogprobs, object[]? Tools, object? ToolChoice,
    bool? ParallelToolCalls, Dictionary<string, object>? ChatTemplateKwargs, object? ResponseFormat, bool? IgnoreEos,
    bool? SkipSpecialTokens, bool? ReturnTokenIds);

public sealed record CompletionRequestSchema(
    string Model, object Prompt, bool? Stream, bool? Echo, int? Logprobs, int? N, int? MaxTokens, double? Temperature, double? TopP,
    int? TopK, double? MinP, double? RepetitionPenalty, long? Seed, object? Stop, bool? IgnoreEos, bool? ReturnTokenIds, bool? SkipSpecialTokens);

public sealed record TokenizeRequestSchema(string? Model, string? Prompt, object[]? Messages, bool? AddGenerationPrompt, bool? ReturnTokenStrs);

public sealed record DetokenizeRequestSchema(string? Model, int[] Tokens);
