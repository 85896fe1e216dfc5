namespace Glm.Text.Grammar;

/// <summary>
/// A compiled grammar: a graph of character edges, splits, rule calls and rule ends (a recursive transition
/// network). A position in it is a set of configurations, each a character node and the stack of nodes to return
/// to; stacks are interned, so configurations compare by reference and repeated states are recognised. Input is
/// fed as UTF-8 bytes, so a token that ends inside a character keeps the partial character in the state.
/// </summary>
public sealed class Grammar
{
    public enum Kind : byte { Char, Split, Call, End, Accept }

    public readonly record struct Node(Kind Kind, CharSet? Set, int Next, int[]? Outs, int Callee = -1);

    /// <summary>One frame of a return stack, interned per grammar.</summary>
    public sealed class Frame(int returnNode, Frame? parent)
    {
        public int ReturnNode { get; } = returnNode;
        public Frame? Parent { get; } = parent;
        public int Depth { get; } = parent is null ? 1 : parent.Depth + 1;
    }

    public readonly record struct Config(int Node, Frame? Stack);

    /// <summary>Deeper nesting than this is not generated (a JSON value nested 256 levels deep is not an answer).</summary>
    public const int MaxStackDepth = 256;

    private readonly Dictionary<(int, Frame?), Frame> _frames = [];
    private readonly object _lock = new();

    internal Node[] Nodes { get; }
    public int NodeCount => Nodes.Length;
    public State Initial { get; }

    internal Grammar(Node[] nodes, int start)
    {
        Nodes = nodes;
        Initial = Close([new Config(start, null)], out _) is { Length: > 0 } c ? new State(c, 0, 0, 0)
            : throw new GrammarException("no value satisfies it");
    }

    internal Frame Push(int returnNode, Frame? parent)
    {
        lock (_lock)
        {
            if (!_frames.TryGetValue((returnNode, parent), out var f)) _frames[(returnNode, parent)] = f = new Frame(returnNode, parent);
            return f;
        }
    }

    /// <summary>
    /// Follows splits, calls and ends from the given configurations to the character and accept nodes they reach.
    /// A rule end with an empty stack sets <paramref name="popped"/>: the walk has left the rule it started in
    /// (only walks that start inside a rule, without its caller, see that).
    /// </summary>
    internal Config[] Close(IEnumerable<Config> from, out bool popped)
    {
        popped = false;
        var seen = new HashSet<Config>();
        var result = new List<Config>();
        var work = new Stack<Config>(from);
        while (work.Count > 0)
        {
            var c = work.Pop();
            if (!seen.Add(c)) continue;
            var n = Nodes[c.Node];
            switch (n.Kind)
            {
                case Kind.Char: case Kind.Accept: result.Add(c); break;
                case Kind.Split: foreach (int o in n.Outs!) work.Push(new Config(o, c.Stack)); break;
                case Kind.Call:
                    // A call in tail position returns straight to the caller's caller: no frame (so a rule that
                    // loops through itself, as an automaton written as rules does, runs in constant stack).
                    if (Nodes[n.Next].Kind == Kind.End) work.Push(new Config(n.Callee, c.Stack));
                    else if ((c.Stack?.Depth ?? 0) < MaxStackDepth) work.Push(new Config(n.Callee, Push(n.Next, c.Stack)));
                    break;
                case Kind.End:
                    if (c.Stack is null) popped = true;
                    else work.Push(new Config(c.Stack.ReturnNode, c.Stack.Parent));
                    break;
            }
        }
        return [.. result];
    }

    /// <summary>
    /// A position: the configurations reached, and a partly read UTF-8 character (its bits so far, or -1 when
    /// any character will do; the bytes it still needs; the bytes it has in all).
    /// </summary>
    public sealed class State(Config[] configs, int partial, int remaining, int length)
    {
        public Config[] Configs { get; } = configs;
        internal int Partial { get; } = partial;
        internal int Remaining { get; } = remaining;
        internal int Length { get; } = length;
        public bool InCharacter => Remaining > 0;
    }

    /// <summary>Whether the text may end here (the root has been matched whole).</summary>
    public bool CanEnd(State s) => !s.InCharacter && s.Configs.Any(c => Nodes[c.Node].Kind == Kind.Accept);

