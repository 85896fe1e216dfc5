using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Glm.Server.Hosting;
using Glm.Server.Metrics;
using Glm.Text.Parsing;

namespace Glm.Server.Api;

/// <summary>
/// POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API (what Claude Code speaks) over
/// <see cref="ChatTurn"/>. A request is translated into the chat form the turn takes (system, text, tool_use,
/// tool_result and thinking blocks into messages; tools, tool_choice, thinking into their chat counterparts),
/// and the turn's deltas into Anthropic's content blocks and stream events. Fields that change nothing here
/// (cache_control, metadata, context_management, output_config, the anthropic-* headers) are accepted.
/// </summary>
public sealed class AnthropicMessages(ModelHost host, EngineMetrics metrics, Serilog.ILogger log)
{
    public async Task Handle(HttpContext ctx)
    {
        using var request = await Endpoints.Begin(ctx, host);
        var (model, r, ct) = (request.Model, request.Reader, request.Ct);
        if (r.Element("max_tokens") is null) throw ApiException.BadRequest("max_tokens: Field required", "max_tokens");
        bool stream = r.Bool("stream") ?? false;
        var stops = StopSequences(r);
        using var chatDoc = JsonDocument.Parse(ToChatRequest(r, model.Name, stops).ToJsonString());
        var chat = new RequestReader(chatDoc.RootElement, r.BodyBytes);
        using var turn = await ChatTurn.Start(host, metrics, log, model, chat, ct, BudgetTokens(r.Element("thinking")));

        string id = "msg_" + Guid.NewGuid().ToString("N")[..24];
        var blocks = new BlockBuilder();
        // Anthropic's stream: named events whose name is each payload's type, and no [DONE].
        var sse = stream ? new SseWriter(ctx.Response) : null;
        int inputTokens = turn.PromptIds.Length;
        if (sse is not null)
            await sse.SendEvent("message_start", Json.Serialize(new
            {
                type = "message_start",
                message = new
                {
                    id, type = "message", role = "assistant", model = model.Name, content = Array.Empty<object>(),
                    stop_reason = (string?)null, stop_sequence = (string?)null,
                    usage = new { input_tokens = inputTokens, output_tokens = 0, cache_read_input_tokens = turn.CachedTokens, cache_creation_input_tokens = 0 },
                },
            }), ct);

        await turn.Run(async step =>
        {
            foreach (var d in step.Deltas)
                foreach (var e in blocks.Add(d))
                    if (sse is not null) await sse.SendEvent(e.Type, Json.Serialize(e.Payload), ct);
            if (step.Finish is not null)
                foreach (var e in blocks.Close())
                    if (sse is not null) await sse.SendEvent(e.Type, Json.Serialize(e.Payload), ct);
        }, ct);

        var choice = turn.Choices[0];
        var (stopReason, stopSequence) = StopReason(choice, stops);
        int outputTokens = turn.CompletionTokens;
        var (ttft, seconds) = turn.Timing;
        log.Information("messages {Id} model={Model} input_tokens={Prompt} output_tokens={Completion} cached_tokens={Cached} ttft={Ttft:F3}s e2e={E2e:F3}s stop_reason={Stop} stream={Stream}",
            id, model.Name, inputTokens, outputTokens, turn.CachedTokens, ttft ?? seconds, seconds, stopReason, stream);
        if (sse is not null)
        {
            await sse.SendEvent("message_delta", Json.Serialize(new { type = "message_delta", delta = new { stop_reason = stopReason, stop_sequence = stopSequence }, usage = new { output_tokens = outputTokens } }), ct);
            await sse.SendEvent("message_stop", Json.Serialize(new { type = "message_stop" }), ct);
            return;
        }
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(Json.Serialize(new
        {
            id, type = "message", role = "assistant", model = model.Name, content = blocks.Blocks,
            stop_reason = stopReason, stop_sequence = stopSequence,
            usage = new { input_tokens = inputTokens, output_tokens = outputTokens, cache_read_input_tokens = turn.CachedTokens, cache_creation_input_tokens = 0 },
        }), ct);
    }

    /// <summary>POST /v1/messages/count_tokens: the input tokens the same request would have.</summary>
    public async Task CountTokens(HttpContext ctx)
    {
        using var request = await Endpoints.Begin(ctx, host);
        var (model, r, ct) = (request.Model, request.Reader, request.Ct);
        using var chatDoc = JsonDocument.Parse(ToChatRequest(r, model.Name, stops: null).ToJsonString());
        var ids = await ChatTurn.CountPromptTokens(host, model, new RequestReader(chatDoc.RootElement, r.BodyBytes), ct);
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(Json.Serialize(new { input_tokens = ids.Length }), ct);
    }

