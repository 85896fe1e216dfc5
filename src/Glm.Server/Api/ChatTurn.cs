using Glm.Server.Structured;
using System.Text;
using System.Text.Json;
using Glm.Engine;
using Glm.Server.Hosting;
using Glm.Server.Metrics;
using Glm.Text.Parsing;

namespace Glm.Server.Api;

/// <summary>A typed piece of one choice's output, in the order generated.</summary>
public abstract record TurnDelta;
public sealed record ReasoningDelta(string Text) : TurnDelta;
public sealed record ContentDelta(string Text) : TurnDelta;
/// <summary>A tool call begins, with its complete name.</summary>
public sealed record ToolCallStarted(int Index, string Id, string Name) : TurnDelta;
/// <summary>Part of a call's arguments JSON; a call's parts concatenate to its final arguments.</summary>
public sealed record ToolCallArgumentsDelta(int Index, string Delta) : TurnDelta;
/// <summary>The call closed: its final form (front ends that cannot retract a partial call send it whole here).</summary>
public sealed record ToolCallFinished(int Index, ParsedToolCall Call) : TurnDelta;
/// <summary>The call never closed: it is no call, and its text follows as content.</summary>
public sealed record ToolCallAbandoned(int Index) : TurnDelta;

/// <summary>What one generated token changed: its deltas, and the finish when the choice ends with it.</summary>
/// <param name="Finish">stop, length, tool_calls or abort; null until the choice ends</param>
public sealed record TurnStep(int Choice, TextPiece Piece, IReadOnlyList<TurnDelta> Deltas, string? Finish, object? StopReason);

/// <summary>One choice's result as it accumulates (what a non-streamed response reports).</summary>
public sealed class TurnChoice
{
    internal TurnChoice(int index, TextStream stream, GlmOutputParser parser, bool reportsReasoning, int maxToolCalls)
    {
        Index = index;
        Stream = stream;
        Parser = parser;
        ReportsReasoning = reportsReasoning;
        MaxToolCalls = maxToolCalls;
    }

    public int Index { get; }
    internal TextStream Stream { get; }
    internal GlmOutputParser Parser { get; }
    /// <summary>Whether reasoning is split out (a reasoning parser is on), so responses carry a reasoning field.</summary>
    public bool ReportsReasoning { get; }
    /// <summary>1 when the request asked for no parallel calls: later calls are dropped, as vLLM does.</summary>
    internal int MaxToolCalls { get; }
    internal string HeldWhitespace = "";

    public StringBuilder Content { get; } = new();
    public StringBuilder Reasoning { get; } = new();
    public List<ParsedToolCall> Calls { get; } = [];
    public List<TextPiece> Tokens { get; } = [];
    public string Finish { get; internal set; } = "stop";
    public object? StopReason { get; internal set; }
    public int CompletionTokens => Stream.CompletionTokens;
}

/// <summary>
/// One chat turn, independent of the wire protocol: a request in OpenAI chat-completions form (what the
/// Anthropic and Responses adapters translate theirs into) is validated, rendered through the chat template,
/// tokenized, constrained and admitted; <see cref="Run"/> then reports each token's typed deltas (reasoning,
/// content, tool call started, argument delta) and the finish. Templates, constraints and parsers live here
/// once; the three front ends (chat completions, messages, responses) only translate their wire formats.
/// </summary>
public sealed class ChatTurn : IDisposable
{
    private readonly EngineMetrics.RequestTimer _timer;
    private readonly Endpoints.AbortOnExit _abort;
    private readonly Serilog.ILogger _log;
    private readonly ToolSchemas _schemas;

    private ChatTurn(ServedModel model, int[] promptIds, IReadOnlyList<TurnChoice> choices, IReadOnlyList<Sequence> sequences,
        EngineMetrics.RequestTimer timer, ToolSchemas schemas, Serilog.ILogger log)
    {
        PromptIds = promptIds;
        Choices = choices;
        _timer = timer;
        _schemas = schemas;
        _log = log;
        _abort = new Endpoints.AbortOnExit(model.Engine, sequences);
    }

    public int[] PromptIds { get; }
    public IReadOnlyList<TurnChoice> Choices { get; }
    public int CachedTokens => Choices[0].Stream.Sequence.NumCachedTokens;
    public int CompletionTokens => Choices.Sum(c => c.CompletionTokens);

    /// <summary>Renders and tokenizes the request's messages (the prompt a request would get), without generating.</summary>
    public static async Task<int[]> CountPromptTokens(ModelHost host, ServedModel model, RequestReader r, CancellationToken ct)
    {
        return (await Render(host, model, r, ct)).Ids;
    }

