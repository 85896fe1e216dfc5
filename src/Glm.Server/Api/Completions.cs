using System.Text.Json;
using Glm.Server.Hosting;
using Glm.Server.Metrics;

namespace Glm.Server.Api;

/// <summary>POST /v1/completions: prompt as text, token ids, or a list of either; echo; logprobs; streaming.</summary>
public sealed class Completions(ModelHost host, EngineMetrics metrics, Serilog.ILogger log)
{
    public async Task Handle(HttpContext ctx)
    {
        using var request = await Endpoints.Begin(ctx, host);
        var (model, r, ct) = (request.Model, request.Reader, request.Ct);
        if (r.Has("suffix")) throw ApiException.BadRequest("'suffix' is not supported by this model.", "suffix");
        var prompts = await host.PromptWork.Run(r.BodyBytes, c => ParsePrompts(r, model, c), ct);
        bool stream = r.Bool("stream") ?? false;
        bool echo = r.Bool("echo") ?? false;
        int? logprobs = r.Int("logprobs", 0, 20);
        bool returnTokenIds = r.Bool("return_token_ids") ?? false;
        bool includeUsage = r.StreamIncludeUsage(stream);

        var requests = prompts.Select(p => SamplingRequest.Parse(r, model, p.Length, chat: false, logprobs)).ToList();
        if (Structured.StructuredOutputRequest.Parse(r) is { } structured)
        {
            var constraint = structured.Constraint(model, chat: false, reasoning: false, promptOpenedThink: false);
            requests = requests.Select(q => q with { Params = q.Params with { Constraint = constraint } }).ToList();
        }
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

        // echo with logprobs: each prompt token's logprob under the tokens before it (the first has none), as OpenAI's
        // legacy API reports them. One extra forward over each prompt, on the worker the engine uses: heavy work,
        // so it runs on PromptWork's bounded threads like a large prompt.
        var promptLogprobs = echo && logprobs is int k0
            ? await Task.WhenAll(prompts.Select(p => host.PromptWork.Run(PromptWork.HeavyBytes, c => PromptLogprobs(model, p, k0, c), ct)))
            : null;

        var sse = stream ? new SseWriter(ctx.Response) : null;
        var results = await Task.WhenAll(streams.Select(async s =>
        {
            var text = new System.Text.StringBuilder();
            var tokens = new List<string>();
            var tokenIds = new List<int>();
            var tokenLogprobs = new List<float?>();
            var tops = new List<Dictionary<string, float>?>();
            var offsets = new List<int>();
            int offset = 0;
            string finish = "length";
            string? echoText = echo ? model.Tokenizer?.Decode(prompts[s.Prompt]) ?? "" : null;
            if (echoText is not null)
            {
                text.Append(echoText);
                if (promptLogprobs is not null)
                    foreach (var (tokenText, lp, top) in promptLogprobs[s.Prompt])
                    {
                        tokens.Add(tokenText);
                        tokenLogprobs.Add(lp);
                        tops.Add(top);
                        offsets.Add(offset);
                        offset += tokenText.Length;
                    }
                offset = echoText.Length;
            }
            if (sse is not null && echoText is { Length: > 0 })
                await sse.Send(Chunk(id, created, model.Name, s.Index, echoText, null,
                    promptLogprobs is null ? null : new { tokens = tokens.ToArray(), token_logprobs = tokenLogprobs.ToArray(), top_logprobs = tops.ToArray(), text_offset = offsets.ToArray() }), ct);
            await foreach (var piece in s.Stream.Run(ct))
            {
                if (piece.Token >= 0) { tokenIds.Add(piece.Token); timer.Token(); }
                if (piece.Logprob is not null)
                {
                    string tokenText = LogprobFormat.TokenText(model.Tokenizer, piece.Token);
                    tokens.Add(tokenText);
                    tokenLogprobs.Add(piece.Logprob);
                    tops.Add(piece.TopLogprobs?.GroupBy(t => LogprobFormat.TokenText(model.Tokenizer, t.Token)).ToDictionary(g => g.Key, g => g.First().Logprob));
                    offsets.Add(offset);
                    offset += tokenText.Length;
                }
                text.Append(piece.Text);
                if (piece.FinishReason is not null) finish = piece.FinishReason;
                if (sse is not null && (piece.Text.Length > 0 || piece.FinishReason is not null))
                    await sse.Send(Chunk(id, created, model.Name, s.Index, piece.Text, piece.FinishReason,
                        piece.Logprob is null ? null : new { tokens = new[] { tokens[^1] }, token_logprobs = new[] { piece.Logprob }, top_logprobs = new[] { tops[^1] }, text_offset = new[] { offsets[^1] } }), ct);
            }
            return (s.Index, s.Prompt, Text: text.ToString(), TokenIds: tokenIds, Tokens: tokens, Finish: finish, Logprobs: tokenLogprobs, Tops: tops, Offsets: offsets);
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
                    tokens = x.Tokens,
                    token_logprobs = x.Logprobs,
                    top_logprobs = x.Tops,
                    text_offset = x.Offsets,
                },
                finish_reason = x.Finish,
                prompt_token_ids = returnTokenIds ? prompts[x.Prompt] : null,
                token_ids = returnTokenIds ? x.TokenIds : null,
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

    /// <summary>Each prompt token's text, logprob given the tokens before it (null for the first) and its top alternatives.</summary>
    private static List<(string Text, float? Logprob, Dictionary<string, float>? Top)> PromptLogprobs(ServedModel model, int[] prompt, int top, CancellationToken ct)
    {
        var runner = (Engine.ModelRunner)model.Engine.Runner;
        using var sequence = new Glm.Models.Inference.SequenceRunner(runner.Model, prompt.Length, runner.KvDType);
        var logits = sequence.Feed(prompt, allLogits: true);
        ct.ThrowIfCancellationRequested();
        int vocab = model.Config.VocabSize;
        var result = new List<(string, float?, Dictionary<string, float>?)> { (LogprobFormat.TokenText(model.Tokenizer, prompt[0]), null, null) };
        for (int p = 1; p < prompt.Length; p++)
        {
            int at = (p - 1) * vocab;
            double lse = Glm.Kernels.Cpu.Activations.LogSumExp(logits.AsSpan(at, vocab));
            Dictionary<string, float>? best = top == 0 ? null : Enumerable.Range(0, vocab).OrderByDescending(i => logits[at + i]).Take(top)
                .GroupBy(i => LogprobFormat.TokenText(model.Tokenizer, i)).ToDictionary(g => g.Key, g => (float)(logits[at + g.First()] - lse));
            result.Add((LogprobFormat.TokenText(model.Tokenizer, prompt[p]), (float?)(float)(logits[at + prompt[p]] - lse), best));
        }
        return result;
    }

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
