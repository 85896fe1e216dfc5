using System.Text;
using System.Text.Json;
using Glm.Engine;
using Glm.Server.Hosting;
using Glm.Server.Metrics;
using Glm.Text.Parsing;

namespace Glm.Server.Api;

/// <summary>POST /v1/chat/completions: template rendering, generation, reasoning and tool-call parsing, SSE streaming.</summary>
public sealed class ChatCompletions(ModelHost host, EngineMetrics metrics, Serilog.ILogger log)
{
    private sealed class Choice
    {
        public required int Index;
        public required TextStream Stream;
        public required GlmOutputParser Parser;
        public required ToolSchemas Schemas;
        public bool ReportsReasoning;
        public readonly StringBuilder Content = new();
        public readonly StringBuilder ReasoningText = new();
        /// <summary>Whitespace-only content held until real text follows (dropped if the turn ends in tool calls).</summary>
        public string HeldWhitespace = "";
        public readonly List<ParsedToolCall> Calls = [];
        public readonly List<object> Logprobs = [];
        public readonly List<int> TokenIds = [];
        /// <summary>1 when the request set parallel_tool_calls false: later calls are dropped, as vLLM does.</summary>
        public int MaxToolCalls = int.MaxValue;
        public string Finish = "stop";
        public object? StopReason;
    }

    public async Task Handle(HttpContext ctx)
    {
        var model = Endpoints.RequireModel(host);
        var ct = Endpoints.RequestLifetime(ctx, host);
        var (r, doc) = await RequestReader.Read(ctx.Request, ct);
        using var _ = doc;
        Endpoints.CheckModelName(r, model);
        if (model.ChatTemplate is null || model.Tokenizer is null)
            throw ApiException.BadRequest("This model has no chat template or tokenizer; use /v1/completions with token ids.");

        var messages = r.Element("messages");
        ChatRequestValidation.Messages(messages);
        bool stream = r.Bool("stream") ?? false;
        bool includeUsage = r.StreamIncludeUsage(stream);
        bool logprobs = r.Bool("logprobs") ?? false;
        int? topLogprobs = r.Int("top_logprobs", 0, 20);
        if (topLogprobs is not null && !logprobs) throw ApiException.BadRequest("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs");
        var tools = r.Element("tools");
        ChatRequestValidation.Tools(tools);
        var (toolChoice, forcedName) = ParseToolChoice(r, tools);
        ValidateResponseFormat(r);

        var (prompt, promptIds) = await host.PromptWork.Run(r.BodyBytes, c =>
        {
            string text = ChatPrompt.Render(model, r, messages!.Value, toolChoice == "none" ? null : tools, c);
            return (text, ChatPrompt.Encode(model, text, c));
        }, ct);
        var sampling = SamplingRequest.Parse(r, model, promptIds.Length, chat: true, logprobs ? topLogprobs ?? 0 : null);
        var schemas = ToolSchemas.FromOpenAiTools(tools);
        bool parallelToolCalls = r.Bool("parallel_tool_calls") ?? true;
        if (forcedName is not null || toolChoice == "required")
        {
            // A grammar over GLM's XML call form with the schema's keys: GLM emits calls as XML, never JSON.
            var keys = schemas.ArgumentKeys();
            var allowed = forcedName is null ? keys : new Dictionary<string, string[]> { [forcedName] = keys[forcedName] };
            var grammar = new ToolCallGrammar(allowed, singleCall: forcedName is not null || !parallelToolCalls);
            sampling = sampling with { Params = sampling.Params with { Constraint = new ToolCallConstraint(grammar, model.Tokenizer, model.Config.EosTokenIds) } };
        }
        bool parseTools = tools is not null && toolChoice != "none" && host.Options.ToolCallParser is not null;
        bool parseReasoning = host.Options.ReasoningParser is not null;
        bool promptOpenedThink = GlmOutputParser.PromptOpensThink(ChatPrompt.Visible(prompt));
        bool returnTokenIds = r.Bool("return_token_ids") ?? false;

        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var timer = metrics.StartRequest();
        // All n choices are admitted together or not at all.
        var sequences = Endpoints.SubmitAll(model, Enumerable.Range(0, sampling.N).Select(i => ((IReadOnlyList<int>)promptIds, sampling.ForChoice(i))).ToList());
        var choices = sequences.Select((seq, i) => new Choice
        {
            Index = i,
            Stream = new TextStream(model.Engine, model.Tokenizer, seq, sampling.Stop, sampling.SkipSpecialTokens, sampling.IncludeStopInOutput),
            Parser = new GlmOutputParser(schemas, parseReasoning, parseTools, promptOpenedThink),
            Schemas = schemas,
            ReportsReasoning = parseReasoning,
            MaxToolCalls = parallelToolCalls ? int.MaxValue : 1,
        }).ToList();
        using var abortOnExit = new Endpoints.AbortOnExit(model.Engine, sequences);

        SseWriter? sse = stream ? new SseWriter(ctx.Response) : null;
        object Chunk(int index, object delta, object? lp, string? finish) => new
        {
            id, @object = "chat.completion.chunk", created, model = model.Name,
            choices = new[] { new { index, delta, logprobs = lp, finish_reason = finish } },
        };
        if (sse is not null)
            foreach (var c in choices)
                await sse.Send(Chunk(c.Index, new { role = "assistant", content = "" }, null, null), ct);

        await Task.WhenAll(choices.Select(c => RunChoice(c, sse, Chunk, model, timer, log, ct)));

        int completionTokens = choices.Sum(c => c.Stream.CompletionTokens);
        var seq0 = choices[0].Stream.Sequence;
        var usage = new
        {
            prompt_tokens = promptIds.Length, completion_tokens = completionTokens, total_tokens = promptIds.Length + completionTokens,
            prompt_tokens_details = new { cached_tokens = seq0.NumCachedTokens },
        };
        double e2e = timer.Finish(choices[0].Finish, promptIds.Length, completionTokens);
        log.Information("chat {Id} model={Model} prompt_tokens={Prompt} completion_tokens={Completion} cached_tokens={Cached} ttft={Ttft:F3}s e2e={E2e:F3}s finish={Finish} stream={Stream}",
            id, model.Name, promptIds.Length, completionTokens, seq0.NumCachedTokens, timer.TimeToFirstToken ?? e2e, e2e, choices[0].Finish, stream);

        if (sse is not null)
        {
            if (includeUsage) await sse.Send(new { id, @object = "chat.completion.chunk", created, model = model.Name, choices = Array.Empty<object>(), usage }, ct);
            await sse.Done(ct);
            return;
        }
        var body = new
        {
            id, @object = "chat.completion", created, model = model.Name,
            choices = choices.Select(c => new
            {
                index = c.Index,
                message = Message(c),
                logprobs = logprobs ? new { content = c.Logprobs } : null,
                finish_reason = c.Finish,
                stop_reason = c.StopReason,
                token_ids = returnTokenIds ? c.TokenIds : null,
            }).ToArray(),
            usage,
            prompt_token_ids = returnTokenIds ? promptIds : null,
        };
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(Json.Serialize(body), ct);
    }

