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

/// <summary>
/// A mirror that lies: its listing, index and headers carry names that would lead outside the cache. It serves
/// any path it is asked for (so a client that followed such a name would really write the file).
/// </summary>
public sealed class HostileHub : IAsyncLifetime
{
    public const string Repo = "evil/model";
    private WebApplication? _app;

    public string Endpoint { get; private set; } = "";
    public string Commit = "89abcdef0123456789abcdef0123456789abcdef";
    public string[] Shards = ["model-00001.safetensors"];
    /// <summary>The ETag sent for every file; null sends the file's real SHA-1.</summary>
    public string? Etag;
    /// <summary>Delays every body, so downloads fetched in parallel surely overlap.</summary>
    public bool SlowBodies;
    public readonly List<string> Requested = [];

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        _app = builder.Build();
        _app.MapGet("/api/models/evil/model/revision/{rev}", () => Results.Json(new
        {
            sha = Commit, siblings = new[] { "config.json", "model.safetensors.index.json" }.Select(f => new { rfilename = f }),
        }));
        _app.MapMethods("/{**path}", ["HEAD", "GET"], async (HttpContext ctx, string path) =>
        {
            lock (Requested) Requested.Add(ctx.Request.Method + " " + path);
            byte[] bytes = path.EndsWith("model.safetensors.index.json")
                ? System.Text.Encoding.UTF8.GetBytes(System.Text.Json.JsonSerializer.Serialize(new { weight_map = Shards.Select((s, i) => (s, i)).ToDictionary(x => $"w{x.i}", x => x.s) }))
                : "{\"model_type\": \"glm4\"}"u8.ToArray();
            ctx.Response.Headers.ETag = $"\"{Etag ?? Convert.ToHexStringLower(SHA1.HashData(bytes))}\"";
            ctx.Response.ContentLength = bytes.Length;
            if (ctx.Request.Method != "GET") return;
            if (SlowBodies) await Task.Delay(300);
            await ctx.Response.Body.WriteAsync(bytes);
        });
        await _app.StartAsync();
        Endpoint = _app.Urls.First();
    }

    public async Task DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
    }
}

/// <summary>Names from a repository or a response never lead outside the cache (path traversal, absolute paths, ETags).</summary>
public class HubTraversalTests(HostileHub hub) : IClassFixture<HostileHub>
{
    /// <summary>A cache four directories deep in a fresh folder, so "../../../../x" lands in the folder, outside the cache.</summary>
    private static (HubCache Cache, string Outside) NestedCache()
    {
        string outside = Directory.CreateTempSubdirectory("hf-outside-").FullName;
        return (new HubCache(Path.Combine(outside, "a", "b", "c", "hub")), outside);
    }

    private HubDownloader Downloader(HubCache cache) => new(cache) { Endpoint = hub.Endpoint, Token = null, Interactive = false };

    private static void NothingEscaped(string outside, HubCache cache)
    {
        var stray = Directory.EnumerateFileSystemEntries(outside, "*", SearchOption.AllDirectories)
            .Where(p => !Path.GetFullPath(p).StartsWith(Path.GetFullPath(cache.Root), StringComparison.Ordinal) && !Directory.Exists(p)).ToList();
        Assert.True(stray.Count == 0, "written outside the cache: " + string.Join(", ", stray));
    }

    [Theory]
    [InlineData("../../../../../escaped.safetensors")]
    [InlineData("shards/../../../../../../escaped.safetensors")]
    [InlineData("/tmp/glm-hub-absolute-escape.safetensors")]
    [InlineData("a\\..\\..\\escaped.safetensors")]
    [InlineData("./model.safetensors")]
    public async Task ShardNamesFromTheIndexMustStayInsideTheSnapshot(string shard)
    {
        var (cache, outside) = NestedCache();
        lock (hub.Requested) hub.Requested.Clear();
        hub.Shards = ["model-00001.safetensors", shard];
        try
        {
            var e = await Assert.ThrowsAsync<HubException>(() => Downloader(cache).Fetch(HostileHub.Repo));
            Assert.Contains("refusing", e.Message);
            Assert.Contains("model.safetensors.index.json", e.Message);
            NothingEscaped(outside, cache);
            Assert.False(File.Exists("/tmp/glm-hub-absolute-escape.safetensors"));
            lock (hub.Requested) Assert.DoesNotContain(hub.Requested, r => r.Contains("escape") || r.Contains("00001")); // refused before any shard
        }
        finally
        {
            hub.Shards = ["model-00001.safetensors"];
        }
    }

