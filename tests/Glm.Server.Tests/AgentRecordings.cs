using System.Text.Json;
using System.Text.Json.Nodes;

namespace Glm.Server.Tests;

/// <summary>
/// First requests shaped like those coding agents send, written from the Anthropic Messages and OpenAI Responses
/// API documentation (not captured from the agents): long system prompts, many tools with real JSON schemas,
/// and the fields those agents set.
/// </summary>
public static class AgentRecordings
{
    private static readonly string[] ToolNames =
    [
        "Task", "Bash", "Glob", "Grep", "LS", "ExitPlanMode", "Read", "Edit", "MultiEdit", "Write", "NotebookEdit", "WebFetch",
        "TodoWrite", "WebSearch", "BashOutput", "KillShell",
    ];

    private static JsonObject Schema(string name) => new()
    {
        ["type"] = "object",
        ["properties"] = new JsonObject
        {
            ["command"] = new JsonObject { ["type"] = "string", ["description"] = $"The {name} input to run" },
            ["timeout"] = new JsonObject { ["type"] = "number", ["description"] = "Optional timeout in milliseconds (max 600000)" },
            ["path"] = new JsonObject { ["type"] = "string", ["description"] = "The absolute path to operate on" },
            ["todos"] = new JsonObject
            {
                ["type"] = "array",
                ["items"] = new JsonObject
                {
                    ["type"] = "object",
                    ["properties"] = new JsonObject
                    {
                        ["content"] = new JsonObject { ["type"] = "string", ["minLength"] = 1 },
                        ["status"] = new JsonObject { ["type"] = "string", ["enum"] = new JsonArray("pending", "in_progress", "completed") },
                    },
                    ["required"] = new JsonArray("content", "status"),
                    ["additionalProperties"] = false,
                },
            },
        },
        ["required"] = new JsonArray("command"),
        ["additionalProperties"] = false,
        ["$schema"] = "http://json-schema.org/draft-07/schema#",
    };

    /// <summary>Instructions of about 60 tokens a paragraph: with the tools, just past the demo model's trained 4096 positions.</summary>
    private static string LongInstructions(string agent, int paragraphCount)
    {
        var paragraphs = Enumerable.Range(0, paragraphCount).Select(i =>
            $"Rule {i + 1}: when working on the user's repository as {agent}, read the relevant files before editing, keep changes minimal, " +
            "run the project's tests after a change, explain briefly what changed and why, never invent file contents, and ask when a request is ambiguous.");
        return string.Join("\n\n", paragraphs);
    }

    public static string ClaudeCodeFirstTurn()
    {
        var tools = new JsonArray(ToolNames.Select(n => (JsonNode)new JsonObject
        {
            ["name"] = n,
            ["description"] = $"{n}: a tool of the coding agent. " + string.Concat(Enumerable.Repeat("Use it when the task needs it; follow its usage notes. ", 6)),
            ["input_schema"] = Schema(n),
        }).ToArray());
        var request = new JsonObject
        {
            ["model"] = "glm-demo",
            ["max_tokens"] = 32000,
            ["stream"] = true,
            ["temperature"] = 1,
            ["system"] = new JsonArray(
                new JsonObject { ["type"] = "text", ["text"] = "You are Claude Code, Anthropic's official CLI for Claude.", ["cache_control"] = new JsonObject { ["type"] = "ephemeral" } },
                new JsonObject { ["type"] = "text", ["text"] = LongInstructions("Claude Code", 20), ["cache_control"] = new JsonObject { ["type"] = "ephemeral" } }),
            ["messages"] = new JsonArray(new JsonObject
            {
                ["role"] = "user",
                ["content"] = new JsonArray(
                    new JsonObject { ["type"] = "text", ["text"] = "<system-reminder>As you answer the user's questions, you can use the following context.</system-reminder>" },
                    new JsonObject { ["type"] = "text", ["text"] = "say hi", ["cache_control"] = new JsonObject { ["type"] = "ephemeral" } }),
            }),
            ["tools"] = tools,
            ["tool_choice"] = new JsonObject { ["type"] = "auto" },
            ["metadata"] = new JsonObject { ["user_id"] = "user_0123456789abcdef_account__session_01234567-89ab-cdef-0123-456789abcdef" },
            ["thinking"] = new JsonObject { ["type"] = "enabled", ["budget_tokens"] = 31999 },
            ["context_management"] = new JsonObject { ["edits"] = new JsonArray() },
        };
        // The demo model's 16k window in the test server: leave room for the prompt.
        request["max_tokens"] = 8;
        return request.ToJsonString();
    }

