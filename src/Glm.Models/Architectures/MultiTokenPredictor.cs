using Glm.Kernels.Device;

namespace Glm.Models.Architectures;

/// <summary>
/// The multi-token-prediction layer GLM-4.5+ and GLM-4.7-Flash checkpoints carry at layer index
/// num_hidden_layers (DeepSeek-V3's MTP module, as vLLM's Glm4MoeMTP / DeepSeekMTP run it; transformers does not
/// use it). At position p it reads the main model's final hidden state h_p (after model.norm) and the embedding
/// of the next token t_{p+1}, and predicts t_{p+2}:
/// x = eh_proj(cat[enorm(embed(t_{p+1})), hnorm(h_p)]); x = mtp_block(x) (a decoder layer with its own KV, the
/// cache's last layer); logits = shared_head.head(shared_head.norm(x)). As vLLM, the embedding at position 0 is
/// zeroed. embed_tokens is the main model's; shared_head.head is too when the checkpoint has none of its own.
/// </summary>
public sealed class MultiTokenPredictor(
    IWorker worker, DeviceVector enorm, DeviceVector hnorm, DeviceVector zeroNorm, Linear ehProj, DecoderLayer block,
    DeviceVector headNorm, DeviceWeight? ownHead, int cacheLayer, float eps) : IDisposable
{
    /// <summary>The KV cache layer the MTP block writes and reads (num_hidden_layers: one past the decoder layers).</summary>
    public int CacheLayer { get; } = cacheLayer;
    public DecoderLayer Block { get; } = block;
    public Linear EhProj { get; } = ehProj;
    /// <summary>shared_head.head when the checkpoint carries one; null: the main model's lm_head.</summary>
    public DeviceWeight? OwnHead { get; } = ownHead;

    /// <summary>
    /// Runs the layer over <paramref name="batch"/>, whose token ids are the next tokens (t_{p+1} at position p)
    /// and whose rows line up with <paramref name="previousHidden"/> (h_p); writes the MTP KV of every row and
    /// fills <paramref name="logits"/> with [batch.LogitRows, vocab] for the rows that want a draft.
    /// </summary>
    public void Forward(ForwardBatch batch, Tensor previousHidden, DeviceKvCache cache, DeviceWeight embedding, DeviceWeight lmHead, Span<float> logits)
    {
        if (previousHidden.Rows != batch.TokenCount) throw new ArgumentException("one previous hidden state per token", nameof(previousHidden));
        int vocab = lmHead.Rows;
        if (logits.Length < (long)batch.LogitRows * vocab) throw new ArgumentException("logits buffer too small", nameof(logits));
        var head = OwnHead ?? lmHead;
        bool atZero = false;
        foreach (var s in batch.Sequences) atZero |= s.FirstPosition == 0 && s.Count > 0;
        if (!atZero)
        {
            Pass(batch, previousHidden, cache, embedding, head, logits, zeroEmbeddings: false);
            return;
        }

        // Position 0's embedding is zeroed: its rows run first, on their own (their KV is then in the cache for
        // the rows after them), through enorm with a zero weight; the other rows follow as usual.
        var firstIds = new List<int>();
        var firstRows = new List<int>();
        var firstSeqs = new List<SequenceInput>();
        var restIds = new List<int>();
        var restRows = new List<int>();
        var restSeqs = new List<SequenceInput>();
        var logitRowOf = new List<(bool First, int Row)>(); // where each sequence's logit row lands in the output
        int firstLogits = 0, restLogits = 0;
        foreach (var s in batch.Sequences)
        {
            int skip = s.FirstPosition == 0 && s.Count > 0 ? 1 : 0;
            if (skip == 1)
            {
                bool wants = s.Count == 1 && s.LogitRows > 0;
                firstSeqs.Add(new SequenceInput(firstIds.Count, 1, 0, s.BlockTable, wants ? 1 : 0));
                firstIds.Add(batch.TokenIds[s.Start]);
                firstRows.Add(s.Start);
                if (wants) logitRowOf.Add((true, firstLogits++));
            }
            if (s.Count - skip > 0)
            {
                if (s.LogitRows > 1) throw new ArgumentException("the MTP layer drafts from one row per sequence", nameof(batch));
                restSeqs.Add(new SequenceInput(restIds.Count, s.Count - skip, s.FirstPosition + skip, s.BlockTable, s.LogitRows));
                for (int k = skip; k < s.Count; k++)
                {
                    restIds.Add(batch.TokenIds[s.Start + k]);
                    restRows.Add(s.Start + k);
                }
                if (s.LogitRows > 0) logitRowOf.Add((false, restLogits++));
            }
        }
        var firstLogitsBuffer = new float[firstLogits * vocab];
        var restLogitsBuffer = new float[restLogits * vocab];
        using (var h = worker.GatherRows(previousHidden, firstRows.ToArray()))
            Pass(new ForwardBatch(firstIds.ToArray(), firstSeqs), h, cache, embedding, head, firstLogitsBuffer, zeroEmbeddings: true);
        if (restSeqs.Count > 0)
            using (var h = worker.GatherRows(previousHidden, restRows.ToArray()))
                Pass(new ForwardBatch(restIds.ToArray(), restSeqs), h, cache, embedding, head, restLogitsBuffer, zeroEmbeddings: false);
        for (int r = 0; r < logitRowOf.Count; r++)
        {
            var (first, row) = logitRowOf[r];
            (first ? firstLogitsBuffer : restLogitsBuffer).AsSpan(row * vocab, vocab).CopyTo(logits.Slice(r * vocab, vocab));
        }
    }

    private void Pass(ForwardBatch batch, Tensor previousHidden, DeviceKvCache cache, DeviceWeight embedding, DeviceWeight head, Span<float> logits, bool zeroEmbeddings)
    {
        int h = previousHidden.Cols, rows = batch.TokenCount;
        using var step = worker.PrepareStep(DsaKvCache.MainOf(cache), batch.StepSequences(), batch.Positions);

        // cat([enorm(inputs_embeds), hnorm(previous_hidden_states)]), each normed straight into its half.
        using var concatenated = worker.Empty(rows, 2 * h);
        using (var embeds = worker.Embedding(embedding, batch.TokenIds))
        {
            // enorm(0) is 0, and so is enorm with a zero weight of any finite embedding.
            worker.RmsNorm(embeds.WholeRows, zeroEmbeddings ? zeroNorm : enorm, eps, concatenated.WholeRows.Slice(0, h));
        }
        worker.RmsNorm(previousHidden.WholeRows, hnorm, eps, concatenated.WholeRows.Slice(h, h));
        using var hiddenStates = EhProj.Forward(concatenated);
        Block.Forward(hiddenStates, step, cache, CacheLayer); // the residual stream, updated in place: residual + block output

        int wanted = batch.LogitRows;
        if (wanted == 0) return;
        using var last = worker.GatherRows(hiddenStates, batch.LogitRowIndices());
        using var normed = worker.RmsNorm(last, headNorm, eps);
        worker.LinearToHost(normed, head, logits);
    }

    /// <summary>Every weight matrix of the layer.</summary>
    public IEnumerable<DeviceWeight> Weights()
    {
        yield return EhProj.Weight;
        foreach (var w in Block.Weights()) yield return w;
        if (OwnHead is not null) yield return OwnHead;
    }

    public void Dispose()
    {
        enorm.Dispose();
        hnorm.Dispose();
        zeroNorm.Dispose();
        EhProj.Dispose();
        Block.Dispose();
        headNorm.Dispose();
        OwnHead?.Dispose();
    }
}
