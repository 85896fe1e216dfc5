using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Glm.Server.Hosting;
using Glm.Server.Metrics;

namespace Glm.Server.Api;

/// <summary>
/// POST /v1/responses: OpenAI's Responses API (the only API Codex CLI speaks) over <see cref="ChatTurn"/>.
/// Stateless: nothing is stored, so previous_response_id is refused and the client sends the conversation
/// (messages, function_call, function_call_output and reasoning items) each turn, as Codex does. Function
/// tools, also inside "namespace" tools, are offered to the model; other tool types (web_search, file_search,
/// computer use …) have no implementation here and are left out of the prompt.
/// </summary>
public sealed class OpenAiResponses(ModelHost host, EngineMetrics metrics, Serilog.ILogger log)
{
    public async Task Handle(HttpContext ctx)
    {
        using var request = await Endpoints.Begin(ctx, host);
        var (model, r, ct) = (request.Model, request.Reader, request.Ct);
        if (r.Has("previous_response_id"))
            throw ApiException.BadRequest("previous_response_id is not supported: this server stores no responses. Send the whole conversation in 'input' (as with store: false).", "previous_response_id");
        if (r.Has("conversation")) throw ApiException.BadRequest("'conversation' is not supported: this server stores no conversations.", "conversation");
        bool stream = r.Bool("stream") ?? false;
        var namespaces = new Dictionary<string, string>(StringComparer.Ordinal);
        using var chatDoc = JsonDocument.Parse(ToChatRequest(r, model.Name, namespaces).ToJsonString());
        using var turn = await ChatTurn.Start(host, metrics, log, model, new RequestReader(chatDoc.RootElement, r.BodyBytes), ct);

        string id = "resp_" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var items = new ItemBuilder(namespaces);
        var sse = stream ? new EventStream(ctx.Response) : null;
        JsonObject Envelope(string status, JsonArray output, JsonObject? usage, JsonObject? incomplete) => new()
        {
            ["id"] = id, ["object"] = "response", ["created_at"] = created, ["status"] = status, ["model"] = model.Name,
            ["output"] = output, ["error"] = null, ["incomplete_details"] = incomplete,
            ["instructions"] = r.Element("instructions") is { ValueKind: JsonValueKind.String } ins ? ins.GetString() : null,
            ["max_output_tokens"] = r.Int("max_output_tokens"), ["temperature"] = r.Number("temperature") ?? 1.0, ["top_p"] = r.Number("top_p") ?? 1.0,
            ["parallel_tool_calls"] = r.Bool("parallel_tool_calls") ?? true,
            ["tool_choice"] = r.Element("tool_choice") is { } tc ? JsonNode.Parse(tc.GetRawText()) : "auto",
            ["tools"] = r.Element("tools") is { } tl ? JsonNode.Parse(tl.GetRawText()) : new JsonArray(),
            ["text"] = new JsonObject { ["format"] = new JsonObject { ["type"] = "text" } },
            ["reasoning"] = r.Element("reasoning") is { } re ? JsonNode.Parse(re.GetRawText()) : null,
            ["store"] = false, ["metadata"] = r.Element("metadata") is { } md ? JsonNode.Parse(md.GetRawText()) : new JsonObject(),
            ["usage"] = usage,
        };
        if (sse is not null)
        {
            await sse.Send("response.created", new JsonObject { ["response"] = Envelope("in_progress", [], null, null) }, ct);
            await sse.Send("response.in_progress", new JsonObject { ["response"] = Envelope("in_progress", [], null, null) }, ct);
        }

        await turn.Run(async step =>
        {
            foreach (var d in step.Deltas)
                foreach (var (type, payload) in items.Add(d))
                    if (sse is not null) await sse.Send(type, payload, ct);
            if (step.Finish is not null)
                foreach (var (type, payload) in items.Close())
                    if (sse is not null) await sse.Send(type, payload, ct);
        }, ct);

        var choice = turn.Choices[0];
        int reasoningTokens = choice.Reasoning.Length == 0 || model.Tokenizer is null ? 0 : model.Tokenizer.Encode(choice.Reasoning.ToString()).Length;
        var usage = new JsonObject
        {
            ["input_tokens"] = turn.PromptIds.Length, ["input_tokens_details"] = new JsonObject { ["cached_tokens"] = turn.CachedTokens },
            ["output_tokens"] = turn.CompletionTokens, ["output_tokens_details"] = new JsonObject { ["reasoning_tokens"] = Math.Min(reasoningTokens, turn.CompletionTokens) },
            ["total_tokens"] = turn.PromptIds.Length + turn.CompletionTokens,
        };
        bool incomplete = choice.Finish == "length";
        var response = Envelope(incomplete ? "incomplete" : "completed", items.Output(), usage, incomplete ? new JsonObject { ["reason"] = "max_output_tokens" } : null);
        var (ttft, seconds) = turn.Timing;
        log.Information("responses {Id} model={Model} input_tokens={Prompt} output_tokens={Completion} cached_tokens={Cached} ttft={Ttft:F3}s e2e={E2e:F3}s status={Status} stream={Stream}",
            id, model.Name, turn.PromptIds.Length, turn.CompletionTokens, turn.CachedTokens, ttft ?? seconds, seconds, response["status"]!.GetValue<string>(), stream);
        if (sse is not null)
        {
            await sse.Send(incomplete ? "response.incomplete" : "response.completed", new JsonObject { ["response"] = response }, ct);
            return;
        }
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(response.ToJsonString(JsonNodeOptions), ct);
    }

