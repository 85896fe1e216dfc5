using System.Text.Json;
using Glm.Server.Hosting;
using Glm.Server.Metrics;

namespace Glm.Server.Api;

/// <summary>POST /v1/completions: prompt as text, token ids, or a list of either; echo; logprobs; streaming.</summary>
public sealed class Completions(ModelHost host, EngineMetrics metrics, Serilog.ILogger log)
{
    public async Task Handle(HttpContext ctx)
    {
        var model = Endpoints.RequireModel(host);
        var ct = Endpoints.RequestLifetime(ctx, host);
        var (r, doc) = await RequestReader.Read(ctx.Request, ct);
        using var _ = doc;
        Endpoints.CheckModelName(r, model);
        if (r.Has("suffix")) throw ApiException.BadRequest("'suffix' is not supported by this model.", "suffix");
        var prompts = await host.PromptWork.Run(r.BodyBytes, c => ParsePrompts(r, model, c), ct);
        bool stream = r.Bool("stream") ?? false;
        bool echo = r.Bool("echo") ?? false;
        int? logprobs = r.Int("logprobs", 0, 20);
        bool returnTokenIds = r.Bool("return_token_ids") ?? false;
        bool includeUsage = r.StreamIncludeUsage(stream);

        var requests = prompts.Select(p => SamplingRequest.Parse(r, model, p.Length, chat: false, logprobs)).ToList();
        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var timer = metrics.StartRequest();
        // Every prompt × n sequence is admitted together or not at all.
        var wanted = new List<(int Prompt, (IReadOnlyList<int>, Engine.SamplingParams) Request)>();
        for (int p = 0; p < prompts.Count; p++)
            for (int i = 0; i < requests[p].N; i++) wanted.Add((p, (prompts[p], requests[p].ForChoice(i))));
        var sequences = Endpoints.SubmitAll(model, wanted.Select(w => w.Request).ToList(), "prompt");
        using var abortOnExit = new Endpoints.AbortOnExit(model.Engine, sequences);
        var streams = sequences.Select((seq, k) => (Index: k, Prompt: wanted[k].Prompt,
            Stream: new TextStream(model.Engine, model.Tokenizer, seq, requests[wanted[k].Prompt].Stop, requests[wanted[k].Prompt].SkipSpecialTokens, requests[wanted[k].Prompt].IncludeStopInOutput))).ToList();

        var sse = stream ? new SseWriter(ctx.Response) : null;
        var results = await Task.WhenAll(streams.Select(async s =>
        {
            var text = new System.Text.StringBuilder();
            var tokens = new List<int>();
            var tokenLogprobs = new List<float?>();
            var tops = new List<Dictionary<string, float>?>();
            string finish = "length";
            string? echoText = echo ? model.Tokenizer?.Decode(prompts[s.Prompt]) ?? "" : null;
            if (echoText is not null) text.Append(echoText);
            if (sse is not null && echoText is { Length: > 0 })
                await sse.Send(Chunk(id, created, model.Name, s.Index, echoText, null, null), ct);
            await foreach (var piece in s.Stream.Run(ct))
            {
                if (piece.Token >= 0) { tokens.Add(piece.Token); timer.Token(); }
                if (piece.Logprob is not null)
                {
                    tokenLogprobs.Add(piece.Logprob);
                    tops.Add(piece.TopLogprobs?.GroupBy(t => LogprobFormat.TokenText(model.Tokenizer, t.Token)).ToDictionary(g => g.Key, g => g.First().Logprob));
                }
                text.Append(piece.Text);
                if (piece.FinishReason is not null) finish = piece.FinishReason;
                if (sse is not null && (piece.Text.Length > 0 || piece.FinishReason is not null))
                    await sse.Send(Chunk(id, created, model.Name, s.Index, piece.Text, piece.FinishReason,
                        piece.Logprob is null ? null : new { tokens = new[] { LogprobFormat.TokenText(model.Tokenizer, piece.Token) }, token_logprobs = new[] { piece.Logprob }, top_logprobs = new[] { tops[^1] } }), ct);
            }
            return (s.Index, s.Prompt, Text: text.ToString(), Tokens: tokens, Finish: finish, Logprobs: tokenLogprobs, Tops: tops);
        }));

        int promptTokens = prompts.Sum(p => p.Length);
        int completionTokens = streams.Sum(s => s.Stream.CompletionTokens);
        var usage = new { prompt_tokens = promptTokens, completion_tokens = completionTokens, total_tokens = promptTokens + completionTokens };
        double e2e = timer.Finish(results[0].Finish, promptTokens, completionTokens);
        log.Information("completion {Id} model={Model} prompt_tokens={Prompt} completion_tokens={Completion} e2e={E2e:F3}s finish={Finish} stream={Stream}",
            id, model.Name, promptTokens, completionTokens, e2e, results[0].Finish, stream);
        if (sse is not null)
        {
            if (includeUsage) await sse.Send(new { id, @object = "text_completion", created, model = model.Name, choices = Array.Empty<object>(), usage }, ct);
            await sse.Done(ct);
            return;
        }
        var body = new
        {
            id, @object = "text_completion", created, model = model.Name,
            choices = results.OrderBy(x => x.Index).Select(x => new
            {
                index = x.Index,
                text = x.Text,
                logprobs = logprobs is null ? null : new
                {
                    tokens = x.Tokens.Select(t => LogprobFormat.TokenText(model.Tokenizer, t)).ToArray(),
                    token_logprobs = x.Logprobs,
                    top_logprobs = x.Tops,
                },
                finish_reason = x.Finish,
                prompt_token_ids = returnTokenIds ? prompts[x.Prompt] : null,
                token_ids = returnTokenIds ? x.Tokens : null,
            }).ToArray(),
            usage,
        };
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(Json.Serialize(body), ct);
    }

