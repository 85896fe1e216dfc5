using System.Net;
using System.Security.Cryptography;
using Glm.Models.Architectures;
using Glm.Server.Hub;
using Glm.TestSupport;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;

namespace Glm.Server.Tests;

/// <summary>
/// Downloads against a local server that mimics the Hub's file API (model info, HEAD with ETag and size, GET with
/// Range), serving the real demo model's files.
/// </summary>
public sealed class MockHub : IAsyncLifetime
{
    public const string Repo = "zai-org/glm-demo";
    public const string Commit = "0123456789abcdef0123456789abcdef01234567";
    private WebApplication? _app;

    public string Endpoint { get; private set; } = "";
    /// <summary>Files whose next GET is cut off halfway (simulating a dropped connection).</summary>
    public HashSet<string> CutOffOnce { get; } = [];
    /// <summary>Files served with one byte flipped.</summary>
    public HashSet<string> Corrupt { get; } = [];
    public List<string> RangeRequests { get; } = [];
    public int Gets;

    private static string FileSha(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        _app = builder.Build();
        string dir = Fixtures.DemoModel;
        string[] files = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors", "expected_probes.json"];
        _app.MapGet("/api/models/{org}/{name}/revision/{rev}", (string org, string name, string rev) =>
            $"{org}/{name}" == Repo ? Results.Json(new { sha = Commit, siblings = files.Select(f => new { rfilename = f }) }) : Results.NotFound());
        _app.MapMethods("/{org}/{name}/resolve/{rev}/{file}", ["HEAD", "GET"], async (HttpContext ctx, string org, string name, string rev, string file) =>
        {
            if ($"{org}/{name}" != Repo || !files.Contains(file)) { ctx.Response.StatusCode = 404; return; }
            var bytes = await File.ReadAllBytesAsync(Path.Combine(dir, file));
            bool lfs = file.EndsWith(".safetensors");
            if (lfs)
            {
                ctx.Response.Headers["X-Linked-Etag"] = $"\"{FileSha(Path.Combine(dir, file))}\"";
                ctx.Response.Headers["X-Linked-Size"] = bytes.Length.ToString();
            }
            ctx.Response.Headers.ETag = $"\"{Convert.ToHexStringLower(SHA1.HashData(bytes))}\"";
            ctx.Response.Headers["X-Repo-Commit"] = Commit;
            if (ctx.Request.Method == "HEAD") { ctx.Response.ContentLength = bytes.Length; return; }
            Interlocked.Increment(ref Gets);
            if (Corrupt.Contains(file)) { bytes = (byte[])bytes.Clone(); bytes[bytes.Length / 2] ^= 0xFF; }
            int start = 0;
            if (ctx.Request.Headers.Range is { Count: > 0 } range)
            {
                lock (RangeRequests) RangeRequests.Add($"{file} {range}");
                start = int.Parse(range.ToString().Split('=')[1].TrimEnd('-'));
                ctx.Response.StatusCode = 206;
                ctx.Response.Headers.ContentRange = $"bytes {start}-{bytes.Length - 1}/{bytes.Length}";
            }
            ctx.Response.ContentLength = bytes.Length - start;
            bool cut;
            lock (CutOffOnce) cut = CutOffOnce.Remove(file);
            if (cut)
            {
                await ctx.Response.Body.WriteAsync(bytes.AsMemory(start, (bytes.Length - start) / 2));
                await ctx.Response.Body.FlushAsync();
                ctx.Abort();
                return;
            }
            await ctx.Response.Body.WriteAsync(bytes.AsMemory(start));
        });
        await _app.StartAsync();
        Endpoint = _app.Urls.First();
    }

    public async Task DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
    }
}

public class HubDownloadTests(MockHub hub) : IClassFixture<MockHub>
{
    private static HubCache NewCache() => new(Directory.CreateTempSubdirectory("hf-cache-").FullName);

    private HubDownloader Downloader(HubCache cache, bool offline = false) => new(cache)
    {
        Endpoint = hub.Endpoint, Offline = offline, Token = null, Interactive = false,
    };

