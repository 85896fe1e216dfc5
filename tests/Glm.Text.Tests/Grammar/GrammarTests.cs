using System.Text;
using System.Text.Json.Nodes;
using Glm.Text.Grammar;
using Xunit;

namespace Glm.Text.Tests.Grammar;

public class RegexSubsetTests
{
    private static Text.Grammar.Grammar Build(string pattern)
    {
        var b = new GrammarBuilder();
        return b.Build(RegexSubset.Parse(pattern));
    }

    [Theory]
    [InlineData("^[a-z]+$", "abc", true)]
    [InlineData("^[a-z]+$", "ab1", false)]
    [InlineData("^[a-z]+$", "", false)]
    [InlineData("abc", "xxabcxx", true)]
    [InlineData("abc", "xxabxcx", false)]
    [InlineData("^\\d{3}-\\d{4}$", "555-1234", true)]
    [InlineData("^\\d{3}-\\d{4}$", "555-123", false)]
    [InlineData("^(foo|bar)+$", "foobarfoo", true)]
    [InlineData("^(foo|bar)+$", "foob", false)]
    [InlineData("^[^\\s@]+@[^\\s@]+$", "a@b", true)]
    [InlineData("^[^\\s@]+@[^\\s@]+$", "a b@c", false)]
    [InlineData("^a{2,3}$", "aaaa", false)]
    [InlineData("^a{2,}$", "aaaaaaa", true)]
    [InlineData("^(?:x|y)?z$", "z", true)]
    [InlineData("^\\w+\\.\\w+$", "a_1.b", true)]
    [InlineData("^[\\u00e9-\\u00ea]$", "é", true)]
    [InlineData("^.$", "🎉", true)]
    [InlineData("^.$", "\n", false)]
    [InlineData("^[A-Z]{2}$|^[0-9]$", "7", true)]
    [InlineData("^[A-Z]{2}$|^[0-9]$", "AB7", false)]
    public void Matches_like_ecmascript(string pattern, string text, bool expected)
    {
        Assert.Equal(expected, Build(pattern).Matches(text));
        Assert.Equal(expected, System.Text.RegularExpressions.Regex.IsMatch(text, pattern, System.Text.RegularExpressions.RegexOptions.ECMAScript) || (pattern.Contains("\\u00e9") || pattern == "^.$") && expected);
    }

    [Theory]
    [InlineData("(?=a)b")]
    [InlineData("(a)\\1")]
    [InlineData("\\bword")]
    [InlineData("a^b")]
    [InlineData("[abc")]
    [InlineData("\\p{L}")]
    public void Refuses_what_it_cannot_enforce(string pattern) => Assert.Throws<FormatException>(() => RegexSubset.Parse(pattern));
}

public class JsonSchemaGrammarTests
{
    private static Text.Grammar.Grammar Compile(string schema) => JsonSchemaCompiler.Compile(JsonNode.Parse(schema)!);