    private static List<string> StopSequences(RequestReader r)
    {
        if (r.Element("stop_sequences") is not { } s) return [];
        if (s.ValueKind != JsonValueKind.Array || s.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.String))
            throw RequestReader.Wrong("stop_sequences", "an array of strings");
        return s.EnumerateArray().Select(x => x.GetString()!).Where(x => x.Length > 0).ToList();
    }

    private static (string Reason, string? Sequence) StopReason(TurnChoice c, List<string> stops) => c.Finish switch
    {
        "tool_calls" => ("tool_use", null),
        "length" => ("max_tokens", null),
        _ when c.StopReason is string s && stops.Contains(s) => ("stop_sequence", s),
        _ => ("end_turn", null),
    };

    // --- request translation -------------------------------------------------------------------------------------

    /// <summary>The Anthropic request as the chat-completions request the turn takes.</summary>
    /// <param name="stops">the request's stop sequences; null when only counting tokens (no sampling fields then)</param>
    private static JsonObject ToChatRequest(RequestReader r, string modelName, List<string>? stops)
    {
        var messages = new JsonArray();
        if (r.Element("system") is { } system) messages.Add(new JsonObject { ["role"] = "system", ["content"] = TextOf(system, "system") });
        if (r.Element("messages") is not { ValueKind: JsonValueKind.Array } input) throw ApiException.BadRequest("messages: Field required (a list of messages)", "messages");
        int i = 0;
        foreach (var m in input.EnumerateArray()) AddMessage(messages, m, $"messages.{i++}");

        var chat = new JsonObject { ["model"] = modelName, ["messages"] = messages };
        if (stops is not null)
        {
            chat["max_tokens"] = Copy(r.Element("max_tokens"));
            foreach (string name in new[] { "temperature", "top_p", "top_k", "stream" })
                if (r.Element(name) is { } v) chat[name] = Copy(v);
            if (r.Number("temperature") is > 1) throw ApiException.BadRequest("temperature: must be between 0 and 1", "temperature");
            if (stops.Count > 0) chat["stop"] = new JsonArray(stops.Select(s => (JsonNode)s).ToArray());
        }
        if (r.Element("tools") is { } tools) chat["tools"] = Tools(tools);
        if (r.Element("tool_choice") is { } choice) ApplyToolChoice(chat, choice);
        // Anthropic's rule: no "thinking" field means no thinking.
        chat["chat_template_kwargs"] = new JsonObject { ["enable_thinking"] = Thinking(r.Element("thinking")) };
        return chat;
    }

    /// <summary>thinking.budget_tokens of an "enabled" thinking config (enforced: &lt;/think&gt; is forced when it is spent).</summary>
    private static int? BudgetTokens(JsonElement? thinking) =>
        Thinking(thinking) && thinking!.Value.GetProperty("type").GetString() == "enabled" ? thinking.Value.GetProperty("budget_tokens").GetInt32() : null;

    private static bool Thinking(JsonElement? thinking)
    {
        if (thinking is not { } t) return false;
        if (t.ValueKind != JsonValueKind.Object || !t.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw RequestReader.Wrong("thinking", "an object with a 'type'");
        return type.GetString() switch
        {
            "enabled" => t.TryGetProperty("budget_tokens", out var b) && b.ValueKind == JsonValueKind.Number && b.TryGetInt32(out int budget) && budget >= 1
                ? true : throw ApiException.BadRequest("thinking.budget_tokens: an integer of at least 1 is required with type 'enabled'", "thinking"),
            "adaptive" => true,
            "disabled" => false,
            var other => throw ApiException.BadRequest($"thinking.type: '{other}' is not one of 'enabled', 'adaptive', 'disabled'", "thinking"),
        };
    }

    private static void AddMessage(JsonArray messages, JsonElement m, string at)
    {
        if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out var roleElement) || roleElement.ValueKind != JsonValueKind.String)
            throw ApiException.BadRequest($"{at}.role: Field required", at);
        string role = roleElement.GetString()!;
        if (role is not ("user" or "assistant" or "system")) throw ApiException.BadRequest($"{at}.role: Input should be 'user' or 'assistant'", at);
        if (!m.TryGetProperty("content", out var content)) throw ApiException.BadRequest($"{at}.content: Field required", at);
        if (role == "system") { messages.Add(new JsonObject { ["role"] = "system", ["content"] = TextOf(content, at + ".content") }); return; }
        if (content.ValueKind == JsonValueKind.String) { messages.Add(new JsonObject { ["role"] = role, ["content"] = content.GetString() }); return; }
        if (content.ValueKind != JsonValueKind.Array) throw RequestReader.Wrong(at + ".content", "a string or a list of content blocks");

        var text = new StringBuilder();
        var reasoning = new StringBuilder();
        var calls = new JsonArray();
        int k = 0;
        foreach (var block in content.EnumerateArray())
        {
            string where = $"{at}.content.{k++}";
            string type = block.ValueKind == JsonValueKind.Object && block.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String
                ? t.GetString()! : throw ApiException.BadRequest($"{where}.type: Field required", where);
            switch (type)
            {
                case "text":
                    text.Append(block.TryGetProperty("text", out var tx) && tx.ValueKind == JsonValueKind.String ? tx.GetString() : throw RequestReader.Wrong(where + ".text", "a string"));
                    break;
                case "thinking" when role == "assistant":
                    reasoning.Append(block.TryGetProperty("thinking", out var th) && th.ValueKind == JsonValueKind.String ? th.GetString() : throw RequestReader.Wrong(where + ".thinking", "a string"));
                    break;
                case "redacted_thinking" when role == "assistant":
                    break; // opaque by definition: there is nothing of it to show the model
                case "tool_use" when role == "assistant":
                    string callId = block.TryGetProperty("id", out var cid) && cid.ValueKind == JsonValueKind.String ? cid.GetString()! : throw RequestReader.Wrong(where + ".id", "a string");
                    string name = block.TryGetProperty("name", out var nm) && nm.ValueKind == JsonValueKind.String ? nm.GetString()! : throw RequestReader.Wrong(where + ".name", "a string");
                    var input = block.TryGetProperty("input", out var inp) && inp.ValueKind == JsonValueKind.Object ? inp.GetRawText() : throw RequestReader.Wrong(where + ".input", "an object");
                    calls.Add(new JsonObject { ["id"] = callId, ["type"] = "function", ["function"] = new JsonObject { ["name"] = name, ["arguments"] = input } });
                    break;
                case "tool_result" when role == "user":
                    string useId = block.TryGetProperty("tool_use_id", out var uid) && uid.ValueKind == JsonValueKind.String ? uid.GetString()! : throw RequestReader.Wrong(where + ".tool_use_id", "a string");
                    string result = block.TryGetProperty("content", out var rc) ? TextOf(rc, where + ".content") : "";
                    if (block.TryGetProperty("is_error", out var err) && err.ValueKind == JsonValueKind.True) result = "Error: " + result;
                    messages.Add(new JsonObject { ["role"] = "tool", ["tool_call_id"] = useId, ["content"] = result });
                    break;
                case "image" or "document" or "search_result" or "container_upload":
                    throw ApiException.BadRequest($"{where}: '{type}' blocks are not supported; this model reads text only.", where);
                default:
                    throw ApiException.BadRequest($"{where}.type: '{type}' is not a content block a {role} message can carry here.", where);
            }
        }
        if (role == "assistant")
        {
            var message = new JsonObject { ["role"] = "assistant", ["content"] = text.ToString() };
            if (reasoning.Length > 0) message["reasoning_content"] = reasoning.ToString();
            if (calls.Count > 0) message["tool_calls"] = calls;
            messages.Add(message);
        }
        else if (text.Length > 0 || !content.EnumerateArray().Any(b => b.TryGetProperty("type", out var bt) && bt.GetString() == "tool_result"))
            messages.Add(new JsonObject { ["role"] = "user", ["content"] = text.ToString() });
    }

    /// <summary>A string, or the text of a list of text blocks (system prompts and tool results take both).</summary>
    private static string TextOf(JsonElement e, string at)
    {
        if (e.ValueKind == JsonValueKind.String) return e.GetString()!;
        if (e.ValueKind != JsonValueKind.Array) throw RequestReader.Wrong(at, "a string or a list of text blocks");
        var sb = new StringBuilder();
        int k = 0;
        foreach (var block in e.EnumerateArray())
        {
            string where = $"{at}.{k++}";
            if (block.ValueKind != JsonValueKind.Object || !block.TryGetProperty("type", out var t) || t.GetString() != "text"
                || !block.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                throw ApiException.BadRequest($"{where}: only text blocks are supported here.", where);
            if (sb.Length > 0) sb.Append('\n');
            sb.Append(text.GetString());
        }
        return sb.ToString();
    }

    private static JsonArray Tools(JsonElement tools)
    {
        if (tools.ValueKind != JsonValueKind.Array) throw RequestReader.Wrong("tools", "a list of tools");
        var list = new JsonArray();
        int i = 0;
        foreach (var tool in tools.EnumerateArray())
        {
            string at = $"tools.{i++}";
            if (tool.ValueKind != JsonValueKind.Object) throw RequestReader.Wrong(at, "a tool object");
            if (tool.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String && type.GetString() is not ("custom" or null))
                throw ApiException.BadRequest($"{at}: the server tool '{type.GetString()}' is not available here; declare tools with name, description and input_schema.", at);
            if (!tool.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String) throw ApiException.BadRequest($"{at}.name: Field required", at);
            var function = new JsonObject { ["name"] = name.GetString() };
            if (tool.TryGetProperty("description", out var d) && d.ValueKind == JsonValueKind.String) function["description"] = d.GetString();
            if (!tool.TryGetProperty("input_schema", out var schema) || schema.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest($"{at}.input_schema: Field required (an object)", at);
            function["parameters"] = JsonNode.Parse(schema.GetRawText());
            list.Add(new JsonObject { ["type"] = "function", ["function"] = function });
        }
        return list;
    }

    private static void ApplyToolChoice(JsonObject chat, JsonElement choice)
    {
        if (choice.ValueKind != JsonValueKind.Object || !choice.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw RequestReader.Wrong("tool_choice", "an object with a 'type'");
        if (choice.TryGetProperty("disable_parallel_tool_use", out var dp) && dp.ValueKind == JsonValueKind.True) chat["parallel_tool_calls"] = false;
        chat["tool_choice"] = type.GetString() switch
        {
            "auto" => "auto",
            "any" => "required",
            "none" => "none",
            "tool" => choice.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String
                ? new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = n.GetString() } }
                : throw ApiException.BadRequest("tool_choice.name: Field required for type 'tool'", "tool_choice"),
            var other => throw ApiException.BadRequest($"tool_choice.type: '{other}' is not one of 'auto', 'any', 'tool', 'none'", "tool_choice"),
        };
    }

    private static JsonNode? Copy(JsonElement? e) => e is { } v ? JsonNode.Parse(v.GetRawText()) : null;

    // --- response shaping ----------------------------------------------------------------------------------------

    /// <summary>An Anthropic tool_use id for a parsed call (the same in a stream and a whole response).</summary>
    public static string ToolUseId(string callId) => "toolu_" + (callId.StartsWith("call_") ? callId[5..] : callId);

    /// <summary>
    /// Content blocks in order (thinking, text, tool_use, and again when reasoning is interleaved), as stream
    /// events and as the whole response's content. A tool_use block is sent when its call closes, whole: a call
    /// that never closes must not leave a client holding half of its input.
    /// </summary>
    private sealed class BlockBuilder : TurnSegments<(string Type, object Payload)>
    {
        private readonly List<Dictionary<string, object?>> _blocks = [];

        public IReadOnlyList<Dictionary<string, object?>> Blocks => _blocks;

        private int Index => _blocks.Count - 1;

        protected override void OnOpen(Kind kind, List<(string Type, object Payload)> events)
        {
            _blocks.Add(kind == Kind.Reasoning
                ? new Dictionary<string, object?> { ["type"] = "thinking", ["thinking"] = "", ["signature"] = "" }
                : new Dictionary<string, object?> { ["type"] = "text", ["text"] = "" });
            object start = kind == Kind.Reasoning ? new { type = "thinking", thinking = "", signature = "" } : new { type = "text", text = "" };
            events.Add(("content_block_start", new { type = "content_block_start", index = Index, content_block = start }));
        }

        protected override void OnText(Kind kind, string text, List<(string Type, object Payload)> events)
        {
            object delta = kind == Kind.Reasoning ? new { type = "thinking_delta", thinking = text } : new { type = "text_delta", text };
            events.Add(("content_block_delta", new { type = "content_block_delta", index = Index, delta }));
        }

        protected override void OnClose(Kind kind, string text, List<(string Type, object Payload)> events)
        {
            if (kind == Kind.Reasoning)
            {
                // Not a cryptographic attestation (there is no Anthropic key here): a digest of the thinking, so
                // clients that require a signature string get one that changes with the text.
                string signature = "glm-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..32];
                _blocks[Index]["thinking"] = text;
                _blocks[Index]["signature"] = signature;
                events.Add(("content_block_delta", new { type = "content_block_delta", index = Index, delta = new { type = "signature_delta", signature } }));
            }
            else _blocks[Index]["text"] = text;
            events.Add(("content_block_stop", new { type = "content_block_stop", index = Index }));
        }

        protected override void OnToolCall(ParsedToolCall call, List<(string Type, object Payload)> events)
        {
            var input = JsonNode.Parse(call.Arguments) as JsonObject ?? new JsonObject { ["value"] = JsonNode.Parse(call.Arguments) };
            string id = ToolUseId(call.Id);
            _blocks.Add(new Dictionary<string, object?> { ["type"] = "tool_use", ["id"] = id, ["name"] = call.Name, ["input"] = input });
            int index = Index;
            events.Add(("content_block_start", new { type = "content_block_start", index, content_block = new { type = "tool_use", id, name = call.Name, input = new { } } }));
            events.Add(("content_block_delta", new { type = "content_block_delta", index, delta = new { type = "input_json_delta", partial_json = call.Arguments } }));
            events.Add(("content_block_stop", new { type = "content_block_stop", index }));
        }
    }
}
