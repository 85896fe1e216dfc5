using System.Text.Json;
using Glm.Models.Architectures;
using Glm.Models.Inference;
using Glm.TestSupport;

namespace Glm.Models.Tests;

/// <summary>Float32 forward passes against logits and greedy continuations produced by transformers 5.17.</summary>
public class TransformersParityTests
{
    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (var arch in new[] { "glm", "glm4", "glm4_moe", "glm4_moe_lite" })
            for (int c = 0; c < 4; c++) data.Add(arch, c);
        return data;
    }

    private static (int[] Prompt, int[] Greedy) Case(string arch, int index) => Fixtures.TransformersCase(arch, index);

    [Theory]
    [MemberData(nameof(Cases))]
    public void GreedyContinuationMatchesTransformers(string arch, int caseIndex)
    {
        var (prompt, expected) = Case(arch, caseIndex);
        using var model = ModelLoader.Load(Fixtures.Dir(arch));
        var actual = SequenceRunner.Greedy(model, prompt, expected.Length);
        Assert.Equal(expected, actual);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void PromptLogitsMatchTransformers(string arch, int caseIndex)
    {
        var (prompt, _) = Case(arch, caseIndex);
        var reference = SafetensorsReader.ReadF32(Path.Combine(Fixtures.Dir(arch), "expected_logits.safetensors"))[$"case{caseIndex}.prompt_logits"];
        using var model = ModelLoader.Load(Fixtures.Dir(arch));
        using var runner = new SequenceRunner(model, prompt.Length);
        var logits = runner.Feed(prompt, allLogits: true);
        int vocab = model.VocabSize;
        Assert.Equal(new long[] { prompt.Length, vocab }, reference.Shape);
        double worst = 0;
        for (int row = 0; row < prompt.Length; row++)
        {
            double maxAbsRef = 0, maxErr = 0;
            for (int v = 0; v < vocab; v++)
            {
                float r = reference.Data[row * vocab + v];
                maxAbsRef = Math.Max(maxAbsRef, Math.Abs(r));
                maxErr = Math.Max(maxErr, Math.Abs(r - logits[row * vocab + v]));
            }
            worst = Math.Max(worst, maxErr / maxAbsRef);
        }
        Assert.True(worst < 1e-3, $"worst row relative error {worst:E2}");
    }

    [Theory]
    [InlineData("glm4_moe")]
    [InlineData("glm4_moe_lite")]
    public void IncrementalDecodeEqualsFullRecompute(string arch)
    {
        // The KV cache must give the same last-token logits as feeding the whole sequence at once.
        var (prompt, _) = Case(arch, 1);
        using var model = ModelLoader.Load(Fixtures.Dir(arch));
        using var full = new SequenceRunner(model, prompt.Length);
        var expected = full.Feed(prompt);
        using var stepwise = new SequenceRunner(model, prompt.Length);
        float[] last = [];
        foreach (int token in prompt) last = stepwise.Feed([token]);
        for (int v = 0; v < expected.Length; v++) Assert.Equal(expected[v], last[v], 1e-4);
    }

    public static TheoryData<string, int> DsaCases()
    {
        var data = new TheoryData<string, int>();
        foreach (var arch in new[] { "glm_moe_dsa", "glm_moe_dsa_share" })
            for (int c = 0; c < 4; c++) data.Add(arch, c);
        return data;
    }

    /// <summary>glm_moe_dsa against transformers, once its fixtures exist (contexts within and past index_topk 16).</summary>
    [DsaFixtureTheory]
    [MemberData(nameof(DsaCases))]
    public void GlmMoeDsaMatchesTransformers(string arch, int caseIndex)
    {
        GreedyContinuationMatchesTransformers(arch, caseIndex);
        PromptLogitsMatchTransformers(arch, caseIndex);
    }
}

/// <summary>Skipped, with the way to make them, until the glm_moe_dsa fixtures are in tests/fixtures.</summary>
public sealed class DsaFixtureTheoryAttribute : TheoryAttribute
{
    public DsaFixtureTheoryAttribute()
    {
        if (!File.Exists(Path.Combine(Fixtures.Dir("glm_moe_dsa"), "expected.json")) || !File.Exists(Path.Combine(Fixtures.Dir("glm_moe_dsa_share"), "expected.json")))
            Skip = "glm_moe_dsa fixtures need transformers >= 5.16: run tests/fixtures/make_glm_moe_dsa.py where it is installed (the GPU machine has it)";
    }
}