    /// <summary>Whether nothing but the end may follow.</summary>
    public bool MustEnd(State s) => !s.InCharacter && s.Configs.All(c => Nodes[c.Node].Kind == Kind.Accept);

    /// <summary>The state after one byte, or null if it leaves the grammar.</summary>
    public State? Step(State s, byte b) => Step(s, b, out _);

    internal State? Step(State s, byte b, out bool popped)
    {
        popped = false;
        if (s.Remaining == 0)
        {
            if (b < 0x80) return StepChar(s.Configs, b, out popped);
            int need, bits;
            if (b is >= 0xC2 and <= 0xDF) { need = 1; bits = b & 0x1F; }
            else if (b is >= 0xE0 and <= 0xEF) { need = 2; bits = b & 0x0F; }
            else if (b is >= 0xF0 and <= 0xF4) { need = 3; bits = b & 0x07; }
            else return null;
            // Where every set takes all non-ASCII characters or none (string content, most classes), which
            // character comes does not matter: one state per byte count instead of one per prefix. Not for the
            // lead bytes whose next byte decides validity (overlong or surrogate forms).
            if (b is not (0xE0 or 0xED or 0xF0 or 0xF4) && Uniform(s.Configs))
                return AnyNonAscii(s.Configs) ? new State(s.Configs, -1, need, need + 1) : null;
            return Viable(s.Configs, bits, need, need + 1) ? new State(s.Configs, bits, need, need + 1) : null;
        }
        if ((b & 0xC0) != 0x80) return null;
        if (s.Partial < 0)
            return s.Remaining > 1 ? new State(s.Configs, -1, s.Remaining - 1, s.Length) : StepChar(s.Configs, 0x100, out popped);
        int value = s.Partial << 6 | (b & 0x3F), remaining = s.Remaining - 1;
        if (remaining > 0) return Viable(s.Configs, value, remaining, s.Length) ? new State(s.Configs, value, remaining, s.Length) : null;
        int min = s.Length switch { 2 => 0x80, 3 => 0x800, _ => 0x10000 };
        if (value < min || value > CharSet.MaxCodePoint || value is >= 0xD800 and <= 0xDFFF) return null;
        return StepChar(s.Configs, value, out popped);
    }

    private bool Uniform(Config[] configs)
    {
        foreach (var c in configs)
            if (Nodes[c.Node] is { Kind: Kind.Char } n && !n.Set!.AllNonAscii && !n.Set.NoNonAscii) return false;
        return true;
    }

    private bool AnyNonAscii(Config[] configs)
    {
        foreach (var c in configs)
            if (Nodes[c.Node] is { Kind: Kind.Char } n && n.Set!.AllNonAscii) return true;
        return false;
    }

    private bool Viable(Config[] configs, int bits, int remaining, int length)
    {
        int lo = bits << (6 * remaining), hi = lo | ((1 << (6 * remaining)) - 1);
        // Not an overlong encoding, not beyond the last code point.
        lo = Math.Max(lo, length switch { 2 => 0x80, 3 => 0x800, _ => 0x10000 });
        hi = Math.Min(hi, CharSet.MaxCodePoint);
        if (lo > hi) return false;
        foreach (var c in configs)
            if (Nodes[c.Node] is { Kind: Kind.Char } n && n.Set!.Intersects(lo, hi)) return true;
        return false;
    }

    private State? StepChar(Config[] configs, int ch, out bool popped)
    {
        List<Config>? moved = null;
        foreach (var c in configs)
            if (Nodes[c.Node] is { Kind: Kind.Char } n && n.Set!.Contains(ch)) (moved ??= []).Add(new Config(n.Next, c.Stack));
        popped = false;
        if (moved is null) return null;
        var next = Close(moved, out popped);
        return next.Length == 0 ? null : new State(next, 0, 0, 0);
    }

    /// <summary>The state after some bytes, or null if they leave the grammar.</summary>
    public State? Advance(State s, ReadOnlySpan<byte> bytes)
    {
        State? cur = s;
        foreach (byte b in bytes) { cur = Step(cur, b); if (cur is null) return null; }
        return cur;
    }

    /// <summary>Whether the whole text is in the grammar's language.</summary>
    public bool Matches(string text) => Advance(Initial, System.Text.Encoding.UTF8.GetBytes(text)) is { } s && CanEnd(s);
}
