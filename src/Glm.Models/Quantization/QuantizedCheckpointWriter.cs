using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Glm.Kernels.Cpu;
using Glm.Models.Loading;

namespace Glm.Models.Quantization;

/// <summary>
/// The `quantize` verb: a model directory quantized once under a policy and written back as safetensors that load
/// at disk speed (<see cref="PreQuantizedLoader"/> reads them as stored, never re-quantizing). Layouts are the
/// published ones, so other engines read them too where they read the scheme: Int4 as compressed-tensors
/// "pack-quantized" (weight_packed I32 with 8 codes a word, weight_scale [rows, groups], weight_zero_point for
/// asymmetric groups, weight_shape), FP8 E4M3 block-128 as DeepSeek/GLM's FP8 releases (weight F8_E4M3 plus
/// weight_scale_inv), FP8 per channel as compressed-tensors float-quantized (weight plus weight_scale [rows, 1]).
/// A policy that mixes Int4 and FP8 gives a file with both, named per module; config.json's quantization_config
/// then says "quant_method": "fp8" for the block size and lists the mix under "glm_server_formats" (only this
/// server reads mixed files as one model). Every other file of the directory is copied as it is.
/// Peak memory: the quantized weights plus one tensor in float32, as quantize-on-load.
/// </summary>
public static class QuantizedCheckpointWriter
{
    public sealed record Result(int Quantized, int Copied, IReadOnlyDictionary<string, int> Formats, long Bytes);

