using System.Text;

namespace Glm.LlamaCppBench;

/// <summary>GGML tensor types this benchmark writes or reads back from llama.cpp's quantizer.</summary>
public enum GgmlType : uint { F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8, Q4_K = 12, Q6_K = 14, BF16 = 30 }

/// <summary>One tensor of a GGUF file: ne[0] is the innermost (contiguous) dimension, as GGML counts.</summary>
public sealed record GgufTensor(string Name, long[] Ne, GgmlType Type, long Offset)
{
    public long Elements => Ne.Aggregate(1L, (a, b) => a * b);

    /// <summary>Bytes of the tensor's data (blocks of 32 or 256 values for the quantized types).</summary>
    public long Bytes => Type switch
    {
        GgmlType.F32 => Elements * 4,
        GgmlType.F16 or GgmlType.BF16 => Elements * 2,
        GgmlType.Q8_0 => Elements / 32 * 34,
        GgmlType.Q4_0 => Elements / 32 * 18,
        GgmlType.Q4_K => Elements / 256 * 144,
        GgmlType.Q6_K => Elements / 256 * 210,
        _ => throw new NotSupportedException($"{Name}: GGML type {(uint)Type} is not one this benchmark sizes"),
    };
}

/// <summary>
/// Writes GGUF version 3 (the format of ggml's gguf.h): header, key/value metadata, tensor infos, then each tensor's
/// data aligned to 32 bytes. Only the value types the benchmark needs: u32, i32, f32, bool, string, arrays.
/// </summary>
public sealed class GgufWriter
{
    private const int Alignment = 32;
    private readonly List<(string Key, Action<BinaryWriter> Write)> _metadata = [];
    private readonly List<(string Name, long[] Ne, GgmlType Type, long Bytes, Action<Stream> Write)> _tensors = [];

    public void Add(string key, uint value) => _metadata.Add((key, w => { w.Write(4u); w.Write(value); }));
    public void Add(string key, float value) => _metadata.Add((key, w => { w.Write(6u); w.Write(value); }));
    public void Add(string key, bool value) => _metadata.Add((key, w => { w.Write(7u); w.Write(value ? (byte)1 : (byte)0); }));
    public void Add(string key, string value) => _metadata.Add((key, w => { w.Write(8u); WriteString(w, value); }));
    public void Add(string key, IReadOnlyList<string> values) => _metadata.Add((key, w =>
    {
        w.Write(9u); w.Write(8u); w.Write((ulong)values.Count);
        foreach (var v in values) WriteString(w, v);
    }));
    public void Add(string key, IReadOnlyList<int> values) => _metadata.Add((key, w =>
    {
        w.Write(9u); w.Write(5u); w.Write((ulong)values.Count);
        foreach (var v in values) w.Write(v);
    }));

    /// <param name="ne">GGML dimensions, innermost first (a PyTorch [rows, cols] weight is ne = [cols, rows]).</param>
    public void AddTensor(string name, long[] ne, GgmlType type, long bytes, Action<Stream> write) => _tensors.Add((name, ne, type, bytes, write));

    public void Save(string path)
    {
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 22);
        using (var w = new BinaryWriter(file, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(Encoding.ASCII.GetBytes("GGUF"));
            w.Write(3u);
            w.Write((ulong)_tensors.Count);
            w.Write((ulong)_metadata.Count);
            foreach (var (key, write) in _metadata)
            {
                WriteString(w, key);
                write(w);
            }
            long offset = 0;
            foreach (var t in _tensors)
            {
                WriteString(w, t.Name);
                w.Write((uint)t.Ne.Length);
                foreach (long n in t.Ne) w.Write((ulong)n);
                w.Write((uint)t.Type);
                w.Write((ulong)offset);
                offset = Align(offset + t.Bytes);
            }
        }
        Pad(file);
        foreach (var t in _tensors)
        {
            long start = file.Position;
            t.Write(file);
            if (file.Position - start != t.Bytes) throw new InvalidOperationException($"{t.Name}: wrote {file.Position - start} bytes, declared {t.Bytes}");
            Pad(file);
        }
    }

    private static long Align(long n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(Stream s)
    {
        long pad = Align(s.Position) - s.Position;
        for (long i = 0; i < pad; i++) s.WriteByte(0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }
}

/// <summary>Reads a GGUF file's tensor infos (names, shapes, types), skipping its metadata values.</summary>
public static class GgufReader
{
    public static List<GgufTensor> Tensors(string path)
    {
        using var r = new BinaryReader(File.OpenRead(path));
        if (Encoding.ASCII.GetString(r.ReadBytes(4)) != "GGUF") throw new InvalidDataException($"{path} is not GGUF");
        uint version = r.ReadUInt32();
        if (version != 3) throw new InvalidDataException($"{path}: GGUF version {version}");
        ulong tensors = r.ReadUInt64(), kvs = r.ReadUInt64();
        for (ulong i = 0; i < kvs; i++)
        {
            ReadString(r);
            SkipValue(r, r.ReadUInt32());
        }
        var list = new List<GgufTensor>();
        for (ulong i = 0; i < tensors; i++)
        {
            string name = ReadString(r);
            var ne = new long[r.ReadUInt32()];
            for (int d = 0; d < ne.Length; d++) ne[d] = (long)r.ReadUInt64();
            list.Add(new GgufTensor(name, ne, (GgmlType)r.ReadUInt32(), (long)r.ReadUInt64()));
        }
        return list;
    }

    private static string ReadString(BinaryReader r) => Encoding.UTF8.GetString(r.ReadBytes(checked((int)r.ReadUInt64())));

    private static void SkipValue(BinaryReader r, uint type)
    {
        switch (type)
        {
            case 0 or 1 or 7: r.ReadByte(); break;
            case 2 or 3: r.ReadUInt16(); break;
            case 4 or 5 or 6: r.ReadUInt32(); break;
            case 10 or 11 or 12: r.ReadUInt64(); break;
            case 8: ReadString(r); break;
            case 9:
                uint element = r.ReadUInt32();
                ulong count = r.ReadUInt64();
                for (ulong i = 0; i < count; i++) SkipValue(r, element);
                break;
            default: throw new InvalidDataException($"GGUF value type {type}");
        }
    }
}
