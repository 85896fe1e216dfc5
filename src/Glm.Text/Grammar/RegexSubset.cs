using System.Globalization;

namespace Glm.Text.Grammar;

/// <summary>
/// The part of ECMA-262 regular expressions that JSON Schema patterns use, as a grammar expression over
/// characters: literals and escapes, '.', classes with ranges and negation, \d \w \s and their negations,
/// groups (capturing, non-capturing, named), alternation, the quantifiers * + ? {n} {n,} {n,m} (lazy forms
/// match the same strings), and ^ / $ at the ends. Patterns are unanchored, as JSON Schema says: without ^ any
/// text may come before, without $ any text after. Lookaround, backreferences and word boundaries are refused.
/// </summary>
public sealed class RegexSubset
{
    private readonly string _p;
    private int _i;
    private const int MaxRepeat = 1000;

    private RegexSubset(string pattern) => _p = pattern;

    public static readonly CharSet Digit = CharSet.Range('0', '9');
    public static readonly CharSet Word = CharSet.Range('a', 'z').Union(CharSet.Range('A', 'Z')).Union(Digit).Union(CharSet.Single('_'));
    public static readonly CharSet Space = CharSet.Of(" \t\n\r\f\v\u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff").Union(CharSet.Range(0x2000, 0x200A));
    /// <summary>'.': any character but line terminators.</summary>
    public static readonly CharSet Dot = CharSet.Of("\n\r\u2028\u2029").Complement();

    /// <summary>The pattern as an expression over the characters of the whole string it must match somewhere in.</summary>
    /// <param name="fullMatch">the pattern must match the whole text, as if anchored at both ends (vLLM's regex outputs)</param>
    /// <exception cref="FormatException">the pattern uses something outside the subset, or is malformed</exception>
    public static Expr Parse(string pattern, bool fullMatch = false)
    {
        var r = new RegexSubset(pattern);
        var alternatives = new List<Expr>();
        while (true)
        {
            bool start = r.Eat('^') || fullMatch;
            var body = r.Sequence(topLevel: true, out bool end);
            end |= fullMatch;
            alternatives.Add(Expr.Seq(start ? Expr.Empty : Expr.Star(Expr.Chars(CharSet.Any)), body, end ? Expr.Empty : Expr.Star(Expr.Chars(CharSet.Any))));
            if (r._i >= r._p.Length) break;
            if (!r.Eat('|')) throw r.Error("unbalanced ')'");
        }
        return Expr.Alt(alternatives);
    }

    private FormatException Error(string what) => new($"pattern {Quote(_p)}: {what} at offset {_i}");
    private static string Quote(string s) => "'" + s + "'";

    private bool Eat(char c) { if (_i < _p.Length && _p[_i] == c) { _i++; return true; } return false; }

    private Expr Alternation()
    {
        var items = new List<Expr> { Sequence(false, out _) };
        while (Eat('|')) items.Add(Sequence(false, out _));
        return Expr.Alt(items);
    }

    /// <param name="end">set when the sequence ends with '$' (only allowed at the top level)</param>
    private Expr Sequence(bool topLevel, out bool end)
    {
        end = false;
        var items = new List<Expr>();
        while (_i < _p.Length && _p[_i] != '|' && _p[_i] != ')')
        {
            if (_p[_i] == '$')
            {
                _i++;
                if (!topLevel || (_i < _p.Length && _p[_i] != '|')) throw Error("'$' is supported only at the end of the pattern");
                end = true;
                break;
            }
            if (_p[_i] == '^') throw Error("'^' is supported only at the start of the pattern");
            var atom = Atom();
            items.Add(Quantified(atom));
        }
        return Expr.Seq([.. items]);
    }

    private Expr Quantified(Expr atom)
    {
        while (_i < _p.Length)
        {
            char c = _p[_i];
            int min, max;
            if (c == '*') { min = 0; max = -1; _i++; }
            else if (c == '+') { min = 1; max = -1; _i++; }
            else if (c == '?') { min = 0; max = 1; _i++; }
            else if (c == '{' && TryBraces(out min, out max)) { }
            else break;
            Eat('?'); // lazy: the same strings
            if (min > MaxRepeat || max > MaxRepeat) throw Error($"repetition counts above {MaxRepeat} are not supported");
            atom = Expr.Repeat(atom, min, max);
        }
        return atom;
    }

    private bool TryBraces(out int min, out int max)
    {
        min = max = 0;
        int j = _i + 1, start = j;
        while (j < _p.Length && char.IsAsciiDigit(_p[j])) j++;
        if (j == start) return false; // a literal '{'
        min = int.Parse(_p.AsSpan(start, j - start), CultureInfo.InvariantCulture);
        if (j < _p.Length && _p[j] == '}') { max = min; _i = j + 1; return true; }
        if (j >= _p.Length || _p[j] != ',') return false;
        j++;
        int s2 = j;
        while (j < _p.Length && char.IsAsciiDigit(_p[j])) j++;
        if (j >= _p.Length || _p[j] != '}') return false;
        max = j == s2 ? -1 : int.Parse(_p.AsSpan(s2, j - s2), CultureInfo.InvariantCulture);
        if (max >= 0 && max < min) throw Error("a {min,max} with max below min");
        _i = j + 1;
        return true;
    }

