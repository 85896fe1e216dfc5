using Glm.Kernels.Cpu;
using Glm.Models.Loading;

namespace Glm.Models.Quantization;

/// <summary>
/// Builds weights under a policy. Pre-quantized tensors load in their own format (never re-quantized); BF16/F16/F32
/// tensors are quantized on load one at a time, so peak memory is the final size plus one tensor in float32.
/// Records bytes per component for the startup summary.
/// </summary>
public sealed class QuantizingWeightBuilder(Checkpoint checkpoint, QuantizationPolicy policy)
    : WeightBuilder(checkpoint)
{
    private readonly Dictionary<string, (long Bytes, long Bf16Bytes, HashSet<string> Formats)> _components = new();

    public QuantizationPolicy Policy { get; } = policy;

    /// <summary>How every Int4 and Int8 matrix built here (quantized on load or pre-quantized) meets its activations.</summary>
    public Int4Activations Int4Activations { get; init; } = Int4Activations.Int8;

    public override WeightMatrix Matrix(string prefix, int rows, int cols)
    {
        var matrix = PreQuantized(prefix, rows, cols) ?? Quantize(prefix, rows, cols);
        if (matrix is Int4Matrix int4) int4.Activations = Int4Activations;
        if (matrix is Int8Matrix int8) int8.Activations = Int4Activations;
        Record(prefix, matrix);
        return matrix;
    }

    private WeightMatrix Quantize(string prefix, int rows, int cols)
    {
        var format = Policy.For(prefix);
        if (format.Kind == "keep") return Plain(prefix, rows, cols);
        var weights = Checkpoint.ReadFloats(prefix + ".weight", rows, cols);
        if (format.Kind == "int4")
        {
            // K not a multiple of the group: the next smaller group that divides it, and FP8 if none does.
            foreach (int group in new[] { format.GroupSize, 64, 32 })
                if (group <= format.GroupSize && Int4Matrix.Supports(cols, group))
                    return Int4Matrix.Quantize(weights, rows, cols, group, format.Symmetric);
            return Fp8Matrix.Quantize(weights, rows, cols, Fp8Scaling.PerChannel);
        }
        if (format.Kind == "int8") return Int8Matrix.Quantize(weights, rows, cols);
        return Fp8Matrix.Quantize(weights, rows, cols, format.Scaling);
    }

    private void Record(string prefix, WeightMatrix m)
    {
        string component = Component(prefix);
        var entry = _components.TryGetValue(component, out var e) ? e : (0, 0, new HashSet<string>());
        entry.Item3.Add(m.Format);
        _components[component] = (entry.Item1 + m.ByteSize, entry.Item2 + (long)m.Rows * m.Cols * 2, entry.Item3);
    }

    private static string Component(string prefix) => prefix switch
    {
        "model.embed_tokens" => "embeddings",
        "lm_head" => "lm_head",
        _ when prefix.Contains(".mlp.experts.") => "routed experts",
        _ when prefix.Contains(".shared_experts.") => "shared experts",
        _ when prefix.Contains(".self_attn.") => "attention",
        _ when prefix.Contains(".mlp.") => "dense MLP",
        _ => "other",
    };

    /// <summary>Lines for the startup summary: each component's formats and bytes, and the total against BF16.</summary>
    public IEnumerable<string> Summary()
    {
        foreach (var (name, (bytes, bf16, formats)) in _components.OrderByDescending(kv => kv.Value.Bytes))
            yield return $"{name,-15} {string.Join("+", formats.Order()),-24} {bytes / 1048576.0,10:F1} MiB ({(double)bytes / bf16:P0} of BF16)";
        long total = _components.Values.Sum(v => v.Bytes), totalBf16 = _components.Values.Sum(v => v.Bf16Bytes);
        yield return $"{"total",-15} {Policy.Name,-24} {total / 1048576.0,10:F1} MiB ({(double)total / totalBf16:P0} of BF16 {totalBf16 / 1048576.0:F1} MiB)";
    }
}
