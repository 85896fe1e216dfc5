namespace Glm.Engine;

public sealed record EngineOptions
{
    public int MaxNumSeqs { get; init; } = 64;
    public int MaxNumBatchedTokens { get; init; } = 2048;
    public int MaxModelLen { get; init; } = 4096;
    public bool EnablePrefixCaching { get; init; } = true;
    /// <summary>Requests allowed to wait before new ones are refused (HTTP 429).</summary>
    public int MaxWaiting { get; init; } = 256;
    /// <summary>Speculative decoding by prompt lookup (vLLM's "ngram" method); null: off.</summary>
    public NgramProposer? Speculation { get; init; }
    /// <summary>
    /// Speculative decoding with the model's MTP layer (vLLM's "mtp" method, one draft token a step): the runner
    /// must have been loaded with it (<see cref="IModelRunner.DraftsWithMtp"/>). Not together with <see cref="Speculation"/>.
    /// </summary>
    public bool MtpDrafting { get; init; }
}
