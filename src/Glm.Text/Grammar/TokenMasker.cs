using System.Numerics;
using System.Runtime.CompilerServices;

namespace Glm.Text.Grammar;

/// <summary>
/// Which tokens a grammar state allows, computed by walking the vocabulary trie. Most of the work is done once per
/// character node of the grammar, without the stack (xgrammar's adaptive token mask idea): walking the trie from
/// that node alone decides most tokens whatever the stack holds (a token that stays inside the current rule), and
/// records the few trie positions where the rule ends mid-token. At run time the node's cached set is combined
/// with short walks from those positions with the real caller, so a step costs a bitset OR plus a few small
/// walks, not a walk of the whole vocabulary. The stack-free walk itself runs over a lazily built byte automaton,
/// so characters shared by many tokens are stepped once.
/// </summary>
public sealed class TokenMasker
{
    private readonly Grammar _grammar;
    private readonly TokenTrie _trie;
    private readonly int _words;
    private readonly object _lock = new();
    private readonly Dictionary<int, NodeMask> _nodeMasks = [];
    private readonly Dictionary<StateKey, LocalState> _local = [];
    private readonly Dictionary<StateKey, LocalState> _scratch = [];
    private readonly Dictionary<StateKey, ulong[]> _recent = [];
    private const int RecentLimit = 128, MaxStates = 200_000;

    public TokenMasker(Grammar grammar, TokenTrie trie)
    {
        _grammar = grammar;
        _trie = trie;
        _words = (trie.VocabSize + 63) / 64;
    }

    public int Words => _words;

    /// <summary>What a character node decides alone: tokens allowed whatever the stack, and where the rule ends mid-token.</summary>
    private sealed class NodeMask(ulong[]? bits, int[]? ids, int[] resumes)
    {
        public readonly ulong[]? Bits = bits;
        public readonly int[]? Ids = ids;
        public readonly int[] Resumes = resumes;
    }

    /// <summary>A walk's state (stack-free, or a real caller's) with its memoized byte transitions.</summary>
    private sealed class LocalState(Grammar.State state, Dictionary<StateKey, LocalState> table)
    {
        public readonly Grammar.State State = state;
        /// <summary>Where the states it leads to are interned: the stack-free table, or one call's scratch table.</summary>
        public readonly Dictionary<StateKey, LocalState> Table = table;
        public readonly LocalState?[] Next = new LocalState?[256];
        public readonly byte[] Known = new byte[256]; // 0 unknown, 1 known, 2 known and the rule ended on this byte
    }

    /// <summary>Fills <paramref name="allowed"/> (one bit per token id) with the non-special tokens the state allows.</summary>
    public void Allowed(Grammar.State state, ulong[] allowed)
    {
        lock (_lock)
        {
            var key = new StateKey(state);
            if (_recent.TryGetValue(key, out var cached)) { cached.CopyTo(allowed, 0); return; }
            Array.Clear(allowed, 0, _words);
            _scratch.Clear(); // states with real stacks are shared within one call, not kept
            if (_local.Count > MaxStates) _local.Clear();
            if (state.InCharacter) Walk(0, Intern(state, _scratch), allowed, null);
            else
                foreach (var config in state.Configs)
                {
                    if (_grammar.Nodes[config.Node].Kind != Grammar.Kind.Char) continue;
                    var mask = NodeMaskOf(config.Node);
                    if (mask.Bits is { } bits) for (int w = 0; w < _words; w++) allowed[w] |= bits[w];
                    else foreach (int id in mask.Ids!) allowed[id >> 6] |= 1UL << id;
                    if (mask.Resumes.Length == 0 || config.Stack is not { } stack) continue;
                    var after = _grammar.Close([new Grammar.Config(stack.ReturnNode, stack.Parent)], out _);
                    if (after.Length == 0) continue;
                    // Every resume continues with the same caller state: its transitions are memoized like the
                    // stack-free ones, so the resumes' shared first bytes are stepped once.
                    var caller = Intern(new Grammar.State(after, 0, 0, 0), _scratch);
                    foreach (int node in mask.Resumes) Walk(node, caller, allowed, null);
                }
            if (_recent.Count >= RecentLimit) _recent.Clear();
            _recent[key] = (ulong[])allowed.Clone();
        }
    }

