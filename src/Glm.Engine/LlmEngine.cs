using System.Collections.Concurrent;
using Glm.Kernels.Device;
using Glm.Models.Architectures;

namespace Glm.Engine;

/// <summary>Thrown when a request cannot be admitted (context too long, queue full, engine stopping).</summary>
public sealed class AdmissionException(string message, AdmissionFailure kind) : Exception(message)
{
    public AdmissionFailure Kind { get; } = kind;
}

public enum AdmissionFailure { ContextTooLong, QueueFull, ShuttingDown, InvalidRequest, TooManySequences }

/// <summary>
/// The continuous-batching engine. One thread owns the scheduler, blocks and model; requests arrive through
/// <see cref="Submit"/> from any thread and read their tokens from their sequence's channel. The loop never
/// waits on a client: a slow or gone reader only fills its own unbounded channel until it is aborted.
/// </summary>
public sealed class LlmEngine : IDisposable
{
    private readonly IModelRunner _runner;
    private readonly BlockManager _blocks;
    private readonly Scheduler _scheduler;
    private readonly Sampler _sampler = new();
    private readonly ConcurrentQueue<Sequence> _incoming = new();
    private readonly ConcurrentQueue<Sequence> _aborts = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    private readonly int[] _eos;
    private volatile bool _stopping;
    private volatile bool _admissionClosed;
    private volatile bool _abortAll;
    private volatile EngineStats _stats;
    private int _pending;
    private long _promptTokens, _generationTokens, _steps, _specDrafts, _specDraftTokens, _specAccepted;
    private float[] _logits = [];
    private RowSampling[] _deviceRows = [];
    private int[] _deviceTokens = [];

    public LlmEngine(IModelRunner runner, EngineOptions options, Action<Exception>? onFault = null)
    {
        _runner = runner;
        Options = options;
        _eos = runner.Config.EosTokenIds;
        _blocks = new BlockManager(runner.NumBlocks, runner.BlockSize, options.EnablePrefixCaching, runner.CopyBlock);
        if (options.MtpDrafting && !runner.DraftsWithMtp) throw new ArgumentException("MTP drafting needs a runner whose model was loaded with its MTP layer", nameof(options));
        if (options.MtpDrafting && options.Speculation is not null) throw new ArgumentException("one speculative method at a time: MTP or prompt lookup", nameof(options));
        Func<Sequence, int, int[]?>? draft = options.Speculation is { } spec ? (seq, budget) => Draft(spec, seq, budget)
            : options.MtpDrafting ? MtpDraft : null;
        _scheduler = new Scheduler(_blocks, options.MaxNumSeqs, options.MaxNumBatchedTokens, draft);
        _stats = Snapshot();
        OnFault = onFault;
        _thread = new Thread(Loop) { IsBackground = true, Name = "glm-engine" };
        _thread.Start();
    }

    public EngineOptions Options { get; }
    public IModelRunner Runner => _runner;
    public EngineStats Stats => _stats;
    public IReadOnlyList<int> EosTokenIds => _eos;
    public Action<Exception>? OnFault { get; }
    /// <summary>Tokens the KV pool can hold in all.</summary>
    public long CapacityTokens => (long)_blocks.NumBlocks * _blocks.BlockSize;

    /// <summary>Queues a request. Throws <see cref="AdmissionException"/> when it can never run or the queue is full.</summary>
    public Sequence Submit(IReadOnlyList<int> prompt, SamplingParams sampling) => SubmitAll([(prompt, sampling)])[0];

    /// <summary>Places for sequences: running plus waiting.</summary>
    public int SequenceCapacity => Options.MaxWaiting + Options.MaxNumSeqs;

