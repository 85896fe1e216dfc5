using System.Globalization;
using System.Text;

namespace Glm.Server.Metrics;

/// <summary>A thread-safe cumulative histogram written in Prometheus' text format.</summary>
public sealed class ExpositionHistogram(string name, string help, double[] buckets)
{
    private readonly long[] _counts = new long[buckets.Length + 1];
    private long _sumBits;
    private long _count;

    public string Name => name;

    public void Observe(double value)
    {
        int i = 0;
        while (i < buckets.Length && value > buckets[i]) i++;
        Interlocked.Increment(ref _counts[i]);
        Interlocked.Increment(ref _count);
        long seen, updated;
        do
        {
            seen = Interlocked.Read(ref _sumBits);
            updated = BitConverter.DoubleToInt64Bits(BitConverter.Int64BitsToDouble(seen) + value);
        } while (Interlocked.CompareExchange(ref _sumBits, updated, seen) != seen);
    }

    public long Count => Interlocked.Read(ref _count);

    public void Write(StringBuilder sb, string labels)
    {
        sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        sb.Append("# TYPE ").Append(name).Append(" histogram\n");
        long cumulative = 0;
        for (int i = 0; i < buckets.Length; i++)
        {
            cumulative += Interlocked.Read(ref _counts[i]);
            sb.Append(name).Append("_bucket{").Append(labels).Append(",le=\"").Append(buckets[i].ToString(CultureInfo.InvariantCulture)).Append("\"} ")
              .Append(cumulative.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
        cumulative += Interlocked.Read(ref _counts[^1]);
        sb.Append(name).Append("_bucket{").Append(labels).Append(",le=\"+Inf\"} ").Append(cumulative).Append('\n');
        sb.Append(name).Append("_sum{").Append(labels).Append("} ").Append(BitConverter.Int64BitsToDouble(Interlocked.Read(ref _sumBits)).ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        sb.Append(name).Append("_count{").Append(labels).Append("} ").Append(cumulative).Append('\n');
    }
}
