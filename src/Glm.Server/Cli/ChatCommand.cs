using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Glm.Server.Hosting;
using Serilog;

namespace Glm.Server.Cli;

/// <summary>
/// chat: a terminal conversation through the OpenAI chat API, against --url or an in-process server on a free
/// loopback port. Streams tokens, shows reasoning dimmed and tool calls as they are parsed. /reset clears the
/// conversation, /system TEXT sets the system prompt, /exit leaves.
/// </summary>
public static class ChatCommand
{
    private const string Dim = "\u001b[2m", Cyan = "\u001b[36m", Reset = "\u001b[0m";

    public static int Run(ServerOptions o, Serilog.ILogger log, TextReader input, TextWriter output)
    {
        Microsoft.AspNetCore.Builder.WebApplication? app = null;
        string baseUrl;
        if (o.Url is { } url) baseUrl = url.TrimEnd('/');
        else
        {
            o.Port = 0;
            o.Host = "127.0.0.1";
            app = ServerApp.Build(o, new Serilog.LoggerConfiguration().MinimumLevel.Warning().WriteTo.Console(standardErrorFromLevel: Serilog.Events.LogEventLevel.Verbose).CreateLogger());
            app.StartAsync().GetAwaiter().GetResult();
            baseUrl = app.Urls.First();
        }
        try
        {
            return Loop(o, baseUrl, input, output);
        }
        finally
        {
            if (app is not null)
            {
                app.StopAsync().GetAwaiter().GetResult();
                app.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }
    }

    private static int Loop(ServerOptions o, string baseUrl, TextReader input, TextWriter output)
    {
        bool color = !Console.IsOutputRedirected && ReferenceEquals(output, Console.Out);
        using var http = new HttpClient { BaseAddress = new Uri(baseUrl), Timeout = Timeout.InfiniteTimeSpan };
        if (o.ApiKey is { } key) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        string model = WaitForModel(http);
        output.WriteLine($"chatting with {model} at {baseUrl} — /reset, /system TEXT, /exit");
        var history = new JsonArray();
        string? system = null;
        while (true)
        {
            if (color) output.Write($"{Cyan}> {Reset}");
            string? line = input.ReadLine();
            if (line is null || line.Trim() == "/exit") return 0;
            if (line.Trim().Length == 0) continue;
            if (line.Trim() == "/reset") { history.Clear(); output.WriteLine("(conversation cleared)"); continue; }
            if (line.StartsWith("/system", StringComparison.Ordinal)) { system = line[7..].Trim(); output.WriteLine("(system prompt set)"); continue; }

            history.Add(new JsonObject { ["role"] = "user", ["content"] = line });
            var messages = new JsonArray();
            if (system is { Length: > 0 }) messages.Add(new JsonObject { ["role"] = "system", ["content"] = system });
            foreach (var m in history) messages.Add(m!.DeepClone());
            var body = new JsonObject
            {
                ["model"] = model, ["messages"] = messages, ["stream"] = true, ["temperature"] = o.Temperature ?? 0.6f,
                ["max_tokens"] = o.MaxTokens ?? 512,
            };
            if (o.DemoTools) body["tools"] = DemoTools();
            var reply = Stream(http, body, output, color);
            history.Add(reply);
        }
    }

    private static string WaitForModel(HttpClient http)
    {
        for (int i = 0; i < 1200; i++)
        {
            try
            {
                using var r = http.GetAsync("/v1/models").GetAwaiter().GetResult();
                if (r.IsSuccessStatusCode)
                    return JsonDocument.Parse(r.Content.ReadAsStringAsync().GetAwaiter().GetResult()).RootElement.GetProperty("data")[0].GetProperty("id").GetString()!;
                if ((int)r.StatusCode == 401) throw new CliException("the server wants an API key: pass --api-key");
            }
            catch (HttpRequestException) { }
            Thread.Sleep(100);
        }
        throw new CliException("the server did not become ready");
    }

    /// <summary>Streams one reply, printing it as it comes; returns the assistant message for the history.</summary>
    private static JsonObject Stream(HttpClient http, JsonObject body, TextWriter output, bool color)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
        using var response = http.Send(request, HttpCompletionOption.ResponseHeadersRead);
        if (!response.IsSuccessStatusCode)
        {
            output.WriteLine($"error {(int)response.StatusCode}: {response.Content.ReadAsStringAsync().GetAwaiter().GetResult()}");
            return new JsonObject { ["role"] = "assistant", ["content"] = "" };
        }
        using var reader = new StreamReader(response.Content.ReadAsStream());
        var content = new StringBuilder();
        var reasoning = new StringBuilder();
        var calls = new SortedDictionary<int, (string Id, string Name, StringBuilder Args)>();
        bool inReasoning = false;
        string? finish = null;
        while (reader.ReadLine() is { } line)
        {
            if (!line.StartsWith("data: ")) continue;
            string data = line[6..];
            if (data == "[DONE]") break;
            using var doc = JsonDocument.Parse(data);
            if (doc.RootElement.TryGetProperty("error", out var error)) { output.WriteLine($"\nerror: {error.GetProperty("message").GetString()}"); break; }
            foreach (var choice in doc.RootElement.GetProperty("choices").EnumerateArray())
            {
                var delta = choice.GetProperty("delta");
                if (delta.TryGetProperty("reasoning_content", out var r) && r.GetString() is { Length: > 0 } rt)
                {
                    if (!inReasoning) { output.Write(color ? Dim + "(thinking) " : "(thinking) "); inReasoning = true; }
                    reasoning.Append(rt);
                    output.Write(rt);
                }
                if (delta.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String && c.GetString() is { Length: > 0 } ct)
                {
                    if (inReasoning) { output.Write(color ? Reset + "\n" : "\n"); inReasoning = false; }
                    content.Append(ct);
                    output.Write(ct);
                }
                if (delta.TryGetProperty("tool_calls", out var tcs))
                    foreach (var tc in tcs.EnumerateArray())
                    {
                        int index = tc.GetProperty("index").GetInt32();
                        if (!calls.TryGetValue(index, out var call))
                        {
                            if (inReasoning) { output.Write(color ? Reset + "\n" : "\n"); inReasoning = false; }
                            call = (tc.GetProperty("id").GetString()!, tc.GetProperty("function").GetProperty("name").GetString()!, new StringBuilder());
                            calls[index] = call;
                            output.Write($"\n[tool call] {call.Name} ");
                        }
                        if (tc.GetProperty("function").TryGetProperty("arguments", out var a)) { call.Args.Append(a.GetString()); output.Write(a.GetString()); }
                    }
                if (choice.TryGetProperty("finish_reason", out var f) && f.ValueKind == JsonValueKind.String) finish = f.GetString();
            }
        }
        if (inReasoning && color) output.Write(Reset);
        output.WriteLine(finish is null or "stop" or "tool_calls" ? "" : $"\n({finish})");
        var message = new JsonObject { ["role"] = "assistant", ["content"] = content.ToString() };
        if (reasoning.Length > 0) message["reasoning_content"] = reasoning.ToString();
        if (calls.Count > 0)
            message["tool_calls"] = new JsonArray(calls.Values.Select(c => (JsonNode)new JsonObject
            {
                ["id"] = c.Id, ["type"] = "function", ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = c.Args.ToString() },
            }).ToArray());
        return message;
    }

    /// <summary>The tools the demo model was trained on, offered so it can show tool calling in a terminal.</summary>
    private static JsonArray DemoTools() => JsonNode.Parse("""
        [{"type":"function","function":{"name":"get_weather","description":"Get the current weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string","description":"City name"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city"]}}},
         {"type":"function","function":{"name":"get_time","description":"Get the local time in a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
         {"type":"function","function":{"name":"calculator","description":"Evaluate an arithmetic expression exactly","parameters":{"type":"object","properties":{"expression":{"type":"string"}},"required":["expression"]}}}]
        """)!.AsArray();
}
