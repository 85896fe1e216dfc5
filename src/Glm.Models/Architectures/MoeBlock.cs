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
        int k = _router.TopK, h = _hidden;
        var chosen = new int[rows * k];
        var weights = new float[rows * k];
        var perExpert = new List<int>[_experts.Length];
        for (int r = 0; r < rows; r++)
        {
            _router.Route(x.Slice(r * h, h), chosen.AsSpan(r * k, k), weights.AsSpan(r * k, k));
            for (int j = 0; j < k; j++) (perExpert[chosen[r * k + j]] ??= []).Add(r * k + j);
        }

        output[..(rows * h)].Clear();
        // Contributions are staged per (token, choice) so each token can add them in expert order afterwards.
        using var contributions = new PooledFloats((long)rows * k * h);
        for (int e = 0; e < _experts.Length; e++)
        {
            var picks = perExpert[e];
            if (picks is null) continue;
            using var gathered = new PooledFloats((long)picks.Count * h);
            using var result = new PooledFloats((long)picks.Count * h);
            for (int i = 0; i < picks.Count; i++) x.Slice(picks[i] / k * h, h).CopyTo(gathered.Span.Slice(i * h, h));
            _experts[e].Forward(gathered.Span, picks.Count, result.Span);
            for (int i = 0; i < picks.Count; i++)
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
        using var shared = new PooledFloats((long)rows * h);
        _shared.Forward(x, rows, shared.Span);
        for (int i = 0; i < rows * h; i++) output[i] += shared.Span[i];
    }

    public void Dispose()
    {
        foreach (var e in _experts) e.Dispose();
        _shared.Dispose();
    }
}
