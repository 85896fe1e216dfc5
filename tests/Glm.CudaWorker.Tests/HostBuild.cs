using Glm.Kernels.Cuda;
using Glm.Kernels.Cuda.Worker;

namespace Glm.CudaWorker.Tests;

/// <summary>
/// This test process binds libglm_cuda to its host build (native/HostLibrary.targets puts it beside the tests):
/// the CUDA worker's C# side is the real one, its "device" memory is host memory and its kernels are the plain
/// C++ references of the CUDA kernels.
/// </summary>
public static class HostBuild
{
    static HostBuild()
    {
        if (CudaRuntime.HostLibraryPath() is not null) CudaRuntime.UseLibrary("host");
    }

    /// <summary>Why the host build cannot run here, or null.</summary>
    public static string? Unavailable
    {
        get
        {
            if (CudaRuntime.HostLibraryPath() is null) return $"{CudaRuntime.HostLibraryFile} was not built (Linux with a C++ compiler builds it with the tests)";
            return CudaRuntime.IsAvailable(out string why) ? null : why;
        }
    }

    public static Glm.Kernels.Cuda.Worker.CudaWorker Open()
    {
        if (Unavailable is { } why) throw new InvalidOperationException(why);
        var worker = Glm.Kernels.Cuda.Worker.CudaWorker.Open();
        Assert.True(worker.IsHostBuild, "these tests must run on the host build, not a GPU");
        return worker;
    }
}

/// <summary>Runs where the host build was built; elsewhere skipped with the reason.</summary>
public sealed class HostBuildFactAttribute : FactAttribute
{
    public HostBuildFactAttribute()
    {
        if (HostBuild.Unavailable is { } why) Skip = why;
    }
}

public sealed class HostBuildTheoryAttribute : TheoryAttribute
{
    public HostBuildTheoryAttribute()
    {
        if (HostBuild.Unavailable is { } why) Skip = why;
    }
}
