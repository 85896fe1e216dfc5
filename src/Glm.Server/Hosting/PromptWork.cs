namespace Glm.Server.Hosting;

/// <summary>
/// Where a request's CPU work before the engine runs: chat-template rendering and tokenization. Small requests
/// (the common case, well under a millisecond) run inline on the request's thread. Large ones run on a
/// dedicated thread, at most <see cref="HeavySlots"/> at a time, queued in arrival order, so a few huge prompts
/// can occupy at most that many cores and never the thread pool that every other request needs. All of it
/// observes the request's cancellation, so a client that leaves stops its work.
/// </summary>
public sealed class PromptWork(int heavySlots)
{
    /// <summary>Request bodies from this many bytes on count as heavy.</summary>
    public const int HeavyBytes = 64 * 1024;

    private readonly SemaphoreSlim _heavy = new(heavySlots, heavySlots);

    /// <summary>Half the cores (at least one): the rest stay free for the engine and for small requests.</summary>
    public static PromptWork ForThisMachine() => new(Math.Max(1, Environment.ProcessorCount / 2));

    public int HeavySlots { get; } = heavySlots;

    /// <summary>Heavy requests waiting for or holding a slot.</summary>
    public int HeavyInFlight => Volatile.Read(ref _heavyInFlight);
    private int _heavyInFlight;

    public async Task<T> Run<T>(int requestBytes, Func<CancellationToken, T> work, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        if (requestBytes < HeavyBytes) return work(ct);
        Interlocked.Increment(ref _heavyInFlight);
        try
        {
            await _heavy.WaitAsync(ct);
            try
            {
                return await Task.Factory.StartNew(() => work(ct), ct, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            }
            finally
            {
                _heavy.Release();
            }
        }
        finally
        {
            Interlocked.Decrement(ref _heavyInFlight);
        }
    }
}
