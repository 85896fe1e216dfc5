using Glm.Kernels.Cpu;
using Glm.Models.Quantization;

namespace Glm.Models.Loading;

/// <summary>
/// Turns checkpoint tensors into weight matrices as stored: BF16 is used in place from the mapped file, F16 and
/// F32 become float32, and pre-quantized tensors (FP8, pack-quantized Int4, AWQ) keep their codes and scales.
/// </summary>
public class WeightBuilder(Checkpoint checkpoint)
{
    public Checkpoint Checkpoint { get; } = checkpoint;

    private readonly PreQuantizedConfig? _preQuantized = PreQuantizedConfig.Load(checkpoint.Directory);

    /// <summary>The weight of module <paramref name="prefix"/> with shape [rows, cols].</summary>
    public virtual WeightMatrix Matrix(string prefix, int rows, int cols) => PreQuantized(prefix, rows, cols) ?? Plain(prefix, rows, cols);

    /// <summary>The module's weight if the checkpoint stores it pre-quantized, else null.</summary>
    protected WeightMatrix? PreQuantized(string prefix, int rows, int cols) => PreQuantizedLoader.TryLoad(Checkpoint, prefix, rows, cols, _preQuantized);

    protected unsafe WeightMatrix Plain(string prefix, int rows, int cols)
    {
        var view = Checkpoint.Get(prefix + ".weight", rows, cols);
        return view.DType switch
        {
            TensorDType.BF16 => new Bf16Matrix((ushort*)view.Data, rows, cols, view.File),
            _ => new F32Matrix(Checkpoint.ReadFloats(view), rows, cols),
        };
    }

    public float[] Vector(string name, int length) => Checkpoint.ReadFloats(name, length);

    public float[]? OptionalVector(string name, int length) => Checkpoint.Contains(name) ? Checkpoint.ReadFloats(name, length) : null;
}
