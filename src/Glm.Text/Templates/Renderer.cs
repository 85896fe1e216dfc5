using System.Text;
using static Glm.Text.Templates.Values;

namespace Glm.Text.Templates;

/// <summary>Evaluates a parsed template against a context, with Jinja's scoping (loops and macros get their own scope).</summary>
internal sealed class Renderer
{
    private sealed class Scope(Scope? parent)
    {
        public readonly Dictionary<string, object?> Vars = new();
        public bool TryGet(string name, out object? value)
        {
            for (var s = this; s is not null; s = s.Parent)
                if (s.Vars.TryGetValue(name, out value)) return true;
            value = null;
            return false;
        }
        public Scope? Parent { get; } = parent;
    }

    private sealed class LoopControl(bool isBreak) : Exception
    {
        public bool IsBreak { get; } = isBreak;
    }

    private readonly Scope _globals;
    private readonly CancellationToken _ct;

    public Renderer(IDictionary<string, object?> context, CancellationToken ct = default)
    {
        _ct = ct;
        _globals = new Scope(null);
        Builtins.AddGlobals(_globals.Vars);
        foreach (var (k, v) in context) _globals.Vars[k] = v;
    }

    public string Render(List<Node> nodes)
    {
        var sb = new StringBuilder();
        Exec(nodes, _globals, sb);
        return sb.ToString();
    }

    private void Exec(List<Node> nodes, Scope scope, StringBuilder output)
    {
        foreach (var node in nodes)
        {
            // Checked per node: a loop over a huge message list or a long macro chain stops with its request.
            _ct.ThrowIfCancellationRequested();
            try
            {
                ExecOne(node, scope, output);
            }
            catch (TemplateException e) when (e.Line == 0)
            {
                throw new TemplateException(e.Message, node.Line, node.Column);
            }
            catch (Exception e) when (e is not TemplateException and not LoopControl and not OperationCanceledException)
            {
                throw new TemplateException(e.Message, node.Line, node.Column);
            }
        }
    }

    private void ExecOne(Node node, Scope scope, StringBuilder output)
    {
        switch (node)
        {
            case TextNode t: output.Append(t.Text); break;
            case OutputNode o: output.Append(ToStr(Eval(o.Value, scope))); break;
            case IfNode i:
                foreach (var (cond, body) in i.Branches)
                    if (Truthy(Eval(cond, scope))) { Exec(body, scope, output); return; }
                if (i.Else is not null) Exec(i.Else, scope, output);
                break;
            case ForNode f: ExecFor(f, scope, output); break;
            case SetNode s:
            {
                object? value = s.Value is not null ? Eval(s.Value, scope) : RenderBody(s.Body!, scope);
                if (s.Attribute is not null)
                {
                    if (!scope.TryGet(s.Targets[0], out var target) || target is not Namespace ns)
                        throw new TemplateException($"cannot assign attribute on non-namespace '{s.Targets[0]}'", s.Line, s.Column);
                    ns[s.Attribute] = value;
                }
                else if (s.Targets.Count == 1) scope.Vars[s.Targets[0]] = value;
                else
                {
                    var items = Iterate(value).ToList();
                    if (items.Count != s.Targets.Count) throw new TemplateException("wrong number of values to unpack", s.Line, s.Column);
                    for (int k = 0; k < items.Count; k++) scope.Vars[s.Targets[k]] = items[k];
                }
                break;
            }
            case MacroNode m: scope.Vars[m.Name] = MakeMacro(m, scope); break;
            case CallBlockNode c:
            {
                var call = (CallExpr)c.Call;
                var caller = new TemplateFunction((_, _) => RenderBody(c.Body, scope));
                var fn = Eval(call.Target, scope) as TemplateFunction ?? throw new TemplateException("call block target is not callable", c.Line, c.Column);
                var kwargs = call.Kwargs.ToDictionary(k => k.Name, k => Eval(k.Value, scope));
                kwargs["caller"] = caller;
                output.Append(ToStr(fn(call.Args.Select(a => Eval(a, scope)).ToList(), kwargs)));
                break;
            }
            case FilterBlockNode fb:
                output.Append(ToStr(Builtins.Filter(fb.Filter, RenderBody(fb.Body, scope), fb.Args.Select(a => Eval(a, scope)).ToList(), [])));
                break;
            case LoopControlNode lc: throw new LoopControl(lc.IsBreak);
            default: throw new TemplateException($"cannot execute {node.GetType().Name}", node.Line, node.Column);
        }
    }

    private string RenderBody(List<Node> body, Scope scope)
    {
        var sb = new StringBuilder();
        Exec(body, scope, sb);
        return sb.ToString();
    }

    private TemplateFunction MakeMacro(MacroNode m, Scope definingScope) => (args, kwargs) =>
    {
        var local = new Scope(definingScope);
        for (int i = 0; i < m.Parameters.Count; i++)
        {
            var (name, def) = m.Parameters[i];
            local.Vars[name] = i < args.Count ? args[i]
                : kwargs.TryGetValue(name, out var kv) ? kv
                : def is not null ? Eval(def, definingScope) : Undefined.Instance;
        }
        if (kwargs.TryGetValue("caller", out var caller)) local.Vars["caller"] = caller;
        local.Vars["varargs"] = args.Skip(m.Parameters.Count).ToList();
        return RenderBody(m.Body, local);
    };

