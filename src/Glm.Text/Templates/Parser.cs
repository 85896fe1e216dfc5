using System.Globalization;

namespace Glm.Text.Templates;

/// <summary>Recursive-descent parser for Jinja statements and expressions, with Jinja's operator precedence.</summary>
internal sealed class Parser(List<Token> tokens)
{
    private int _i;

    private Token Peek => tokens[_i];
    private Token Next() => tokens[_i++];

    public List<Node> ParseTemplate()
    {
        var body = ParseBody([]);
        if (Peek.Kind != TokenKind.End) throw Error($"unexpected '{{% {Peek.Value} %}}'");
        return body;
    }

    /// <summary>Parses nodes until a statement whose keyword is in <paramref name="stopAt"/> (left unconsumed).</summary>
    private List<Node> ParseBody(string[] stopAt)
    {
        var nodes = new List<Node>();
        while (true)
        {
            var t = Peek;
            switch (t.Kind)
            {
                case TokenKind.End:
                    if (stopAt.Length > 0) throw Error($"missing '{{% {stopAt[^1]} %}}'");
                    return nodes;
                case TokenKind.Text:
                    Next();
                    nodes.Add(new TextNode(t.Value, t.Line, t.Column));
                    break;
                case TokenKind.ExprStart:
                    Next();
                    var e = ParseExpression();
                    Expect(TokenKind.ExprEnd, "}}");
                    nodes.Add(new OutputNode(e, t.Line, t.Column));
                    break;
                case TokenKind.StmtStart:
                    var keyword = tokens[_i + 1];
                    if (keyword.Kind == TokenKind.Name && stopAt.Contains(keyword.Value)) return nodes;
                    Next();
                    nodes.Add(ParseStatement(t));
                    break;
                default:
                    throw Error($"unexpected token '{t.Value}'");
            }
        }
    }

