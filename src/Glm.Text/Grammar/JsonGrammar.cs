using System.Globalization;

namespace Glm.Text.Grammar;

/// <summary>
/// The pieces of JSON text shared by every schema grammar: string characters (unescaped, or the escapes JSON
/// allows, never a lone surrogate), the encoding of a character set as JSON string content, and the bounded
/// whitespace the output allows (one optional space after ',' and ':', nothing else).
/// </summary>
public static class JsonGrammar
{
    /// <summary>Characters that may appear unescaped inside a JSON string.</summary>
    public static readonly CharSet Plain = CharSet.Range(0, 0x1F).Union(CharSet.Of("\"\\")).Complement();

    private static readonly CharSet Hex = CharSet.Range('0', '9').Union(CharSet.Range('a', 'f')).Union(CharSet.Range('A', 'F'));

    /// <summary>A backslash escape: \" \\ \/ \b \f \n \r \t, or \u and four hex digits that are not a surrogate.</summary>
    public static readonly Expr Escape = Expr.Seq(Expr.Char('\\'), Expr.Alt(
        Expr.Chars(CharSet.Of("\"\\/bfnrt")),
        Expr.Seq(Expr.Char('u'), Expr.Alt(
            Expr.Seq(Expr.Chars(Hex.Subtract(CharSet.Of("dD"))), Expr.Repeat(Expr.Chars(Hex), 3, 3)),
            Expr.Seq(Expr.Chars(CharSet.Of("dD")), Expr.Chars(CharSet.Range('0', '7')), Expr.Repeat(Expr.Chars(Hex), 2, 2))))));

    /// <summary>One optional space: the only whitespace allowed, after ',' and ':'.</summary>
    public static readonly Expr Space = Expr.Optional(Expr.Char(' '));

    public static readonly Expr Comma = Expr.Seq(Expr.Char(','), Space);
    public static readonly Expr Colon = Expr.Seq(Expr.Char(':'), Space);

    /// <summary>
    /// An expression over decoded characters (a pattern, a format) rewritten to match the same strings as JSON
    /// string content: characters that JSON must escape become their escapes.
    /// </summary>
    public static Expr Encode(Expr e) => Encode(e, new Dictionary<Expr, Expr>(ReferenceEqualityComparer.Instance));

    private static Expr Encode(Expr e, Dictionary<Expr, Expr> memo)
    {
        if (memo.TryGetValue(e, out var done)) return done;
        Expr result = e switch
        {
            CharsExpr c => EncodeSet(c.Set),
            SeqExpr s => Expr.Seq(s.Items.Select(i => Encode(i, memo)).ToArray()),
            AltExpr a => Expr.Alt(a.Items.Select(i => Encode(i, memo)).ToArray()),
            RepeatExpr r => Expr.Repeat(Encode(r.Item, memo), r.Min, r.Max),
            _ => e,
        };
        memo[e] = result;
        return result;
    }

    private static Expr EncodeSet(CharSet set)
    {
        var plain = set.Intersect(Plain);
        var escaped = set.Subtract(Plain);
        if (escaped.IsEmpty) return Expr.Chars(plain);
        var items = new List<Expr> { Expr.Chars(plain) };
        foreach (int c in escaped.Members())
            items.Add(Expr.Literal(c switch
            {
                '"' => "\\\"", '\\' => "\\\\", '\n' => "\\n", '\r' => "\\r", '\t' => "\\t", '\b' => "\\b", '\f' => "\\f",
                _ => "\\u" + c.ToString("x4", CultureInfo.InvariantCulture),
            }));
        return Expr.Alt(items);
    }

    /// <summary>The shortest and longest text an expression matches, in characters (max -1: unbounded).</summary>
    public static (int Min, int Max) Lengths(Expr e)
    {
        switch (e)
        {
            case CharsExpr: return (1, 1);
            case SeqExpr s:
            {
                int min = 0, max = 0;
                foreach (var i in s.Items)
                {
                    var (a, b) = Lengths(i);
                    min = Sat(min + (long)a);
                    max = max < 0 || b < 0 ? -1 : Sat(max + (long)b);
                }
                return (min, max);
            }
            case AltExpr a:
            {
                if (a.Items.Length == 0) return (0, 0);
                int min = int.MaxValue, max = 0;
                foreach (var i in a.Items)
                {
                    var (x, y) = Lengths(i);
                    min = Math.Min(min, x);
                    max = max < 0 || y < 0 ? -1 : Math.Max(max, y);
                }
                return (min, max);
            }
            case RepeatExpr r:
            {
                var (x, y) = Lengths(r.Item);
                return (Sat((long)x * r.Min), r.Max < 0 ? (y == 0 ? 0 : -1) : y < 0 ? -1 : Sat((long)y * r.Max));
            }
            default: return (0, -1);
        }
    }

