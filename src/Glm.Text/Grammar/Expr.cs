namespace Glm.Text.Grammar;

/// <summary>
/// A grammar expression over characters: sets, sequences, alternatives, bounded or unbounded repetition and
/// references to named rules (which is what lets a grammar recurse). Expressions are trees that may share
/// subtrees; <see cref="GrammarBuilder"/> compiles a shared subtree once per continuation.
/// </summary>
public abstract class Expr
{
    public static readonly Expr Empty = new SeqExpr([]);
    /// <summary>Matches nothing at all (an impossible branch).</summary>
    public static readonly Expr Never = new AltExpr([]);

    public static Expr Chars(CharSet set) => set.IsEmpty ? Never : new CharsExpr(set);
    public static Expr Char(char c) => new CharsExpr(CharSet.Single(c));

    public static Expr Literal(string text)
    {
        if (text.Length == 0) return Empty;
        var items = new List<Expr>();
        for (int i = 0; i < text.Length; i++)
        {
            int c = char.ConvertToUtf32(text, i);
            if (c > 0xFFFF) i++;
            items.Add(new CharsExpr(CharSet.Single(c)));
        }
        return items.Count == 1 ? items[0] : new SeqExpr([.. items]);
    }

    public static Expr Seq(params Expr[] items)
    {
        var flat = new List<Expr>();
        foreach (var e in items)
        {
            if (ReferenceEquals(e, Never)) return Never;
            if (e is SeqExpr s) flat.AddRange(s.Items); else flat.Add(e);
        }
        return flat.Count == 1 ? flat[0] : new SeqExpr([.. flat]);
    }

    public static Expr Alt(params Expr[] items)
    {
        var kept = items.Where(e => !ReferenceEquals(e, Never)).ToArray();
        return kept.Length == 0 ? Never : kept.Length == 1 ? kept[0] : new AltExpr(kept);
    }

    public static Expr Alt(IEnumerable<Expr> items) => Alt(items.ToArray());
    public static Expr Optional(Expr e) => Repeat(e, 0, 1);
    public static Expr Star(Expr e) => Repeat(e, 0, -1);

    /// <param name="max">-1: unbounded</param>
    public static Expr Repeat(Expr e, int min, int max)
    {
        if (max >= 0 && max < min) return Never;
        if (max == 0) return Empty;
        if (min == 1 && max == 1) return e;
        if (ReferenceEquals(e, Never)) return min == 0 ? Empty : Never;
        return new RepeatExpr(e, min, max);
    }

    public static Expr Rule(int id) => new RuleExpr(id);
}

public sealed class CharsExpr(CharSet set) : Expr { public CharSet Set { get; } = set; }
public sealed class SeqExpr(Expr[] items) : Expr { public Expr[] Items { get; } = items; }
public sealed class AltExpr(Expr[] items) : Expr { public Expr[] Items { get; } = items; }
public sealed class RepeatExpr(Expr item, int min, int max) : Expr
{
    public Expr Item { get; } = item;
    public int Min { get; } = min;
    /// <summary>-1: unbounded.</summary>
    public int Max { get; } = max;
}
public sealed class RuleExpr(int rule) : Expr { public int Id { get; } = rule; }