    private NodeMask NodeMaskOf(int grammarNode)
    {
        if (_nodeMasks.TryGetValue(grammarNode, out var m)) return m;
        var bits = new ulong[_words];
        var resumes = new List<int>();
        var start = Intern(new Grammar.State([new Grammar.Config(grammarNode, null)], 0, 0, 0), _local);
        Walk(0, start, bits, resumes);
        int count = 0;
        foreach (ulong w in bits) count += BitOperations.PopCount(w);
        m = count * 64 < _trie.VocabSize
            ? new NodeMask(null, Enumerable.Range(0, _trie.VocabSize).Where(i => (bits[i >> 6] >> i & 1) != 0).ToArray(), [.. resumes])
            : new NodeMask(bits, null, [.. resumes]);
        _nodeMasks[grammarNode] = m;
        return m;
    }

    /// <summary>
    /// Marks every token below <paramref name="node"/> that the state allows. For a stack-free walk
    /// (<paramref name="resumes"/> given) a rule that ends mid-token records where to resume with the real caller;
    /// states with real stacks never end that way.
    /// </summary>
    private void Walk(int node, LocalState state, ulong[] bits, List<int>? resumes)
    {
        var end = _trie.End;
        for (int c = node + 1; c < end[node]; c = end[c])
        {
            byte b = _trie.Label[c];
            if (state.Known[b] == 0)
            {
                var next = _grammar.Step(state.State, b, out bool popped);
                state.Next[b] = next is null ? null : Intern(next, state.Table);
                state.Known[b] = popped ? (byte)2 : (byte)1;
            }
            bool ended = state.Known[b] == 2;
            var to = state.Next[b];
            if (ended)
            {
                // The rule ended on this byte: the token here is allowed (its caller continues), and longer ones
                // depend on the caller: remember where to resume with the real stack.
                _trie.MarkTokens(c, bits);
                if (end[c] > c + 1) resumes?.Add(c);
            }
            if (to is null) continue;
            _trie.MarkTokens(c, bits);
            if (end[c] > c + 1) Walk(c, to, bits, resumes);
        }
    }

    private static LocalState Intern(Grammar.State s, Dictionary<StateKey, LocalState> into)
    {
        var key = new StateKey(s);
        if (!into.TryGetValue(key, out var l)) into[key] = l = new LocalState(s, into);
        return l;
    }

    /// <summary>A state compared by its configurations (in canonical order) and partial character.</summary>
    private readonly struct StateKey : IEquatable<StateKey>
    {
        private readonly Grammar.Config[] _configs;
        private readonly int _partial, _remaining, _length, _hash;

        public StateKey(Grammar.State s)
        {
            _configs = [.. s.Configs];
            Array.Sort(_configs, static (a, b) => a.Node != b.Node ? a.Node.CompareTo(b.Node)
                : RuntimeHelpers.GetHashCode(a.Stack).CompareTo(RuntimeHelpers.GetHashCode(b.Stack)));
            _partial = s.Partial;
            _remaining = s.Remaining;
            _length = s.Length;
            var h = new HashCode();
            h.Add(_partial); h.Add(_remaining); h.Add(_length);
            foreach (var c in _configs) { h.Add(c.Node); h.Add(RuntimeHelpers.GetHashCode(c.Stack)); }
            _hash = h.ToHashCode();
        }

        public bool Equals(StateKey other)
        {
            if (_hash != other._hash || _partial != other._partial || _remaining != other._remaining || _length != other._length || _configs.Length != other._configs.Length) return false;
            for (int i = 0; i < _configs.Length; i++)
                if (_configs[i].Node != other._configs[i].Node || !ReferenceEquals(_configs[i].Stack, other._configs[i].Stack)) return false;
            return true;
        }

        public override bool Equals(object? obj) => obj is StateKey k && Equals(k);
        public override int GetHashCode() => _hash;
    }
}