    private static Dictionary<string, object?> Message(Choice c)
    {
        string content = c.Content.ToString();
        var m = new Dictionary<string, object?>
        {
            ["role"] = "assistant",
            ["content"] = c.Calls.Count > 0 && content.Length == 0 ? null : content,
        };
        if (c.ReportsReasoning)
        {
            string reasoning = c.ReasoningText.ToString();
            m["reasoning_content"] = reasoning.Length > 0 ? reasoning : null;
            m["reasoning"] = reasoning.Length > 0 ? reasoning : null;
        }
        m["tool_calls"] = c.Calls.Select(t => new { id = t.Id, type = "function", function = new { name = t.Name, arguments = t.Arguments } }).ToArray();
        return m;
    }

    private static async Task RunChoice(Choice c, SseWriter? sse, Func<int, object, object?, string?, object> chunk, ServedModel model,
        EngineMetrics.RequestTimer timer, Serilog.ILogger log, CancellationToken ct)
    {
        await foreach (var piece in c.Stream.Run(ct))
        {
            if (piece.Token >= 0) { c.TokenIds.Add(piece.Token); timer.Token(); }
            object? lp = null;
            if (piece.Logprob is not null)
            {
                var entry = LogprobFormat.ChatEntry(model.Tokenizer, piece);
                c.Logprobs.Add(entry);
                lp = new { content = new[] { entry } };
            }
            var deltas = new List<Dictionary<string, object?>>();
            Route(c, piece.Text, deltas, final: piece.FinishReason is not null, log);
            if (piece.FinishReason is not null)
            {
                c.Finish = piece.FinishReason == "stop" && c.Calls.Count > 0 ? "tool_calls" : piece.FinishReason;
                c.StopReason = piece.StopReason;
            }
            if (sse is null) continue;
            if (deltas.Count == 0 && (lp is not null || piece.FinishReason is not null)) deltas.Add([]);
            for (int i = 0; i < deltas.Count; i++)
            {
                bool last = i == deltas.Count - 1;
                await sse.Send(chunk(c.Index, deltas[i], last ? lp : null, last ? (piece.FinishReason is null ? null : c.Finish) : null), ct);
            }
        }
    }

