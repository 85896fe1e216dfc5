using Glm.Server.Cli;

namespace Glm.Server.Tests;

/// <summary>The chat verb end to end: an in-process server, a scripted terminal session, the demo model's answers.</summary>
[Collection("console")]
public class ChatCommandTests
{
    [Fact]
    public void ScriptedSessionShowsReasoningAnswersAndToolCalls()
    {
        var options = ServerOptions.Parse(["--temperature", "0", "--demo-tools", "--kv-cache-memory", "33554432"], "/nonexistent/appsettings.json");
        var input = new StringReader("What's the weather in Lisbon?\n/reset\n/system You are terse.\n/exit\n");
        var output = new StringWriter();
        var log = new Serilog.LoggerConfiguration().CreateLogger();
        int code = ChatCommand.Run(options, log, input, output);
        string text = output.ToString();
        Assert.Equal(0, code);
        Assert.Contains("chatting with glm-demo", text);
        Assert.Contains("(thinking) I should call get_weather for Lisbon.", text);
        Assert.Contains("[tool call] get_weather {\"city\": \"Lisbon\", \"unit\": \"celsius\"}", text);
        Assert.Contains("(conversation cleared)", text);
        Assert.Contains("(system prompt set)", text);
        Assert.DoesNotContain("\u001b[", text); // no colour codes when the output is not a terminal
    }
}
