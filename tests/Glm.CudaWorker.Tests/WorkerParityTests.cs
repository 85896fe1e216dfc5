using Glm.Kernels.Attention;
using Glm.Kernels.Device;
using Glm.Kernels.Device.Cpu;
using Glm.Models.Architectures;
using Glm.Models.Inference;
using Glm.Models.Quantization;
using Glm.TestSupport;

namespace Glm.CudaWorker.Tests;

/// <summary>The CUDA worker, op by op against the CPU worker (the checking worker), on every fixture architecture.</summary>
public class WorkerParityTests
{
    [HostBuildTheory]
    [InlineData("glm")]
    [InlineData("glm4")]
    [InlineData("glm4_moe")]
    [InlineData("glm4_moe_lite")]
    public void EveryOpAgreesWithTheCpuWorkerAndTheGreedyIdsAreTransformers(string arch)
    {
        using var cuda = HostBuild.Open();
        var checking = new CheckingWorker(CpuWorker.Instance, cuda, tolerance: 1e-4);
        using var model = ModelLoader.Load(Fixtures.Dir(arch), worker: checking);
        for (int i = 0; i < 2; i++)
        {
            var (prompt, expected) = Fixtures.TransformersCase(arch, i);
            Assert.Equal(expected, SequenceRunner.Greedy(model, prompt, expected.Length));
        }
        Assert.True(checking.OpsChecked > 100, $"only {checking.OpsChecked} ops were checked");
    }

    [HostBuildTheory]
    [InlineData("glm4_moe", "fp8-int4", KvCacheDType.Int4)]
    [InlineData("glm4_moe_lite", "fp8-int4", KvCacheDType.Int4)]
    [InlineData("glm4_moe_lite", "int4", KvCacheDType.Fp8)]
    [InlineData("glm4", "fp8", KvCacheDType.Bf16)]
    public void QuantizedWeightsAndKvPagesAgreeWithTheCpuWorker(string arch, string policy, KvCacheDType kv)
    {
        // Int4 weights meet float activations on both sides (the GPU kernels are W4A16); the KV encoders are
        // bit-exact, so a page differs only where its float inputs did, by rounding.
        using var cuda = HostBuild.Open();
        var checking = new CheckingWorker(CpuWorker.Instance, cuda, tolerance: 2e-4);
        Func<Glm.Models.Loading.Checkpoint, Glm.Models.Loading.WeightBuilder> builder =
            ckpt => new QuantizingWeightBuilder(ckpt, QuantizationPolicy.Preset(policy)) { Int4Activations = Glm.Kernels.Cpu.Int4Activations.Float };
        using var model = ModelLoader.Load(Fixtures.Dir(arch), builder, worker: checking);
        using var plain = ModelLoader.Load(Fixtures.Dir(arch), builder);
        var (prompt, _) = Fixtures.TransformersCase(arch, 2);
        Assert.Equal(SequenceRunner.Greedy(plain, prompt, 6, kv), SequenceRunner.Greedy(model, prompt, 6, kv));
    }

    [HostBuildFact]
    public void AWrongOpOnTheDeviceSideIsNamedAtThatOp()
    {
        // The comparison is not vacuous: the CPU worker against itself with one op spoiled is caught (the
        // Glm.Models tests), and here the CUDA worker against a CPU worker with a different RMSNorm epsilon is.
        using var cuda = HostBuild.Open();
        var checking = new CheckingWorker(new EpsilonShiftedCpuWorker(), cuda, tolerance: 1e-4);
        using var model = ModelLoader.Load(Fixtures.Dir("glm4_moe"), worker: checking);
        var (prompt, _) = Fixtures.TransformersCase("glm4_moe", 0);
        var e = Assert.Throws<WorkerMismatchException>(() => SequenceRunner.Greedy(model, prompt, 2));
        Assert.Equal("RmsNorm", e.Op);
        Assert.Contains("cuda-host", e.Message);
    }

    private sealed class EpsilonShiftedCpuWorker : CpuWorker
    {
        public override void RmsNorm(Heads x, DeviceVector weight, float eps, Heads output) => base.RmsNorm(x, weight, eps + 0.5f, output);
    }
}
