using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;
using Glm.Kernels.Device;
using Glm.Models.Architectures;

namespace Glm.Models.Inference;

/// <summary>
/// Runs one sequence through a model with its own small paged cache: prefill the prompt, then one token per step.
/// The engine batches many sequences; this is the direct path for offline checks and evaluation.
/// </summary>
public sealed class SequenceRunner : IDisposable
{
    private readonly CausalLM _model;
    private readonly DeviceKvCache _cache;
    private readonly List<int> _blocks = [];
    private int _length;

    public SequenceRunner(CausalLM model, int maxTokens, KvCacheDType kvDType = KvCacheDType.F32, int blockSize = 16, KvCacheDType? indexerKvDType = null)
    {
        _model = model;
        int blocks = (maxTokens + blockSize - 1) / blockSize;
        _cache = model.CreateKvCache(kvDType, Math.Max(blocks, 1), blockSize, indexerKvDType);
        for (int b = 0; b < blocks; b++) _blocks.Add(b);
    }

    public int Length => _length;

    /// <summary>Feeds tokens; returns logits for the last one (or for each when <paramref name="allLogits"/>).</summary>
    public float[] Feed(ReadOnlySpan<int> tokens, bool allLogits = false)
    {
        if (_length + tokens.Length > _blocks.Count * _cache.BlockSize)
            throw new InvalidOperationException($"sequence of {_length + tokens.Length} tokens exceeds the runner's capacity");
        var batch = new ForwardBatch(tokens.ToArray(), [new SequenceInput(0, tokens.Length, _length, _blocks)], allLogits);
        var logits = new float[batch.LogitRows * _model.VocabSize];
        _model.Forward(batch, _cache, logits);
        _length += tokens.Length;
        return logits;
    }

    /// <summary>Greedy continuation of <paramref name="prompt"/> (EOS ignored), one forward per generated token.</summary>
    public static int[] Greedy(CausalLM model, ReadOnlySpan<int> prompt, int maxNewTokens, KvCacheDType kvDType = KvCacheDType.F32)
    {
        using var runner = new SequenceRunner(model, prompt.Length + maxNewTokens, kvDType);
        var output = new int[maxNewTokens];
        var logits = runner.Feed(prompt);
        for (int i = 0; i < maxNewTokens; i++)
        {
            output[i] = Activations.ArgMax(logits);
            if (i + 1 < maxNewTokens) logits = runner.Feed([output[i]]);
        }
        return output;
    }

    public void Dispose() => _cache.Dispose();
}
