namespace Glm.Text.Grammar;

/// <summary>Why a grammar cannot be built: it matches nothing, recurses without consuming, or is too large.</summary>
public sealed class GrammarException(string message) : Exception(message);

/// <summary>
/// Collects named rules and compiles them, with a root expression, into a <see cref="Grammar"/>: first the rules
/// that can never finish (no finite text) are found and their uses pruned, so a decoder is never led into a
/// dead end; then left recursion (a rule reaching itself before consuming a character) is refused, since a
/// character-driven matcher would loop on it; then the expressions become a node graph.
/// </summary>
public sealed class GrammarBuilder
{
    private readonly List<Expr?> _bodies = [];
    private readonly List<string> _names = [];

    /// <summary>Reserves a rule id before its body is known (for recursion).</summary>
    public int Declare(string name) { _bodies.Add(null); _names.Add(name); return _bodies.Count - 1; }

    public void Define(int rule, Expr body) => _bodies[rule] = body;

    public int Add(string name, Expr body) { int id = Declare(name); Define(id, body); return id; }

    public Grammar Build(Expr root, int maxNodes = 250_000)
    {
        for (int i = 0; i < _bodies.Count; i++)
            if (_bodies[i] is null) throw new InvalidOperationException($"rule '{_names[i]}' was declared but never defined");
        var bodies = _bodies.Select(b => b!).ToArray();
        var productive = Fixpoint(bodies, Productive);
        if (!Productive(root, productive)) throw new GrammarException("no value satisfies it (every alternative is impossible)");
        var nullable = Fixpoint(bodies, Nullable);
        CheckLeftRecursion(root, bodies, productive, nullable);
        return new Compiler(bodies, productive, maxNodes).Compile(root);
    }

