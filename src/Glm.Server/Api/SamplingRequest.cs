using Glm.Engine;
using Glm.Server.Hosting;

namespace Glm.Server.Api;

/// <summary>The generation settings shared by chat and text completions, validated with OpenAI's ranges.</summary>
public sealed record SamplingRequest(SamplingParams Params, List<string> Stop, int N, bool SkipSpecialTokens, bool IncludeStopInOutput)
{
    public static SamplingRequest Parse(RequestReader r, ServedModel model, int promptTokens, bool chat, int? topLogprobs)
    {
        int n = r.Int("n", 1, 16) ?? 1;
        int? maxTokens = (chat ? r.Int("max_completion_tokens", 1) : null) ?? r.Int("max_tokens", 1);
        if (r.Has("max_tokens") && r.Root.GetProperty("max_tokens").ValueKind == System.Text.Json.JsonValueKind.Number && r.Root.GetProperty("max_tokens").GetDouble() < 1)
            throw ApiException.BadRequest("'max_tokens' must be at least 1.", "max_tokens");
        int maxLen = model.MaxModelLen;
        if (promptTokens >= maxLen)
            throw new ApiException(400,
                $"This model's maximum context length is {maxLen} tokens. However, your request has {promptTokens} input tokens. Please reduce the length of the input messages.",
                "messages", "context_length_exceeded");
        int max = maxTokens ?? maxLen - promptTokens;

        var bias = new Dictionary<int, float>();
        if (r.Element("logit_bias") is { } lb)
        {
            if (lb.ValueKind != System.Text.Json.JsonValueKind.Object) throw RequestReader.Wrong("logit_bias", "an object of token id to bias");
            foreach (var p in lb.EnumerateObject())
            {
                if (!int.TryParse(p.Name, out int id) || id < 0 || id >= model.Config.VocabSize)
                    throw ApiException.BadRequest($"logit_bias: '{p.Name}' is not a token id of this model.", "logit_bias");
                if (p.Value.ValueKind != System.Text.Json.JsonValueKind.Number) throw RequestReader.Wrong("logit_bias", "an object of token id to number");
                double v = p.Value.GetDouble();
                if (v is < -100 or > 100) throw ApiException.BadRequest("logit_bias values must be between -100 and 100.", "logit_bias");
                bias[id] = (float)v;
            }
        }
        long? seed = r.Element("seed") is { } s ? s.ValueKind == System.Text.Json.JsonValueKind.Number && s.TryGetInt64(out long l) ? l : throw RequestReader.Wrong("seed", "an integer") : null;
        var p2 = new SamplingParams
        {
            Temperature = (float)(r.Number("temperature", 0, 2) ?? 1.0),
            TopP = (float)(r.Number("top_p", 0, 1) ?? 1.0),
            TopK = r.Int("top_k", -1) ?? 0,
            MinP = (float)(r.Number("min_p", 0, 1) ?? 0),
            RepetitionPenalty = (float)(r.Number("repetition_penalty", 0.0001, 100) ?? 1.0),
            PresencePenalty = (float)(r.Number("presence_penalty", -2, 2) ?? 0),
            FrequencyPenalty = (float)(r.Number("frequency_penalty", -2, 2) ?? 0),
            LogitBias = bias.Count > 0 ? bias : null,
            Seed = seed is long sv ? unchecked((ulong)sv) : null,
            MaxTokens = max,
            MinTokens = r.Int("min_tokens", 0) ?? 0,
            IgnoreEos = r.Bool("ignore_eos") ?? false,
            StopTokenIds = r.IntList("stop_token_ids"),
            Logprobs = topLogprobs,
        };
        if (p2.TopP == 0) throw ApiException.BadRequest("'top_p' must be greater than 0.", "top_p");
        return new SamplingRequest(p2, r.Stop(), n, r.Bool("skip_special_tokens") ?? true, r.Bool("include_stop_str_in_output") ?? false);
    }

    /// <summary>Parameters for choice i of n: seeded requests get distinct, reproducible seeds per choice.</summary>
    public SamplingParams ForChoice(int i) => i == 0 || Params.Seed is null ? Params : Params with { Seed = Params.Seed + (ulong)i };
}
