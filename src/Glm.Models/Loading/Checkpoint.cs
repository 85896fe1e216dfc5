using System.Text.Json;
using Glm.Kernels.Formats;

namespace Glm.Models.Loading;

/// <summary>
/// All tensors of a model directory (one safetensors file, a sharded index, or every *.safetensors file),
/// with a record of which ones the model consumed so the rest can be reported once.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    private readonly List<SafetensorsFile> _files = [];
    private readonly Dictionary<string, TensorView> _tensors = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public Checkpoint(string directory)
    {
        Directory = directory;
        string index = Path.Combine(directory, "model.safetensors.index.json");
        IEnumerable<string> files;
        if (File.Exists(index))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(index));
            files = doc.RootElement.GetProperty("weight_map").EnumerateObject().Select(p => p.Value.GetString()!).Distinct();
        }
        else
        {
            files = System.IO.Directory.GetFiles(directory, "*.safetensors").Select(Path.GetFileName).OrderBy(f => f, StringComparer.Ordinal)!;
        }
        try
        {
            foreach (string f in files)
            {
                string path = Path.Combine(directory, f);
                if (!File.Exists(path)) throw new ModelLoadException($"Shard '{f}' named in model.safetensors.index.json is missing from '{directory}'.");
                var file = new SafetensorsFile(path);
                _files.Add(file);
                foreach (var (name, view) in file.Tensors) _tensors[name] = view;
            }
        }
        catch
        {
            Dispose();
            throw;
        }
        if (_files.Count == 0) throw new ModelLoadException($"No *.safetensors weights in '{directory}'.");
    }

    public string Directory { get; }
    public IEnumerable<string> Names => _tensors.Keys;

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public TensorView Get(string name, params long[] expectedShape)
    {
        if (!_tensors.TryGetValue(name, out var view))
            throw new ModelLoadException($"Tensor '{name}' is missing from the checkpoint in '{Directory}'.");
        if (expectedShape.Length > 0 && !view.Shape.SequenceEqual(expectedShape))
            throw new ModelLoadException($"Tensor '{name}' has shape {view.ShapeText}, expected [{string.Join(", ", expectedShape)}].");
        _used.Add(name);
        return view;
    }

    public TensorView? TryGet(string name, params long[] expectedShape) => Contains(name) ? Get(name, expectedShape) : null;

    /// <summary>Tensors the model never asked for (MTP layers, unused buffers).</summary>
    public IReadOnlyList<string> Unused() => _tensors.Keys.Where(k => !_used.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();

    /// <summary>Reads a float tensor of any float dtype into a new array.</summary>
    public unsafe float[] ReadFloats(TensorView view)
    {
        var result = new float[view.ElementCount];
        switch (view.DType)
        {
            case TensorDType.F32:
                new ReadOnlySpan<float>(view.Data, result.Length).CopyTo(result);
                break;
            case TensorDType.BF16:
                BFloat16.ToFloat(new ReadOnlySpan<ushort>(view.Data, result.Length), result);
                break;
            case TensorDType.F16:
                for (int i = 0; i < result.Length; i++) result[i] = Float16.ToFloat(((ushort*)view.Data)[i]);
                break;
            case TensorDType.F8_E4M3:
                for (int i = 0; i < result.Length; i++) result[i] = Fp8E4M3.ToFloat(view.Data[i]);
                break;
            default:
                throw new ModelLoadException($"Tensor '{view.Name}' has dtype {view.DType}, expected a float type.");
        }
        return result;
    }

    public float[] ReadFloats(string name, params long[] expectedShape) => ReadFloats(Get(name, expectedShape));

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