    /// <summary>
    /// Queues several sequences (one request's prompts × n) all or none: every one is validated first, then their
    /// places are reserved in one step. More sequences than the engine can ever hold is an
    /// <see cref="AdmissionFailure.TooManySequences"/> failure (the client must split the request), not "queue full".
    /// </summary>
    public IReadOnlyList<Sequence> SubmitAll(IReadOnlyList<(IReadOnlyList<int> Prompt, SamplingParams Sampling)> requests)
    {
        if (_stopping || _admissionClosed) throw new AdmissionException("The server is shutting down.", AdmissionFailure.ShuttingDown);
        if (requests.Count == 0) throw new AdmissionException("The request holds no prompt.", AdmissionFailure.InvalidRequest);
        int maxLen = (int)Math.Min(Options.MaxModelLen, CapacityTokens);
        foreach (var (prompt, sampling) in requests)
        {
            if (prompt.Count == 0) throw new AdmissionException("The prompt is empty.", AdmissionFailure.InvalidRequest);
            if (prompt.Count + sampling.MaxTokens > maxLen)
                throw new AdmissionException(
                    $"This model's maximum context length is {maxLen} tokens. However, you requested {prompt.Count + sampling.MaxTokens} tokens " +
                    $"({prompt.Count} in the messages, {sampling.MaxTokens} in the completion). Please reduce the length of the messages or completion.",
                    AdmissionFailure.ContextTooLong);
            foreach (int t in prompt)
                if ((uint)t >= (uint)_runner.Config.VocabSize)
                    throw new AdmissionException($"Token id {t} is out of vocabulary (size {_runner.Config.VocabSize}).", AdmissionFailure.InvalidRequest);
        }
        int count = requests.Count, capacity = SequenceCapacity;
        if (count > capacity)
            throw new AdmissionException(
                $"The request needs {count} sequences (prompts × n), more than this server ever holds at once ({Options.MaxNumSeqs} running + " +
                $"{Options.MaxWaiting} waiting = {capacity}, set by --max-num-seqs and --max-queue-len); split it into smaller requests.",
                AdmissionFailure.TooManySequences);
        for (int pending = Volatile.Read(ref _pending); ; pending = Volatile.Read(ref _pending))
        {
            if (pending + count > capacity)
                throw new AdmissionException("The server is at capacity; retry shortly.", AdmissionFailure.QueueFull);
            if (Interlocked.CompareExchange(ref _pending, pending + count, pending) == pending) break;
        }
        var sequences = new Sequence[count];
        for (int i = 0; i < count; i++)
        {
            var (prompt, sampling) = requests[i];
            sequences[i] = new Sequence(prompt, sampling, sampling.Seed ?? (ulong)Random.Shared.NextInt64());
        }
        foreach (var seq in sequences) _incoming.Enqueue(seq);
        _wake.Release();
        return sequences;
    }

    /// <summary>Asks the loop to drop a sequence (client gone, stop string matched); its blocks are freed next step.</summary>
    public void Abort(Sequence seq)
    {
        if (seq.Status == SequenceStatus.Finished || seq.AbortRequested) return;
        seq.AbortRequested = true;
        _aborts.Enqueue(seq);
        _wake.Release();
    }

    private void Loop()
    {
        while (!_stopping)
        {
            try
            {
                Drain();
                var work = _scheduler.Schedule();
                if (work.Count == 0)
                {
                    _stats = Snapshot();
                    _wake.Wait(200);
                    continue;
                }
                Step(work);
                _stats = Snapshot();
            }
            catch (Exception e)
            {
                // A fault fails the sequences of this step, never the process; the pool stays consistent.
                OnFault?.Invoke(e);
                foreach (var seq in _scheduler.Running.ToList()) Finish(seq, FinishReason.Abort);
            }
        }
        Drain();
        foreach (var seq in _scheduler.Running.Concat(_scheduler.Waiting).ToList()) Finish(seq, FinishReason.Abort);
    }

    private void Drain()
    {
        while (_incoming.TryDequeue(out var seq))
        {
            if (seq.AbortRequested) { Finish(seq, FinishReason.Abort, scheduled: false); continue; }
            _scheduler.Add(seq);
        }
        while (_aborts.TryDequeue(out var seq))
            if (seq.Status != SequenceStatus.Finished) Finish(seq, FinishReason.Abort);
        if (_abortAll)
        {
            _abortAll = false;
            foreach (var seq in _scheduler.Running.Concat(_scheduler.Waiting).ToList()) Finish(seq, FinishReason.Abort);
        }
    }