    private Expr Atom()
    {
        char c = _p[_i++];
        switch (c)
        {
            case '.': return Expr.Chars(Dot);
            case '[': return Expr.Chars(Class());
            case '(':
            {
                if (Eat('?'))
                {
                    if (Eat(':')) { }
                    else if (_i < _p.Length && _p[_i] == '<' && _i + 1 < _p.Length && _p[_i + 1] != '=' && _p[_i + 1] != '!')
                    {
                        int close = _p.IndexOf('>', _i);
                        if (close < 0) throw Error("unterminated group name");
                        _i = close + 1;
                    }
                    else throw Error("lookaround assertions are not supported");
                }
                var inner = Alternation();
                if (!Eat(')')) throw Error("missing ')'");
                return inner;
            }
            case '\\': return EscapeAtom();
            case '*': case '+': case '?': throw Error("a quantifier with nothing to repeat");
            case '{': case '}': case ']': return Expr.Char(c);
            default:
                if (char.IsHighSurrogate(c) && _i < _p.Length && char.IsLowSurrogate(_p[_i]))
                    return Expr.Chars(CharSet.Single(char.ConvertToUtf32(c, _p[_i++])));
                return Expr.Char(c);
        }
    }

    private Expr EscapeAtom()
    {
        if (_i >= _p.Length) throw Error("a trailing backslash");
        char e = _p[_i];
        if (e == 'b' || e == 'B') throw Error("word boundaries are not supported");
        if (char.IsAsciiDigit(e) && e != '0') throw Error("backreferences are not supported");
        return Expr.Chars(EscapeSet());
    }

    /// <summary>The characters an escape stands for (after the backslash).</summary>
    private CharSet EscapeSet()
    {
        char e = _p[_i++];
        switch (e)
        {
            case 'd': return Digit;
            case 'D': return Digit.Complement();
            case 'w': return Word;
            case 'W': return Word.Complement();
            case 's': return Space;
            case 'S': return Space.Complement();
            case 'n': return CharSet.Single('\n');
            case 'r': return CharSet.Single('\r');
            case 't': return CharSet.Single('\t');
            case 'f': return CharSet.Single('\f');
            case 'v': return CharSet.Single('\v');
            case '0': return CharSet.Single(0);
            case 'x': return CharSet.Single(Hex(2));
            case 'u':
                if (Eat('{'))
                {
                    int close = _p.IndexOf('}', _i);
                    if (close < 0) throw Error("unterminated \\u{...}");
                    int v = int.Parse(_p.AsSpan(_i, close - _i), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    _i = close + 1;
                    return CharSet.Single(v);
                }
                int u = Hex(4);
                if (u is >= 0xD800 and <= 0xDBFF && _i + 5 < _p.Length && _p[_i] == '\\' && _p[_i + 1] == 'u')
                {
                    int save = _i;
                    _i += 2;
                    int low = Hex(4);
                    if (low is >= 0xDC00 and <= 0xDFFF) return CharSet.Single(char.ConvertToUtf32((char)u, (char)low));
                    _i = save;
                }
                return CharSet.Single(u);
            case 'p': case 'P': throw Error("Unicode property classes are not supported");
            case 'c': throw Error("control escapes are not supported");
            default:
                if (char.IsAsciiLetterOrDigit(e)) throw Error($"the escape \\{e} is not supported");
                return CharSet.Single(e);
        }
    }

    private int Hex(int digits)
    {
        if (_i + digits > _p.Length || !int.TryParse(_p.AsSpan(_i, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int v))
            throw Error("a malformed hexadecimal escape");
        _i += digits;
        return v;
    }

    private CharSet Class()
    {
        bool negate = Eat('^');
        var set = CharSet.Empty;
        bool first = true;
        while (true)
        {
            if (_i >= _p.Length) throw Error("missing ']'");
            char c = _p[_i];
            if (c == ']' && !first) { _i++; break; }
            first = false;
            CharSet item;
            int single = -1;
            if (c == '\\')
            {
                _i++;
                if (_i < _p.Length && _p[_i] == 'b') { _i++; single = '\b'; item = CharSet.Single('\b'); }
                else { item = EscapeSet(); if (item.Count == 1) single = item.Members().First(); }
            }
            else
            {
                _i++;
                single = c;
                if (char.IsHighSurrogate(c) && _i < _p.Length && char.IsLowSurrogate(_p[_i])) single = char.ConvertToUtf32(c, _p[_i++]);
                item = CharSet.Single(single);
            }
            if (single >= 0 && _i + 1 < _p.Length && _p[_i] == '-' && _p[_i + 1] != ']')
            {
                _i++;
                int hi;
                if (_p[_i] == '\\') { _i++; var h = EscapeSet(); if (h.Count != 1) throw Error("a class range ending in a class escape"); hi = h.Members().First(); }
                else { hi = _p[_i++]; if (char.IsHighSurrogate((char)hi) && _i < _p.Length && char.IsLowSurrogate(_p[_i])) hi = char.ConvertToUtf32((char)hi, _p[_i++]); }
                if (hi < single) throw Error("a class range out of order");
                item = CharSet.Range(single, hi);
            }
            set = set.Union(item);
        }
        return negate ? set.Complement() : set;
    }
}
