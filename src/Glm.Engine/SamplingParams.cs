namespace Glm.Engine;

/// <summary>Per-request decoding settings, as in vLLM's SamplingParams.</summary>
public sealed record SamplingParams
{
    public float Temperature { get; init; } = 1f;
    public float TopP { get; init; } = 1f;
    /// <summary>0 or negative: no top-k limit.</summary>
    public int TopK { get; init; }
    public float MinP { get; init; }
    public float RepetitionPenalty { get; init; } = 1f;
    public float PresencePenalty { get; init; }
    public float FrequencyPenalty { get; init; }
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }
    public ulong? Seed { get; init; }
    public int MaxTokens { get; init; } = 16;
    public int MinTokens { get; init; }
    public bool IgnoreEos { get; init; }
    public IReadOnlyCollection<int> StopTokenIds { get; init; } = [];
    /// <summary>Number of top alternatives to report with each token; null: no logprobs.</summary>
    public int? Logprobs { get; init; }
    /// <summary>Token-level constraint applied before sampling (tool_choice grammars); null: none.</summary>
    public ITokenConstraint? Constraint { get; init; }

    public bool IsGreedy => Temperature < 1e-5f;

    public void Validate(int vocabSize)
    {
        if (Temperature < 0) throw new ArgumentException("temperature must be non-negative");
        if (TopP is <= 0 or > 1) throw new ArgumentException("top_p must be in (0, 1]");
        if (MinP is < 0 or > 1) throw new ArgumentException("min_p must be in [0, 1]");
        if (RepetitionPenalty <= 0) throw new ArgumentException("repetition_penalty must be positive");
        if (PresencePenalty is < -2 or > 2) throw new ArgumentException("presence_penalty must be in [-2, 2]");
        if (FrequencyPenalty is < -2 or > 2) throw new ArgumentException("frequency_penalty must be in [-2, 2]");
        if (MaxTokens < 1) throw new ArgumentException("max_tokens must be at least 1");
        if (Logprobs is < 0 or > 20) throw new ArgumentException("top_logprobs must be between 0 and 20");
        if (LogitBias is not null)
            foreach (var (id, bias) in LogitBias)
            {
                if ((uint)id >= (uint)vocabSize) throw new ArgumentException($"logit_bias: token id {id} is out of vocabulary");
                if (bias is < -100 or > 100) throw new ArgumentException("logit_bias values must be in [-100, 100]");
            }
    }
}

/// <summary>Restricts which tokens may come next (for example a grammar for forced tool calls).</summary>
public interface ITokenConstraint
{
    /// <summary>
    /// Masks disallowed tokens to -inf given the tokens generated so far. <paramref name="state"/> belongs to the
    /// sequence (null at first): a constraint keeps there whatever lets it continue from the last step instead of
    /// starting over, since one constraint may serve several sequences (n > 1).
    /// </summary>
    void Apply(ReadOnlySpan<int> generated, Span<float> logits, ref object? state);
}