    private void ExecFor(ForNode f, Scope scope, StringBuilder output)
    {
        var source = Eval(f.Iterable, scope);
        var items = (source is IDictionary<string, object?> d ? d.Keys.Cast<object?>() : Iterate(source)).ToList();
        if (f.Filter is not null)
        {
            items = items.Where(item =>
            {
                var probe = new Scope(scope);
                Bind(f.Targets, item, probe);
                return Truthy(Eval(f.Filter, probe));
            }).ToList();
        }
        if (items.Count == 0)
        {
            if (f.Else is not null) Exec(f.Else, scope, output);
            return;
        }
        for (int i = 0; i < items.Count; i++)
        {
            var local = new Scope(scope);
            Bind(f.Targets, items[i], local);
            int index = i;
            local.Vars["loop"] = new Dictionary<string, object?>
            {
                ["index"] = (long)(i + 1), ["index0"] = (long)i,
                ["revindex"] = (long)(items.Count - i), ["revindex0"] = (long)(items.Count - i - 1),
                ["first"] = i == 0, ["last"] = i == items.Count - 1, ["length"] = (long)items.Count,
                ["previtem"] = i > 0 ? items[i - 1] : Undefined.Instance,
                ["nextitem"] = i + 1 < items.Count ? items[i + 1] : Undefined.Instance,
                ["cycle"] = new TemplateFunction((a, _) => a.Count == 0 ? null : a[index % a.Count]),
            };
            try
            {
                Exec(f.Body, local, output);
            }
            catch (LoopControl lc)
            {
                if (lc.IsBreak) break;
            }
        }
    }

    private static void Bind(List<string> targets, object? item, Scope scope)
    {
        if (targets.Count == 1) { scope.Vars[targets[0]] = item; return; }
        var parts = Iterate(item).ToList();
        if (parts.Count != targets.Count) throw new InvalidOperationException($"cannot unpack {parts.Count} values into {targets.Count} names");
        for (int k = 0; k < targets.Count; k++) scope.Vars[targets[k]] = parts[k];
    }

    internal static IEnumerable<object?> Iterate(object? v) => v switch
    {
        null or Undefined => [],
        string s => s.Select(c => (object?)c.ToString()),
        IList<object?> list => list,
        IDictionary<string, object?> dict => dict.Keys,
        _ => throw new InvalidOperationException($"'{TypeName(v)}' object is not iterable"),
    };

    private object? Eval(Expr e, Scope scope)
    {
        switch (e)
        {
            case Literal l: return l.Value;
            case NameExpr n: return scope.TryGet(n.Name, out var v) ? v : Undefined.Instance;
            case ListExpr l: return l.Items.Select(x => Eval(x, scope)).ToList();
            case TupleExpr t: return t.Items.Select(x => Eval(x, scope)).ToList();
            case DictExpr d:
            {
                var dict = new Dictionary<string, object?>();
                foreach (var (k, val) in d.Items) dict[ToStr(Eval(k, scope))] = Eval(val, scope);
                return dict;
            }
            case AttrExpr a: return Builtins.GetAttribute(Eval(a.Target, scope), a.Name);
            case IndexExpr i: return Builtins.GetItem(Eval(i.Target, scope), Eval(i.Index, scope));
            case SliceExpr s:
                return Builtins.Slice(Eval(s.Target, scope),
                    s.Start is null ? null : Eval(s.Start, scope), s.Stop is null ? null : Eval(s.Stop, scope), s.Step is null ? null : Eval(s.Step, scope));
            case CallExpr c:
            {
                var target = Eval(c.Target, scope);
                if (target is not TemplateFunction fn)
                    throw new TemplateException($"'{(c.Target is NameExpr ne ? ne.Name : TypeName(target))}' is not callable", c.Line, c.Column);
                return fn(c.Args.Select(x => Eval(x, scope)).ToList(), c.Kwargs.ToDictionary(k => k.Name, k => Eval(k.Value, scope)));
            }
            case FilterExpr f:
                return Builtins.Filter(f.Name, Eval(f.Target, scope), f.Args.Select(x => Eval(x, scope)).ToList(),
                    f.Kwargs.ToDictionary(k => k.Name, k => Eval(k.Value, scope)));
            case TestExpr t:
            {
                bool result = Builtins.Test(t.Name, Eval(t.Target, scope), t.Args.Select(x => Eval(x, scope)).ToList());
                return t.Negated ? !result : result;
            }
            case UnaryExpr u:
            {
                var operand = Eval(u.Operand, scope);
                return u.Op switch
                {
                    "not" => !Truthy(operand),
                    "-" => operand is long l ? (object)(-l) : -ToDouble(operand),
                    _ => operand,
                };
            }
            case BinaryExpr b:
            {
                if (b.Op == "and") { var left = Eval(b.Left, scope); return Truthy(left) ? Eval(b.Right, scope) : left; }
                if (b.Op == "or") { var left = Eval(b.Left, scope); return Truthy(left) ? left : Eval(b.Right, scope); }
                return Builtins.Binary(b.Op, Eval(b.Left, scope), Eval(b.Right, scope));
            }
            case ConditionalExpr c:
                return Truthy(Eval(c.Condition, scope)) ? Eval(c.Then, scope) : c.Else is null ? Undefined.Instance : Eval(c.Else, scope);
            default:
                throw new TemplateException($"cannot evaluate {e.GetType().Name}", e.Line, e.Column);
        }
    }
}