    private void Step(List<ScheduledSequence> work)
    {
        int total = 0;
        foreach (var w in work) total += w.Tokens;
        var tokens = new int[total];
        var inputs = new SequenceInput[work.Count];
        var computedBefore = new int[work.Count];
        int at = 0;
        int logitRows = 0;
        for (int i = 0; i < work.Count; i++)
        {
            var (seq, n, draft) = work[i];
            computedBefore[i] = seq.NumComputed;
            if (draft is null) seq.Tokens.CopyTo(seq.NumComputed, tokens, at, n);
            else
            {
                // Speculative: the last token, then the draft, every one of them with logits to verify against.
                tokens[at] = seq.Tokens[seq.NumComputed];
                draft.CopyTo(tokens, at + 1);
            }
            inputs[i] = new SequenceInput(at, n, seq.NumComputed, seq.BlockTable, draft is null ? 1 : n);
            logitRows += inputs[i].LogitRows;
            if (seq.NumComputed < seq.PromptLength) _promptTokens += Math.Min(n, seq.PromptLength - seq.NumComputed);
            at += n;
        }
        int vocab = _runner.Config.VocabSize;
        var batch = new ForwardBatch(tokens, inputs);
        // On a device that samples, a step returns one id per sequence instead of its logits, when every sequence
        // sampled this step draws from plain temperature / top-k / top-p / min-p (anything else needs the logits).
        // (Not with MTP drafting: the MTP layer reads the hidden states a host-sampled forward pass keeps.)
        bool onDevice = _runner.SamplesOnDevice && !Options.MtpDrafting && work.TrueForAll(w => w.Draft is null && (w.Sequence.NumComputed + w.Tokens < w.Sequence.Length || DeviceSamplable(w.Sequence)));
        if (onDevice)
        {
            if (_deviceRows.Length < work.Count) { _deviceRows = new RowSampling[work.Count]; _deviceTokens = new int[work.Count]; }
            for (int i = 0; i < work.Count; i++)
            {
                var (seq, n, _) = work[i];
                var p = seq.Sampling;
                bool samples = seq.NumComputed + n >= seq.Length;
                // The uniform number is drawn as the host sampler draws it: once per sampled, non-greedy token.
                _deviceRows[i] = !samples || p.IsGreedy ? new RowSampling(0, 0, 1, 0, 0)
                    : new RowSampling(p.Temperature, p.TopK, p.TopP, p.MinP, seq.Random.NextDouble());
            }
            _runner.ForwardSample(batch, _deviceRows.AsSpan(0, work.Count), _deviceTokens);
        }
        else
        {
            if (_logits.Length < (long)logitRows * vocab) _logits = new float[logitRows * vocab];
            _runner.Forward(batch, _logits);
        }
        _steps++;

        for (int i = 0, row = 0; i < work.Count; row += inputs[i].LogitRows, i++)
        {
            var (seq, n, draft) = work[i];
            if (draft is not null)
            {
                Verify(seq, draft, row, vocab);
                continue;
            }
            seq.NumComputed += n;
            _blocks.RegisterComputedBlocks(seq);
            if (seq.NumComputed < seq.Length) continue; // a prefill chunk with more to come
            var (token, logprob, top) = onDevice ? (_deviceTokens[i], null, null) : _sampler.Sample(seq, _logits.AsSpan(row * vocab, vocab), _eos);
            Emit(seq, token, logprob, top);
        }
        if (Options.MtpDrafting) DraftWithMtp(work, inputs, computedBefore);
    }

    /// <summary>
    /// MTP drafting, after the step's tokens are sampled: for every position whose KV this step computed and kept
    /// (a prefill chunk, a decoded token, a verified draft's accepted prefix), the MTP layer reads that position's
    /// final hidden state and the token after it, so its own KV follows the sequence; a sequence now decoding gets
    /// its draft for the token after the one just sampled. Finished sequences (their blocks already freed) are left out.
    /// </summary>
    private void DraftWithMtp(List<ScheduledSequence> work, SequenceInput[] inputs, int[] computedBefore)
    {
        var ids = new List<int>();
        var hiddenRows = new List<int>();
        var segments = new List<SequenceInput>();
        var drafting = new List<Sequence>();
        for (int i = 0; i < work.Count; i++)
        {
            var seq = work[i].Sequence;
            seq.MtpDraft = -1;
            if (seq.Status == SequenceStatus.Finished) continue;
            int before = computedBefore[i], count = seq.NumComputed - before;
            if (count <= 0) continue;
            // A draft is worth making for a decoding sequence with room for a token after the next one.
            bool wants = seq.NumComputed == seq.Length - 1 && DraftLimit(seq, 1) > 0;
            segments.Add(new SequenceInput(ids.Count, count, before, seq.BlockTable, wants ? 1 : 0));
            for (int k = 0; k < count; k++)
            {
                ids.Add(seq.Tokens[before + k + 1]);
                hiddenRows.Add(inputs[i].Start + k);
            }
            if (wants) drafting.Add(seq);
        }
        if (segments.Count == 0) return;
        var drafts = new int[drafting.Count];
        _runner.ProposeMtpDrafts(new ForwardBatch(ids.ToArray(), segments), hiddenRows.ToArray(), drafts);
        for (int d = 0; d < drafting.Count; d++)
        {
            drafting[d].MtpDraft = drafts[d];
            drafting[d].MtpDraftPosition = drafting[d].Length; // the token after the one just sampled
        }
    }

    /// <summary>The MTP layer's draft from the last step, while it is still the one for the sequence's next position.</summary>
    private int[]? MtpDraft(Sequence seq, int budget)
    {
        if (seq.MtpDraft < 0 || seq.MtpDraftPosition != seq.Length || DraftLimit(seq, budget) < 1) return null;
        return [seq.MtpDraft];
    }

