using System.Text.Json.Nodes;

namespace Glm.Text.Grammar;

/// <summary>
/// GLM's XML tool-call form as a grammar: <c>&lt;tool_call&gt;NAME\n(&lt;arg_key&gt;KEY&lt;/arg_key&gt;\n&lt;arg_value&gt;VALUE&lt;/arg_value&gt;\n)*&lt;/tool_call&gt;</c>,
/// every newline optional (GLM-4.7's compact form fits too). For a typed tool the keys come from its parameters
/// schema, in the schema's order, the required ones always, no undeclared one unless the schema asks for extras,
/// and each value satisfies its property's schema: raw text for a string-only property (its enum, pattern,
/// format and length enforced), JSON for a property that allows no string, any text where a string is one of the
/// choices (the typing rule reads it). An untyped tool takes any keys with any values.
/// </summary>
public static class ToolCallGrammar
{
    public const string CallOpen = "<tool_call>", CallClose = "</tool_call>", KeyOpen = "<arg_key>", KeyClose = "</arg_key>",
        ValueOpen = "<arg_value>", ValueClose = "</arg_value>";

    /// <param name="Typed">enforce the parameters schema (forced calls; "strict": true under auto)</param>
    public sealed record Tool(string Name, JsonNode? Parameters, bool Typed);

    /// <summary>The whole output as calls (tool_choice "required" or a named function): optional newlines, then one call or more.</summary>
    public static Grammar Calls(IReadOnlyList<Tool> tools, bool singleCall)
    {
        var b = new GrammarBuilder();
        var call = Expr.Seq(Expr.Literal(CallOpen), Bodies(b, tools));
        var lead = Expr.Repeat(Expr.Char('\n'), 0, 2);
        var root = singleCall ? Expr.Seq(lead, call) : Expr.Seq(lead, call, Expr.Star(Expr.Seq(lead, call)));
        return Build(b, root);
    }

    /// <summary>One call after its &lt;tool_call&gt;, through &lt;/tool_call&gt; (strict tools under tool_choice "auto").</summary>
    public static Grammar Body(IReadOnlyList<Tool> tools)
    {
        var b = new GrammarBuilder();
        return Build(b, Bodies(b, tools));
    }

    private static Grammar Build(GrammarBuilder b, Expr root)
    {
        try { return b.Build(root); }
        catch (GrammarException e) { throw new SchemaException("the tools cannot be used: " + e.Message); }
    }

    private static Expr Bodies(GrammarBuilder b, IReadOnlyList<Tool> tools)
    {
        if (tools.Count == 0) throw new SchemaException("a tool-call grammar needs at least one tool");
        var nl = Expr.Optional(Expr.Char('\n'));
        var anyKey = JsonGrammar.TextWithout(b, KeyClose);
        var anyValue = JsonGrammar.TextWithout(b, ValueClose);
        Expr Member(Expr key, Expr value) =>
            Expr.Seq(Expr.Literal(KeyOpen), key, Expr.Literal(KeyClose), nl, Expr.Literal(ValueOpen), value, Expr.Literal(ValueClose), nl);

        var bodies = new List<Expr>();
        foreach (var tool in tools)
        {
            var head = Expr.Seq(Expr.Literal(tool.Name), nl);
            if (!tool.Typed || tool.Parameters is null)
            {
                bodies.Add(Expr.Seq(head, Expr.Star(Member(anyKey, anyValue)), Expr.Literal(CallClose)));
                continue;
            }
            var compiler = new JsonSchemaCompiler(b, tool.Parameters);
            Expr ValueOf(JsonNode? schema) => compiler.ArgumentForm(schema) switch
            {
                "raw" => compiler.RawString(schema, ValueClose),
                "json" => compiler.Value(schema),
                _ => anyValue,
            };
            foreach (var shape in compiler.ObjectShapes(tool.Parameters))
            {
                var members = shape.Members.Select(m => Member(Expr.Literal(m.Name), ValueOf(m.Schema))).ToArray();
                var extra = shape.Extra is null ? null : Member(anyKey, ValueOf(shape.Extra));
                bodies.Add(Expr.Seq(head, JsonSchemaCompiler.OrderedMembers(members, shape.Members.Select(m => m.Required).ToArray(), extra, Expr.Empty),
                    Expr.Literal(CallClose)));
            }
        }
        return Expr.Alt(bodies);
    }
}
