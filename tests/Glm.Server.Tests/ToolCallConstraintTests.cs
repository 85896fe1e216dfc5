using Glm.Server.Api;
using Glm.Text.Parsing;
using Glm.Text.Tokenization;
using Glm.TestSupport;

namespace Glm.Server.Tests;

/// <summary>The tool-call constraint carries its grammar state from step to step; that must not change a mask.</summary>
public class ToolCallConstraintTests
{
    [Fact]
    public void StepByStepMasksEqualMasksComputedFromScratch()
    {
        var tokenizer = BpeTokenizer.Load(Path.Combine(Fixtures.DemoModel, "tokenizer.json"));
        var grammar = new ToolCallGrammar(new Dictionary<string, string[]> { ["get_weather"] = ["city", "unit"] }, singleCall: false);
        int[] end = [tokenizer.VocabSize - 1];
        var constraint = new ToolCallConstraint(grammar, tokenizer, end);
        var ids = tokenizer.Encode("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>北京 and 東京 < 1</arg_value>\n</tool_call>");
        object? carried = null;
        for (int n = 0; n <= ids.Length; n++)
        {
            var stepped = new float[tokenizer.VocabSize];
            var fresh = new float[tokenizer.VocabSize];
            constraint.Apply(ids.AsSpan(0, n), stepped, ref carried);
            object? none = null;
            constraint.Apply(ids.AsSpan(0, n), fresh, ref none);
            Assert.Equal(fresh, stepped);
            if (n < ids.Length) Assert.False(float.IsNegativeInfinity(stepped[ids[n]]), $"token {n} of a valid call was masked");
        }
    }
}
