using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using OpenAI.Chat;
using Xunit.Abstractions;

namespace Glm.Server.Tests;

/// <summary>
/// Structured outputs on the real demo model, checked with a real JSON Schema validator (JsonSchema.Net, format
/// assertions on): at temperature 0 and at temperature 1 over 20 seeds the answers parse and validate.
/// </summary>
public class StructuredOutputTests(DemoServer server, ITestOutputHelper output) : IClassFixture<DemoServer>
{
    /// <summary>Schemas that together use every keyword the engine enforces, in draft 4, 7 and 2020-12 spellings.</summary>
    public static TheoryData<string, string> Schemas() => new()
    {
        { "types", """{"type":"object","properties":{"s":{"type":"string","maxLength":12},"i":{"type":"integer","minimum":-5,"maximum":50},"n":{"type":"number","minimum":0,"maximum":10},"b":{"type":"boolean"},"z":{"type":"null"},"sn":{"type":["string","null"],"maxLength":6}},"required":["s","i","n","b","z","sn"],"additionalProperties":false}""" },
        { "weather", """{"type":"object","properties":{"city":{"type":"string","minLength":2,"maxLength":20},"unit":{"enum":["celsius","fahrenheit"]},"days":{"type":"integer","minimum":1,"maximum":7}},"required":["city","unit","days"]}""" },
        { "arrays", """{"type":"object","properties":{"tags":{"type":"array","items":{"type":"string","maxLength":8},"minItems":1,"maxItems":3},"point":{"type":"array","prefixItems":[{"type":"number","maximum":100,"minimum":-100},{"type":"number","maximum":100,"minimum":-100}],"items":false,"minItems":2},"flags":{"type":"array","items":{"type":"boolean"},"maxItems":2,"uniqueItems":true}},"required":["tags","point","flags"]}""" },
        { "enum-const", """{"type":"object","properties":{"kind":{"const":"event"},"level":{"enum":["low","mid","high",1,null]},"version":{"const":2}},"required":["kind","level","version"]}""" },
        { "combinators", """{"type":"object","properties":{"id":{"anyOf":[{"type":"integer","minimum":0,"maximum":999},{"type":"string","pattern":"^[a-z]{3}$"}]},"shape":{"oneOf":[{"type":"object","properties":{"r":{"type":"integer","minimum":1,"maximum":9}},"required":["r"],"additionalProperties":false},{"type":"object","properties":{"w":{"type":"integer","minimum":1,"maximum":9},"h":{"type":"integer","minimum":1,"maximum":9}},"required":["w","h"],"additionalProperties":false}]},"meta":{"allOf":[{"type":"object","properties":{"a":{"type":"boolean"}},"required":["a"]},{"properties":{"b":{"type":"integer","minimum":0,"maximum":3}},"required":["b"]}]}},"required":["id","shape","meta"]}""" },
        { "recursive-defs", """{"$schema":"https://json-schema.org/draft/2020-12/schema","$defs":{"node":{"type":"object","properties":{"name":{"type":"string","maxLength":6},"children":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["name"],"additionalProperties":false}},"$ref":"#/$defs/node"}""" },
        { "draft7-definitions", """{"$schema":"http://json-schema.org/draft-07/schema#","definitions":{"code":{"type":"string","pattern":"^[A-Z]{2}-[0-9]{2,4}$"}},"type":"object","properties":{"code":{"$ref":"#/definitions/code"},"score":{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1}},"required":["code","score"],"additionalProperties":false}""" },
        { "draft4", """{"$schema":"http://json-schema.org/draft-04/schema#","type":"object","properties":{"count":{"type":"integer","minimum":0,"exclusiveMinimum":true,"maximum":9},"items":{"type":"array","items":[{"type":"string","maxLength":4},{"type":"integer","minimum":0,"maximum":9}],"additionalItems":false}},"required":["count","items"]}""" },
        { "formats", """{"type":"object","properties":{"day":{"type":"string","format":"date"},"at":{"type":"string","format":"time"},"ts":{"type":"string","format":"date-time"},"id":{"type":"string","format":"uuid"},"mail":{"type":"string","format":"email"},"site":{"type":"string","format":"uri"},"ip":{"type":"string","format":"ipv4"}},"required":["day","at","ts","id","mail","site","ip"]}""" },
        { "additional-schema", """{"type":"object","properties":{"name":{"type":"string","maxLength":10}},"required":["name"],"additionalProperties":{"type":"integer","minimum":0,"maximum":99},"maxProperties":3}""" },
    };

