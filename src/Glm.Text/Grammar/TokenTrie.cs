namespace Glm.Text.Grammar;

/// <summary>
/// The vocabulary's byte strings as a trie laid out in depth-first order: a node's subtree is the contiguous
/// range [node, End[node]), its first child is node + 1 and the next sibling of a child c is End[c]. Built once per
/// tokenizer; token masks are computed by walking it with a grammar state, so a shared prefix is stepped once.
/// </summary>
public sealed class TokenTrie
{
    /// <summary>The byte on the edge into each node (root: unused).</summary>
    public byte[] Label { get; }
    /// <summary>The token whose bytes end at each node, or -1.</summary>
    public int[] Token { get; }
    /// <summary>One past the last node of each node's subtree.</summary>
    public int[] End { get; }
    /// <summary>Further tokens with the same bytes as the one at their node (rare: duplicate vocabulary entries).</summary>
    public IReadOnlyDictionary<int, int[]> Duplicates { get; }
    public int VocabSize { get; }
    public int NodeCount => Label.Length;

    /// <param name="tokenBytes">each token's bytes; null for tokens that are never grammar text (special and added tokens)</param>
    public TokenTrie(int vocabSize, Func<int, byte[]?> tokenBytes)
    {
        VocabSize = vocabSize;
        var entries = new List<(byte[] Bytes, int Id)>();
        for (int id = 0; id < vocabSize; id++)
            if (tokenBytes(id) is { Length: > 0 } b) entries.Add((b, id));
        entries.Sort((x, y) => { int c = x.Bytes.AsSpan().SequenceCompareTo(y.Bytes); return c != 0 ? c : x.Id.CompareTo(y.Id); });

        var label = new List<byte> { 0 };
        var token = new List<int> { -1 };
        var path = new List<int> { 0 }; // node at each depth of the current path
        var dup = new Dictionary<int, List<int>>();
        byte[] prev = [];
        foreach (var (bytes, id) in entries)
        {
            int common = 0;
            while (common < prev.Length && common < bytes.Length && prev[common] == bytes[common]) common++;
            path.RemoveRange(common + 1, path.Count - common - 1);
            for (int d = common; d < bytes.Length; d++)
            {
                label.Add(bytes[d]); token.Add(-1);
                path.Add(label.Count - 1);
            }
            int node = path[bytes.Length];
            if (token[node] < 0) token[node] = id;
            else { if (!dup.TryGetValue(node, out var l)) dup[node] = l = []; l.Add(id); }
            prev = bytes;
        }
        Label = [.. label];
        Token = [.. token];
        Duplicates = dup.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray());

        // Subtree ends from depths: a node's subtree ends at the next node that is not deeper.
        var depth = new int[Label.Length];
        {
            // Recompute depths by replaying the insertion order.
            int n = 1;
            prev = [];
            foreach (var (bytes, _) in entries)
            {
                int common = 0;
                while (common < prev.Length && common < bytes.Length && prev[common] == bytes[common]) common++;
                for (int d = common; d < bytes.Length; d++) depth[n++] = d + 1;
                prev = bytes;
            }
        }
        End = new int[Label.Length];
        var open = new Stack<int>();
        for (int i = 0; i < Label.Length; i++)
        {
            while (open.Count > 0 && depth[open.Peek()] >= depth[i]) End[open.Pop()] = i;
            open.Push(i);
        }
        while (open.Count > 0) End[open.Pop()] = Label.Length;
    }

    /// <summary>Marks the token(s) at a node in a bitset.</summary>
    public void MarkTokens(int node, ulong[] bits)
    {
        int t = Token[node];
        if (t < 0) return;
        bits[t >> 6] |= 1UL << t;
        if (Duplicates.Count > 0 && Duplicates.TryGetValue(node, out var more))
            foreach (int d in more) bits[d >> 6] |= 1UL << d;
    }
}