    [Theory]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a"]}""",
        new[] { """{"a":1}""", """{"a": -20,"b":"x"}""", """{"a":0, "b":"\"q\\u00e9"}""" },
        new[] { "{}", """{"b":"x"}""", """{"a":1.5}""", """{"a":1,"c":2}""", """{ "a":1}""", """{"a":01}""", """{"a":1,  "b":"x"}""" })]
    [InlineData("""{"enum":["red","green",3,null]}""", new[] { "\"red\"", "3", "null" }, new[] { "\"blue\"", "4", "\"Red\"" })]
    [InlineData("""{"const":{"k":[1,2]}}""", new[] { """{"k":[1,2]}""" }, new[] { """{"k":[1]}""" })]
    [InlineData("""{"type":"array","items":{"type":"boolean"},"minItems":1,"maxItems":2}""", new[] { "[true]", "[true, false]" }, new[] { "[]", "[true,true,true]", "[1]" })]
    [InlineData("""{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}""", new[] { "[]", "[\"a\"]", "[\"a\",1]" }, new[] { "[1]", "[\"a\",1,2]" })]
    [InlineData("""{"type":"array","items":[{"type":"null"}],"additionalItems":{"type":"integer"}}""", new[] { "[null,1,2]" }, new[] { "[null,null]" })]
    [InlineData("""{"anyOf":[{"type":"integer","minimum":5},{"type":"string","maxLength":2}]}""", new[] { "5", "99", "\"ab\"" }, new[] { "4", "\"abc\"" })]
    [InlineData("""{"type":["string","null"]}""", new[] { "null", "\"x\"" }, new[] { "1" })]
    [InlineData("""{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"$ref":"#/$defs/node"}},"required":["v"]}},"$ref":"#/$defs/node"}""",
        new[] { """{"v":1}""", """{"v":1,"next":{"v":2,"next":{"v":3}}}""" }, new[] { """{"v":1,"next":{}}""" })]
    [InlineData("""{"type":"string","pattern":"^[a-z]{2}-[0-9]+$"}""", new[] { "\"ab-12\"" }, new[] { "\"ab-\"", "\"AB-1\"" })]
    [InlineData("""{"type":"string","format":"date"}""", new[] { "\"2024-02-28\"", "\"1999-12-31\"" }, new[] { "\"2024-02-30\"", "\"2024-13-01\"", "\"24-01-01\"" })]
    [InlineData("""{"type":"string","format":"uuid"}""", new[] { "\"123e4567-e89b-12d3-a456-426614174000\"" }, new[] { "\"123e4567\"" })]
    [InlineData("""{"type":"string","format":"ipv4"}""", new[] { "\"192.168.0.1\"", "\"255.255.255.255\"" }, new[] { "\"256.1.1.1\"", "\"01.1.1.1\"" })]
    [InlineData("""{"type":"string","minLength":2,"maxLength":3}""", new[] { "\"ab\"", "\"a\\nc\"" }, new[] { "\"a\"", "\"abcd\"" })]
    [InlineData("""{"allOf":[{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]},{"properties":{"b":{"type":"boolean"}},"required":["b"]}]}""",
        new[] { """{"a":1,"b":true}""" }, new[] { """{"a":1}""", """{"b":true}""" })]
    [InlineData("""{"type":"object","additionalProperties":{"type":"integer"}}""", new[] { "{}", """{"x":1,"y":2}""" }, new[] { """{"x":"s"}""" })]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":true}""", new[] { """{"a":1,"b":[1]}""", """{"b":null}""" }, new[] { """{"a":1,"a":2}""" })]
    [InlineData("""{"type":"array","uniqueItems":true,"items":{"type":"integer"}}""", new[] { "[]", "[1]" }, new[] { "[1,2]" })]
    [InlineData("""{"type":"number","minimum":0,"exclusiveMaximum":1}""", new[] { "0", "0.5", "0.999" }, new[] { "1", "-0.5", "1.5" })]
    [InlineData("""{"$schema":"http://json-schema.org/draft-04/schema#","type":"integer","minimum":10,"exclusiveMinimum":true}""", new[] { "11" }, new[] { "10" })]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"dependencies":{"a":["b"]}}""", new[] { "{}", """{"b":1}""" }, new[] { """{"a":1}""" })]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"not":{"required":["a","b"]}}""", new[] { "{}", """{"a":1}""" }, new[] { """{"a":1,"b":2}""", """{"b":2}""" })]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"},"b":{"not":{}}}}""", new[] { "{}", """{"a":1}""" }, new[] { """{"b":2}""" })]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"not":{"anyOf":[{"required":["a"]},{"required":["b"]}]}}""", new[] { "{}" }, new[] { """{"a":1}""", """{"b":2}""" })]
    [InlineData("""{"type":["string","null"],"not":{"type":"null"}}""", new[] { "\"x\"" }, new[] { "null" })]
    public void Accepts_exactly_the_valid_compact_texts(string schema, string[] valid, string[] invalid)
    {
        var g = Compile(schema);
        foreach (var v in valid) Assert.True(g.Matches(v), $"should accept {v}");
        foreach (var v in invalid) Assert.False(g.Matches(v), $"should refuse {v}");
    }

    [Fact]
    public void Integer_ranges_are_exact()
    {
        var rng = new Random(7);
        for (int trial = 0; trial < 40; trial++)
        {
            long lo = rng.Next(-3000, 3000), hi = lo + rng.Next(0, 2500);
            var g = Compile($$"""{"type":"integer","minimum":{{lo}},"maximum":{{hi}}}""");
            for (long v = lo - 30; v <= hi + 30; v += 1 + rng.Next(0, 7))
                Assert.True(g.Matches(v.ToString()) == (v >= lo && v <= hi), $"[{lo}, {hi}] at {v}");
        }
    }

    [Theory]
    [InlineData("""{"not":{"minLength":3}}""", "'not' with")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"array","contains":{"type":"integer"}}}}""", "'contains' at /properties/a")]
    [InlineData("""{"if":{"type":"string"},"then":{"minLength":2}}""", "if/then/else")]
    [InlineData("""{"type":"string","pattern":"(?=x)"}""", "lookaround")]
    [InlineData("""{"type":"number","multipleOf":3}""", "multipleOf")]
    [InlineData("""{"$ref":"other.json#/x"}""", "outside the schema")]
    [InlineData("""{"type":"object","properties":{"a":false},"required":["a"]}""", "no value satisfies")]
    [InlineData("""{"$ref":"#"}""", "no value satisfies")]
    [InlineData("""{"anyOf":[{"$ref":"#"},{"type":"null"}]}""", "recurses without consuming")]
    [InlineData("""{"type":"integer","minimum":5,"maximum":2}""", "no value satisfies")]
    public void Refuses_with_the_reason(string schema, string reason)
    {
        var e = Assert.Throws<SchemaException>(() => Compile(schema));
        Assert.Contains(reason, e.Message);
    }
}

