using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace Glm.Models.Loading;

public enum TensorDType { BF16, F16, F32, F8_E4M3, I32, I64, U8, I8 }

/// <summary>One tensor in a mapped safetensors file: dtype, shape and a pointer valid while the file is open.</summary>
public sealed unsafe class TensorView(string name, TensorDType dtype, long[] shape, byte* data, long byteLength, SafetensorsFile file)
{
    public string Name { get; } = name;
    public TensorDType DType { get; } = dtype;
    public long[] Shape { get; } = shape;
    public byte* Data { get; } = data;
    public long ByteLength { get; } = byteLength;
    public SafetensorsFile File { get; } = file;

    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// A safetensors file mapped read-only. The header is checked against the file size when opened, so a truncated
/// or corrupt file fails at load with the tensor's name instead of crashing a forward pass later.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly Dictionary<string, TensorView> _tensors = new(StringComparer.Ordinal);

    public SafetensorsFile(string path)
    {
        Path = path;
        // Measured through an open stream: FileInfo.Length of a symlink (as in a Hugging Face cache snapshot)
        // is the link's own size, not the target's.
        long length;
        using (var probe = File.OpenRead(path)) length = probe.Length;
        if (length < 8) throw new ModelLoadException($"{path}: file is {length} bytes, too short to be safetensors (truncated?).");
        _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = p + _view.PointerOffset;
        try
        {
            ParseHeader(length);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string Path { get; }
    public IReadOnlyDictionary<string, TensorView> Tensors => _tensors;

    private void ParseHeader(long fileLength)
    {
        long headerLength = *(long*)_base;
        if (headerLength <= 0 || headerLength > fileLength - 8 || headerLength > 100_000_000)
            throw new ModelLoadException($"{Path}: header length {headerLength} does not fit a {fileLength}-byte file (truncated or not safetensors).");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(new ReadOnlyMemory<byte>(new ReadOnlySpan<byte>(_base + 8, (int)headerLength).ToArray()));
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{Path}: the safetensors header is not valid JSON ({e.Message}).", e);
        }
        using (doc)
        {
            long dataStart = 8 + headerLength;
            foreach (var entry in doc.RootElement.EnumerateObject())
            {
                if (entry.Name == "__metadata__") continue;
                var e = entry.Value;
                string dtypeText = e.GetProperty("dtype").GetString() ?? "";
                if (!TryParseDType(dtypeText, out var dtype))
                    throw new ModelLoadException($"{Path}: tensor '{entry.Name}' has unsupported dtype {dtypeText}.");
                long[] shape = e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray();
                var offsets = e.GetProperty("data_offsets");
                long begin = offsets[0].GetInt64(), end = offsets[1].GetInt64();
                long expected = shape.Aggregate(1L, (a, b) => a * b) * ElementSize(dtype);
                if (end - begin != expected)
                    throw new ModelLoadException($"{Path}: tensor '{entry.Name}' has {end - begin} bytes but shape [{string.Join(", ", shape)}] of {dtypeText} needs {expected}.");
                if (begin < 0 || dataStart + end > fileLength)
                    throw new ModelLoadException($"{Path}: tensor '{entry.Name}' ends at byte {dataStart + end} but the file has {fileLength} bytes (truncated download?).");
                _tensors[entry.Name] = new TensorView(entry.Name, dtype, shape, _base + dataStart + begin, expected, this);
            }
        }
    }

    public static int ElementSize(TensorDType d) => d switch
    {
        TensorDType.F32 or TensorDType.I32 => 4,
        TensorDType.BF16 or TensorDType.F16 => 2,
        TensorDType.I64 => 8,
        _ => 1,
    };

    private static bool TryParseDType(string s, out TensorDType d)
    {
        d = s switch
        {
            "BF16" => TensorDType.BF16,
            "F16" => TensorDType.F16,
            "F32" => TensorDType.F32,
            "F8_E4M3" => TensorDType.F8_E4M3,
            "I32" => TensorDType.I32,
            "I64" => TensorDType.I64,
            "U8" => TensorDType.U8,
            "I8" => TensorDType.I8,
            _ => (TensorDType)(-1),
        };
        return (int)d >= 0;
    }

    public void Dispose()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