    public static unsafe Result Write(string source, string output, QuantizationPolicy policy, Action<string>? log = null)
    {
        if (Path.GetFullPath(source) == Path.GetFullPath(output)) throw new ArgumentException("--output must be a different directory from --model");
        Directory.CreateDirectory(output);
        using var ckpt = new Checkpoint(source);
        var builder = new QuantizingWeightBuilder(ckpt, policy) { Int4Activations = Int4Activations.Float };
        var writer = new SafetensorsWriter();
        var matrices = new List<WeightMatrix>();
        var formats = new Dictionary<string, int>();
        int quantized = 0, copied = 0;
        bool fp8Block = false, fp8Other = false, int4 = false;
        var int8Modules = new List<string>();
        var kept = new List<string>(); // linear modules left unquantized: compressed-tensors' "ignore"
        var int4Schemes = new Dictionary<(int Group, bool Symmetric), List<string>>();
        try
        {
            foreach (string name in ckpt.Names.OrderBy(n => n, StringComparer.Ordinal))
            {
                var view = ckpt.Get(name);
                string module = name.EndsWith(".weight") ? name[..^".weight".Length] : name;
                bool floatMatrix = name.EndsWith(".weight") && view.Shape.Length == 2 && view.DType is TensorDType.BF16 or TensorDType.F16 or TensorDType.F32;
                if (!floatMatrix || policy.For(module).Kind is "keep" or "bf16")
                {
                    if (floatMatrix) kept.Add(module);
                    writer.Add(name, view.DType.ToString(), view.Shape, view.ByteLength, s => WriteRaw(s, view.Data, view.ByteLength));
                    copied++;
                    continue;
                }
                var m = builder.Matrix(module, (int)view.Shape[0], (int)view.Shape[1]);
                matrices.Add(m);
                formats[m.Format] = formats.GetValueOrDefault(m.Format) + 1;
                quantized++;
                switch (m)
                {
                    case Int4Matrix q:
                        AddInt4(writer, module, q);
                        int4 = true;
                        if (!int4Schemes.TryGetValue((q.GroupSize, q.Symmetric), out var modules)) int4Schemes[(q.GroupSize, q.Symmetric)] = modules = [];
                        modules.Add(module);
                        break;
                    case Int8Matrix i8:
                        writer.Add(module + ".weight", "I8", [i8.Rows, i8.Cols], (long)i8.Rows * i8.Cols, s => s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(i8.Codes)));
                        writer.Add(module + ".weight_scale", "F32", [i8.Rows, 1], i8.Rows * 4L, s => WriteFloats(s, i8.Scales));
                        int8Modules.Add(module);
                        break;
                    case Fp8Matrix f:
                        AddFp8(writer, module, f);
                        if (f.Scaling == Fp8Scaling.Block) fp8Block = true; else fp8Other = true;
                        break;
                    default: // the policy kept it after all (a format the layouts here do not cover): as stored
                        writer.Add(name, view.DType.ToString(), view.Shape, view.ByteLength, s => WriteRaw(s, view.Data, view.ByteLength));
                        break;
                }
                log?.Invoke($"{module}: {m.Format}");
            }
            string path = Path.Combine(output, "model.safetensors");
            writer.Save(path);
            foreach (string file in Directory.GetFiles(source))
            {
                string n = Path.GetFileName(file);
                if (n.EndsWith(".safetensors") || n == "model.safetensors.index.json" || n == "config.json") continue;
                File.Copy(file, Path.Combine(output, n), overwrite: true);
            }
            WriteConfig(source, output, policy, formats, int4, int8Modules.Count > 0, fp8Block, fp8Other, kept, int8Modules, int4Schemes);
            return new Result(quantized, copied, formats, new FileInfo(path).Length);
        }
        finally
        {
            foreach (var m in matrices) m.Dispose();
        }
    }

    private static unsafe void WriteRaw(Stream s, byte* data, long length)
    {
        for (long at = 0; at < length; at += 1 << 30)
            s.Write(new ReadOnlySpan<byte>(data + at, (int)Math.Min(1 << 30, length - at)));
    }

    private static void WriteFloats(Stream s, ReadOnlySpan<float> values) => s.Write(MemoryMarshal.AsBytes(values));

    /// <summary>compressed-tensors pack-quantized: codes u = q + 8, eight a word along K (element j at bits 4j); zero points packed along the rows.</summary>
    private static void AddInt4(SafetensorsWriter w, string module, Int4Matrix m)
    {
        int rows = m.Rows, cols = m.Cols, groups = cols / m.GroupSize;
        w.Add(module + ".weight_packed", "I32", [rows, cols / 8], (long)rows * cols / 2, s =>
        {
            var row = new int[cols / 8];
            for (int r = 0; r < rows; r++)
            {
                Array.Clear(row);
                for (int c = 0; c < cols; c++) row[c / 8] |= m.Code(r, c) << (4 * (c % 8));
                s.Write(MemoryMarshal.AsBytes(row.AsSpan()));
            }
        });
        w.Add(module + ".weight_scale", "F32", [rows, groups], (long)rows * groups * 4, s => WriteFloats(s, m.Scales));
        if (!m.Symmetric)
        {
            int zeroRows = (rows + 7) / 8;
            w.Add(module + ".weight_zero_point", "I32", [zeroRows, groups], (long)zeroRows * groups * 4, s =>
            {
                var packed = new int[zeroRows * groups];
                for (int r = 0; r < rows; r++)
                    for (int g = 0; g < groups; g++) packed[r / 8 * groups + g] |= (int)m.Zero(r, g) << (4 * (r % 8)); // (z - 8) + 8
                s.Write(MemoryMarshal.AsBytes(packed.AsSpan()));
            });
        }
        w.AddI32(module + ".weight_shape", [2], [rows, cols]);
    }

    private static void AddFp8(SafetensorsWriter w, string module, Fp8Matrix m)
    {
        w.Add(module + ".weight", "F8_E4M3", [m.Rows, m.Cols], (long)m.Rows * m.Cols, s => s.Write(m.Codes));
        var scales = m.ScaleGrid;
        switch (m.Scaling)
        {
            case Fp8Scaling.Block:
                if (m.BlockRows != 128 || m.BlockCols != 128) throw new NotSupportedException("only 128x128 FP8 blocks are written (the released layout)");
                w.Add(module + ".weight_scale_inv", "F32", [(m.Rows + 127) / 128, (m.Cols + 127) / 128], scales.Length * 4L, s => WriteFloats(s, m.ScaleGrid));
                break;
            case Fp8Scaling.PerChannel:
                w.Add(module + ".weight_scale", "F32", [m.Rows, 1], scales.Length * 4L, s => WriteFloats(s, m.ScaleGrid));
                break;
            default:
                w.Add(module + ".weight_scale", "F32", [1], 4, s => WriteFloats(s, m.ScaleGrid));
                break;
        }
    }

    private static void WriteConfig(string source, string output, QuantizationPolicy policy, Dictionary<string, int> formats, bool int4, bool int8, bool fp8Block, bool fp8Other,
        List<string> kept, List<string> int8Modules, Dictionary<(int Group, bool Symmetric), List<string>> int4Schemes)
    {
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!.AsObject();
        JsonObject q;
        if (fp8Block || (int4 && fp8Other))
            q = new JsonObject { ["quant_method"] = "fp8", ["fmt"] = "e4m3", ["activation_scheme"] = "dynamic", ["weight_block_size"] = new JsonArray(128, 128) };
        else if (int4 || (int8 && !fp8Other))
        {
            // One config group per scheme: "Linear" when a single Int4 scheme covers everything quantized, else the
            // modules by name (small matrices fall back to a smaller group where the policy's does not divide their
            // width; an Int8 head or embedding table is its own group). Both kinds: compressed-tensors' "mixed-precision".
            var groups = new JsonObject();
            int index = 0;
            bool byName = int4Schemes.Count > 1 || int8Modules.Count > 0;
            foreach (var ((size, symmetric), modules) in int4Schemes)
                groups[$"group_{index++}"] = new JsonObject
                {
                    ["targets"] = byName ? new JsonArray(modules.Select(m => (JsonNode?)m).ToArray()) : new JsonArray("Linear"),
                    ["weights"] = new JsonObject
                    {
                        ["num_bits"] = 4, ["type"] = "int", ["symmetric"] = symmetric, ["strategy"] = "group", ["group_size"] = size, ["dynamic"] = false,
                    },
                };
            if (int8Modules.Count > 0)
                groups[$"group_{index}"] = new JsonObject
                {
                    ["format"] = "int-quantized",
                    ["targets"] = new JsonArray(int8Modules.Select(m => (JsonNode?)m).ToArray()),
                    ["weights"] = new JsonObject { ["num_bits"] = 8, ["type"] = "int", ["symmetric"] = true, ["strategy"] = "channel", ["dynamic"] = false },
                };
            if (int4 && int8)
                foreach (var (_, group) in groups) group!["format"] = group["weights"]!["num_bits"]!.GetValue<int>() == 4 ? "pack-quantized" : "int-quantized";
            q = new JsonObject
            {
                ["quant_method"] = "compressed-tensors",
                ["format"] = int4 && int8 ? "mixed-precision" : int4 ? "pack-quantized" : "int-quantized",
                ["config_groups"] = groups,
                ["ignore"] = new JsonArray(kept.Select(k => (JsonNode?)k).ToArray()),
            };
        }
        else
            q = new JsonObject { ["quant_method"] = "compressed-tensors", ["format"] = "float-quantized" };
        q["glm_server_policy"] = policy.Name;
        q["glm_server_formats"] = new JsonObject(formats.OrderBy(f => f.Key).Select(f => KeyValuePair.Create(f.Key, (JsonNode?)f.Value)));
        config["quantization_config"] = q;
        File.WriteAllText(Path.Combine(output, "config.json"), config.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }
}