    private async Task<JsonElement> Chat(object body)
    {
        using var r = await server.Http.PostAsJsonAsync("/v1/chat/completions", body);
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static object Request(string schema, double temperature, int n, ulong? seed, string user = "Describe it as JSON.", object? kwargs = null, int maxTokens = 400) => new Dictionary<string, object?>
    {
        ["model"] = "glm-demo",
        ["messages"] = new[] { new { role = "user", content = user } },
        ["temperature"] = temperature,
        ["n"] = n,
        ["seed"] = seed,
        ["max_tokens"] = maxTokens,
        ["response_format"] = new { type = "json_schema", json_schema = new { name = "answer", strict = true, schema = JsonDocument.Parse(schema).RootElement } },
        ["chat_template_kwargs"] = kwargs,
    };

    private static void AssertValid(string schemaText, JsonElement choice, string label)
    {
        string content = choice.GetProperty("message").GetProperty("content").GetString() ?? "";
        Assert.True(choice.GetProperty("finish_reason").GetString() == "stop", $"{label}: did not finish: {content}");
        var schema = Validator(schemaText);
        using var doc = JsonDocument.Parse(content);
        var result = schema.Evaluate(doc.RootElement, new EvaluationOptions { RequireFormatValidation = true, OutputFormat = OutputFormat.List });
        Assert.True(result.IsValid, $"{label}: {content} does not validate: " + string.Join("; ", (result.Details ?? []).Where(d => d.Errors is not null).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}"))));
    }

    /// <summary>
    /// The validator for a schema. JsonSchema.Net knows drafts 6 and later, so a draft-4 schema is checked as its
    /// draft-7 equivalent (exclusiveMinimum/Maximum: true become the numeric forms, the rest reads the same).
    /// </summary>
    private static JsonSchema Validator(string schemaText)
    {
        var node = JsonNode.Parse(schemaText)!;
        if (node["$schema"]?.GetValue<string>().Contains("draft-04") == true)
        {
            node["$schema"] = "http://json-schema.org/draft-07/schema#";
            void Convert(JsonNode? n)
            {
                if (n is JsonObject o)
                {
                    foreach (var (flag, bound) in new[] { ("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum") })
                        if (o[flag] is JsonValue v && v.GetValueKind() == JsonValueKind.True) { o[flag] = o[bound]!.DeepClone(); o.Remove(bound); }
                    foreach (var (_, child) in o.ToList()) Convert(child);
                }
                else if (n is JsonArray a) foreach (var child in a) Convert(child);
            }
            Convert(node);
            schemaText = node.ToJsonString();
        }
        return JsonSchema.FromText(schemaText, new BuildOptions { SchemaRegistry = new SchemaRegistry() });
    }

    [Theory]
    [MemberData(nameof(Schemas))]
    public async Task AnswersValidateAtTemperatureZeroAndOverTwentySeeds(string name, string schema)
    {
        var greedy = await Chat(Request(schema, 0, 1, null));
        AssertValid(schema, greedy.GetProperty("choices")[0], name + " greedy");
        output.WriteLine($"{name} greedy: {greedy.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()}");
        foreach (ulong seed in new ulong[] { 1, 1000 })
        {
            var sampled = await Chat(Request(schema, 1, 10, seed));
            foreach (var c in sampled.GetProperty("choices").EnumerateArray()) AssertValid(schema, c, $"{name} seed {seed}+{c.GetProperty("index").GetInt32()}");
        }
    }

    [Fact]
    public async Task ThinkingRunsFreeFirstAndTheAnswerStillValidates()
    {
        string schema = Schemas().First(r => (string)r[0] == "weather")[1].ToString()!;
        var on = await Chat(Request(schema, 0, 1, null, "What is the weather in Lisbon?"));
        var msg = on.GetProperty("choices")[0].GetProperty("message");
        Assert.False(string.IsNullOrEmpty(msg.GetProperty("reasoning_content").GetString()), "the model should have thought first");
        AssertValid(schema, on.GetProperty("choices")[0], "thinking");
        var off = await Chat(Request(schema, 0, 1, null, "What is the weather in Lisbon?", new { enable_thinking = false }));
        Assert.True(string.IsNullOrEmpty(off.GetProperty("choices")[0].GetProperty("message").GetProperty("reasoning_content").GetString()));
        AssertValid(schema, off.GetProperty("choices")[0], "no thinking");
    }

    [Fact]
    public async Task JsonObjectAlwaysYieldsAnObject()
    {
        // The demo model rambles inside free strings, so some answers run out of tokens: those must still be a
        // JSON object cut short; every finished one parses as an object.
        int finished = 0;
        foreach (ulong seed in new ulong[] { 3, 300 })
        {
            var res = await Chat(new Dictionary<string, object?>
            {
                ["model"] = "glm-demo", ["messages"] = new[] { new { role = "user", content = "Hello!" } }, ["temperature"] = 1, ["n"] = 10, ["seed"] = seed,
                ["max_tokens"] = 200, ["response_format"] = new { type = "json_object" },
            });
            foreach (var c in res.GetProperty("choices").EnumerateArray())
            {
                string content = c.GetProperty("message").GetProperty("content").GetString()!;
                Assert.StartsWith("{", content);
                if (c.GetProperty("finish_reason").GetString() == "length") continue;
                finished++;
                Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(content).RootElement.ValueKind);
            }
        }
        output.WriteLine($"{finished} of 20 finished within 200 tokens");
    }

    [Fact]
    public async Task MaxTokensInsideTheAnswerStopsWithLengthAndThePartialText()
    {
        string schema = """{"type":"object","properties":{"city":{"type":"string","maxLength":30}},"required":["city"]}""";
        var res = await Chat(Request(schema, 0, 1, null, maxTokens: 4, kwargs: new { enable_thinking = false }));
        var c = res.GetProperty("choices")[0];
        Assert.Equal("length", c.GetProperty("finish_reason").GetString());
        string partial = c.GetProperty("message").GetProperty("content").GetString()!;
        Assert.True(partial.Length > 0 && "{\"city\":".StartsWith(partial[..Math.Min(partial.Length, 8)], StringComparison.Ordinal), partial);
    }

    [Fact]
    public async Task TheOpenAiSdkStructuredOutputRoundTrips()
    {
        string schema = Schemas().First(r => (string)r[0] == "weather")[1].ToString()!;
        var options = new ChatCompletionOptions
        {
            Temperature = 0,
            MaxOutputTokenCount = 300,
            ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("weather", BinaryData.FromString(schema), jsonSchemaIsStrict: true),
        };
        var completion = (await server.Chat().CompleteChatAsync([new UserChatMessage("What's the weather in Lisbon?")], options)).Value;
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
        var parsed = JsonDocument.Parse(completion.Content[0].Text).RootElement;
        Assert.True(JsonSchema.FromText(schema, new BuildOptions { SchemaRegistry = new SchemaRegistry() }).Evaluate(parsed).IsValid, completion.Content[0].Text);
    }

    [Fact]
    public async Task ForcedToolCallsCarryEveryRequiredKeyWithTypedValues()
    {
        string parameters = """{"type":"object","properties":{"city":{"type":"string","maxLength":24},"unit":{"type":"string","enum":["celsius","fahrenheit"]},"days":{"type":"integer","minimum":1,"maximum":5},"detailed":{"type":"boolean"},"hours":{"type":"array","items":{"type":"integer","minimum":0,"maximum":23},"maxItems":3}},"required":["city","days","detailed"],"additionalProperties":false}""";
        var tool = JsonDocument.Parse("""{"type":"function","function":{"name":"get_weather","parameters":""" + parameters + "}}").RootElement;
        var validator = JsonSchema.FromText(parameters, new BuildOptions { SchemaRegistry = new SchemaRegistry() });
        foreach (object choice in new object[] { "required", new { type = "function", function = new { name = "get_weather" } } })
            foreach (var (temperature, seed) in new[] { (0.0, 0UL), (1.0, 7UL) })
            {
                var res = await Chat(new Dictionary<string, object?>
                {
                    ["model"] = "glm-demo", ["messages"] = new[] { new { role = "user", content = "Hello!" } }, ["temperature"] = temperature, ["n"] = temperature == 0 ? 1 : 10,
                    ["seed"] = seed, ["max_tokens"] = 200, ["tools"] = new[] { tool }, ["tool_choice"] = choice, ["parallel_tool_calls"] = false,
                });
                foreach (var c in res.GetProperty("choices").EnumerateArray())
                {
                    Assert.Equal("tool_calls", c.GetProperty("finish_reason").GetString());
                    var call = Assert.Single(c.GetProperty("message").GetProperty("tool_calls").EnumerateArray());
                    string args = call.GetProperty("function").GetProperty("arguments").GetString()!;
                    Assert.True(validator.Evaluate(JsonDocument.Parse(args).RootElement).IsValid, args);
                }
            }
    }

    [Fact]
    public async Task StrictToolsAreTypedUnderAuto()
    {
        string parameters = """{"type":"object","properties":{"city":{"type":"string","maxLength":24},"days":{"type":"integer","minimum":1,"maximum":5}},"required":["city","days"],"additionalProperties":false}""";
        var tool = JsonDocument.Parse("""{"type":"function","function":{"name":"get_weather","strict":true,"parameters":""" + parameters + "}}").RootElement;
        var validator = JsonSchema.FromText(parameters, new BuildOptions { SchemaRegistry = new SchemaRegistry() });
        var res = await Chat(new Dictionary<string, object?>
        {
            ["model"] = "glm-demo", ["messages"] = new[] { new { role = "user", content = "What's the weather in Lisbon?" } }, ["temperature"] = 1, ["n"] = 10,
            ["seed"] = 11, ["max_tokens"] = 200, ["tools"] = new[] { tool }, ["tool_choice"] = "auto",
        });
        int calls = 0;
        foreach (var c in res.GetProperty("choices").EnumerateArray())
            foreach (var call in c.GetProperty("message").GetProperty("tool_calls").EnumerateArray())
            {
                calls++;
                string args = call.GetProperty("function").GetProperty("arguments").GetString()!;
                Assert.True(validator.Evaluate(JsonDocument.Parse(args).RootElement).IsValid, args);
            }
        Assert.True(calls > 0, "the demo model calls the weather tool for a weather question");
    }

    [Fact]
    public async Task CompletionsTakeVllmsGuidedFields()
    {
        async Task<string[]> Complete(object extra)
        {
            var body = JsonSerializer.SerializeToNode(new { model = "glm-demo", prompt = "The answer is", temperature = 1, n = 8, seed = 5, max_tokens = 40 })!.AsObject();
            foreach (var (k, v) in JsonSerializer.SerializeToNode(extra)!.AsObject()) body[k] = v?.DeepClone();
            using var r = await server.Http.PostAsync("/v1/completions", new StringContent(body.ToJsonString(), System.Text.Encoding.UTF8, "application/json"));
            string text = await r.Content.ReadAsStringAsync();
            Assert.True(r.IsSuccessStatusCode, text);
            return JsonDocument.Parse(text).RootElement.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("text").GetString()!).ToArray();
        }
        foreach (var t in await Complete(new { guided_choice = new[] { "yes", "no", "maybe" } })) Assert.Contains(t, new[] { "yes", "no", "maybe" });
        foreach (var t in await Complete(new { structured_outputs = new { regex = "[0-9]{3}-[a-z]{2}" } })) Assert.Matches("^[0-9]{3}-[a-z]{2}$", t);
        foreach (var t in await Complete(new { guided_json = new { type = "object", properties = new { ok = new { type = "boolean" } }, required = new[] { "ok" } } }))
            Assert.True(JsonDocument.Parse(t).RootElement.GetProperty("ok").ValueKind is JsonValueKind.True or JsonValueKind.False, t);
    }

