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
        if (!stored.Config.TieWordEmbeddings) // the head, stored as I8 codes and scales (a tied head is the embeddings, BF16)
            Assert.Contains("int8-channel", stored.AllWeights().Select(w => w.Format));
        var (prompt, _) = Fixtures.TransformersCase(arch, 1);
        using var a = new SequenceRunner(onLoad, prompt.Length, KvCacheDType.Bf16);
        using var b = new SequenceRunner(stored, prompt.Length, KvCacheDType.Bf16);
        Assert.Equal(a.Feed(prompt, allLogits: true), b.Feed(prompt, allLogits: true));

        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "config.json")));
        var q = config.RootElement.GetProperty("quantization_config");
        Assert.Equal(policyName, q.GetProperty("glm_server_policy").GetString());
        if (policyName == "int4")
        {
            // compressed-tensors: the Int4 groups pack-quantized and the Int8 head int-quantized, so
            // "mixed-precision" with each group's format and modules by name, the unquantized linear modules (the
            // router gates) listed as vLLM expects.
            Assert.Equal("compressed-tensors", q.GetProperty("quant_method").GetString());
            Assert.Equal("mixed-precision", q.GetProperty("format").GetString());
            var groups = q.GetProperty("config_groups").EnumerateObject().Select(g => g.Value).ToList();
            var int4 = groups.Where(g => g.GetProperty("weights").GetProperty("num_bits").GetInt32() == 4).ToList();
            Assert.All(int4, g => Assert.Equal("pack-quantized", g.GetProperty("format").GetString()));
            Assert.Contains("model.layers.0.self_attn.q_a_proj", int4.SelectMany(g => g.GetProperty("targets").EnumerateArray()).Select(e => e.GetString()));
            var int8 = groups.Single(g => g.GetProperty("weights").GetProperty("num_bits").GetInt32() == 8);
            Assert.Equal("int-quantized", int8.GetProperty("format").GetString());
            Assert.Equal("channel", int8.GetProperty("weights").GetProperty("strategy").GetString());
            Assert.Equal(["lm_head"], int8.GetProperty("targets").EnumerateArray().Select(e => e.GetString()!));
            Assert.Contains("model.layers.1.mlp.gate", q.GetProperty("ignore").EnumerateArray().Select(e => e.GetString()));
            Assert.Contains("model.embed_tokens", q.GetProperty("ignore").EnumerateArray().Select(e => e.GetString()));
            Assert.DoesNotContain("lm_head", q.GetProperty("ignore").EnumerateArray().Select(e => e.GetString()));
        }
        Assert.True(File.Exists(Path.Combine(output, "generation_config.json")));
    }
}
