using System.Text;
using System.Text.Json;

namespace Glm.Models.Loading;

/// <summary>Writes a safetensors file tensor by tensor (header first, then the data in order), never holding it whole.</summary>
public sealed class SafetensorsWriter
{
    private readonly List<(string Name, string DType, long[] Shape, long Bytes, Action<Stream> Write)> _tensors = [];

    public void Add(string name, string dtype, long[] shape, long bytes, Action<Stream> write) => _tensors.Add((name, dtype, shape, bytes, write));

    public void AddBf16(string name, long[] shape, ushort[] data) =>
        Add(name, "BF16", shape, data.LongLength * 2, s => s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan())));

    public void AddF32(string name, long[] shape, float[] data) =>
        Add(name, "F32", shape, data.LongLength * 4, s => s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan())));

    public void AddBytes(string name, string dtype, long[] shape, byte[] data) => Add(name, dtype, shape, data.LongLength, s => s.Write(data));

    public void AddI32(string name, long[] shape, int[] data) =>
        Add(name, "I32", shape, data.LongLength * 4, s => s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan())));

    public void Save(string path)
    {
        var header = new Dictionary<string, object> { ["__metadata__"] = new Dictionary<string, string> { ["format"] = "pt" } };
        long offset = 0;
        foreach (var t in _tensors)
        {
            header[t.Name] = new { dtype = t.DType, shape = t.Shape, data_offsets = new[] { offset, offset + t.Bytes } };
            offset += t.Bytes;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int padded = (json.Length + 7) / 8 * 8; // keep the data 8-byte aligned, as the reference writer does
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        file.Write(BitConverter.GetBytes((long)padded));
        file.Write(json);
        for (int i = json.Length; i < padded; i++) file.WriteByte((byte)' ');
        foreach (var t in _tensors)
        {
            long before = file.Position;
            t.Write(file);
            if (file.Position - before != t.Bytes) throw new InvalidOperationException($"tensor {t.Name} wrote {file.Position - before} bytes, declared {t.Bytes}");
        }
    }
}
