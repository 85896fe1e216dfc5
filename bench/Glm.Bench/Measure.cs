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

    /// <summary>
    /// Medians of several actions timed in turn (a, b, c, a, b, c, …), so that a neighbour's burst on this shared
    /// machine lands on all of them alike and their ratios stay meaningful.
    /// </summary>
    public static double[] InterleavedMedianSeconds(IReadOnlyList<Action> actions, int repeats)
    {
        foreach (var action in actions) action();
        var times = new double[actions.Count, repeats];
        for (int r = 0; r < repeats; r++)
            for (int a = 0; a < actions.Count; a++)
            {
                var sw = Stopwatch.StartNew();
                actions[a]();
                times[a, r] = sw.Elapsed.TotalSeconds;
            }
        var medians = new double[actions.Count];
        var row = new double[repeats];
        for (int a = 0; a < actions.Count; a++)
        {
            for (int r = 0; r < repeats; r++) row[r] = times[a, r];
            Array.Sort(row);
            medians[a] = row[repeats / 2];
        }
        return medians;
    }

    /// <summary>
    /// A read pass over <paramref name="bytes"/> of a buffer far larger than the caches (a different slice each
    /// call, so nothing is left in cache from the last): time it and divide, for read bandwidth next to a kernel.
    /// </summary>
    public static Action ReadPass(long bytes, int threads)
    {
        const int floats = 256 << 20; // 1 GiB
        var data = GC.AllocateUninitializedArray<float>(floats);
        Parallel.For(0, threads, t => { for (int i = t; i < floats; i += threads * 1024) data[i] = 1; });
        int slice = (int)(bytes / 4), slices = floats / slice, next = 0;
        return () =>
        {
            int start = next++ % slices * slice, chunk = slice / threads;
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                float s = System.Numerics.Tensors.TensorPrimitives.Sum(data.AsSpan(start + t * chunk, chunk));
                if (s == -1) Console.Write(""); // keep the sum alive
            });
        };
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