    private Node ParseStatement(Token start)
    {
        var kw = Next();
        if (kw.Kind != TokenKind.Name) throw Error("expected a statement keyword", kw);
        switch (kw.Value)
        {
            case "if":
            {
                var branches = new List<(Expr, List<Node>)>();
                var cond = ParseExpression();
                Expect(TokenKind.StmtEnd, "%}");
                branches.Add((cond, ParseBody(["elif", "else", "endif"])));
                List<Node>? elseBody = null;
                while (true)
                {
                    Next(); // {%
                    var k = Next();
                    if (k.Value == "elif")
                    {
                        var c = ParseExpression();
                        Expect(TokenKind.StmtEnd, "%}");
                        branches.Add((c, ParseBody(["elif", "else", "endif"])));
                    }
                    else if (k.Value == "else")
                    {
                        Expect(TokenKind.StmtEnd, "%}");
                        elseBody = ParseBody(["endif"]);
                    }
                    else { Expect(TokenKind.StmtEnd, "%}"); break; }
                }
                return new IfNode(branches, elseBody, start.Line, start.Column);
            }
            case "for":
            {
                var targets = new List<string> { ExpectName() };
                while (AcceptOp(",")) targets.Add(ExpectName());
                ExpectKeyword("in");
                var iterable = ParseOr(noConditional: true);
                Expr? filter = null;
                if (Peek.Kind == TokenKind.Name && Peek.Value == "if") { Next(); filter = ParseOr(noConditional: true); }
                if (Peek.Kind == TokenKind.Name && Peek.Value == "recursive") throw Error("recursive loops are not supported");
                Expect(TokenKind.StmtEnd, "%}");
                var body = ParseBody(["else", "endfor"]);
                List<Node>? elseBody = null;
                Next();
                if (Next().Value == "else")
                {
                    Expect(TokenKind.StmtEnd, "%}");
                    elseBody = ParseBody(["endfor"]);
                    Next(); Next();
                }
                Expect(TokenKind.StmtEnd, "%}");
                return new ForNode(targets, iterable, filter, body, elseBody, start.Line, start.Column);
            }
            case "set":
            {
                var targets = new List<string> { ExpectName() };
                string? attribute = null;
                if (AcceptOp(".")) attribute = ExpectName();
                while (AcceptOp(",")) targets.Add(ExpectName());
                if (AcceptOp("="))
                {
                    var value = ParseTupleOrExpression();
                    Expect(TokenKind.StmtEnd, "%}");
                    return new SetNode(targets, attribute, value, null, start.Line, start.Column);
                }
                Expect(TokenKind.StmtEnd, "%}");
                var body = ParseBody(["endset"]);
                Next(); Next();
                Expect(TokenKind.StmtEnd, "%}");
                return new SetNode(targets, attribute, null, body, start.Line, start.Column);
            }
            case "macro":
            {
                string name = ExpectName();
                Expect(TokenKind.Op, "(");
                var parameters = new List<(string, Expr?)>();
                while (!AcceptOp(")"))
                {
                    string p = ExpectName();
                    Expr? def = AcceptOp("=") ? ParseExpression() : null;
                    parameters.Add((p, def));
                    if (!AcceptOp(",")) { Expect(TokenKind.Op, ")"); break; }
                }
                Expect(TokenKind.StmtEnd, "%}");
                var body = ParseBody(["endmacro"]);
                Next(); Next();
                Expect(TokenKind.StmtEnd, "%}");
                return new MacroNode(name, parameters, body, start.Line, start.Column);
            }
            case "call":
            {
                var call = ParseExpression();
                Expect(TokenKind.StmtEnd, "%}");
                var body = ParseBody(["endcall"]);
                Next(); Next();
                Expect(TokenKind.StmtEnd, "%}");
                return new CallBlockNode(call, body, start.Line, start.Column);
            }
            case "filter":
            {
                string name = ExpectName();
                var args = new List<Expr>();
                if (AcceptOp("("))
                    while (!AcceptOp(")")) { args.Add(ParseExpression()); AcceptOp(","); }
                Expect(TokenKind.StmtEnd, "%}");
                var body = ParseBody(["endfilter"]);
                Next(); Next();
                Expect(TokenKind.StmtEnd, "%}");
                return new FilterBlockNode(name, args, body, start.Line, start.Column);
            }
            case "generation":
            {
                // HF's assistant-mask marker: renders its body unchanged.
                Expect(TokenKind.StmtEnd, "%}");
                var body = ParseBody(["endgeneration"]);
                Next(); Next();
                Expect(TokenKind.StmtEnd, "%}");
                return new IfNode([(new Literal(true, start.Line, start.Column), body)], null, start.Line, start.Column);
            }
            case "break":
            case "continue":
                Expect(TokenKind.StmtEnd, "%}");
                return new LoopControlNode(kw.Value == "break", start.Line, start.Column);
            default:
                throw Error($"unknown statement '{kw.Value}'", kw);
        }
    }

    private Expr ParseTupleOrExpression()
    {
        var first = ParseExpression();
        if (Peek.Kind != TokenKind.Op || Peek.Value != ",") return first;
        var items = new List<Expr> { first };
        while (AcceptOp(",")) items.Add(ParseExpression());
        return new TupleExpr(items, first.Line, first.Column);
    }

    public Expr ParseExpression() => ParseConditional();

    private Expr ParseConditional()
    {
        var value = ParseOr(noConditional: false);
        if (Peek.Kind == TokenKind.Name && Peek.Value == "if")
        {
            Next();
            var cond = ParseOr(noConditional: false);
            Expr? otherwise = null;
            if (Peek.Kind == TokenKind.Name && Peek.Value == "else") { Next(); otherwise = ParseConditional(); }
            return new ConditionalExpr(cond, value, otherwise, value.Line, value.Column);
        }
        return value;
    }

    private Expr ParseOr(bool noConditional)
    {
        var left = ParseAnd();
        while (Peek.Kind == TokenKind.Name && Peek.Value == "or") { var t = Next(); left = new BinaryExpr("or", left, ParseAnd(), t.Line, t.Column); }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (Peek.Kind == TokenKind.Name && Peek.Value == "and") { var t = Next(); left = new BinaryExpr("and", left, ParseNot(), t.Line, t.Column); }
        return left;
    }

    private Expr ParseNot()
    {
        if (Peek.Kind == TokenKind.Name && Peek.Value == "not") { var t = Next(); return new UnaryExpr("not", ParseNot(), t.Line, t.Column); }
        return ParseComparison();
    }