    private static bool[] Fixpoint(Expr[] bodies, Func<Expr, bool[], bool> test)
    {
        var result = new bool[bodies.Length];
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int r = 0; r < bodies.Length; r++)
                if (!result[r] && test(bodies[r], result)) { result[r] = true; changed = true; }
        }
        return result;
    }

    /// <summary>Whether an expression can match some finite text (given which rules can).</summary>
    private static bool Productive(Expr e, bool[] rules) => Holds(e, rules, chars: true);

    /// <summary>Whether an expression can match the empty text (given which rules can).</summary>
    private static bool Nullable(Expr e, bool[] rules) => Holds(e, rules, chars: false);

    /// <summary>The two properties differ only in what a character set contributes.</summary>
    private static bool Holds(Expr e, bool[] rules, bool chars) => e switch
    {
        CharsExpr => chars,
        SeqExpr s => s.Items.All(i => Holds(i, rules, chars)),
        AltExpr a => a.Items.Any(i => Holds(i, rules, chars)),
        RepeatExpr r => r.Min == 0 || Holds(r.Item, rules, chars),
        RuleExpr r => rules[r.Id],
        _ => false,
    };

    /// <summary>Refuses a rule that can reach itself without consuming a character.</summary>
    private void CheckLeftRecursion(Expr root, Expr[] bodies, bool[] productive, bool[] nullable)
    {
        var left = new List<int>[bodies.Length];
        for (int r = 0; r < bodies.Length; r++) { left[r] = []; LeftCalls(bodies[r], left[r], productive, nullable); }
        var state = new byte[bodies.Length]; // 0 unseen, 1 on path, 2 done
        var start = new List<int>();
        LeftCalls(root, start, productive, nullable);
        foreach (int r in start) Visit(r);

        void Visit(int r)
        {
            if (state[r] == 2) return;
            if (state[r] == 1) throw new GrammarException($"it recurses without consuming any text (through '{_names[r]}')");
            state[r] = 1;
            foreach (int c in left[r]) Visit(c);
            state[r] = 2;
        }
    }

    private static void LeftCalls(Expr e, List<int> into, bool[] productive, bool[] nullable)
    {
        if (!Productive(e, productive)) return;
        switch (e)
        {
            case SeqExpr s:
                foreach (var item in s.Items) { LeftCalls(item, into, productive, nullable); if (!Nullable(item, nullable)) break; }
                break;
            case AltExpr a: foreach (var item in a.Items) LeftCalls(item, into, productive, nullable); break;
            case RepeatExpr r: LeftCalls(r.Item, into, productive, nullable); break;
            case RuleExpr r: into.Add(r.Id); break;
        }
    }

    /// <summary>Thompson-style construction: each expression is compiled against the node that follows it.</summary>
    private sealed class Compiler(Expr[] bodies, bool[] productive, int maxNodes)
    {
        private readonly List<Grammar.Node> _nodes = [];
        private readonly int[] _ruleStart = Enumerable.Repeat(-1, bodies.Length).ToArray();
        private readonly Dictionary<(Expr, int), int> _memo = new(new IdentityNext());
        private readonly List<(int Node, int Rule)> _calls = [];

        public Grammar Compile(Expr root)
        {
            int accept = Add(new Grammar.Node(Grammar.Kind.Accept, null, -1, null));
            int start = Emit(root, accept);
            foreach (var (node, rule) in _calls) _nodes[node] = _nodes[node] with { Callee = _ruleStart[rule] };
            return new Grammar([.. _nodes], start);
        }

        private int Add(Grammar.Node n)
        {
            if (_nodes.Count >= maxNodes) throw new GrammarException($"it is too large (more than {maxNodes} grammar states)");
            _nodes.Add(n);
            return _nodes.Count - 1;
        }

        private int Dead() => Add(new Grammar.Node(Grammar.Kind.Split, null, -1, []));

        private int Emit(Expr e, int next)
        {
            if (_memo.TryGetValue((e, next), out int done)) return done;
            int node = EmitNew(e, next);
            _memo[(e, next)] = node;
            return node;
        }

        private int EmitNew(Expr e, int next)
        {
            if (!Productive(e, productive)) return Dead();
            switch (e)
            {
                case CharsExpr c: return Add(new Grammar.Node(Grammar.Kind.Char, c.Set, next, null));
                case SeqExpr s:
                    for (int i = s.Items.Length - 1; i >= 0; i--) next = Emit(s.Items[i], next);
                    return next;
                case AltExpr a:
                {
                    var outs = a.Items.Where(i => Productive(i, productive)).Select(i => Emit(i, next)).ToArray();
                    return outs.Length == 1 ? outs[0] : Add(new Grammar.Node(Grammar.Kind.Split, null, -1, outs));
                }
                case RepeatExpr r:
                {
                    int tail = next;
                    if (r.Max < 0)
                    {
                        int loop = Add(new Grammar.Node(Grammar.Kind.Split, null, -1, []));
                        int body = Productive(r.Item, productive) ? EmitNew(r.Item, loop) : -1;
                        _nodes[loop] = _nodes[loop] with { Outs = body >= 0 ? [body, next] : [next] };
                        tail = loop;
                    }
                    else
                        for (int k = 0; k < r.Max - r.Min; k++)
                            tail = Add(new Grammar.Node(Grammar.Kind.Split, null, -1, [EmitNew(r.Item, tail), next]));
                    for (int k = 0; k < r.Min; k++) tail = EmitNew(r.Item, tail);
                    return tail;
                }
                case RuleExpr r:
                {
                    EnsureRule(r.Id);
                    int call = Add(new Grammar.Node(Grammar.Kind.Call, null, next, null));
                    _calls.Add((call, r.Id));
                    return call;
                }
                default: return Dead();
            }
        }

        private void EnsureRule(int rule)
        {
            if (_ruleStart[rule] >= 0) return;
            int entry = Add(new Grammar.Node(Grammar.Kind.Split, null, -1, []));
            _ruleStart[rule] = entry;
            int end = Add(new Grammar.Node(Grammar.Kind.End, null, -1, null));
            int body = Emit(bodies[rule], end);
            _nodes[entry] = _nodes[entry] with { Outs = [body] };
        }

        private sealed class IdentityNext : IEqualityComparer<(Expr, int)>
        {
            public bool Equals((Expr, int) a, (Expr, int) b) => ReferenceEquals(a.Item1, b.Item1) && a.Item2 == b.Item2;
            public int GetHashCode((Expr, int) k) => HashCode.Combine(System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(k.Item1), k.Item2);
        }
    }
}
