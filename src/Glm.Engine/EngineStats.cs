namespace Glm.Engine;

/// <summary>A consistent snapshot of the engine's counters for metrics and health.</summary>
public sealed record EngineStats(
    int Running, int Waiting, double KvUsage, int FreeBlocks, int TotalBlocks,
    long PrefixQueries, long PrefixHits, long PromptTokens, long GenerationTokens, long Preemptions, long Steps,
    long SpecDrafts = 0, long SpecDraftTokens = 0, long SpecAcceptedTokens = 0);