    public static string CodexFirstTurn()
    {
        var tools = new JsonArray(
            new JsonObject
            {
                ["type"] = "function", ["name"] = "shell", ["description"] = "Runs a shell command and returns its output.", ["strict"] = false,
                ["parameters"] = new JsonObject
                {
                    ["type"] = "object",
                    ["properties"] = new JsonObject
                    {
                        ["command"] = new JsonObject { ["type"] = "array", ["items"] = new JsonObject { ["type"] = "string" } },
                        ["workdir"] = new JsonObject { ["type"] = "string" },
                        ["timeout_ms"] = new JsonObject { ["type"] = "number" },
                    },
                    ["required"] = new JsonArray("command"),
                    ["additionalProperties"] = false,
                },
            },
            new JsonObject
            {
                ["type"] = "function", ["name"] = "update_plan", ["description"] = "Updates the task plan.", ["strict"] = false,
                ["parameters"] = new JsonObject
                {
                    ["type"] = "object",
                    ["properties"] = new JsonObject
                    {
                        ["explanation"] = new JsonObject { ["type"] = "string" },
                        ["plan"] = new JsonObject { ["type"] = "array", ["items"] = Schema("plan")["properties"]!["todos"]!["items"]!.DeepClone() },
                    },
                    ["required"] = new JsonArray("plan"),
                },
            },
            new JsonObject
            {
                ["type"] = "namespace", ["name"] = "mcp__files",
                ["tools"] = new JsonArray(new JsonObject
                {
                    ["type"] = "function", ["name"] = "read_file", ["description"] = "Reads a file.",
                    ["parameters"] = new JsonObject { ["type"] = "object", ["properties"] = new JsonObject { ["path"] = new JsonObject { ["type"] = "string" } }, ["required"] = new JsonArray("path") },
                }),
            },
            new JsonObject { ["type"] = "web_search" });
        var request = new JsonObject
        {
            ["model"] = "glm-demo",
            ["instructions"] = "You are Codex, a coding agent.\n\n" + LongInstructions("Codex", 62),
            ["input"] = new JsonArray(
                new JsonObject
                {
                    ["type"] = "message", ["role"] = "developer",
                    ["content"] = new JsonArray(new JsonObject { ["type"] = "input_text", ["text"] = "<permissions instructions>Sandbox: workspace-write. Approval: on-request.</permissions instructions>" }),
                },
                new JsonObject
                {
                    ["type"] = "message", ["role"] = "user",
                    ["content"] = new JsonArray(
                        new JsonObject { ["type"] = "input_text", ["text"] = "<environment_context><cwd>/work/repo</cwd><shell>bash</shell></environment_context>" },
                        new JsonObject { ["type"] = "input_text", ["text"] = "say hi" }),
                }),
            ["tools"] = tools,
            ["tool_choice"] = "auto",
            ["parallel_tool_calls"] = false,
            ["reasoning"] = new JsonObject { ["effort"] = "medium", ["summary"] = "auto" },
            ["store"] = false,
            ["stream"] = true,
            ["include"] = new JsonArray("reasoning.encrypted_content"),
            ["prompt_cache_key"] = "0123456789abcdef",
            ["text"] = new JsonObject { ["verbosity"] = "medium" },
            ["max_output_tokens"] = 64,
        };
        return request.ToJsonString();
    }

    public static int Words(string json) => JsonSerializer.Serialize(json).Split(' ').Length;
}
