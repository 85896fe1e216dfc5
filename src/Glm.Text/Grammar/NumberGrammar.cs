using System.Globalization;

namespace Glm.Text.Grammar;

/// <summary>
/// JSON numbers as grammar expressions: any number, any integer, and integers (or numbers) within bounds, built
/// digit by digit as the usual range-to-regex decomposition does. Digits are bounded (15 before the point, 15
/// after, 2 in an exponent, so no value overflows or underflows a double) so a weak model cannot ramble in
/// digits; every text these accept is a valid value.
/// </summary>
public static class NumberGrammar
{
    public const int MaxIntegerDigits = 15, MaxFractionDigits = 15;
    private const long Limit = 999_999_999_999_999; // the largest value with MaxIntegerDigits digits

    private static readonly Expr D = Expr.Chars(CharSet.Range('0', '9'));
    private static readonly Expr D19 = Expr.Chars(CharSet.Range('1', '9'));

    /// <summary>A non-negative integer without leading zeros.</summary>
    private static readonly Expr Natural = Expr.Alt(Expr.Char('0'), Expr.Seq(D19, Expr.Repeat(D, 0, MaxIntegerDigits - 1)));
    private static readonly Expr Fraction = Expr.Seq(Expr.Char('.'), Expr.Repeat(D, 1, MaxFractionDigits));
    private static readonly Expr Exponent = Expr.Seq(Expr.Chars(CharSet.Of("eE")), Expr.Optional(Expr.Chars(CharSet.Of("+-"))), Expr.Repeat(D, 1, 2));

    public static readonly Expr Integer = Expr.Seq(Expr.Optional(Expr.Char('-')), Natural);
    public static readonly Expr Number = Expr.Seq(Integer, Expr.Optional(Fraction), Expr.Optional(Exponent));

    /// <summary>Integers in [lo, hi] (null: unbounded on that side).</summary>
    public static Expr IntegerRange(long? lo, long? hi)
    {
        if (lo is null && hi is null) return Integer;
        long a = Math.Max(lo ?? -Limit, -Limit), b = Math.Min(hi ?? Limit, Limit);
        if (a > b) return Expr.Never;
        var parts = new List<Expr>();
        if (a < 0) parts.Add(Expr.Seq(Expr.Char('-'), Positive(Math.Max(1, b < 0 ? -b : 1), -a)));
        if (b >= 0) parts.Add(NonNegative(Math.Max(a, 0), b));
        return Expr.Alt(parts);
    }

    /// <summary>
    /// Numbers in a range given by inclusive or exclusive bounds: the integers in it, plus, for k from the range's
    /// non-negative integers with k + 1 within the upper bound, k followed by a fraction ending in a non-zero digit
    /// (so k &lt; value &lt; k + 1).
    /// Negative fractions and exponents are not generated when a bound is given: a subset, every member valid.
    /// </summary>
    public static Expr NumberRange(double? lo, bool loExclusive, double? hi, bool hiExclusive)
    {
        if (lo is null && hi is null) return Number;
        long? intLo = lo is { } l ? (long)Math.Clamp(loExclusive ? Math.Floor(l) + 1 : Math.Ceiling(l), -Limit - 1, Limit + 1) : null;
        long? intHi = hi is { } h ? (long)Math.Clamp(hiExclusive ? Math.Ceiling(h) - 1 : Math.Floor(h), -Limit - 1, Limit + 1) : null;
        var integers = IntegerRange(intLo, intHi);
        long kLo = Math.Max(lo is { } l2 ? (long)Math.Clamp(Math.Ceiling(l2), -Limit - 1, Limit + 1) : 0, 0);
        long? kHi = hi is { } h2 ? (long)Math.Clamp(Math.Floor(h2) - 1, -Limit - 1, Limit) : null;
        if (kHi is { } kh && kh < kLo) return integers;
        var nonZeroFraction = Expr.Seq(Expr.Char('.'), Expr.Repeat(D, 0, MaxFractionDigits - 1), D19);
        return Expr.Alt(integers, Expr.Seq(IntegerRange(kLo, kHi), nonZeroFraction));
    }

    private static Expr NonNegative(long a, long b)
    {
        var parts = new List<Expr>();
        if (a == 0) { parts.Add(Expr.Char('0')); a = 1; }
        if (a <= b) parts.Add(Positive(a, b));
        return Expr.Alt(parts);
    }

    /// <summary>Integers in [a, b], 1 ≤ a ≤ b, as digit strings without leading zeros.</summary>
    private static Expr Positive(long a, long b)
    {
        if (a > b) return Expr.Never;
        var parts = new List<Expr>();
        int da = Digits(a), db = Digits(b);
        for (int len = da; len <= db; len++)
        {
            long lo = len == da ? a : Pow10(len - 1), hi = len == db ? b : Pow10(len) - 1;
            parts.Add(SameLength(lo.ToString(CultureInfo.InvariantCulture), hi.ToString(CultureInfo.InvariantCulture)));
        }
        return Expr.Alt(parts);
    }

    /// <summary>Digit strings of one length between lo and hi inclusive.</summary>
    private static Expr SameLength(string lo, string hi)
    {
        if (lo.Length == 0) return Expr.Empty;
        if (lo == hi) return Expr.Literal(lo);
        char a = lo[0], b = hi[0];
        if (a == b) return Expr.Seq(Expr.Char(a), SameLength(lo[1..], hi[1..]));
        var parts = new List<Expr>();
        int rest = lo.Length - 1;
        bool loAllZero = lo.AsSpan(1).IndexOfAnyExcept('0') < 0, hiAllNine = hi.AsSpan(1).IndexOfAnyExcept('9') < 0;
        char firstFull = loAllZero ? a : (char)(a + 1), lastFull = hiAllNine ? b : (char)(b - 1);
        if (!loAllZero) parts.Add(Expr.Seq(Expr.Char(a), SameLength(lo[1..], new string('9', rest))));
        if (firstFull <= lastFull) parts.Add(Expr.Seq(Expr.Chars(CharSet.Range(firstFull, lastFull)), Expr.Repeat(D, rest, rest)));
        if (!hiAllNine) parts.Add(Expr.Seq(Expr.Char(b), SameLength(new string('0', rest), hi[1..])));
        return Expr.Alt(parts);
    }

    private static int Digits(long v) => v.ToString(CultureInfo.InvariantCulture).Length;
    private static long Pow10(int n) { long r = 1; for (int i = 0; i < n; i++) r *= 10; return r; }
}
