using System.Threading.Channels;

namespace Glm.Engine;

public enum SequenceStatus { Waiting, Running, Finished }

public enum FinishReason { None, Stop, Length, Abort }

/// <summary>One generated token, with its log-probability and alternatives when requested.</summary>
public readonly record struct TokenLogprob(int Token, float Logprob);

/// <summary>What the engine reports to a request after each step: new tokens and, at the end, why it finished.</summary>
public sealed record SequenceOutput(int Token, float? Logprob, TokenLogprob[]? TopLogprobs, FinishReason Finish, int? StopToken = null);

/// <summary>
/// A request's token sequence in the engine. Tokens = prompt + generated; the first NumComputed of them have KV
/// in the cache (a preempted sequence resets NumComputed and recomputes, keeping its generated tokens).
/// </summary>
public sealed class Sequence
{
    private static long _nextId;

    public Sequence(IReadOnlyList<int> prompt, SamplingParams sampling, ulong seed)
    {
        Id = Interlocked.Increment(ref _nextId);
        Tokens = [.. prompt];
        PromptLength = prompt.Count;
        Sampling = sampling;
        Random = new SplitMix64(seed);
        Output = Channel.CreateUnbounded<SequenceOutput>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        ArrivalTicks = Environment.TickCount64;
    }

    public long Id { get; }
    public List<int> Tokens { get; }
    public int PromptLength { get; }
    public SamplingParams Sampling { get; }
    public SplitMix64 Random { get; }
    public Channel<SequenceOutput> Output { get; }
    public long ArrivalTicks { get; }

    public SequenceStatus Status { get; internal set; } = SequenceStatus.Waiting;
    public FinishReason FinishReason { get; internal set; }
    public List<int> BlockTable { get; } = [];
    public int NumComputed { get; internal set; }
    /// <summary>Prompt tokens whose KV came from the prefix cache on the last allocation.</summary>
    public int NumCachedTokens { get; internal set; }
    public int Preemptions { get; internal set; }
    internal volatile bool AbortRequested;

    /// <summary>The MTP layer's draft for the token at <see cref="MtpDraftPosition"/> (-1: none), made in the last step.</summary>
    internal int MtpDraft = -1;
    internal int MtpDraftPosition;

    /// <summary>What the request's <see cref="ITokenConstraint"/> keeps between steps for this sequence.</summary>
    internal object? ConstraintState;

    public int GeneratedCount => Tokens.Count - PromptLength;
    internal ReadOnlySpan<int> GeneratedSpan => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(Tokens)[PromptLength..];
    public int Length => Tokens.Count;
}

/// <summary>A small, fast, seedable generator whose sequence is fixed across platforms and runtime versions.</summary>
public sealed class SplitMix64(ulong seed)
{
    private ulong _state = seed;

    public ulong NextULong()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, 1).</summary>
    public double NextDouble() => (NextULong() >> 11) * (1.0 / (1UL << 53));
}