    private Expr ParseComparison()
    {
        var left = ParseConcat();
        while (true)
        {
            var t = Peek;
            if (t.Kind == TokenKind.Op && t.Value is "==" or "!=" or "<" or ">" or "<=" or ">=")
            {
                Next();
                left = new BinaryExpr(t.Value, left, ParseConcat(), t.Line, t.Column);
            }
            else if (t.Kind == TokenKind.Name && t.Value == "in") { Next(); left = new BinaryExpr("in", left, ParseConcat(), t.Line, t.Column); }
            else if (t.Kind == TokenKind.Name && t.Value == "not" && tokens[_i + 1].Value == "in")
            {
                Next(); Next();
                left = new UnaryExpr("not", new BinaryExpr("in", left, ParseConcat(), t.Line, t.Column), t.Line, t.Column);
            }
            else if (t.Kind == TokenKind.Name && t.Value == "is")
            {
                Next();
                bool negated = Peek.Kind == TokenKind.Name && Peek.Value == "not";
                if (negated) Next();
                string name = ExpectName();
                var args = new List<Expr>();
                if (AcceptOp("(")) while (!AcceptOp(")")) { args.Add(ParseExpression()); AcceptOp(","); }
                else if (Peek.Kind is TokenKind.String or TokenKind.Int or TokenKind.Float || (Peek.Kind == TokenKind.Name && Peek.Value is not ("and" or "or" or "else" or "if")))
                    args.Add(ParsePrimaryWithPostfix());
                left = new TestExpr(left, name, args, negated, t.Line, t.Column);
            }
            else return left;
        }
    }

    private Expr ParseConcat()
    {
        var left = ParseAdditive();
        while (Peek.Kind == TokenKind.Op && Peek.Value == "~") { var t = Next(); left = new BinaryExpr("~", left, ParseAdditive(), t.Line, t.Column); }
        return left;
    }

    private Expr ParseAdditive()
    {
        var left = ParseMultiplicative();
        while (Peek.Kind == TokenKind.Op && Peek.Value is "+" or "-") { var t = Next(); left = new BinaryExpr(t.Value, left, ParseMultiplicative(), t.Line, t.Column); }
        return left;
    }

    private Expr ParseMultiplicative()
    {
        var left = ParseUnary();
        while (Peek.Kind == TokenKind.Op && Peek.Value is "*" or "/" or "//" or "%") { var t = Next(); left = new BinaryExpr(t.Value, left, ParseUnary(), t.Line, t.Column); }
        return left;
    }

    private Expr ParseUnary()
    {
        if (Peek.Kind == TokenKind.Op && Peek.Value is "-" or "+") { var t = Next(); return new UnaryExpr(t.Value, ParseUnary(), t.Line, t.Column); }
        return ParsePower();
    }

    private Expr ParsePower()
    {
        var left = ParseFiltered();
        if (Peek.Kind == TokenKind.Op && Peek.Value == "**") { var t = Next(); return new BinaryExpr("**", left, ParseUnary(), t.Line, t.Column); }
        return left;
    }

    private Expr ParseFiltered()
    {
        var e = ParsePrimaryWithPostfix();
        while (Peek.Kind == TokenKind.Op && Peek.Value == "|")
        {
            var t = Next();
            string name = ExpectName();
            var (args, kwargs) = Peek.Kind == TokenKind.Op && Peek.Value == "(" ? ParseCallArgs() : ([], []);
            e = new FilterExpr(e, name, args, kwargs, t.Line, t.Column);
        }
        return e;
    }

    private Expr ParsePrimaryWithPostfix()
    {
        var e = ParsePrimary();
        while (Peek.Kind == TokenKind.Op)
        {
            var t = Peek;
            if (t.Value == ".") { Next(); var name = Next(); e = new AttrExpr(e, name.Value, t.Line, t.Column); }
            else if (t.Value == "(") { var (a, k) = ParseCallArgs(); e = new CallExpr(e, a, k, t.Line, t.Column); }
            else if (t.Value == "[")
            {
                Next();
                Expr? start = null, stop = null, step = null;
                bool slice = false;
                if (!(Peek.Kind == TokenKind.Op && Peek.Value == ":")) start = ParseExpression();
                if (AcceptOp(":"))
                {
                    slice = true;
                    if (!(Peek.Kind == TokenKind.Op && Peek.Value is ":" or "]")) stop = ParseExpression();
                    if (AcceptOp(":") && !(Peek.Kind == TokenKind.Op && Peek.Value == "]")) step = ParseExpression();
                }
                Expect(TokenKind.Op, "]");
                e = slice ? new SliceExpr(e, start, stop, step, t.Line, t.Column) : new IndexExpr(e, start!, t.Line, t.Column);
            }
            else break;
        }
        return e;
    }

