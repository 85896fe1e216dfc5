using System.Text.Json;

namespace Glm.TestSupport;

/// <summary>A small independent reader of float32 safetensors for reference data (not the production loader).</summary>
public static class SafetensorsReader
{
    public static Dictionary<string, (long[] Shape, float[] Data)> ReadF32(string path)
    {
        var bytes = File.ReadAllBytes(path);
        long n = BitConverter.ToInt64(bytes, 0);
        using var doc = JsonDocument.Parse(bytes.AsMemory(8, (int)n));
        var result = new Dictionary<string, (long[], float[])>();
        foreach (var e in doc.RootElement.EnumerateObject())
        {
            if (e.Name == "__metadata__") continue;
            if (e.Value.GetProperty("dtype").GetString() != "F32") throw new NotSupportedException(e.Name);
            var shape = e.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            var off = e.Value.GetProperty("data_offsets");
            long begin = off[0].GetInt64(), end = off[1].GetInt64();
            var data = new float[(end - begin) / 4];
            Buffer.BlockCopy(bytes, (int)(8 + n + begin), data, 0, (int)(end - begin));
            result[e.Name] = (shape, data);
        }
        return result;
    }
}