    [Fact]
    public async Task TheResponsesApiTakesTextFormat()
    {
        string schema = Schemas().First(r => (string)r[0] == "weather")[1].ToString()!;
        var body = new JsonObject
        {
            ["model"] = "glm-demo", ["input"] = "What's the weather in Lisbon?", ["temperature"] = 0, ["max_output_tokens"] = 300,
            ["text"] = new JsonObject { ["format"] = new JsonObject { ["type"] = "json_schema", ["name"] = "weather", ["strict"] = true, ["schema"] = JsonNode.Parse(schema) } },
        };
        using var r = await server.Http.PostAsync("/v1/responses", new StringContent(body.ToJsonString(), System.Text.Encoding.UTF8, "application/json"));
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.IsSuccessStatusCode, text);
        string answer = JsonDocument.Parse(text).RootElement.GetProperty("output").EnumerateArray().Where(i => i.GetProperty("type").GetString() == "message")
            .SelectMany(i => i.GetProperty("content").EnumerateArray()).Select(c => c.GetProperty("text").GetString()).Single()!;
        Assert.True(JsonSchema.FromText(schema, new BuildOptions { SchemaRegistry = new SchemaRegistry() }).Evaluate(JsonDocument.Parse(answer).RootElement).IsValid, answer);
    }

    [Theory]
    [InlineData("""{"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"type":"array","contains":{"type":"string"}}}}}}}""", "response_format.json_schema.schema", "'contains' at /properties/a")]
    [InlineData("""{"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":false},"required":["a"]}}}}""", "response_format.json_schema.schema", "no value satisfies")]
    [InlineData("""{"guided_json":"{not json"}""", "guided_json", "not valid JSON")]
    [InlineData("""{"guided_json":{"allOf":[{"properties":5},{"properties":{"a":{}}}]}}""", "guided_json", "not a valid JSON Schema")]
    [InlineData("""{"guided_json":{"type":"object","required":"a"}}""", "guided_json", "required must list strings")]
    [InlineData("""{"guided_regex":"(?=a)b"}""", "guided_regex", "lookaround")]
    [InlineData("""{"guided_grammar":"root ::= x"}""", "guided_grammar", "not supported")]
    [InlineData("""{"guided_choice":["a"],"response_format":{"type":"json_object"}}""", "guided_choice", "Only one structured output")]
    [InlineData("""{"structured_outputs":{"grammar":"root ::= x"}}""", "structured_outputs.grammar", "not supported")]
    [InlineData("""{"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"number","multipleOf":2}}}}""", "response_format.json_schema.schema", "multipleOf")]
    public async Task WhatCannotBeEnforcedIsRefusedWithTheReason(string extra, string param, string reason)
    {
        var body = JsonNode.Parse("""{"model":"glm-demo","messages":[{"role":"user","content":"hi"}],"max_tokens":4}""")!.AsObject();
        foreach (var (k, v) in JsonNode.Parse(extra)!.AsObject()) body[k] = v?.DeepClone();
        using var r = await server.Http.PostAsync("/v1/chat/completions", new StringContent(body.ToJsonString(), System.Text.Encoding.UTF8, "application/json"));
        string text = await r.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Contains(reason, error.GetProperty("message").GetString());
    }
}
