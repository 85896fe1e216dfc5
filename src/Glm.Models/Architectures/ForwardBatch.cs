using Glm.Kernels.Device;

namespace Glm.Models.Architectures;

/// <summary>
/// One sequence's part of a step: tokens [Start, Start + Count) of the batch at consecutive positions starting
/// at <see cref="FirstPosition"/>, whose KV lives in the blocks of <see cref="BlockTable"/>.
/// </summary>
/// <param name="LogitRows">how many of its last tokens want logits: 1 for generation, more when draft tokens are verified</param>
public sealed record SequenceInput(int Start, int Count, int FirstPosition, IReadOnlyList<int> BlockTable, int LogitRows = 1)
{
    public int ContextLength => FirstPosition + Count;
}

/// <summary>The tokens of one engine step, possibly from many sequences (prefill chunks and decodes mixed).</summary>
public sealed class ForwardBatch
{
    public ForwardBatch(int[] tokenIds, IReadOnlyList<SequenceInput> sequences, bool allLogits = false)
    {
        TokenIds = tokenIds;
        Sequences = sequences;
        AllLogits = allLogits;
        Positions = new int[tokenIds.Length];
        foreach (var s in sequences)
            for (int i = 0; i < s.Count; i++) Positions[s.Start + i] = s.FirstPosition + i;
    }

    public int[] TokenIds { get; }
    public int[] Positions { get; }
    public IReadOnlyList<SequenceInput> Sequences { get; }

    /// <summary>Logits for every token (evaluation) rather than the last token of each sequence (generation).</summary>
    public bool AllLogits { get; }

    public int TokenCount => TokenIds.Length;
    public int LogitRows => AllLogits ? TokenIds.Length : Sequences.Sum(s => s.LogitRows);

    /// <summary>Each sequence's rows, positions and blocks, as a worker's <see cref="IWorker.PrepareStep"/> takes them.</summary>
    public StepSequence[] StepSequences()
    {
        var sequences = new StepSequence[Sequences.Count];
        for (int s = 0; s < sequences.Length; s++)
        {
            var seq = Sequences[s];
            sequences[s] = new StepSequence(seq.Start, seq.Count, seq.FirstPosition, seq.BlockTable);
        }
        return sequences;
    }

    /// <summary>The rows whose logits the step returns, in order: every row, or each sequence's last LogitRows.</summary>
    public int[] LogitRowIndices()
    {
        var rows = new int[LogitRows];
        if (AllLogits)
            for (int r = 0; r < rows.Length; r++) rows[r] = r;
        else
            for (int s = 0, r = 0; s < Sequences.Count; s++)
            {
                var seq = Sequences[s];
                for (int k = seq.Count - seq.LogitRows; k < seq.Count; k++) rows[r++] = seq.Start + k;
            }
        return rows;
    }
}
