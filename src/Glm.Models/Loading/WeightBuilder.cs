using Glm.Kernels.Cpu;
using Glm.Kernels.Formats;

namespace Glm.Models.Loading;

/// <summary>
/// Turns checkpoint tensors into weight matrices. BF16 tensors are used in place from the mapped file; F16 and
/// F32 become float32; FP8 tensors are dequantized with their scales (block-wise weight_scale_inv, or
/// per-channel / per-tensor weight_scale).
/// </summary>
public class WeightBuilder(Checkpoint checkpoint)
{
    public Checkpoint Checkpoint { get; } = checkpoint;

    /// <summary>The weight "{prefix}.weight" of shape [rows, cols].</summary>
    public virtual WeightMatrix Matrix(string prefix, int rows, int cols) => Plain(prefix, rows, cols);

    protected unsafe WeightMatrix Plain(string prefix, int rows, int cols)
    {
        var view = Checkpoint.Get(prefix + ".weight", rows, cols);
        return view.DType switch
        {
            TensorDType.BF16 => new Bf16Matrix((ushort*)view.Data, rows, cols, view.File),
            TensorDType.F8_E4M3 => new F32Matrix(DequantizeFp8(prefix, view, rows, cols), rows, cols),
            _ => new F32Matrix(Checkpoint.ReadFloats(view), rows, cols),
        };
    }

    private unsafe float[] DequantizeFp8(string prefix, TensorView view, int rows, int cols)
    {
        var values = new float[(long)rows * cols];
        for (long i = 0; i < values.Length; i++) values[i] = Fp8E4M3.ToFloat(view.Data[i]);
        if (Checkpoint.Contains(prefix + ".weight_scale_inv"))
        {
            var scaleView = Checkpoint.Get(prefix + ".weight_scale_inv");
            if (scaleView.Shape.Length != 2) throw new ModelLoadException($"'{prefix}.weight_scale_inv' must be 2-D, got {scaleView.ShapeText}.");
            int blockRows = (int)Math.Ceiling(rows / (double)scaleView.Shape[0]);
            int blockCols = (int)Math.Ceiling(cols / (double)scaleView.Shape[1]);
            // Block size is 128 in released checkpoints; derive it from the scale grid so any size works.
            var scales = Checkpoint.ReadFloats(scaleView);
            int gridCols = (int)scaleView.Shape[1];
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                    values[(long)r * cols + c] *= scales[r / blockRows * gridCols + c / blockCols];
        }
        else if (Checkpoint.Contains(prefix + ".weight_scale"))
        {
            var scales = Checkpoint.ReadFloats(prefix + ".weight_scale");
            for (int r = 0; r < rows; r++)
            {
                float s = scales.Length == 1 ? scales[0] : scales[r];
                for (int c = 0; c < cols; c++) values[(long)r * cols + c] *= s;
            }
        }
        return values;
    }

    public float[] Vector(string name, int length) => Checkpoint.ReadFloats(name, length);

    public float[]? OptionalVector(string name, int length) => Checkpoint.Contains(name) ? Checkpoint.ReadFloats(name, length) : null;
}
