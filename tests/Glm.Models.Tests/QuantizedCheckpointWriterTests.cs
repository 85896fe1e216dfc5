using System.Text.Json;
using Glm.Kernels.Attention;
using Glm.Models.Architectures;
using Glm.Models.Inference;
using Glm.Models.Quantization;
using Glm.TestSupport;

namespace Glm.Models.Tests;

/// <summary>quantize writes once what quantize-on-load builds every start: the same formats, codes and logits.</summary>
public class QuantizedCheckpointWriterTests
{
    [Theory]
    [InlineData("glm4_moe", "fp8-int4")]
    [InlineData("glm4_moe_lite", "int4")]
    [InlineData("glm4", "fp8")]
    public void AWrittenModelLoadsAsQuantizeOnLoadBuildsIt(string arch, string policyName)
    {
        string output = Directory.CreateTempSubdirectory($"glm-quantized-{arch}-").FullName;
        var policy = QuantizationPolicy.Resolve(policyName);
        var result = QuantizedCheckpointWriter.Write(Fixtures.Dir(arch), output, policy);
        Assert.True(result.Quantized > 0);

        using var onLoad = ModelLoader.Load(Fixtures.Dir(arch), ckpt => new QuantizingWeightBuilder(ckpt, policy) { Int4Activations = Glm.Kernels.Cpu.Int4Activations.Float });
        using var stored = ModelLoader.Load(output, ckpt => new QuantizingWeightBuilder(ckpt, QuantizationPolicy.Resolve("none")) { Int4Activations = Glm.Kernels.Cpu.Int4Activations.Float });
        Assert.Equal(onLoad.AllWeights().Select(w => w.Format), stored.AllWeights().Select(w => w.Format));
        var (prompt, _) = Fixtures.TransformersCase(arch, 1);
        using var a = new SequenceRunner(onLoad, prompt.Length, KvCacheDType.Bf16);
        using var b = new SequenceRunner(stored, prompt.Length, KvCacheDType.Bf16);
        Assert.Equal(a.Feed(prompt, allLogits: true), b.Feed(prompt, allLogits: true));

        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "config.json")));
        var q = config.RootElement.GetProperty("quantization_config");
        Assert.Equal(policyName, q.GetProperty("glm_server_policy").GetString());
        if (policyName == "int4")
        {
            // compressed-tensors pack-quantized, with the unquantized linear modules listed as vLLM expects.
            Assert.Equal("compressed-tensors", q.GetProperty("quant_method").GetString());
            Assert.Equal(4, q.GetProperty("config_groups").GetProperty("group_0").GetProperty("weights").GetProperty("num_bits").GetInt32());
            Assert.Contains("lm_head", q.GetProperty("ignore").EnumerateArray().Select(e => e.GetString()));
        }
        Assert.True(File.Exists(Path.Combine(output, "generation_config.json")));
    }
}
