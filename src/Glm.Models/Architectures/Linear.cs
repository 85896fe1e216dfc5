using Glm.Kernels.Device;

namespace Glm.Models.Architectures;

/// <summary>nn.Linear: y = x·Wᵀ + b, with W placed on the model's worker in whatever format it was stored.</summary>
public sealed class Linear(IWorker worker, DeviceWeight weight, DeviceVector? bias) : IDisposable
{
    public DeviceWeight Weight { get; } = weight;
    public DeviceVector? Bias { get; } = bias;
    public int InFeatures => Weight.Cols;
    public int OutFeatures => Weight.Rows;

    public Tensor Forward(Tensor x) => worker.Linear(x, Weight, Bias);

    public void Dispose()
    {
        Weight.Dispose();
        Bias?.Dispose();
    }
}
