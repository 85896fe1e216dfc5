using System.Text.Json;
using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;
using Glm.Kernels.Device;
using Glm.Kernels.Device.Cpu;
using Glm.Models.Architectures;
using Glm.Models.Inference;
using Glm.Models.Quantization;
using Glm.TestSupport;

namespace Glm.Models.Tests;

/// <summary>A copy of the CPU worker with one op made wrong on purpose (a 1% error in one element of its output).</summary>
public sealed class FaultyCpuWorker(string faultyOp) : CpuWorker
{
    public override string Name => $"cpu-with-faulty-{faultyOp}";

    private void Spoil(Tensor t, string op)
    {
        if (op != faultyOp) return;
        var data = Data(t);
        data[data.Length / 2] = data[data.Length / 2] * 1.01f + 1e-3f;
    }

    public override void SiluMul(Tensor gate, Tensor up) { base.SiluMul(gate, up); Spoil(gate, nameof(SiluMul)); }

    public override Tensor SiluMulHalves(Tensor gateUp)
    {
        var output = base.SiluMulHalves(gateUp);
        Spoil(output, nameof(SiluMulHalves));
        return output;
    }

    public override void Rope(Heads x, Rope rope, StepSequences step)
    {
        base.Rope(x, rope, step);
        if (faultyOp == nameof(Rope)) Data(x.Tensor)[x.Offset] += 1e-2f; // inside the view the op wrote
    }

    public override Tensor PagedAttention(DeviceKvCache cache, int layer, StepSequences step, Tensor queries, int heads, int headDim, int queriesPerKvHead, float scale, int valueDim)
    {
        var output = base.PagedAttention(cache, layer, step, queries, heads, headDim, queriesPerKvHead, scale, valueDim);
        Spoil(output, nameof(PagedAttention));
        return output;
    }

    public override Tensor MoeExperts(Tensor x, MoeRouting routing, ExpertSet experts)
    {
        var output = base.MoeExperts(x, routing, experts);
        Spoil(output, nameof(MoeExperts));
        return output;
    }

    public override void HeadsTimesWeight(DeviceWeight weight, int rowsPerHead, int rowOffset, Heads x, Heads y)
    {
        base.HeadsTimesWeight(weight, rowsPerHead, rowOffset, x, y);
        if (faultyOp == nameof(HeadsTimesWeight)) Data(y.Tensor)[y.Offset] += 1e-2f; // inside the view the op wrote
    }
}

/// <summary>The model definition over the device contract: the checking worker finds a wrong op, and names it.</summary>
public class CheckingWorkerTests
{
    private static (int[] Prompt, int[] Greedy) Case(string arch, int index) => Fixtures.TransformersCase(arch, index);

    [Theory]
    [InlineData("glm")]
    [InlineData("glm4")]
    [InlineData("glm4_moe")]
    [InlineData("glm4_moe_lite")]
    public void TwoCpuWorkersAgreeOnEveryOpAndTheGreedyIdsAreTransformers(string arch)
    {
        var checking = new CheckingWorker(CpuWorker.Instance, new FaultyCpuWorker(faultyOp: "none"), tolerance: 0);
        using var model = ModelLoader.Load(Fixtures.Dir(arch), worker: checking);
        var (prompt, expected) = Case(arch, 1);
        Assert.Equal(expected, SequenceRunner.Greedy(model, prompt, expected.Length));
        Assert.True(checking.OpsChecked > 100, $"only {checking.OpsChecked} ops were checked");
    }

    [Theory]
    [InlineData("glm4", "SiluMulHalves")]
    [InlineData("glm4_moe", "SiluMul")]
    [InlineData("glm4_moe", "MoeExperts")]
    [InlineData("glm4_moe", "Rope")]
    [InlineData("glm4_moe_lite", "HeadsTimesWeight")]
    [InlineData("glm4_moe_lite", "PagedAttention")]
    public void AFaultInOneOpIsNamedAtThatOp(string arch, string op)
    {
        var checking = new CheckingWorker(CpuWorker.Instance, new FaultyCpuWorker(op));
        using var model = ModelLoader.Load(Fixtures.Dir(arch), worker: checking);
        var (prompt, _) = Case(arch, 0);
        var e = Assert.Throws<WorkerMismatchException>(() => SequenceRunner.Greedy(model, prompt, 2));
        Assert.Equal(op, e.Op);
        Assert.Contains($"cpu-with-faulty-{op}", e.Message);
        Assert.True(e.Error > 1e-4);
    }

    [Fact]
    public void QuantizedWeightsRunThroughTheCheckingWorkerToo()
    {
        var checking = new CheckingWorker(CpuWorker.Instance, new FaultyCpuWorker("none"), tolerance: 0);
        using var model = ModelLoader.Load(Fixtures.Dir("glm4_moe_lite"), ckpt => new QuantizingWeightBuilder(ckpt, QuantizationPolicy.Preset("fp8-int4")), worker: checking);
        using var plain = ModelLoader.Load(Fixtures.Dir("glm4_moe_lite"), ckpt => new QuantizingWeightBuilder(ckpt, QuantizationPolicy.Preset("fp8-int4")));
        var (prompt, _) = Case("glm4_moe_lite", 2);
        Assert.Equal(SequenceRunner.Greedy(plain, prompt, 6, KvCacheDType.Int4), SequenceRunner.Greedy(model, prompt, 6, KvCacheDType.Int4));
    }
}
