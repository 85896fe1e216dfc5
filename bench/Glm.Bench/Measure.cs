using System.Diagnostics;

namespace Glm.Bench;

/// <summary>Timing helpers: warm up, repeat, report the median (these machines are shared and noisy).</summary>
public static class Measure
{
    public static double MedianSeconds(Action action, int repeats = 5, int warmup = 1)
    {
        for (int i = 0; i < warmup; i++) action();
        var times = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            var sw = Stopwatch.StartNew();
            action();
            times[i] = sw.Elapsed.TotalSeconds;
        }
        Array.Sort(times);
        return times[repeats / 2];
    }

    /// <summary>Read bandwidth of this machine now: threads summing a buffer far larger than the caches.</summary>
    public static double ReadBandwidthGBs(int threads)
    {
        const int floats = 256 << 20; // 1 GiB
        var data = GC.AllocateUninitializedArray<float>(floats);
        Parallel.For(0, threads, t => { for (int i = t; i < floats; i += threads * 1024) data[i] = 1; });
        double seconds = MedianSeconds(() =>
        {
            int chunk = floats / threads;
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                var span = data.AsSpan(t * chunk, chunk);
                float s = System.Numerics.Tensors.TensorPrimitives.Sum(span);
                if (s == -1) Console.Write(""); // keep the sum alive
            });
        }, repeats: 5);
        return floats * 4.0 / seconds / 1e9;
    }
}