    private static readonly JsonSerializerOptions JsonNodeOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    // --- request translation -------------------------------------------------------------------------------------

    private static JsonObject ToChatRequest(RequestReader r, string modelName, Dictionary<string, string> namespaces)
    {
        var messages = new JsonArray();
        if (r.String("instructions") is { } instructions) messages.Add(new JsonObject { ["role"] = "system", ["content"] = instructions });
        var input = r.Element("input") ?? throw ApiException.BadRequest("'input' is required.", "input");
        if (input.ValueKind == JsonValueKind.String) messages.Add(new JsonObject { ["role"] = "user", ["content"] = input.GetString() });
        else if (input.ValueKind == JsonValueKind.Array) AddItems(messages, input);
        else throw RequestReader.Wrong("input", "a string or a list of input items");

        var chat = new JsonObject { ["model"] = modelName, ["messages"] = messages };
        if (r.Int("max_output_tokens", 1) is int max) chat["max_tokens"] = max;
        foreach (string name in new[] { "temperature", "top_p", "parallel_tool_calls", "stream" })
            if (r.Element(name) is { } v) chat[name] = JsonNode.Parse(v.GetRawText());
        if (r.Element("tools") is { } tools) chat["tools"] = Tools(tools, namespaces);
        if (r.Element("tool_choice") is { } choice) chat["tool_choice"] = ToolChoice(choice);
        if (r.Element("text") is { } text && TextFormat(text) is { } format) chat["response_format"] = format;
        if (r.Element("reasoning") is { } reasoning && Effort(reasoning) is string effort) chat["reasoning_effort"] = effort;
        return chat;
    }

    /// <summary>reasoning.effort, which chat completions' reasoning_effort carries on (see ChatPrompt); absent leaves the template's default.</summary>
    private static string? Effort(JsonElement reasoning)
    {
        if (reasoning.ValueKind != JsonValueKind.Object) throw RequestReader.Wrong("reasoning", "an object");
        if (!reasoning.TryGetProperty("effort", out var effort) || effort.ValueKind == JsonValueKind.Null) return null;
        string? value = effort.ValueKind == JsonValueKind.String ? effort.GetString() : null;
        if (value is null || !ChatPrompt.ReasoningEfforts.Contains(value))
            throw ApiException.BadRequest($"reasoning.effort '{effort}' is not one of {string.Join(", ", ChatPrompt.ReasoningEfforts)}.", "reasoning.effort");
        return value;
    }