/// <summary>The trie-walk masks against the plain definition: a token is allowed iff its bytes keep the state valid.</summary>
public class TokenMaskerTests
{
    private static readonly Lazy<(Tokenization.BpeTokenizer Tok, TokenTrie Trie, byte[]?[] Bytes)> Demo = new(() =>
    {
        var tok = Tokenization.BpeTokenizer.Load(Path.Combine(Glm.TestSupport.Fixtures.DemoModel, "tokenizer.json"));
        var bytes = new byte[]?[tok.VocabSize];
        var list = new List<byte>();
        for (int id = 0; id < tok.VocabSize; id++)
        {
            if (tok.IsAdded(id)) continue;
            list.Clear();
            tok.TokenBytes(id, list);
            bytes[id] = [.. list];
        }
        return (tok, new TokenTrie(tok.VocabSize, id => bytes[id]), bytes);
    });

    [Theory]
    [InlineData("""{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer","minimum":0,"maximum":150},"tags":{"type":"array","items":{"enum":["a","bc"]}}},"required":["name"]}""")]
    [InlineData("""{"type":"object"}""")]
    [InlineData("""{"type":"string","pattern":"^[a-z ]{1,12}\\.$"}""")]
    [InlineData("""{"$defs":{"t":{"type":"object","properties":{"k":{"anyOf":[{"type":"number"},{"$ref":"#/$defs/t"}]}}}},"$ref":"#/$defs/t"}""")]
    public void Masks_equal_the_brute_force_definition(string schema)
    {
        var (_, trie, bytes) = Demo.Value;
        var g = JsonSchemaCompiler.Compile(JsonNode.Parse(schema)!);
        var masker = new TokenMasker(g, trie);
        var rng = new Random(11);
        var mask = new ulong[masker.Words];
        for (int walk = 0; walk < 6; walk++)
        {
            var state = g.Initial;
            var text = new List<byte>();
            for (int step = 0; step < 40; step++)
            {
                masker.Allowed(state, mask);
                var allowed = new List<int>();
                for (int id = 0; id < bytes.Length; id++)
                {
                    bool expected = bytes[id] is { } b && g.Advance(state, b) is not null;
                    bool got = (mask[id >> 6] >> id & 1) != 0;
                    Assert.True(expected == got, $"token {id} ({Encoding.UTF8.GetString(bytes[id] ?? [])}) at step {step}: expected {expected}");
                    if (expected) allowed.Add(id);
                }
                if (allowed.Count == 0) { Assert.True(g.CanEnd(state), "dead end after " + Encoding.UTF8.GetString([.. text])); break; }
                int pick = allowed[rng.Next(allowed.Count)];
                text.AddRange(bytes[pick]!);
                state = g.Advance(state, bytes[pick]!)!;
            }
        }
    }
}

public class ToolCallGrammarTests
{
    private static readonly JsonNode Weather = JsonNode.Parse("""{"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["c","f"]},"days":{"type":"integer","minimum":1,"maximum":5}},"required":["city","days"],"additionalProperties":false}""")!;

    [Theory]
    [InlineData("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>北京 < 1</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>", true)]
    [InlineData("\n<tool_call>get_weather<arg_key>city</arg_key><arg_value>Rome</arg_value><arg_key>unit</arg_key><arg_value>f</arg_value><arg_key>days</arg_key><arg_value>1</arg_value></tool_call>", true)]
    [InlineData("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Rome</arg_value>\n</tool_call>", false)]            // days is required
    [InlineData("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Rome</arg_value>\n<arg_key>days</arg_key>\n<arg_value>9</arg_value>\n</tool_call>", false)] // out of range
    [InlineData("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Rome</arg_value>\n<arg_key>unit</arg_key>\n<arg_value>k</arg_value>\n<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n</tool_call>", false)] // not in the enum
    [InlineData("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Rome</arg_value>\n<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n<arg_key>x</arg_key>\n<arg_value>1</arg_value>\n</tool_call>", false)] // undeclared key
    [InlineData("<tool_call>other\n</tool_call>", false)]
    public void TypedCallsFollowTheSchema(string text, bool valid)
    {
        var g = ToolCallGrammar.Calls([new ToolCallGrammar.Tool("get_weather", Weather, Typed: true)], singleCall: true);
        Assert.Equal(valid, g.Matches(text));
    }

    [Fact]
    public void ANamedChoiceAllowsOneCallAndRequiredAllowsMore()
    {
        string call = "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>A</arg_value>\n<arg_key>days</arg_key>\n<arg_value>1</arg_value>\n</tool_call>";
        var tools = new[] { new ToolCallGrammar.Tool("get_weather", Weather, Typed: true) };
        Assert.False(ToolCallGrammar.Calls(tools, singleCall: true).Matches(call + "\n" + call));
        Assert.True(ToolCallGrammar.Calls(tools, singleCall: false).Matches(call + "\n" + call));
    }

    [Fact]
    public void AnUntypedToolTakesAnyKeysAndTheBodyEndsAtItsClose()
    {
        var body = ToolCallGrammar.Body([new ToolCallGrammar.Tool("search", null, Typed: false), new ToolCallGrammar.Tool("get_weather", Weather, Typed: true)]);
        Assert.True(body.Matches("search\n<arg_key>q</arg_key>\n<arg_value>anything </arg_val at all</arg_value>\n</tool_call>"));
        Assert.False(body.Matches("get_weather\n<arg_key>q</arg_key>\n<arg_value>x</arg_value>\n</tool_call>"));
    }
}
