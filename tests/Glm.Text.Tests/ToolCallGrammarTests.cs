using Glm.Text.Parsing;

namespace Glm.Text.Tests;

public class ToolCallGrammarTests
{
    private static readonly Dictionary<string, string[]> Functions = new()
    {
        ["get_weather"] = ["city", "unit"],
        ["now"] = [],
    };

    [Theory]
    [InlineData("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>北京 </arg_value>\n</tool_call>")]
    [InlineData("\n<tool_call>get_weather<arg_key>city</arg_key><arg_value>Oslo</arg_value><arg_key>unit</arg_key><arg_value>c</arg_value></tool_call>")]
    [InlineData("<tool_call>now</tool_call>")]
    [InlineData("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>a < b and <arg_val</arg_value>\n</tool_call>\n<tool_call>now\n</tool_call>")]
    public void CompleteCallsAreAcceptedAndMayEnd(string text)
    {
        var g = new ToolCallGrammar(Functions, singleCall: false);
        var state = g.Advance(g.Initial, text);
        Assert.NotNull(state);
        Assert.True(state.Value.CanEnd);
        // Every prefix is a valid prefix too (the property constrained decoding relies on).
        for (int i = 0; i < text.Length; i++) Assert.NotNull(g.Advance(g.Initial, text.AsSpan(0, i)));
        Assert.False(g.Advance(g.Initial, text.AsSpan(0, text.Length - 1))!.Value.CanEnd);
    }

    [Theory]
    [InlineData("Hello")]                                              // no call at all
    [InlineData("<tool_call>get_time\n")]                              // unknown function
    [InlineData("<tool_call>get_weather\n<arg_key>country</arg_key>")] // key not in the schema
    [InlineData("<tool_call>get_weather\n{\"city\": \"Oslo\"}")]       // JSON, which GLM does not emit
    public void TextOutsideTheGrammarIsRejected(string text) =>
        Assert.Null(new ToolCallGrammar(Functions, singleCall: false).Advance(new ToolCallGrammar(Functions, false).Initial, text));

    /// <summary>The decoder's shortcut: inside a value with nothing pending, text without '&lt;' changes nothing.</summary>
    [Fact]
    public void InsideAValueTextWithoutATagKeepsTheState()
    {
        var g = new ToolCallGrammar(Functions, singleCall: false);
        var inValue = g.Advance(g.Initial, "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Ber")!.Value;
        Assert.True(ToolCallGrammar.AcceptsAnyTextWithoutTag(inValue));
        foreach (string text in new[] { "lin", " 東京\n", "{\"a\": 1}", "/arg_value>" })
            Assert.Equal(inValue, g.Advance(inValue, text));
        var pending = g.Advance(inValue, "</arg")!.Value;
        Assert.False(ToolCallGrammar.AcceptsAnyTextWithoutTag(pending));
        Assert.False(ToolCallGrammar.AcceptsAnyTextWithoutTag(g.Initial));
    }

    [Fact]
    public void ANamedChoiceAllowsExactlyOneCall()
    {
        var g = new ToolCallGrammar(new Dictionary<string, string[]> { ["now"] = [] }, singleCall: true);
        var done = g.Advance(g.Initial, "<tool_call>now</tool_call>");
        Assert.True(done!.Value.CanEnd);
        Assert.Null(g.Advance(done.Value, "\n"));
    }

    [Fact]
    public void ACallClosesOnlyWithItsRequiredKeysAndGivesEachKeyOnce()
    {
        var g = new ToolCallGrammar(Functions, singleCall: false, new Dictionary<string, string[]> { ["get_weather"] = ["city"] });
        Assert.Null(g.Advance(g.Initial, "<tool_call>get_weather</tool_call>"));
        Assert.Null(g.Advance(g.Initial, "<tool_call>get_weather\n</")); // not even the start of a close that must fail
        Assert.Null(g.Advance(g.Initial, "<tool_call>get_weather\n<arg_key>unit</arg_key>")); // required keys first
        Assert.NotNull(g.Advance(g.Initial, "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n<arg_key>unit</arg_key>\n<arg_value>c</arg_value>\n</tool_call>"));
        Assert.Null(g.Advance(g.Initial, "<tool_call>get_weather<arg_key>city</arg_key><arg_value>A</arg_value><arg_key>city</arg_key><arg_value>B</arg_value>"));
        // The next call starts with nothing given.
        var two = g.Advance(g.Initial, "<tool_call>get_weather<arg_key>city</arg_key><arg_value>A</arg_value></tool_call><tool_call>get_weather<arg_key>city</arg_key><arg_value>B</arg_value></tool_call>");
        Assert.True(two is { CanEnd: true });
        // A required key the properties do not list can still be given, so the call can close.
        var odd = new ToolCallGrammar(new Dictionary<string, string[]> { ["f"] = [] }, singleCall: true, new Dictionary<string, string[]> { ["f"] = ["x"] });
        Assert.True(odd.Advance(odd.Initial, "<tool_call>f<arg_key>x</arg_key><arg_value>1</arg_value></tool_call>") is { CanEnd: true });
    }
}