    /// <summary>text.format as chat's response_format: json_schema's name, schema and strict sit in format itself here.</summary>
    private static JsonObject? TextFormat(JsonElement text)
    {
        if (text.ValueKind != JsonValueKind.Object) throw RequestReader.Wrong("text", "an object");
        if (!text.TryGetProperty("format", out var format) || format.ValueKind == JsonValueKind.Null) return null;
        if (format.ValueKind != JsonValueKind.Object || !format.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw RequestReader.Wrong("text.format", "an object with a 'type'");
        switch (type.GetString())
        {
            case "text": return null;
            case "json_object": return new JsonObject { ["type"] = "json_object" };
            case "json_schema":
            {
                var schema = new JsonObject();
                foreach (string key in new[] { "name", "schema", "strict", "description" })
                    if (format.TryGetProperty(key, out var v)) schema[key] = JsonNode.Parse(v.GetRawText());
                return new JsonObject { ["type"] = "json_schema", ["json_schema"] = schema };
            }
            case var other:
                throw ApiException.BadRequest($"text.format type '{other}' is not supported (text, json_object, json_schema).", "text.format");
        }
    }

    private static void AddItems(JsonArray messages, JsonElement items)
    {
        string? pendingReasoning = null;
        JsonObject? lastAssistant = null;
        int i = 0;
        foreach (var item in items.EnumerateArray())
        {
            string at = $"input[{i++}]";
            if (item.ValueKind != JsonValueKind.Object) throw RequestReader.Wrong(at, "an input item object");
            string type = item.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : item.TryGetProperty("role", out _) ? "message" : "";
            switch (type)
            {
                case "message":
                {
                    string role = item.TryGetProperty("role", out var ro) && ro.ValueKind == JsonValueKind.String ? ro.GetString()! : throw ApiException.BadRequest($"'{at}.role' is required.", at + ".role");
                    if (role is not ("user" or "assistant" or "system" or "developer")) throw ApiException.BadRequest($"'{at}.role' must be user, assistant, system or developer.", at + ".role");
                    string text = item.TryGetProperty("content", out var c) ? TextOf(c, at + ".content") : "";
                    var message = new JsonObject { ["role"] = role, ["content"] = text };
                    if (role == "assistant")
                    {
                        if (pendingReasoning is not null) { message["reasoning_content"] = pendingReasoning; pendingReasoning = null; }
                        lastAssistant = message;
                    }
                    else lastAssistant = null;
                    messages.Add(message);
                    break;
                }
                case "function_call":
                {
                    string callId = Str(item, "call_id", at);
                    string name = Str(item, "name", at);
                    string arguments = item.TryGetProperty("arguments", out var a) && a.ValueKind == JsonValueKind.String ? a.GetString()! : "{}";
                    if (lastAssistant is null)
                    {
                        lastAssistant = new JsonObject { ["role"] = "assistant", ["content"] = "" };
                        if (pendingReasoning is not null) { lastAssistant["reasoning_content"] = pendingReasoning; pendingReasoning = null; }
                        messages.Add(lastAssistant);
                    }
                    if (lastAssistant["tool_calls"] is not JsonArray calls) lastAssistant["tool_calls"] = calls = new JsonArray();
                    calls.Add(new JsonObject { ["id"] = callId, ["type"] = "function", ["function"] = new JsonObject { ["name"] = name, ["arguments"] = arguments } });
                    break;
                }
                case "function_call_output":
                {
                    string callId = Str(item, "call_id", at);
                    string output = item.TryGetProperty("output", out var o) ? o.ValueKind == JsonValueKind.String ? o.GetString()! : TextOf(o, at + ".output") : "";
                    messages.Add(new JsonObject { ["role"] = "tool", ["tool_call_id"] = callId, ["content"] = output });
                    lastAssistant = null;
                    break;
                }
                case "reasoning":
                {
                    var sb = new StringBuilder();
                    foreach (string part in new[] { "content", "summary" })
                        if (sb.Length == 0 && item.TryGetProperty(part, out var parts) && parts.ValueKind == JsonValueKind.Array)
                            foreach (var p in parts.EnumerateArray())
                                if (p.TryGetProperty("text", out var tx) && tx.ValueKind == JsonValueKind.String) sb.Append(tx.GetString());
                    pendingReasoning = sb.Length > 0 ? sb.ToString() : pendingReasoning;
                    break;
                }
                default:
                    throw ApiException.BadRequest($"'{at}' is a '{type}' item, which this server does not take (message, function_call, function_call_output, reasoning).", at + ".type");
            }
        }
    }

    private static string Str(JsonElement item, string name, string at) =>
        item.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : throw ApiException.BadRequest($"'{at}.{name}' is required (a string).", $"{at}.{name}");

    /// <summary>A string, or the text of input_text / output_text parts.</summary>
    private static string TextOf(JsonElement content, string at)
    {
        if (content.ValueKind == JsonValueKind.String) return content.GetString()!;
        if (content.ValueKind != JsonValueKind.Array) throw RequestReader.Wrong(at, "a string or a list of content parts");
        var sb = new StringBuilder();
        int k = 0;
        foreach (var part in content.EnumerateArray())
        {
            string where = $"{at}[{k++}]";
            string type = part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "";
            if (type is "input_text" or "output_text" or "text" or "summary_text" or "reasoning_text")
                sb.Append(part.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String ? text.GetString() : throw RequestReader.Wrong(where + ".text", "a string"));
            else if (type is "input_image" or "input_file" or "input_audio")
                throw ApiException.BadRequest($"'{where}' is an '{type}' part; this model reads text only.", where + ".type");
            else if (type != "refusal")
                throw ApiException.BadRequest($"'{where}.type' must be input_text or output_text, got '{type}'.", where + ".type");
        }
        return sb.ToString();
    }

    /// <summary>Function tools (and those inside namespace tools) as chat tools; other types are not offered to the model.</summary>
    private static JsonArray Tools(JsonElement tools, Dictionary<string, string> namespaces)
    {
        if (tools.ValueKind != JsonValueKind.Array) throw RequestReader.Wrong("tools", "an array");
        var list = new JsonArray();
        void Function(JsonElement tool, string at, string? ns)
        {
            string name = Str(tool, "name", at);
            var fn = new JsonObject { ["name"] = name };
            if (tool.TryGetProperty("description", out var d) && d.ValueKind == JsonValueKind.String) fn["description"] = d.GetString();
            if (tool.TryGetProperty("parameters", out var p) && p.ValueKind == JsonValueKind.Object) fn["parameters"] = JsonNode.Parse(p.GetRawText());
            list.Add(new JsonObject { ["type"] = "function", ["function"] = fn });
            if (ns is not null) namespaces[name] = ns;
        }
        int i = 0;
        foreach (var tool in tools.EnumerateArray())
        {
            string at = $"tools[{i++}]";
            string type = tool.ValueKind == JsonValueKind.Object && tool.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "";
            if (type == "function") Function(tool, at, null);
            else if (type == "namespace" && tool.TryGetProperty("tools", out var inner) && inner.ValueKind == JsonValueKind.Array)
            {
                string ns = Str(tool, "name", at);
                int k = 0;
                foreach (var f in inner.EnumerateArray())
                    if (f.TryGetProperty("type", out var ft) && ft.GetString() == "function") Function(f, $"{at}.tools[{k++}]", ns);
            }
            else if (type.Length == 0) throw ApiException.BadRequest($"'{at}.type' is required.", at + ".type");
            // Built-in tool types (web_search, file_search, code_interpreter, computer_use_preview, local_shell …) are not offered.
        }
        return list;
    }

    private static JsonNode ToolChoice(JsonElement choice)
    {
        if (choice.ValueKind == JsonValueKind.String) return choice.GetString()!;
        if (choice.ValueKind == JsonValueKind.Object && choice.TryGetProperty("type", out var t) && t.GetString() == "function" && choice.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String)
            return new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = n.GetString() } };
        throw RequestReader.Wrong("tool_choice", "auto, none, required or {\"type\": \"function\", \"name\": …}");
    }

    // --- response shaping ----------------------------------------------------------------------------------------

    /// <summary>
    /// Output items in order (reasoning, message, function_call, and again when reasoning is interleaved), as
    /// stream events and as the response's output. A function_call item is sent when its call closes, whole.
    /// </summary>
    private sealed class ItemBuilder(Dictionary<string, string> namespaces) : TurnSegments<(string, JsonObject)>
    {
        private readonly JsonArray _output = [];
        private JsonObject? _item;

        public JsonArray Output() => (JsonArray)_output.DeepClone();

        private JsonObject Part(JsonObject e)
        {
            e["item_id"] = _item!["id"]!.DeepClone();
            e["output_index"] = _output.Count - 1;
            e["content_index"] = 0;
            return e;
        }

        protected override void OnOpen(Kind kind, List<(string, JsonObject)> events)
        {
            _item = kind == Kind.Reasoning
                ? new JsonObject { ["type"] = "reasoning", ["id"] = "rs_" + Guid.NewGuid().ToString("N"), ["summary"] = new JsonArray(), ["content"] = new JsonArray(), ["status"] = "in_progress" }
                : new JsonObject { ["type"] = "message", ["id"] = "msg_" + Guid.NewGuid().ToString("N"), ["status"] = "in_progress", ["role"] = "assistant", ["content"] = new JsonArray() };
            _output.Add(_item);
            events.Add(("response.output_item.added", new JsonObject { ["output_index"] = _output.Count - 1, ["item"] = _item.DeepClone() }));
            var part = kind == Kind.Reasoning ? new JsonObject { ["type"] = "reasoning_text", ["text"] = "" } : new JsonObject { ["type"] = "output_text", ["text"] = "", ["annotations"] = new JsonArray() };
            events.Add(("response.content_part.added", Part(new JsonObject { ["part"] = part })));
        }

        protected override void OnText(Kind kind, string text, List<(string, JsonObject)> events) =>
            events.Add(kind == Kind.Reasoning
                ? ("response.reasoning_text.delta", Part(new JsonObject { ["delta"] = text }))
                : ("response.output_text.delta", Part(new JsonObject { ["delta"] = text, ["logprobs"] = new JsonArray() })));

        protected override void OnClose(Kind kind, string text, List<(string, JsonObject)> events)
        {
            JsonObject part;
            if (kind == Kind.Reasoning)
            {
                part = new JsonObject { ["type"] = "reasoning_text", ["text"] = text };
                events.Add(("response.reasoning_text.done", Part(new JsonObject { ["text"] = text })));
            }
            else
            {
                part = new JsonObject { ["type"] = "output_text", ["text"] = text, ["annotations"] = new JsonArray(), ["logprobs"] = new JsonArray() };
                events.Add(("response.output_text.done", Part(new JsonObject { ["text"] = text, ["logprobs"] = new JsonArray() })));
            }
            events.Add(("response.content_part.done", Part(new JsonObject { ["part"] = part.DeepClone() })));
            ((JsonArray)_item!["content"]!).Add(part);
            _item["status"] = "completed";
            events.Add(("response.output_item.done", new JsonObject { ["output_index"] = _output.Count - 1, ["item"] = _item.DeepClone() }));
        }

        protected override void OnToolCall(Glm.Text.Parsing.ParsedToolCall call, List<(string, JsonObject)> events)
        {
            var item = new JsonObject
            {
                ["type"] = "function_call", ["id"] = "fc_" + call.Id[5..], ["call_id"] = call.Id, ["name"] = call.Name,
                ["arguments"] = call.Arguments, ["status"] = "completed",
            };
            if (namespaces.TryGetValue(call.Name, out var ns)) item["namespace"] = ns;
            int index = _output.Count;
            var added = (JsonObject)item.DeepClone();
            added["arguments"] = "";
            added["status"] = "in_progress";
            events.Add(("response.output_item.added", new JsonObject { ["output_index"] = index, ["item"] = added }));
            events.Add(("response.function_call_arguments.delta", new JsonObject { ["item_id"] = item["id"]!.DeepClone(), ["output_index"] = index, ["delta"] = call.Arguments }));
            events.Add(("response.function_call_arguments.done", new JsonObject { ["item_id"] = item["id"]!.DeepClone(), ["output_index"] = index, ["name"] = call.Name, ["arguments"] = call.Arguments }));
            _output.Add(item);
            events.Add(("response.output_item.done", new JsonObject { ["output_index"] = index, ["item"] = item.DeepClone() }));
        }
    }

    /// <summary>The Responses stream: named events, each payload with its type and a strictly increasing sequence_number.</summary>
    private sealed class EventStream(HttpResponse response)
    {
        private readonly SseWriter _sse = new(response);
        private int _sequence;

        public Task Send(string type, JsonObject payload, CancellationToken ct)
        {
            var data = new JsonObject { ["type"] = type, ["sequence_number"] = _sequence++ };
            foreach (var (k, v) in payload.ToList())
            {
                payload.Remove(k);
                data[k] = v;
            }
            return _sse.SendEvent(type, data.ToJsonString(JsonNodeOptions), ct);
        }
    }
}