    private static object Chunk(string id, long created, string model, int index, string text, string? finish, object? logprobs) => new
    {
        id, @object = "text_completion", created, model,
        choices = new[] { new { index, text, logprobs, finish_reason = finish } },
    };

    /// <summary>A string, an array of token ids, or a list of either.</summary>
    private static List<int[]> ParsePrompts(RequestReader r, ServedModel model, CancellationToken ct)
    {
        var p = r.Element("prompt") ?? throw ApiException.BadRequest("'prompt' is required.", "prompt");
        int[] Text(string s) => model.Tokenizer?.Encode(s, ct) ?? throw ApiException.BadRequest("This model has no tokenizer; send token ids.", "prompt");
        int[] Ids(JsonElement a) => a.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Number && x.TryGetInt32(out int i)
            ? (i >= 0 && i < model.Config.VocabSize ? i : throw ApiException.BadRequest($"Token id {i} is out of vocabulary.", "prompt"))
            : throw RequestReader.Wrong("prompt", "a string, an array of token ids, or an array of those")).ToArray();
        List<int[]> result = p.ValueKind switch
        {
            JsonValueKind.String => [Text(p.GetString()!)],
            JsonValueKind.Array when p.GetArrayLength() > 0 && p[0].ValueKind == JsonValueKind.Number => [Ids(p)],
            JsonValueKind.Array => p.EnumerateArray().Select(x => x.ValueKind switch
            {
                JsonValueKind.String => Text(x.GetString()!),
                JsonValueKind.Array => Ids(x),
                _ => throw RequestReader.Wrong("prompt", "a string, an array of token ids, or an array of those"),
            }).ToList(),
            _ => throw RequestReader.Wrong("prompt", "a string, an array of token ids, or an array of those"),
        };
        if (result.Count == 0 || result.Any(x => x.Length == 0)) throw ApiException.BadRequest("'prompt' must not be empty.", "prompt");
        return result;
    }
}