    private static async Task<(JsonElement? Tools, string ToolChoice, string? ForcedName, string Prompt, int[] Ids)> Render(ModelHost host, ServedModel model, RequestReader r, CancellationToken ct)
    {
        if (model.ChatTemplate is null || model.Tokenizer is null)
            throw ApiException.BadRequest("This model has no chat template or tokenizer; use /v1/completions with token ids.");
        var messages = r.Element("messages");
        ChatRequestValidation.Messages(messages);
        var tools = r.Element("tools");
        ChatRequestValidation.Tools(tools);
        var (toolChoice, forcedName) = ParseToolChoice(r, tools);
        var (prompt, ids) = await host.PromptWork.Run(r.BodyBytes, c =>
        {
            string text = ChatPrompt.Render(model, r, messages!.Value, toolChoice == "none" ? null : tools, c);
            return (text, ChatPrompt.Encode(model, text, c));
        }, ct);
        return (tools, toolChoice, forcedName, prompt, ids);
    }

    /// <summary>Validates, renders, tokenizes and admits the request's choices (all n together, or none).</summary>
    /// <param name="thinkingBudget">at most this many tokens of thinking (Anthropic's budget_tokens); then &lt;/think&gt; is forced</param>
    public static async Task<ChatTurn> Start(ModelHost host, EngineMetrics metrics, Serilog.ILogger log, ServedModel model, RequestReader r, CancellationToken ct,
        int? thinkingBudget = null)
    {
        bool logprobs = r.Bool("logprobs") ?? false;
        int? topLogprobs = r.Int("top_logprobs", 0, 20);
        if (topLogprobs is not null && !logprobs) throw ApiException.BadRequest("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs");
        var structured = StructuredOutputRequest.Parse(r);
        var (tools, toolChoice, forcedName, prompt, promptIds) = await Render(host, model, r, ct);
        if (structured is not null && (forcedName is not null || toolChoice == "required"))
            throw ApiException.BadRequest($"'{structured.Param}' cannot be combined with tool_choice \"{(forcedName is null ? "required" : "function")}\": the answer is a tool call.", structured.Param);

        var sampling = SamplingRequest.Parse(r, model, promptIds.Length, chat: true, logprobs ? topLogprobs ?? 0 : null);
        var schemas = ToolSchemas.FromOpenAiTools(tools);
        bool parallelToolCalls = r.Bool("parallel_tool_calls") ?? true;
        bool parseTools = tools is not null && toolChoice != "none" && host.Options.ToolCallParser is not null;
        bool parseReasoning = host.Options.ReasoningParser is not null;
        bool promptOpenedThink = GlmOutputParser.PromptOpensThink(ChatPrompt.Visible(prompt));
        // The model may think before a constrained answer, unless the prompt already closed its think block.
        bool mayThink = parseReasoning && !GlmOutputParser.PromptClosesThink(ChatPrompt.Visible(prompt));
        var constraint = structured?.Constraint(model, chat: true, mayThink, promptOpenedThink)
            ?? ToolCallConstraints.For(model, tools, toolChoice, forcedName, parallelToolCalls, mayThink, promptOpenedThink);
        if (constraint is not null) sampling = sampling with { Params = sampling.Params with { Constraint = constraint } };
        if (thinkingBudget is int budget)
        {
            if (model.Tokenizer!.TokenToId(GlmOutputParser.ThinkOpen) is not int open || model.Tokenizer.TokenToId(GlmOutputParser.ThinkClose) is not int close)
                throw ApiException.BadRequest("This model's tokenizer has no <think> and </think> tokens, so a thinking budget cannot be enforced.", "thinking");
            sampling = sampling with { Params = sampling.Params with { Constraint = new ThinkingBudget(budget, open, close, promptOpenedThink, sampling.Params.Constraint) } };
        }

        var timer = metrics.StartRequest();
        var sequences = Endpoints.SubmitAll(model, Enumerable.Range(0, sampling.N).Select(i => ((IReadOnlyList<int>)promptIds, sampling.ForChoice(i))).ToList());
        var choices = sequences.Select((seq, i) => new TurnChoice(i,
            new TextStream(model.Engine, model.Tokenizer, seq, sampling.Stop, sampling.SkipSpecialTokens, sampling.IncludeStopInOutput),
            new GlmOutputParser(schemas, parseReasoning, parseTools, promptOpenedThink), parseReasoning,
            parallelToolCalls ? int.MaxValue : 1)).ToList();
        return new ChatTurn(model, promptIds, choices, sequences, timer, schemas, log);
    }

    /// <summary>Generates every choice to its end, calling <paramref name="onStep"/> for each token (choices run concurrently).</summary>
    public async Task Run(Func<TurnStep, Task> onStep, CancellationToken ct)
    {
        await Task.WhenAll(Choices.Select(c => RunChoice(c, onStep, ct)));
        _timer.Finish(Choices[0].Finish, PromptIds.Length, CompletionTokens);
    }