    private (List<Expr>, List<(string, Expr)>) ParseCallArgs()
    {
        Expect(TokenKind.Op, "(");
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!AcceptOp(")"))
        {
            if (Peek.Kind == TokenKind.Name && tokens[_i + 1].Kind == TokenKind.Op && tokens[_i + 1].Value == "=")
            {
                string name = Next().Value;
                Next();
                kwargs.Add((name, ParseExpression()));
            }
            else args.Add(ParseExpression());
            if (!AcceptOp(",")) { Expect(TokenKind.Op, ")"); break; }
        }
        return (args, kwargs);
    }

    private Expr ParsePrimary()
    {
        var t = Next();
        switch (t.Kind)
        {
            case TokenKind.String:
            {
                string s = t.Value;
                while (Peek.Kind == TokenKind.String) s += Next().Value; // adjacent literals concatenate
                return new Literal(s, t.Line, t.Column);
            }
            case TokenKind.Int: return new Literal(long.Parse(t.Value, CultureInfo.InvariantCulture), t.Line, t.Column);
            case TokenKind.Float: return new Literal(double.Parse(t.Value, CultureInfo.InvariantCulture), t.Line, t.Column);
            case TokenKind.Name:
                return t.Value switch
                {
                    "true" or "True" => new Literal(true, t.Line, t.Column),
                    "false" or "False" => new Literal(false, t.Line, t.Column),
                    "none" or "None" => new Literal(null, t.Line, t.Column),
                    _ => new NameExpr(t.Value, t.Line, t.Column),
                };
            case TokenKind.Op when t.Value == "(":
            {
                if (AcceptOp(")")) return new TupleExpr([], t.Line, t.Column);
                var first = ParseExpression();
                if (AcceptOp(")")) return first;
                var items = new List<Expr> { first };
                while (AcceptOp(",")) { if (Peek.Value == ")") break; items.Add(ParseExpression()); }
                Expect(TokenKind.Op, ")");
                return new TupleExpr(items, t.Line, t.Column);
            }
            case TokenKind.Op when t.Value == "[":
            {
                var items = new List<Expr>();
                while (!AcceptOp("]")) { items.Add(ParseExpression()); if (!AcceptOp(",")) { Expect(TokenKind.Op, "]"); break; } }
                return new ListExpr(items, t.Line, t.Column);
            }
            case TokenKind.Op when t.Value == "{":
            {
                var items = new List<(Expr, Expr)>();
                while (!AcceptOp("}"))
                {
                    var k = ParseExpression();
                    Expect(TokenKind.Op, ":");
                    items.Add((k, ParseExpression()));
                    if (!AcceptOp(",")) { Expect(TokenKind.Op, "}"); break; }
                }
                return new DictExpr(items, t.Line, t.Column);
            }
            default:
                throw Error($"unexpected '{(t.Kind is TokenKind.ExprEnd or TokenKind.StmtEnd ? "end of tag" : t.Value)}'", t);
        }
    }

    private bool AcceptOp(string op)
    {
        if (Peek.Kind == TokenKind.Op && Peek.Value == op) { _i++; return true; }
        return false;
    }

    private void Expect(TokenKind kind, string what)
    {
        var t = Peek;
        if (t.Kind != kind || (kind == TokenKind.Op && t.Value != what)) throw Error($"expected '{what}'", t);
        _i++;
    }

    private string ExpectName()
    {
        var t = Next();
        if (t.Kind != TokenKind.Name) throw Error("expected a name", t);
        return t.Value;
    }

    private void ExpectKeyword(string kw)
    {
        var t = Next();
        if (t.Kind != TokenKind.Name || t.Value != kw) throw Error($"expected '{kw}'", t);
    }

    private TemplateException Error(string message, Token? at = null)
    {
        var t = at ?? Peek;
        return new TemplateException(message, t.Line, t.Column);
    }
}
