using System.Text.Json;
using Glm.Kernels.Cpu;
using Glm.Models.Loading;

namespace Glm.Models.Quantization;

/// <summary>What config.json's quantization_config says about a pre-quantized checkpoint.</summary>
public sealed record PreQuantizedConfig(string Method, int BlockRows, int BlockCols)
{
    public static PreQuantizedConfig? Load(string modelDirectory)
    {
        string path = Path.Combine(modelDirectory, "config.json");
        if (!File.Exists(path)) return null;
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        if (!doc.RootElement.TryGetProperty("quantization_config", out var q) || q.ValueKind != JsonValueKind.Object) return null;
        string method = q.TryGetProperty("quant_method", out var m) ? m.GetString() ?? "" : "";
        int br = 128, bc = 128;
        if (q.TryGetProperty("weight_block_size", out var b) && b.ValueKind == JsonValueKind.Array && b.GetArrayLength() == 2)
            (br, bc) = (b[0].GetInt32(), b[1].GetInt32());
        return new PreQuantizedConfig(method, br, bc);
    }
}

/// <summary>
/// Loads weights stored pre-quantized, keeping their codes and scales (never re-quantizing):
/// FP8 block-wise (weight + weight_scale_inv), compressed-tensors float-quantized (weight + weight_scale),
/// compressed-tensors pack-quantized W4A16 (weight_packed + weight_scale [+ weight_zero_point]), compressed-tensors
/// int-quantized Int8 per channel (weight I8 + weight_scale [rows, 1]), and AWQ
/// (qweight + qzeros + scales). Formats are recognised by their tensor names, so modules a checkpoint left in
/// BF16 (its "ignore" list) load as plain weights.
/// </summary>
public static class PreQuantizedLoader
{
    /// <summary>AWQ packs 8 columns a word in the order 0,2,4,6,1,3,5,7: the bit shift of column c % 8.</summary>
    private static readonly int[] AwqShift = [0, 16, 4, 20, 8, 24, 12, 28];

    public static WeightMatrix? TryLoad(Checkpoint ckpt, string prefix, int rows, int cols, PreQuantizedConfig? config)
    {
        if (ckpt.Contains(prefix + ".weight_packed")) return LoadPackQuantized(ckpt, prefix, rows, cols);
        if (ckpt.Contains(prefix + ".qweight")) return LoadAwq(ckpt, prefix, rows, cols);
        if (!ckpt.Contains(prefix + ".weight")) return null;
        var dtype = ckpt.Get(prefix + ".weight").DType;
        if (dtype == TensorDType.F8_E4M3) return LoadFp8(ckpt, prefix, rows, cols, config);
        if (dtype == TensorDType.I8) return LoadInt8(ckpt, prefix, rows, cols);
        return null;
    }

    private static unsafe Int8Matrix LoadInt8(Checkpoint ckpt, string prefix, int rows, int cols)
    {
        var view = ckpt.Get(prefix + ".weight", rows, cols);
        if (!ckpt.Contains(prefix + ".weight_scale")) throw new ModelLoadException($"'{prefix}.weight' is I8 but '{prefix}.weight_scale' is missing.");
        var s = ckpt.Get(prefix + ".weight_scale");
        var scales = ckpt.ReadFloats(s);
        if (scales.Length != rows || ckpt.Contains(prefix + ".weight_zero_point"))
            throw new ModelLoadException($"'{prefix}': only symmetric Int8 with one scale per output channel loads (weight_scale [{rows}, 1]); got weight_scale {s.ShapeText}{(ckpt.Contains(prefix + ".weight_zero_point") ? " and a zero point" : "")}.");
        return new Int8Matrix(new ReadOnlySpan<sbyte>(view.Data, checked(rows * cols)), rows, cols, scales);
    }

    private static unsafe Fp8Matrix LoadFp8(Checkpoint ckpt, string prefix, int rows, int cols, PreQuantizedConfig? config)
    {
        var view = ckpt.Get(prefix + ".weight", rows, cols);
        var codes = new ReadOnlySpan<byte>(view.Data, rows * cols).ToArray();
        if (ckpt.Contains(prefix + ".weight_scale_inv"))
        {
            // DeepSeek/GLM block-wise: weight_scale_inv multiplies the codes (despite its name) per block.
            var s = ckpt.Get(prefix + ".weight_scale_inv");
            int br = config?.BlockRows ?? 128, bc = config?.BlockCols ?? 128;
            long[] grid = [(rows + br - 1) / br, (cols + bc - 1) / bc];
            if (!s.Shape.SequenceEqual(grid))
                throw new ModelLoadException($"'{prefix}.weight_scale_inv' has shape {s.ShapeText}, expected [{grid[0]}, {grid[1]}] for {br}x{bc} blocks.");
            return new Fp8Matrix(codes, rows, cols, Fp8Scaling.Block, ckpt.ReadFloats(s), br, bc);
        }
        if (ckpt.Contains(prefix + ".weight_scale"))
        {
            var s = ckpt.Get(prefix + ".weight_scale");
            var scales = ckpt.ReadFloats(s);
            if (scales.Length == 1) return new Fp8Matrix(codes, rows, cols, Fp8Scaling.PerTensor, scales);
            if (scales.Length == rows) return new Fp8Matrix(codes, rows, cols, Fp8Scaling.PerChannel, scales);
            if (s.Shape.Length == 2)
            {
                int br = (int)((rows + s.Shape[0] - 1) / s.Shape[0]), bc = (int)((cols + s.Shape[1] - 1) / s.Shape[1]);
                return new Fp8Matrix(codes, rows, cols, Fp8Scaling.Block, scales, br, bc);
            }
            throw new ModelLoadException($"'{prefix}.weight_scale' has shape {s.ShapeText}, which fits no FP8 scaling of a [{rows}, {cols}] weight.");
        }
        // Unscaled FP8 (scale 1).
        return new Fp8Matrix(codes, rows, cols, Fp8Scaling.PerTensor, [1f]);
    }

