using Glm.Kernels.Cpu;

namespace Glm.Models.Architectures;

/// <summary>
/// GLM-4.5 routing: sigmoid scores, a correction bias used only to choose, group-limited top-k, weights from the
/// uncorrected scores, optionally normalised, times the routed scaling factor. Computed in float32.
/// </summary>
public sealed class MoeRouter
{
    private readonly float[] _weight; // [experts, hidden]
    private readonly float[] _correctionBias;
    private readonly int _experts, _hidden, _topK, _groups, _topkGroup;
    private readonly bool _normTopk;
    private readonly float _scaling;

    public MoeRouter(float[] weight, float[]? correctionBias, ModelConfig c)
    {
        _experts = c.NumRoutedExperts;
        _hidden = c.HiddenSize;
        _weight = weight;
        _correctionBias = correctionBias ?? new float[_experts];
        _topK = c.NumExpertsPerToken;
        _groups = c.NumGroups;
        _topkGroup = c.TopkGroup;
        _normTopk = c.NormTopkProb;
        _scaling = c.RoutedScalingFactor;
        if (_experts % _groups != 0) throw new ModelLoadException($"n_routed_experts {_experts} is not divisible by n_group {_groups}.");
    }

    public int TopK => _topK;

    /// <summary>Chooses experts for one token: <paramref name="experts"/> ascending by index, with their weights.</summary>
    public void Route(ReadOnlySpan<float> x, Span<int> experts, Span<float> weights)
    {
        Span<float> scores = stackalloc float[_experts];
        Span<float> choice = stackalloc float[_experts];
        for (int e = 0; e < _experts; e++)
        {
            scores[e] = Activations.Sigmoid(Dot.F32(x, _weight.AsSpan(e * _hidden, _hidden)));
            choice[e] = scores[e] + _correctionBias[e];
        }
        if (_groups > 1) MaskGroups(choice);

        // Top-k by corrected score (first index wins a tie, as a stable descending sort would).
        Span<bool> taken = stackalloc bool[_experts];
        for (int k = 0; k < _topK; k++)
        {
            int best = -1;
            for (int e = 0; e < _experts; e++)
                if (!taken[e] && (best < 0 || choice[e] > choice[best])) best = e;
            taken[best] = true;
        }
        int n = 0;
        float sum = 0;
        for (int e = 0; e < _experts; e++)
        {
            if (!taken[e]) continue;
            experts[n] = e;
            weights[n] = scores[e];
            sum += scores[e];
            n++;
        }
        for (int k = 0; k < _topK; k++)
        {
            if (_normTopk) weights[k] /= sum + 1e-20f;
            weights[k] *= _scaling;
        }
    }

    private void MaskGroups(Span<float> choice)
    {
        int perGroup = _experts / _groups;
        Span<float> groupScore = stackalloc float[_groups];
        for (int g = 0; g < _groups; g++)
        {
            float first = float.NegativeInfinity, second = float.NegativeInfinity;
            foreach (float v in choice.Slice(g * perGroup, perGroup))
            {
                if (v > first) { second = first; first = v; }
                else if (v > second) second = v;
            }
            groupScore[g] = perGroup >= 2 ? first + second : first;
        }
        Span<bool> keep = stackalloc bool[_groups];
        for (int k = 0; k < _topkGroup; k++)
        {
            int best = -1;
            for (int g = 0; g < _groups; g++)
                if (!keep[g] && (best < 0 || groupScore[g] > groupScore[best])) best = g;
            keep[best] = true;
        }
        for (int g = 0; g < _groups; g++)
            if (!keep[g]) choice.Slice(g * perGroup, perGroup).Fill(float.NegativeInfinity);
    }
}
