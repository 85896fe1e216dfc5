using Glm.Server.Hosting;
using Glm.Server.Metrics;

namespace Glm.Server.Api;

/// <summary>POST /v1/chat/completions: OpenAI's wire format over <see cref="ChatTurn"/> (JSON, or SSE chunks when streaming).</summary>
public sealed class ChatCompletions(ModelHost host, EngineMetrics metrics, Serilog.ILogger log)
{
    public async Task Handle(HttpContext ctx)
    {
        using var request = await Endpoints.Begin(ctx, host);
        var (model, r, ct) = (request.Model, request.Reader, request.Ct);
        bool stream = r.Bool("stream") ?? false;
        bool includeUsage = r.StreamIncludeUsage(stream);
        bool logprobs = r.Bool("logprobs") ?? false;
        bool returnTokenIds = r.Bool("return_token_ids") ?? false;
        using var turn = await ChatTurn.Start(host, metrics, log, model, r, ct);

        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        SseWriter? sse = stream ? new SseWriter(ctx.Response) : null;
        object Chunk(int index, object delta, object? lp, string? finish) => new
        {
            id, @object = "chat.completion.chunk", created, model = model.Name,
            choices = new[] { new { index, delta, logprobs = lp, finish_reason = finish } },
        };
        if (sse is not null)
            foreach (var c in turn.Choices)
                await sse.Send(Chunk(c.Index, new { role = "assistant", content = "" }, null, null), ct);

        await turn.Run(async step =>
        {
            if (sse is null) return;
            object? lp = step.Piece.Logprob is null ? null : new { content = new[] { LogprobFormat.ChatEntry(model.Tokenizer, step.Piece) } };
            var deltas = step.Deltas.Select(Delta).OfType<Dictionary<string, object?>>().ToList();
            if (deltas.Count == 0 && (lp is not null || step.Finish is not null)) deltas.Add(new Dictionary<string, object?>());
            for (int i = 0; i < deltas.Count; i++)
            {
                bool last = i == deltas.Count - 1;
                await sse.Send(Chunk(step.Choice, deltas[i], last ? lp : null, last ? step.Finish : null), ct);
            }
        }, ct);

        int promptTokens = turn.PromptIds.Length, completionTokens = turn.CompletionTokens;
        var usage = new
        {
            prompt_tokens = promptTokens, completion_tokens = completionTokens, total_tokens = promptTokens + completionTokens,
            prompt_tokens_details = new { cached_tokens = turn.CachedTokens },
        };
        var (ttft, seconds) = turn.Timing;
        log.Information("chat {Id} model={Model} prompt_tokens={Prompt} completion_tokens={Completion} cached_tokens={Cached} ttft={Ttft:F3}s e2e={E2e:F3}s finish={Finish} stream={Stream}",
            id, model.Name, promptTokens, completionTokens, turn.CachedTokens, ttft ?? seconds, seconds, turn.Choices[0].Finish, stream);

        if (sse is not null)
        {
            if (includeUsage) await sse.Send(new { id, @object = "chat.completion.chunk", created, model = model.Name, choices = Array.Empty<object>(), usage }, ct);
            await sse.Done(ct);
            return;
        }
        var body = new
        {
            id, @object = "chat.completion", created, model = model.Name,
            choices = turn.Choices.Select(c => new
            {
                index = c.Index,
                message = Message(c),
                logprobs = logprobs ? new { content = c.Tokens.Where(p => p.Logprob is not null).Select(p => LogprobFormat.ChatEntry(model.Tokenizer, p)).ToArray() } : null,
                finish_reason = c.Finish,
                stop_reason = c.StopReason,
                token_ids = returnTokenIds ? c.Tokens.Select(p => p.Token).ToList() : null,
            }).ToArray(),
            usage,
            prompt_token_ids = returnTokenIds ? turn.PromptIds : null,
        };
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(Json.Serialize(body), ct);
    }

    /// <summary>A turn delta as OpenAI's chunk delta; null for those OpenAI streams nothing for (a call's end is implied).</summary>
    private static Dictionary<string, object?>? Delta(TurnDelta d) => d switch
    {
        ReasoningDelta r => new() { ["reasoning_content"] = r.Text, ["reasoning"] = r.Text },
        ContentDelta c => new() { ["content"] = c.Text },
        ToolCallStarted s => new() { ["tool_calls"] = new[] { new { index = s.Index, id = s.Id, type = "function", function = new { name = s.Name, arguments = "" } } } },
        ToolCallArgumentsDelta a => new() { ["tool_calls"] = new[] { new { index = a.Index, function = new { arguments = a.Delta } } } },
        _ => null,
    };

    private static Dictionary<string, object?> Message(TurnChoice c)
    {
        string content = c.Content.ToString();
        var m = new Dictionary<string, object?>
        {
            ["role"] = "assistant",
            ["content"] = c.Calls.Count > 0 && content.Length == 0 ? null : content,
        };
        if (c.ReportsReasoning)
        {
            string reasoning = c.Reasoning.ToString();
            m["reasoning_content"] = reasoning.Length > 0 ? reasoning : null;
            m["reasoning"] = reasoning.Length > 0 ? reasoning : null;
        }
        m["tool_calls"] = c.Calls.Select(t => new { id = t.Id, type = "function", function = new { name = t.Name, arguments = t.Arguments } }).ToArray();
        return m;
    }
}