    private static unsafe WeightMatrix LoadPackQuantized(Checkpoint ckpt, string prefix, int rows, int cols)
    {
        var packed = ckpt.Get(prefix + ".weight_packed", rows, (cols + 7) / 8);
        if (packed.DType != TensorDType.I32) throw new ModelLoadException($"'{prefix}.weight_packed' must be I32, got {packed.DType}.");
        var scaleView = ckpt.Get(prefix + ".weight_scale");
        var scales = ckpt.ReadFloats(scaleView);
        int groups = scaleView.Shape.Length == 2 ? (int)scaleView.Shape[1] : 1;
        if (scales.Length != rows * groups) throw new ModelLoadException($"'{prefix}.weight_scale' has shape {scaleView.ShapeText}, expected [{rows}, groups].");
        int groupSize = cols / groups;
        if (groupSize * groups != cols) throw new ModelLoadException($"'{prefix}': {cols} columns do not split into {groups} groups.");
        int* words = (int*)packed.Data;
        int wordsPerRow = (cols + 7) / 8;
        // Signed int4 stored with a +8 offset, 8 per int32 along K, element j at bits 4j.
        int Nibble(int r, int c) => (words[(long)r * wordsPerRow + c / 8] >> (4 * (c % 8))) & 15;
        int[]? zeroWords = null;
        if (ckpt.Contains(prefix + ".weight_zero_point"))
        {
            var zp = ckpt.Get(prefix + ".weight_zero_point", (rows + 7) / 8, groups);
            zeroWords = new ReadOnlySpan<int>(zp.Data, (int)zp.ElementCount).ToArray();
        }
        // Zero points are packed along the output dimension, with the same offset.
        int ZeroSigned(int r, int g) => zeroWords is null ? 0 : ((zeroWords[r / 8 * groups + g] >> (4 * (r % 8))) & 15) - 8;
        if (cols % 8 == 0 && Int4Matrix.Supports(cols, groupSize))
        {
            // The common case, at disk speed: whole words unpacked per group, rows on every core.
            var m = Int4Matrix.Allocate(rows, cols, groupSize, zeroWords is null);
            nint source = (nint)words;
            MatMul.ForEachChunk(rows, cols, (start, end) =>
            {
                var codes = new byte[groupSize];
                for (int r = start; r < end; r++)
                {
                    int* row = (int*)source + (long)r * wordsPerRow;
                    for (int g = 0; g < groups; g++)
                    {
                        for (int i = 0; i < groupSize; i += 8)
                        {
                            int word = row[(g * groupSize + i) / 8];
                            for (int j = 0; j < 8; j++) codes[i + j] = (byte)((word >> (4 * j)) & 15);
                        }
                        m.SetGroup(r, g, codes, scales[r * groups + g], 8 + ZeroSigned(r, g));
                    }
                }
            });
            return m;
        }
        return BuildInt4(rows, cols, groupSize, zeroWords is null, Nibble, (r, g) => scales[r * groups + g], (r, g) => 8 + ZeroSigned(r, g));
    }

    private static unsafe WeightMatrix LoadAwq(Checkpoint ckpt, string prefix, int rows, int cols)
    {
        // AWQ stores the transpose: qweight [K, N/8], qzeros [K/g, N/8], scales [K/g, N].
        var q = ckpt.Get(prefix + ".qweight", cols, rows / 8);
        var scaleView = ckpt.Get(prefix + ".scales");
        int groups = (int)scaleView.Shape[0];
        if (scaleView.Shape.Length != 2 || scaleView.Shape[1] != rows) throw new ModelLoadException($"'{prefix}.scales' has shape {scaleView.ShapeText}, expected [groups, {rows}].");
        var z = ckpt.Get(prefix + ".qzeros", groups, rows / 8);
        var scales = ckpt.ReadFloats(scaleView);
        int* qw = (int*)q.Data, zw = (int*)z.Data;
        int wordsPerK = rows / 8;
        int Unpack(int* words, int k, int n) => (words[(long)k * wordsPerK + n / 8] >> AwqShift[n % 8]) & 15;
        int groupSize = cols / groups;
        return BuildInt4(rows, cols, groupSize, false, (r, c) => Unpack(qw, c, r), (r, g) => scales[g * rows + r], (r, g) => Unpack(zw, g, r));
    }

    /// <summary>An Int4Matrix from unsigned codes, scales and unsigned zero points; group sizes our kernels cannot run become FP32.</summary>
    private static WeightMatrix BuildInt4(int rows, int cols, int groupSize, bool symmetric, Func<int, int, int> code, Func<int, int, float> scale, Func<int, int, int> zero)
    {
        int groups = cols / groupSize;
        if (Int4Matrix.Supports(cols, groupSize))
        {
            var m = Int4Matrix.Allocate(rows, cols, groupSize, symmetric);
            var codes = new byte[groupSize];
            for (int r = 0; r < rows; r++)
                for (int g = 0; g < groups; g++)
                {
                    for (int i = 0; i < groupSize; i++) codes[i] = (byte)code(r, g * groupSize + i);
                    m.SetGroup(r, g, codes, scale(r, g), zero(r, g));
                }
            return m;
        }
        var values = new float[(long)rows * cols];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                values[(long)r * cols + c] = (code(r, c) - zero(r, c / groupSize)) * scale(r, c / groupSize);
        return new F32Matrix(values, rows, cols);
    }
}
