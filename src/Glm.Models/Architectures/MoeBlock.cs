namespace Glm.Models.Architectures;

/// <summary>
/// Routed experts plus shared experts. Tokens are grouped by expert so each expert runs one batched matmul;
/// each token sums its experts in ascending expert order, as transformers does, whatever the batch.
/// </summary>
public sealed class MoeBlock : IDisposable
{
    private readonly MoeRouter _router;
    private readonly DenseMlp[] _experts;
    private readonly DenseMlp _shared;
    private readonly int _hidden;

    public MoeBlock(MoeRouter router, DenseMlp[] experts, DenseMlp shared, int hidden)
    {
        _router = router;
        _experts = experts;
        _shared = shared;
        _hidden = hidden;
    }

    public IReadOnlyList<DenseMlp> Experts => _experts;
    public DenseMlp Shared => _shared;

    public void Forward(ReadOnlySpan<float> x, int rows, Span<float> output)
    {
        int k = _router.TopK, h = _hidden, experts = _experts.Length;
        using var chosenBuffer = new Pooled<int>((long)rows * k);
        using var weightBuffer = new Pooled<float>((long)rows * k);
        var chosen = chosenBuffer.Span;
        var weights = weightBuffer.Span;
        for (int r = 0; r < rows; r++) _router.Route(x.Slice(r * h, h), chosen.Slice(r * k, k), weights.Slice(r * k, k));

        // Group the (token, choice) picks by expert with a stable counting sort: expert e's picks are
        // order[start[e]..start[e + 1]), ascending, with no per-step lists.
        using var startBuffer = new Pooled<int>(experts + 1);
        using var orderBuffer = new Pooled<int>((long)rows * k);
        var start = startBuffer.Span;
        var order = orderBuffer.Span;
        start.Clear();
        foreach (int e in chosen) start[e + 1]++;
        for (int e = 0; e < experts; e++) start[e + 1] += start[e];
        using (var fillBuffer = new Pooled<int>(experts))
        {
            var fill = fillBuffer.Span;
            start[..experts].CopyTo(fill);
            for (int pick = 0; pick < chosen.Length; pick++) order[fill[chosen[pick]]++] = pick;
        }

        output[..(rows * h)].Clear();
        // Contributions are staged per (token, choice) so each token can add them in expert order afterwards.
        using var contributions = new Pooled<float>((long)rows * k * h);
        for (int e = 0; e < experts; e++)
        {
            var picks = order[start[e]..start[e + 1]];
            if (picks.IsEmpty) continue;
            using var gathered = new Pooled<float>((long)picks.Length * h);
            using var result = new Pooled<float>((long)picks.Length * h);
            for (int i = 0; i < picks.Length; i++) x.Slice(picks[i] / k * h, h).CopyTo(gathered.Span.Slice(i * h, h));
            _experts[e].Forward(gathered.Span, picks.Length, result.Span);
            for (int i = 0; i < picks.Length; i++)
            {
                var dst = contributions.Span.Slice(picks[i] * h, h);
                var src = result.Span.Slice(i * h, h);
                float w = weights[picks[i]];
                for (int d = 0; d < h; d++) dst[d] = src[d] * w;
            }
        }
        for (int r = 0; r < rows; r++)
        {
            var o = output.Slice(r * h, h);
            for (int j = 0; j < k; j++) // chosen[] is ascending by expert within a token
            {
                var c = contributions.Span.Slice((r * k + j) * h, h);
                for (int d = 0; d < h; d++) o[d] += c[d];
            }
        }
        using var shared = new Pooled<float>((long)rows * h);
        _shared.Forward(x, rows, shared.Span);
        for (int i = 0; i < rows * h; i++) output[i] += shared.Span[i];
    }

    public void Dispose()
    {
        foreach (var e in _experts) e.Dispose();
        _shared.Dispose();
    }
}
