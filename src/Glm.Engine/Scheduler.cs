namespace Glm.Engine;

/// <summary>
/// One sequence's share of a step: compute <see cref="Tokens"/> tokens starting at its NumComputed; with a
/// <see cref="Draft"/>, its last token and then the draft (speculative decoding), Tokens = 1 + Draft.Length.
/// </summary>
public readonly record struct ScheduledSequence(Sequence Sequence, int Tokens, int[]? Draft = null);

/// <summary>
/// Chooses each step's work. Running sequences go first (decodes and unfinished prefill chunks, oldest first),
/// then waiting ones are admitted in arrival order while the token budget, the sequence limit and free blocks
/// allow. When blocks run out, the youngest running sequence is preempted: its blocks are freed and it goes back
/// to the front of the queue to be recomputed, keeping the tokens it already generated.
/// </summary>
/// <param name="draft">speculative decoding: draft tokens for a decoding sequence given the most it may take, or null</param>
public sealed class Scheduler(BlockManager blocks, int maxNumSeqs, int maxNumBatchedTokens, Func<Sequence, int, int[]?>? draft = null)
{
    private readonly LinkedList<Sequence> _waiting = new();
    private readonly List<Sequence> _running = [];

    public int WaitingCount => _waiting.Count;
    public int RunningCount => _running.Count;
    public IReadOnlyList<Sequence> Running => _running;
    public IEnumerable<Sequence> Waiting => _waiting;
    public long Preemptions { get; private set; }

    public void Add(Sequence seq)
    {
        seq.Status = SequenceStatus.Waiting;
        _waiting.AddLast(seq);
    }

    public List<ScheduledSequence> Schedule()
    {
        var scheduled = new List<ScheduledSequence>();
        int budget = maxNumBatchedTokens;

        for (int i = 0; i < _running.Count && budget > 0; i++)
        {
            var seq = _running[i];
            int n = Math.Min(seq.Length - seq.NumComputed, budget);
            if (n <= 0) continue;
            int[]? proposal = n == 1 && seq.Length - seq.NumComputed == 1 && budget > 1 ? draft?.Invoke(seq, budget - 1) : null;
            if (proposal is { Length: 0 }) proposal = null;
            if (proposal is not null) n = 1 + proposal.Length;
            bool fits = true;
            while (!blocks.EnsureCapacity(seq, seq.NumComputed + n))
            {
                var victim = _running[^1];
                Preempt(victim);
                if (victim == seq) { fits = false; break; }
            }
            if (!fits) break;
            scheduled.Add(new ScheduledSequence(seq, n, proposal));
            budget -= n;
        }

        while (_waiting.Count > 0 && budget > 0 && _running.Count < maxNumSeqs)
        {
            var seq = _waiting.First!.Value;
            bool fresh = seq.BlockTable.Count == 0;
            if (fresh) blocks.AllocatePrefix(seq);
            int n = Math.Min(seq.Length - seq.NumComputed, budget);
            if (!blocks.EnsureCapacity(seq, seq.NumComputed + n))
            {
                if (fresh) blocks.Free(seq);
                break;
            }
            _waiting.RemoveFirst();
            seq.Status = SequenceStatus.Running;
            _running.Add(seq);
            scheduled.Add(new ScheduledSequence(seq, n));
            budget -= n;
        }
        return scheduled;
    }

    private void Preempt(Sequence seq)
    {
        _running.Remove(seq);
        blocks.Free(seq);
        seq.Status = SequenceStatus.Waiting;
        seq.Preemptions++;
        Preemptions++;
        _waiting.AddFirst(seq);
    }

    /// <summary>Removes a finished or aborted sequence and returns its blocks.</summary>
    public void Remove(Sequence seq)
    {
        if (!_running.Remove(seq)) _waiting.Remove(seq);
        blocks.Free(seq);
    }
}