    private static int Sat(long v) => (int)Math.Min(v, int.MaxValue / 2);

    /// <summary>
    /// The expression restricted to texts of [minLength, maxLength] characters, where that is easy to say: when its
    /// lengths already lie within the bounds, or when it is a sequence of fixed-length parts around one repeated
    /// single character class (as in ^[a-z][a-z0-9_]*$). Null otherwise.
    /// </summary>
    public static Expr? WithLength(Expr e, int minLength, int? maxLength)
    {
        var (min, max) = Lengths(e);
        if (min >= minLength && (maxLength is null || (max >= 0 && max <= maxLength))) return e;
        if (e is AltExpr alt)
        {
            var branches = new List<Expr>();
            foreach (var b in alt.Items)
            {
                if (WithLength(b, minLength, maxLength) is not { } bounded) return null;
                branches.Add(bounded);
            }
            return Expr.Alt(branches);
        }
        var items = e is SeqExpr s ? s.Items : [e];
        int variable = -1, fixedLength = 0;
        for (int i = 0; i < items.Length; i++)
        {
            var (a, b) = Lengths(items[i]);
            if (a == b) { fixedLength += a; continue; }
            if (variable >= 0 || items[i] is not RepeatExpr { Item: CharsExpr }) return null;
            variable = i;
        }
        if (variable < 0) return (fixedLength >= minLength && (maxLength is null || fixedLength <= maxLength)) ? e : Expr.Never;
        var r = (RepeatExpr)items[variable];
        int newMin = Math.Max(r.Min, minLength - fixedLength);
        int newMax = maxLength is { } m ? (r.Max < 0 ? m - fixedLength : Math.Min(r.Max, m - fixedLength)) : r.Max;
        if (newMax >= 0 && newMax < newMin) return Expr.Never;
        var copy = (Expr[])items.Clone();
        copy[variable] = Expr.Repeat(r.Item, newMin, newMax);
        return Expr.Seq(copy);
    }

    /// <summary>
    /// Any text that does not contain <paramref name="terminator"/> (a tool argument's raw value before
    /// &lt;/arg_value&gt;): the automaton that tracks how much of the terminator was just seen, so it can
    /// never be completed, written as rules.
    /// </summary>
    public static Expr TextWithout(GrammarBuilder b, string terminator)
    {
        int n = terminator.Length;
        // KMP failure function.
        var fail = new int[n];
        for (int i = 1, k = 0; i < n; i++)
        {
            while (k > 0 && terminator[i] != terminator[k]) k = fail[k - 1];
            if (terminator[i] == terminator[k]) k++;
            fail[i] = k;
        }
        int Next(int state, char c)
        {
            while (state > 0 && terminator[state] != c) state = fail[state - 1];
            return terminator[state] == c ? state + 1 : 0;
        }
        var rules = Enumerable.Range(0, n).Select(i => b.Declare($"text-without:{i}")).ToArray();
        for (int state = 0; state < n; state++)
        {
            // From `state` matched characters: stop here, or read a character that does not complete the terminator.
            var byTarget = new Dictionary<int, CharSet>();
            var special = terminator.Distinct().ToArray();
            foreach (char c in special)
            {
                int to = Next(state, c);
                if (to == n) continue;
                byTarget[to] = byTarget.GetValueOrDefault(to, CharSet.Empty).Union(CharSet.Single(c));
            }
            var others = CharSet.Of(new string(special)).Complement();
            byTarget[0] = byTarget.GetValueOrDefault(0, CharSet.Empty).Union(others);
            var options = new List<Expr> { Expr.Empty };
            foreach (var (to, set) in byTarget) options.Add(Expr.Seq(Expr.Chars(set), Expr.Rule(rules[to])));
            b.Define(rules[state], Expr.Alt(options));
        }
        return Expr.Rule(rules[0]);
    }
}