    [Fact]
    public async Task FreshDownloadMakesTheHuggingFaceCacheLayoutAndAServableModel()
    {
        var cache = NewCache();
        string dir = await Downloader(cache).Fetch(MockHub.Repo);
        Assert.Equal(cache.SnapshotDirectory(MockHub.Repo, MockHub.Commit), dir);
        Assert.Equal(MockHub.Commit, File.ReadAllText(cache.RefPath(MockHub.Repo, "main")));
        var weights = new FileInfo(Path.Combine(dir, "model.safetensors"));
        Assert.NotNull(weights.LinkTarget); // a symlink into blobs/, as huggingface_hub lays it out
        Assert.Equal(File.ReadAllBytes(Path.Combine(Fixtures.DemoModel, "model.safetensors")), File.ReadAllBytes(weights.FullName));
        Assert.False(File.Exists(Path.Combine(dir, "expected_probes.json"))); // only what the server needs
        Assert.Empty(Directory.GetFiles(Path.Combine(cache.RepoDirectory(MockHub.Repo), "blobs"), "*.incomplete"));
        using var model = ModelLoader.Load(dir);
        Assert.Equal(6016, model.VocabSize);
    }

    [Fact]
    public async Task InterruptedTransferResumesWithARangeRequest()
    {
        var cache = NewCache();
        lock (hub.CutOffOnce) hub.CutOffOnce.Add("model.safetensors");
        string dir = await Downloader(cache).Fetch(MockHub.Repo);
        Assert.Equal(File.ReadAllBytes(Path.Combine(Fixtures.DemoModel, "model.safetensors")), File.ReadAllBytes(Path.Combine(dir, "model.safetensors")));
        lock (hub.RangeRequests) Assert.Contains(hub.RangeRequests, r => r.StartsWith("model.safetensors bytes="));
    }

    [Fact]
    public async Task CorruptedFileIsRejectedAndNeverEntersTheCache()
    {
        var cache = NewCache();
        hub.Corrupt.Add("model.safetensors");
        try
        {
            var e = await Assert.ThrowsAsync<HubException>(() => Downloader(cache).Fetch(MockHub.Repo));
            Assert.Contains("corrupted", e.Message);
            string blobs = Path.Combine(cache.RepoDirectory(MockHub.Repo), "blobs");
            Assert.DoesNotContain(Directory.GetFiles(blobs), f => new FileInfo(f).Length > 1_000_000);
            Assert.False(File.Exists(Path.Combine(cache.SnapshotDirectory(MockHub.Repo, MockHub.Commit), "model.safetensors")));
        }
        finally
        {
            hub.Corrupt.Remove("model.safetensors");
        }
    }

    [Fact]
    public async Task OfflineModeServesFromTheCacheWithoutTouchingTheNetwork()
    {
        var cache = NewCache();
        await Downloader(cache).Fetch(MockHub.Repo);
        int before = hub.Gets;
        var offline = new HubDownloader(cache) { Endpoint = "http://127.0.0.1:9", Offline = true, Interactive = false };
        string dir = await offline.Fetch(MockHub.Repo);
        Assert.Equal(before, hub.Gets);
        Assert.True(File.Exists(Path.Combine(dir, "config.json")));
        var missing = await Assert.ThrowsAsync<HubException>(() => new HubDownloader(NewCache()) { Offline = true }.Fetch(MockHub.Repo));
        Assert.Contains("HF_HUB_OFFLINE", missing.Message);
    }

    [Fact]
    public async Task UnknownRepositoryIsAClearError()
    {
        var e = await Assert.ThrowsAsync<HubException>(() => Downloader(NewCache()).Fetch("zai-org/no-such-model"));
        Assert.Contains("no repository 'zai-org/no-such-model'", e.Message);
    }

    [Fact]
    public async Task SecondFetchReusesTheCachedBlobs()
    {
        var cache = NewCache();
        await Downloader(cache).Fetch(MockHub.Repo);
        int before = hub.Gets;
        await Downloader(cache).Fetch(MockHub.Repo);
        Assert.Equal(before, hub.Gets);
    }
}
