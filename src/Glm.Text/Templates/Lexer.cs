using System.Text;

namespace Glm.Text.Templates;

internal enum TokenKind { Text, ExprStart, ExprEnd, StmtStart, StmtEnd, Name, String, Int, Float, Op, End }

internal readonly record struct Token(TokenKind Kind, string Value, int Line, int Column);

/// <summary>
/// Splits a template into text and tag tokens, applying Jinja's whitespace control the way Hugging Face configures
/// it: trim_blocks (drop the newline after a block tag), lstrip_blocks (drop indentation before a block tag), and
/// the explicit '-' / '+' modifiers.
/// </summary>
internal sealed class Lexer(string source)
{
    private readonly List<Token> _tokens = [];
    private int _pos;

    public List<Token> Tokenize()
    {
        var text = new StringBuilder();
        int textLine = 1, textCol = 1;
        bool lstripNextText = false; // set by a '-' on the closing side of the previous tag
        while (_pos < source.Length)
        {
            int tagStart = FindTagStart(_pos);
            if (tagStart < 0) { text.Append(source, _pos, source.Length - _pos); _pos = source.Length; break; }
            text.Append(source, _pos, tagStart - _pos);
            char kind = source[tagStart + 1];
            char modifier = tagStart + 2 < source.Length ? source[tagStart + 2] : '\0';
            // Whitespace control on the text before the tag.
            string before = text.ToString();
            if (lstripNextText) before = before.TrimStart();
            if (modifier == '-') before = before.TrimEnd();
            else if (kind == '%' && modifier != '+') before = StripLineIndent(before);
            if (kind == '#')
            {
                int endComment = source.IndexOf("#}", tagStart + 2, StringComparison.Ordinal);
                if (endComment < 0) throw Error("unterminated comment", tagStart);
                bool trimAfter = source[endComment - 1] == '-';
                Emit(TokenKind.Text, before, textLine, textCol);
                text.Clear();
                _pos = endComment + 2;
                lstripNextText = trimAfter;
                if (!trimAfter) SkipNewlineAfterBlock();
                (textLine, textCol) = LineCol(_pos);
                continue;
            }
            Emit(TokenKind.Text, before, textLine, textCol);
            text.Clear();
            lstripNextText = false;
            if (kind == '%' && IsRawBlock(tagStart, out int rawBodyStart, out int rawBodyEnd, out int rawAfter))
            {
                Emit(TokenKind.Text, source[rawBodyStart..rawBodyEnd], LineCol(rawBodyStart).Line, LineCol(rawBodyStart).Col);
                _pos = rawAfter;
                SkipNewlineAfterBlock();
                (textLine, textCol) = LineCol(_pos);
                continue;
            }
            _pos = tagStart + 2 + (modifier is '-' or '+' ? 1 : 0);
            var (l, c) = LineCol(tagStart);
            Emit(kind == '{' ? TokenKind.ExprStart : TokenKind.StmtStart, "", l, c);
            string close = kind == '{' ? "}}" : "%}";
            bool closedWithMinus = LexInside(close);
            Emit(kind == '{' ? TokenKind.ExprEnd : TokenKind.StmtEnd, "", l, c);
            lstripNextText = closedWithMinus;
            if (kind == '%' && !closedWithMinus) SkipNewlineAfterBlock();
            (textLine, textCol) = LineCol(_pos);
        }
        string rest = text.ToString();
        if (lstripNextText) rest = rest.TrimStart();
        Emit(TokenKind.Text, rest, textLine, textCol);
        _tokens.Add(new Token(TokenKind.End, "", LineCol(_pos).Line, LineCol(_pos).Col));
        return _tokens;
    }

    private bool IsRawBlock(int tagStart, out int bodyStart, out int bodyEnd, out int after)
    {
        bodyStart = bodyEnd = after = 0;
        int i = tagStart + 2;
        if (i < source.Length && source[i] is '-' or '+') i++;
        while (i < source.Length && char.IsWhiteSpace(source[i])) i++;
        if (string.CompareOrdinal(source, i, "raw", 0, 3) != 0) return false;
        int close = source.IndexOf("%}", i, StringComparison.Ordinal);
        if (close < 0 || source[(i + 3)..close].Trim('-', ' ', '\t', '\n', '\r').Length != 0) return false;
        bodyStart = close + 2;
        int search = bodyStart;
        while (true)
        {
            int open = source.IndexOf("{%", search, StringComparison.Ordinal);
            if (open < 0) throw Error("unterminated raw block", tagStart);
            int j = open + 2;
            if (j < source.Length && source[j] is '-' or '+') j++;
            while (j < source.Length && char.IsWhiteSpace(source[j])) j++;
            if (string.CompareOrdinal(source, j, "endraw", 0, 6) == 0)
            {
                bodyEnd = open;
                after = source.IndexOf("%}", j, StringComparison.Ordinal) + 2;
                return true;
            }
            search = open + 2;
        }
    }