    [Theory]
    [InlineData("../../../../../escaped-etag")]
    [InlineData("abc123")]
    [InlineData("0123456789abcdef0123456789abcdef01234567/../../x")]
    public async Task AnEtagMustBeAPlainHash(string etag)
    {
        var (cache, outside) = NestedCache();
        hub.Etag = etag;
        try
        {
            var e = await Assert.ThrowsAsync<HubException>(() => Downloader(cache).Fetch(HostileHub.Repo));
            Assert.Contains("not a plain hash", e.Message);
            NothingEscaped(outside, cache);
            Assert.False(Directory.Exists(Path.Combine(cache.RepoDirectory(HostileHub.Repo), "blobs")) &&
                         Directory.EnumerateFiles(Path.Combine(cache.RepoDirectory(HostileHub.Repo), "blobs")).Any());
        }
        finally
        {
            hub.Etag = null;
        }
    }

    [Fact]
    public async Task ACommitMustBeAHash()
    {
        var (cache, outside) = NestedCache();
        string good = hub.Commit;
        hub.Commit = "../../../../../escaped-commit";
        try
        {
            var e = await Assert.ThrowsAsync<HubException>(() => Downloader(cache).Fetch(HostileHub.Repo));
            Assert.Contains("not a 40-digit hash", e.Message);
            NothingEscaped(outside, cache);
        }
        finally
        {
            hub.Commit = good;
        }
    }

    [Theory]
    [InlineData("evil/model", "../../../../escaped-ref")]
    [InlineData("../../escaped", "main")]
    public async Task RevisionsAndRepoIdsAreCheckedBeforeAnyRequest(string repo, string revision)
    {
        var (cache, outside) = NestedCache();
        int before;
        lock (hub.Requested) before = hub.Requested.Count;
        await Assert.ThrowsAsync<HubException>(() => Downloader(cache).Fetch(repo, revision));
        NothingEscaped(outside, cache);
        lock (hub.Requested) Assert.Equal(before, hub.Requested.Count);
    }

    /// <summary>config.json and the shard have the same bytes here, so the same blob: fetched in parallel, it is downloaded once.</summary>
    [Fact]
    public async Task FilesWithTheSameContentShareOneDownload()
    {
        var (cache, _) = NestedCache();
        lock (hub.Requested) hub.Requested.Clear();
        hub.SlowBodies = true;
        try
        {
            string dir = await Downloader(cache).Fetch(HostileHub.Repo);
            Assert.Equal(File.ReadAllText(Path.Combine(dir, "config.json")), File.ReadAllText(Path.Combine(dir, "model-00001.safetensors")));
            lock (hub.Requested) Assert.Equal(1, hub.Requested.Count(r => r.StartsWith("GET") && (r.EndsWith("config.json") || r.EndsWith("model-00001.safetensors"))));
        }
        finally
        {
            hub.SlowBodies = false;
        }
    }

    [Fact]
    public async Task AWellFormedRepositoryStillDownloads()
    {
        var (cache, outside) = NestedCache();
        hub.Shards = ["shards/model-00001.safetensors"];
        try
        {
            string dir = await Downloader(cache).Fetch(HostileHub.Repo);
            Assert.True(File.Exists(Path.Combine(dir, "shards", "model-00001.safetensors")));
            NothingEscaped(outside, cache);
        }
        finally
        {
            hub.Shards = ["model-00001.safetensors"];
        }
    }
}