    /// <summary>
    /// Speculative decoding's check: the step computed the last token and the draft, so logits row k is what
    /// decoding would see after the draft's first k tokens. Tokens are sampled row by row exactly as decoding
    /// samples them (same sampler, same generator draws, same history); while each equals the draft token it
    /// follows, that draft token's KV is already right and the next row stands. The first difference ends it.
    /// </summary>
    private void Verify(Sequence seq, int[] draft, int row, int vocab)
    {
        _specDrafts++;
        _specDraftTokens += draft.Length;
        seq.NumComputed += 1; // the last token's KV
        for (int k = 0; ; k++)
        {
            _blocks.RegisterComputedBlocks(seq); // before a finishing token frees the blocks, as for plain decoding
            var (token, logprob, top) = _sampler.Sample(seq, _logits.AsSpan((row + k) * vocab, vocab), _eos);
            if (Emit(seq, token, logprob, top) || k == draft.Length || token != draft[k]) break;
            seq.NumComputed += 1; // draft[k] was right: its KV, written this step, stands
            _specAccepted++;
        }
    }

    /// <summary>Appends a sampled token and reports it; true when it finished the sequence.</summary>
    private bool Emit(Sequence seq, int token, float? logprob, TokenLogprob[]? top)
    {
        seq.Tokens.Add(token);
        _generationTokens++;
        var reason = FinishReason.None;
        int? stopToken = null;
        if (!seq.Sampling.IgnoreEos && _eos.Contains(token)) { reason = FinishReason.Stop; stopToken = token; }
        else if (seq.Sampling.StopTokenIds.Contains(token)) { reason = FinishReason.Stop; stopToken = token; }
        else if (seq.GeneratedCount >= seq.Sampling.MaxTokens || seq.Length >= Options.MaxModelLen) reason = FinishReason.Length;
        seq.Output.Writer.TryWrite(new SequenceOutput(token, logprob, top, reason, stopToken));
        if (reason != FinishReason.None) Finish(seq, reason, alreadyReported: true);
        return reason != FinishReason.None;
    }

    /// <summary>A prompt-lookup draft for a decoding sequence, no longer than <see cref="DraftLimit"/> allows.</summary>
    private int[]? Draft(NgramProposer proposer, Sequence seq, int budget)
    {
        int limit = DraftLimit(seq, budget);
        return limit > 0 ? proposer.Propose(seq.Tokens, limit) : null;
    }

    /// <summary>The most draft tokens a decoding sequence can use: after the next token, its remaining tokens, the context and the step's budget.</summary>
    private int DraftLimit(Sequence seq, int budget) =>
        Math.Min(budget, Math.Min(seq.Sampling.MaxTokens - seq.GeneratedCount - 1, Options.MaxModelLen - seq.Length));

    /// <summary>Whether the device's sampler draws this sequence's next token exactly as <see cref="Sampler"/> would.</summary>
    private static bool DeviceSamplable(Sequence seq)
    {
        var p = seq.Sampling;
        return p.Constraint is null && p.Logprobs is null && p.LogitBias is null && p.RepetitionPenalty == 1f && p.PresencePenalty == 0 &&
               p.FrequencyPenalty == 0 && seq.GeneratedCount >= p.MinTokens;
    }

    private void Finish(Sequence seq, FinishReason reason, bool scheduled = true, bool alreadyReported = false)
    {
        if (seq.Status == SequenceStatus.Finished) return;
        if (scheduled) _scheduler.Remove(seq);
        seq.Status = SequenceStatus.Finished;
        seq.FinishReason = reason;
        if (!alreadyReported) seq.Output.Writer.TryWrite(new SequenceOutput(-1, null, null, reason));
        seq.Output.Writer.TryComplete();
        Interlocked.Decrement(ref _pending);
    }

    private EngineStats Snapshot() => new(
        _scheduler.RunningCount, _scheduler.WaitingCount, _blocks.Usage, _blocks.FreeBlocks, _blocks.NumBlocks,
        _blocks.PrefixQueries, _blocks.PrefixHits, _promptTokens, _generationTokens, _scheduler.Preemptions, _steps,
        _specDrafts, _specDraftTokens, _specAccepted);

    /// <summary>For tests: whether every block is back in the pool with consistent accounting (call when idle).</summary>
    public bool PoolIsConsistent(out string problem) => _blocks.AccountingIsExact(out problem);

    /// <summary>Stops admitting; the loop aborts what is left and exits.</summary>
    public void Stop()
    {
        _stopping = true;
        _wake.Release();
        _thread.Join(TimeSpan.FromSeconds(10));
    }

    /// <summary>Aborts every sequence in flight (the end of a shutdown's grace period); admission is unaffected.</summary>
    public void AbortAll()
    {
        _abortAll = true;
        _wake.Release();
    }

    /// <summary>Stops admitting new requests but keeps serving those in flight (graceful shutdown).</summary>
    public void StopAdmitting() => _admissionClosed = true;

    public bool AdmissionClosed => _admissionClosed;

    /// <summary>Requests admitted and not yet finished.</summary>
    public int InFlight => Volatile.Read(ref _pending);

    public void Dispose()
    {
        Stop();
        _runner.Dispose();
        _wake.Dispose();
    }
}
