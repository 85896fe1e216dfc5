namespace Glm.Text.Grammar;

/// <summary>
/// An immutable set of Unicode scalar values (code points, surrogates excluded), as sorted disjoint ranges with
/// an ASCII bitmap in front: grammar edges test one character against one set.
/// </summary>
public sealed class CharSet
{
    public const int MaxCodePoint = 0x10FFFF;
    private readonly int[] _ranges; // lo0, hi0, lo1, hi1, ... sorted, disjoint, not adjacent
    private readonly ulong _ascii0, _ascii1;

    /// <summary>Whether the set holds every non-ASCII scalar value, or none: then which one a multi-byte character is does not matter.</summary>
    public bool AllNonAscii { get; }
    public bool NoNonAscii { get; }

    private CharSet(int[] ranges)
    {
        _ranges = ranges;
        NoNonAscii = ranges.Length == 0 || ranges[^1] < 128;
        AllNonAscii = CoversNonAscii(ranges);
        for (int i = 0; i < ranges.Length; i += 2)
            for (int c = ranges[i]; c <= Math.Min(ranges[i + 1], 127); c++)
                if (c < 64) _ascii0 |= 1UL << c; else _ascii1 |= 1UL << (c - 64);
    }

    private static bool CoversNonAscii(int[] r)
    {
        // [.. 0xD7FF] and [0xE000 .. 0x10FFFF] must both be inside single ranges.
        bool low = false, high = false;
        for (int i = 0; i < r.Length; i += 2)
        {
            if (r[i] <= 0x80 && r[i + 1] >= 0xD7FF) low = true;
            if (r[i] <= 0xE000 && r[i + 1] >= MaxCodePoint) high = true;
        }
        return low && high;
    }

    public static readonly CharSet Empty = new([]);
    /// <summary>Every Unicode scalar value.</summary>
    public static readonly CharSet Any = new([0, 0xD7FF, 0xE000, MaxCodePoint]);

    public bool IsEmpty => _ranges.Length == 0;

    public static CharSet Single(int c) => Range(c, c);
    public static CharSet Range(int lo, int hi) => lo > hi ? Empty : Any.Intersect(new CharSet([lo, hi]));
    public static CharSet Of(string chars)
    {
        var list = new List<int>();
        for (int i = 0; i < chars.Length; i++) { int c = char.ConvertToUtf32(chars, i); if (c > 0xFFFF) i++; list.Add(c); list.Add(c); }
        return FromPairs(list);
    }

    private static CharSet FromPairs(List<int> pairs)
    {
        var spans = new List<(int Lo, int Hi)>();
        for (int i = 0; i < pairs.Count; i += 2) if (pairs[i] <= pairs[i + 1]) spans.Add((pairs[i], pairs[i + 1]));
        spans.Sort();
        var merged = new List<int>();
        foreach (var (lo, hi) in spans)
        {
            if (merged.Count > 0 && lo <= merged[^1] + 1) merged[^1] = Math.Max(merged[^1], hi);
            else { merged.Add(lo); merged.Add(hi); }
        }
        return merged.Count == 0 ? Empty : new CharSet([.. merged]);
    }

    public bool Contains(int c)
    {
        if (c < 64) return (_ascii0 >> c & 1) != 0;
        if (c < 128) return (_ascii1 >> (c - 64) & 1) != 0;
        int lo = 0, hi = _ranges.Length / 2 - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            if (c < _ranges[2 * mid]) hi = mid - 1;
            else if (c > _ranges[2 * mid + 1]) lo = mid + 1;
            else return true;
        }
        return false;
    }

    /// <summary>Whether any member lies in [lo, hi] (a partly decoded UTF-8 character could still become one).</summary>
    public bool Intersects(int lo, int hi)
    {
        for (int i = 0; i < _ranges.Length; i += 2)
            if (_ranges[i] <= hi && _ranges[i + 1] >= lo) return true;
        return false;
    }

    public CharSet Union(CharSet other)
    {
        var pairs = new List<int>(_ranges); pairs.AddRange(other._ranges);
        return FromPairs(pairs);
    }

    public CharSet Complement()
    {
        var pairs = new List<int>();
        int next = 0;
        for (int i = 0; i < _ranges.Length; i += 2)
        {
            pairs.Add(next); pairs.Add(_ranges[i] - 1);
            next = _ranges[i + 1] + 1;
        }
        pairs.Add(next); pairs.Add(MaxCodePoint);
        return Any.IntersectRaw(FromPairs(pairs));
    }

    public CharSet Intersect(CharSet other) => IntersectRaw(other);

    private CharSet IntersectRaw(CharSet other)
    {
        var pairs = new List<int>();
        for (int i = 0; i < _ranges.Length; i += 2)
            for (int j = 0; j < other._ranges.Length; j += 2)
            {
                int lo = Math.Max(_ranges[i], other._ranges[j]), hi = Math.Min(_ranges[i + 1], other._ranges[j + 1]);
                if (lo <= hi) { pairs.Add(lo); pairs.Add(hi); }
            }
        return FromPairs(pairs);
    }

    public CharSet Subtract(CharSet other) => Intersect(other.Complement());

    /// <summary>The members, one by one (for small sets: literal alternatives, escapes).</summary>
    public IEnumerable<int> Members()
    {
        for (int i = 0; i < _ranges.Length; i += 2)
            for (int c = _ranges[i]; c <= _ranges[i + 1]; c++) yield return c;
    }

    public int Count
    {
        get { long n = 0; for (int i = 0; i < _ranges.Length; i += 2) n += _ranges[i + 1] - _ranges[i] + 1; return (int)Math.Min(n, int.MaxValue); }
    }

    public override string ToString() =>
        "[" + string.Join(",", Enumerable.Range(0, _ranges.Length / 2).Select(i => _ranges[2 * i] == _ranges[2 * i + 1] ? $"{_ranges[2 * i]:X}" : $"{_ranges[2 * i]:X}-{_ranges[2 * i + 1]:X}")) + "]";
}
