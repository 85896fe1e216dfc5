using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using Glm.TestSupport;

namespace Glm.Server.Tests;

/// <summary>SIGTERM to a real server process with streams in flight: they finish, new work gets 503, exit code 0.</summary>
public class GracefulShutdownTests
{
    [Fact]
    public async Task SigtermDrainsInFlightStreamsRefusesNewWorkAndExitsZero()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return; // POSIX signals only
        var (server, output, http) = StartServer("drain", grace: 20);
        using var _ = server;
        using var __ = http;
        try
        {
            await WaitHealthy(http);
            // Streams long enough to still be running when the signal arrives and while the refusals are checked
            // (300 tokens of this tiny model could finish within the 400 ms below on a fast run).
            var streams = Enumerable.Range(0, 3).Select(i => http.PostAsJsonAsync("/v1/chat/completions", new
            {
                model = "drain", messages = new[] { new { role = "user", content = $"stream {i}" } }, max_tokens = 2000, ignore_eos = true, stream = true,
            })).ToList();
            // The signal must find all three in the engine: on a loaded machine a fixed delay can beat a request there,
            // which is then (rightly) refused with 503.
            await WaitInEngine(http, 3);

            var sw = Stopwatch.StartNew();
            using (var kill = Process.Start("kill", ["-TERM", server.Id.ToString()])) await kill!.WaitForExitAsync();
            await Task.Delay(100);

            using (var refused = await http.PostAsJsonAsync("/v1/chat/completions", new { model = "drain", messages = new[] { new { role = "user", content = "late" } }, max_tokens = 2 }))
                Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            using (var health = await http.GetAsync("/health"))
                Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);

            foreach (var response in await Task.WhenAll(streams))
            {
                string body = await response.Content.ReadAsStringAsync();
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.EndsWith("data: [DONE]\n\n", body);
                Assert.Contains("\"finish_reason\":\"length\"", body);
            }
            Assert.True(await WaitExit(server, TimeSpan.FromSeconds(25)), "the server did not exit within the grace period");
            Assert.True(server.ExitCode == 0, $"exit code {server.ExitCode}\n{output}");
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(25));
        }
        finally
        {
            if (!server.HasExited) server.Kill(entireProcessTree: true);
        }
    }

    [Fact]
    public async Task StreamsStillRunningWhenTheGraceEndsGetAnErrorEventAndTheProcessExitsWithinGracePlusOneSecond()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return; // POSIX signals only
        const int grace = 2;
        var (server, output, http) = StartServer("cut", grace);
        using var _ = server;
        using var __ = http;
        try
        {
            await WaitHealthy(http);
            // Eight streams of the whole context each: far more than the tiny model generates in two seconds.
            var streams = Enumerable.Range(0, 8).Select(i => http.PostAsJsonAsync("/v1/chat/completions", new
            {
                model = "cut", messages = new[] { new { role = "user", content = $"stream {i}" } }, max_tokens = 4000, ignore_eos = true, stream = true,
            })).ToList();
            await Task.Delay(500);
            var sw = Stopwatch.StartNew();
            using (var kill = Process.Start("kill", ["-TERM", server.Id.ToString()])) await kill!.WaitForExitAsync();
            Assert.True(await WaitExit(server, TimeSpan.FromSeconds(grace + 10)), "the server did not exit");
            var exitAfter = sw.Elapsed;
            Assert.True(exitAfter < TimeSpan.FromSeconds(grace + 1), $"exited {exitAfter.TotalSeconds:F2}s after SIGTERM with a {grace}s grace\n{output}");
            Assert.True(server.ExitCode == 0, $"exit code {server.ExitCode}\n{output}");
            int cut = 0;
            foreach (var response in await Task.WhenAll(streams))
            {
                string body = await response.Content.ReadAsStringAsync();
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.EndsWith("data: [DONE]\n\n", body);
                if (body.Contains("\"finish_reason\":\"length\"")) continue; // finished within the grace
                Assert.Contains("\"code\":\"shutting_down\"", body);
                cut++;
            }
            Assert.True(cut > 0, "no stream was still running when the grace ended; the test did not test the cut");
        }
        finally
        {
            if (!server.HasExited) server.Kill(entireProcessTree: true);
        }
    }

    /// <summary>The real server as its own process on the chat fixture model, with its output collected for failure messages.</summary>
    private static (Process Server, System.Text.StringBuilder Output, HttpClient Http) StartServer(string name, int grace)
    {
        int port = FreePort();
        string dll = Path.Combine(AppContext.BaseDirectory, "glm-server.dll");
        var psi = new ProcessStartInfo("dotnet", [dll, "serve", "--model", Fixtures.Dir("chat_glm4_moe"), "--served-model-name", name,
            "--port", port.ToString(), "--kv-cache-memory", "67108864", "--shutdown-grace-seconds", grace.ToString(), "--max-num-seqs", "8"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        var server = Process.Start(psi)!;
        var output = new System.Text.StringBuilder();
        server.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        server.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        server.BeginOutputReadLine();
        server.BeginErrorReadLine();
        return (server, output, new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) });
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>Until the engine holds at least <paramref name="requests"/> requests (running or waiting), by its metrics.</summary>
    private static async Task WaitInEngine(HttpClient http, int requests)
    {
        for (int i = 0; i < 600; i++)
        {
            string metrics = await http.GetStringAsync("/metrics");
            double held = 0;
            foreach (var line in metrics.Split('\n'))
                if (line.StartsWith("vllm:num_requests_running{", StringComparison.Ordinal) || line.StartsWith("vllm:num_requests_waiting{", StringComparison.Ordinal))
                    held += double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            if (held >= requests) return;
            await Task.Delay(20);
        }
        throw new TimeoutException($"the engine never held {requests} requests");
    }

    private static async Task WaitHealthy(HttpClient http)
    {
        for (int i = 0; i < 600; i++)
        {
            try
            {
                using var r = await http.GetAsync("/health");
                if (r.IsSuccessStatusCode) return;
            }
            catch (HttpRequestException) { }
            await Task.Delay(50);
        }
        throw new TimeoutException("server did not become healthy");
    }

    private static async Task<bool> WaitExit(Process p, TimeSpan limit)
    {
        using var cts = new CancellationTokenSource(limit);
        try { await p.WaitForExitAsync(cts.Token); return true; }
        catch (OperationCanceledException) { return false; }
    }
}