    private int FindTagStart(int from)
    {
        for (int i = from; i < source.Length - 1; i++)
            if (source[i] == '{' && source[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    /// <summary>lstrip_blocks: remove spaces and tabs between the last newline (or the start) and the tag.</summary>
    private static string StripLineIndent(string before)
    {
        int i = before.Length;
        while (i > 0 && before[i - 1] is ' ' or '\t') i--;
        return i == 0 || before[i - 1] == '\n' ? before[..i] : before;
    }

    private void SkipNewlineAfterBlock()
    {
        if (_pos < source.Length && source[_pos] == '\n') _pos++;
        else if (_pos + 1 < source.Length && source[_pos] == '\r' && source[_pos + 1] == '\n') _pos += 2;
    }

    /// <summary>Lexes tokens up to the closing delimiter; returns whether it was written with '-'.</summary>
    private bool LexInside(string close)
    {
        while (true)
        {
            while (_pos < source.Length && char.IsWhiteSpace(source[_pos])) _pos++;
            if (_pos >= source.Length) throw Error($"missing '{close}'", _pos);
            if (source[_pos] == '-' && string.CompareOrdinal(source, _pos + 1, close, 0, 2) == 0) { _pos += 3; return true; }
            if (source[_pos] == '+' && string.CompareOrdinal(source, _pos + 1, close, 0, 2) == 0) { _pos += 3; return false; }
            if (string.CompareOrdinal(source, _pos, close, 0, 2) == 0) { _pos += 2; return false; }
            var (line, col) = LineCol(_pos);
            char ch = source[_pos];
            if (char.IsLetter(ch) || ch == '_')
            {
                int s = _pos;
                while (_pos < source.Length && (char.IsLetterOrDigit(source[_pos]) || source[_pos] == '_')) _pos++;
                Emit(TokenKind.Name, source[s.._pos], line, col);
            }
            else if (char.IsDigit(ch))
            {
                int s = _pos;
                while (_pos < source.Length && (char.IsDigit(source[_pos]) || source[_pos] == '_')) _pos++;
                bool isFloat = false;
                if (_pos + 1 < source.Length && source[_pos] == '.' && char.IsDigit(source[_pos + 1]))
                {
                    isFloat = true;
                    _pos++;
                    while (_pos < source.Length && char.IsDigit(source[_pos])) _pos++;
                }
                if (_pos < source.Length && source[_pos] is 'e' or 'E')
                {
                    isFloat = true;
                    _pos++;
                    if (_pos < source.Length && source[_pos] is '+' or '-') _pos++;
                    while (_pos < source.Length && char.IsDigit(source[_pos])) _pos++;
                }
                Emit(isFloat ? TokenKind.Float : TokenKind.Int, source[s.._pos].Replace("_", ""), line, col);
            }
            else if (ch is '\'' or '"')
            {
                Emit(TokenKind.String, ReadString(ch), line, col);
            }
            else
            {
                string[] ops = ["**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "<", ">", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "=", "~"];
                string? op = ops.FirstOrDefault(o => string.CompareOrdinal(source, _pos, o, 0, o.Length) == 0);
                if (op is null) throw Error($"unexpected character '{ch}'", _pos);
                _pos += op.Length;
                Emit(TokenKind.Op, op, line, col);
            }
        }
    }

    private string ReadString(char quote)
    {
        int start = _pos++;
        var sb = new StringBuilder();
        while (true)
        {
            if (_pos >= source.Length) throw Error("unterminated string", start);
            char c = source[_pos++];
            if (c == quote) return sb.ToString();
            if (c != '\\') { sb.Append(c); continue; }
            char e = source[_pos++];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'u': sb.Append((char)Convert.ToInt32(source.Substring(_pos, 4), 16)); _pos += 4; break;
                default: sb.Append('\\').Append(e); break;
            }
        }
    }

    private void Emit(TokenKind kind, string value, int line, int col)
    {
        if (kind == TokenKind.Text && value.Length == 0) return;
        _tokens.Add(new Token(kind, value, line, col));
    }

    private (int Line, int Col) LineCol(int pos)
    {
        int line = 1, col = 1;
        for (int i = 0; i < pos && i < source.Length; i++)
        {
            if (source[i] == '\n') { line++; col = 1; } else col++;
        }
        return (line, col);
    }

    private TemplateException Error(string message, int pos)
    {
        var (l, c) = LineCol(pos);
        return new TemplateException(message, l, c);
    }
}