    /// <summary>Sends text through the output parser, collecting the deltas to stream.</summary>
    private static void Route(Choice c, string text, List<Dictionary<string, object?>> deltas, bool final, Serilog.ILogger log)
    {
        var events = c.Parser.Push(text);
        if (final) events.AddRange(c.Parser.Finish());
        foreach (var e in events)
        {
            switch (e)
            {
                case ReasoningEvent r:
                    c.ReasoningText.Append(r.Text);
                    deltas.Add(new() { ["reasoning_content"] = r.Text, ["reasoning"] = r.Text });
                    break;
                case ContentEvent ce:
                    string text2 = c.HeldWhitespace + ce.Text;
                    if (text2.Trim().Length == 0) { c.HeldWhitespace = text2; break; }
                    c.HeldWhitespace = "";
                    c.Content.Append(text2);
                    deltas.Add(new() { ["content"] = text2 });
                    break;
                case ToolCallStartEvent s when s.Index >= c.MaxToolCalls:
                case ToolCallArgumentsEvent a2 when a2.Index >= c.MaxToolCalls:
                    break;
                case ToolCallStartEvent s:
                    if (!c.Schemas.HasTool(s.Name)) log.Warning("The model called '{Name}', which is not among the request's tools; returned as called", s.Name);
                    deltas.Add(new() { ["tool_calls"] = new[] { new { index = s.Index, id = s.Id, type = "function", function = new { name = s.Name, arguments = "" } } } });
                    break;
                case ToolCallArgumentsEvent a:
                    deltas.Add(new() { ["tool_calls"] = new[] { new { index = a.Index, function = new { arguments = a.Delta } } } });
                    break;
            }
        }
        c.Calls.Clear();
        c.Calls.AddRange(c.Parser.Calls.Take(c.MaxToolCalls));
        if (final && c.HeldWhitespace.Length > 0 && c.Calls.Count == 0)
        {
            c.Content.Append(c.HeldWhitespace);
            deltas.Add(new() { ["content"] = c.HeldWhitespace });
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
        if (tc.ValueKind == JsonValueKind.Object && tc.TryGetProperty("function", out var fn) && fn.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String)
        {
            string n = name.GetString()!;
            if (tools is null || !tools.Value.EnumerateArray().Any(t => t.TryGetProperty("function", out var f) && f.TryGetProperty("name", out var fnName) && fnName.GetString() == n))
                throw ApiException.BadRequest($"tool_choice names function '{n}', which is not in 'tools'.", "tool_choice");
            return ("named", n);
        }
        throw RequestReader.Wrong("tool_choice", "a string or {\"type\": \"function\", \"function\": {\"name\": …}}");
    }

    private static void ValidateResponseFormat(RequestReader r)
    {
        if (r.Element("response_format") is not { } rf) return;
        if (rf.ValueKind != JsonValueKind.Object || !rf.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw RequestReader.Wrong("response_format", "an object with a 'type'");
        string t = type.GetString()!;
        if (t is "text" or "json_object") return;
        if (t == "json_schema")
        {
            if (!rf.TryGetProperty("json_schema", out var js) || js.ValueKind != JsonValueKind.Object)
                throw ApiException.BadRequest("response_format json_schema needs a 'json_schema' object.", "response_format");
            return;
        }
        throw ApiException.BadRequest($"response_format type '{t}' is not supported (text, json_object, json_schema).", "response_format");
    }
}