    /// <summary>Seconds from admission to the first token, and to the end (after <see cref="Run"/>).</summary>
    public (double? Ttft, double Seconds) Timing => (_timer.TimeToFirstToken, _timer.Elapsed);

    private async Task RunChoice(TurnChoice c, Func<TurnStep, Task> onStep, CancellationToken ct)
    {
        await foreach (var piece in c.Stream.Run(ct))
        {
            if (piece.Token >= 0) { c.Tokens.Add(piece); _timer.Token(); }
            var deltas = new List<TurnDelta>();
            bool final = piece.FinishReason is not null;
            Route(c, piece.Text, deltas, final);
            string? finish = null;
            if (final)
            {
                c.Finish = finish = piece.FinishReason == "stop" && c.Calls.Count > 0 ? "tool_calls" : piece.FinishReason!;
                c.StopReason = piece.StopReason;
            }
            await onStep(new TurnStep(c.Index, piece, deltas, finish, c.StopReason));
        }
    }

    /// <summary>Sends text through the output parser and records what it found.</summary>
    private void Route(TurnChoice c, string text, List<TurnDelta> deltas, bool final)
    {
        var events = c.Parser.Push(text);
        if (final) events.AddRange(c.Parser.Finish());
        foreach (var e in events)
        {
            switch (e)
            {
                case ReasoningEvent r:
                    c.Reasoning.Append(r.Text);
                    deltas.Add(new ReasoningDelta(r.Text));
                    break;
                case ContentEvent ce:
                    // Whitespace-only content is held until real text follows (dropped if the turn ends in tool calls).
                    string held = c.HeldWhitespace + ce.Text;
                    if (held.Trim().Length == 0) { c.HeldWhitespace = held; break; }
                    c.HeldWhitespace = "";
                    c.Content.Append(held);
                    deltas.Add(new ContentDelta(held));
                    break;
                case ToolCallStartEvent s when s.Index >= c.MaxToolCalls:
                case ToolCallArgumentsEvent a2 when a2.Index >= c.MaxToolCalls:
                case ToolCallEndEvent e2 when e2.Index >= c.MaxToolCalls:
                case ToolCallAbandonedEvent x2 when x2.Index >= c.MaxToolCalls:
                    break;
                case ToolCallEndEvent end:
                    deltas.Add(new ToolCallFinished(end.Index, end.Call));
                    break;
                case ToolCallAbandonedEvent abandoned:
                    deltas.Add(new ToolCallAbandoned(abandoned.Index));
                    break;
                case ToolCallStartEvent s:
                    if (!_schemas.HasTool(s.Name)) _log.Warning("The model called '{Name}', which is not among the request's tools; returned as called", s.Name);
                    deltas.Add(new ToolCallStarted(s.Index, s.Id, s.Name));
                    break;
                case ToolCallArgumentsEvent a:
                    deltas.Add(new ToolCallArgumentsDelta(a.Index, a.Delta));
                    break;
            }
        }
        c.Calls.Clear();
        c.Calls.AddRange(c.Parser.Calls.Take(c.MaxToolCalls));
        if (final && c.HeldWhitespace.Length > 0 && c.Calls.Count == 0)
        {
            c.Content.Append(c.HeldWhitespace);
            deltas.Add(new ContentDelta(c.HeldWhitespace));
        }
    }

    private static (string Choice, string? Name) ParseToolChoice(RequestReader r, JsonElement? tools)
    {
        if (r.Element("tool_choice") is not { } tc) return (tools is null ? "none" : "auto", null);
        if (tc.ValueKind == JsonValueKind.String)
        {
            string s = tc.GetString()!;
            if (s is not ("none" or "auto" or "required")) throw ApiException.BadRequest("'tool_choice' must be none, auto, required or a named function.", "tool_choice");
            if (s == "required" && tools is null) throw ApiException.BadRequest("tool_choice 'required' needs 'tools'.", "tool_choice");
            return (s, null);
        }
        if (tc.ValueKind == JsonValueKind.Object && tc.TryGetProperty("function", out var fn) && fn.ValueKind == JsonValueKind.Object
            && fn.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String)
        {
            string n = name.GetString()!;
            if (tools is null || !tools.Value.EnumerateArray().Any(t => t.TryGetProperty("function", out var f) && f.TryGetProperty("name", out var fnName) && fnName.GetString() == n))
                throw ApiException.BadRequest($"tool_choice names function '{n}', which is not in 'tools'.", "tool_choice");
            return ("named", n);
        }
        throw RequestReader.Wrong("tool_choice", "a string or {\"type\": \"function\", \"function\": {\"name\": …}}");
    }

    /// <summary>
    /// response_format "text" only, for now: JSON modes are refused rather than accepted and not enforced (a
    /// structured-output engine is its own issue), so a client that depends on them learns it at once.
    /// </summary>
    public void Dispose() => _abort.Dispose();
}
