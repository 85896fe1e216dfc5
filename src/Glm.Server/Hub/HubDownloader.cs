using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;

namespace Glm.Server.Hub;

/// <summary>
/// Fetches the files a GLM server needs from a Hugging Face repository into the shared cache: config,
/// generation config, tokenizer files, chat template, and the safetensors shards the index names. Downloads
/// run in parallel, resume from partial ".incomplete" files with Range requests, and are verified against the
/// Hub's ETag (SHA-256 for LFS files) or size before they are renamed into place, so a half-written file is
/// never taken for a complete one. Honours HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE.
/// </summary>
public sealed class HubDownloader(HubCache cache, HttpMessageHandler? handler = null, Action<string>? log = null)
{
    private static readonly string[] Wanted = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"];

    private readonly HttpClient _http = CreateClient(handler);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<Task<bool>>> _blobs = new();

    public string Endpoint { get; init; } = (Environment.GetEnvironmentVariable("HF_ENDPOINT") is { Length: > 0 } e ? e : "https://huggingface.co").TrimEnd('/');
    public string? Token { get; init; } = Environment.GetEnvironmentVariable("HF_TOKEN") is { Length: > 0 } t ? t : null;
    public bool Offline { get; init; } = Environment.GetEnvironmentVariable("HF_HUB_OFFLINE") is "1" or "true" or "TRUE" or "yes";
    public int Parallelism { get; init; } = 4;
    public bool Interactive { get; init; } = !Console.IsErrorRedirected;

    private static HttpClient CreateClient(HttpMessageHandler? handler)
    {
        var client = handler is null ? new HttpClient() : new HttpClient(handler);
        client.Timeout = Timeout.InfiniteTimeSpan; // large shards; stalls are caught per read below
        client.DefaultRequestHeaders.UserAgent.ParseAdd("glm-server/1.0");
        return client;
    }

    /// <summary>True for "org/name" that is not an existing local path.</summary>
    public static bool LooksLikeRepoId(string model) =>
        !Directory.Exists(model) && !model.StartsWith('.') && !model.StartsWith('/') && model.Count(c => c == '/') == 1 && !model.Contains('\\');

    /// <summary>Returns the local snapshot directory holding the repository's files at <paramref name="revision"/>.</summary>
    /// <remarks>Every name the repository supplies (file names, shard names in the index, ETags, the commit) is
    /// validated by <see cref="HubNames"/> before it becomes part of a path.</remarks>
    public async Task<string> Fetch(string repo, string revision = "main", CancellationToken ct = default)
    {
        HubNames.RepoId(repo);
        if (!HubCache.IsCommitHash(revision)) HubNames.Revision(revision);
        if (Offline) return FromCache(repo, revision);
        var (commit, files) = await ListFiles(repo, revision, ct);
        var needed = files.Where(f => Wanted.Contains(f)).ToList();
        if (files.Contains("model.safetensors.index.json"))
        {
            needed.Add("model.safetensors.index.json");
            string index = await FetchFile(repo, commit, "model.safetensors.index.json", null, ct);
            needed.AddRange(ShardNames(repo, await File.ReadAllTextAsync(index, ct)));
        }
        else if (files.Contains("model.safetensors")) needed.Add("model.safetensors");
        else throw new HubException($"'{repo}' at '{revision}' has no safetensors weights (model.safetensors or model.safetensors.index.json).");
        if (!needed.Contains("config.json")) throw new HubException($"'{repo}' has no config.json: not a transformers model repository.");

        var progress = new Progress(log, Interactive);
        using var gate = new SemaphoreSlim(Parallelism);
        await Task.WhenAll(needed.Distinct().Select(async f =>
        {
            await gate.WaitAsync(ct);
            try { await FetchFile(repo, commit, f, progress, ct); }
            finally { gate.Release(); }
        }));
        progress.Done();
        cache.WriteRef(repo, revision, commit);
        return cache.SnapshotDirectory(repo, commit);
    }

    /// <summary>The shard files model.safetensors.index.json's weight_map names, each checked to stay inside the snapshot.</summary>
    private static IEnumerable<string> ShardNames(string repo, string indexJson)
    {
        const string source = "model.safetensors.index.json";
        var names = new List<string>();
        try
        {
            using var doc = JsonDocument.Parse(indexJson);
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new HubException($"'{repo}'s {source} has no weight_map object.");
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String) throw new HubException($"'{repo}'s {source} maps '{p.Name}' to a non-string.");
                names.Add(HubNames.RepositoryFile(p.Value.GetString(), repo, source));
            }
        }
        catch (JsonException e)
        {
            throw new HubException($"'{repo}'s {source} is not valid JSON: {e.Message}", e);
        }
        catch (InvalidOperationException e)
        {
            throw new HubException($"'{repo}'s {source} holds an unreadable string: {e.Message}", e);
        }
        return names.Distinct();
    }

    private string FromCache(string repo, string revision)
    {
        string? commit = cache.CommitFor(repo, revision);
        string? dir = commit is null ? null : cache.SnapshotDirectory(repo, commit);
        if (dir is null || !File.Exists(Path.Combine(dir, "config.json")))
            throw new HubException($"HF_HUB_OFFLINE is set and '{repo}' (revision '{revision}') is not in the cache at {cache.Root}. Download it once online first.");
        return dir;
    }

    private async Task<(string Commit, List<string> Files)> ListFiles(string repo, string revision, CancellationToken ct)
    {
        using var request = Request(HttpMethod.Get, $"{Endpoint}/api/models/{repo}/revision/{Uri.EscapeDataString(revision)}");
        using var response = await Send(request, repo, ct);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
        string commit = HubNames.Commit(doc.RootElement.TryGetProperty("sha", out var sha) && sha.ValueKind == JsonValueKind.String ? sha.GetString() : null, repo);
        var files = doc.RootElement.GetProperty("siblings").EnumerateArray()
            .Select(s => s.TryGetProperty("rfilename", out var f) && f.ValueKind == JsonValueKind.String ? f.GetString()! : "")
            .Where(f => f.Length > 0).ToList();
        return (commit, files);
    }

    private async Task<string> FetchFile(string repo, string commit, string file, Progress? progress, CancellationToken ct)
    {
        HubNames.RepositoryFile(file, repo, "its file listing");
        string url = $"{Endpoint}/{repo}/resolve/{commit}/{string.Join('/', file.Split('/').Select(Uri.EscapeDataString))}";
        using var head = Request(HttpMethod.Head, url);
        using var headResponse = await Send(head, repo, ct, file);
        // LFS files carry their SHA-256 in X-Linked-Etag; small files an ETag of the git blob.
        string etag = HubNames.Etag((Header(headResponse, "X-Linked-Etag") ?? headResponse.Headers.ETag?.Tag ?? throw new HubException($"The Hub sent no ETag for {repo}/{file}."))
            .Trim('"').Replace("W/", "").Trim('"'), repo, file);
        long? size = long.TryParse(Header(headResponse, "X-Linked-Size"), out long ls) ? ls : headResponse.Content.Headers.ContentLength;
        string blob = cache.BlobPath(repo, etag);
        // Files with the same content share one blob: download it once, even when two such files are fetched in
        // parallel (they would otherwise write the same .incomplete file at once and corrupt each other).
        var download = _blobs.GetOrAdd(blob, _ => new Lazy<Task<bool>>(async () =>
        {
            if (File.Exists(blob)) return false;
            await DownloadBlob(repo, file, url, blob, etag, size, progress, ct);
            return true;
        }));
        bool downloaded;
        try { downloaded = await download.Value; }
        catch { _blobs.TryRemove(blob, out _); throw; }
        if (!downloaded) progress?.Skip(size ?? new FileInfo(blob).Length);
        cache.LinkSnapshot(repo, commit, file, etag);
        return Path.Combine(cache.SnapshotDirectory(repo, commit), file);
    }

    private async Task DownloadBlob(string repo, string file, string url, string blob, string etag, long? size, Progress? progress, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
        string partial = blob + ".incomplete";
        for (int attempt = 1; ; attempt++)
        {
            long have = File.Exists(partial) ? new FileInfo(partial).Length : 0;
            if (size is long total && have > total) { File.Delete(partial); have = 0; }
            try
            {
                if (size is not long s || have < s)
                {
                    using var request = Request(HttpMethod.Get, url);
                    if (have > 0) request.Headers.Range = new RangeHeaderValue(have, null);
                    using var response = await Send(request, repo, ct, file, HttpCompletionOption.ResponseHeadersRead);
                    if (have > 0 && response.StatusCode != HttpStatusCode.PartialContent) have = 0; // server ignored the range
                    progress?.Start(file, size ?? 0, have);
                    await using var output = new FileStream(partial, have > 0 ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
                    await using var input = await response.Content.ReadAsStreamAsync(ct);
                    var buffer = new byte[1 << 20];
                    int n;
                    while ((n = await ReadWithStallTimeout(input, buffer, ct)) > 0)
                    {
                        await output.WriteAsync(buffer.AsMemory(0, n), ct);
                        progress?.Advance(n);
                    }
                }
                Verify(partial, etag, size, repo, file);
                File.Move(partial, blob, overwrite: true);
                return;
            }
            catch (IOException e) when (IsDiskFull(e))
            {
                throw new HubException($"The disk holding {cache.Root} is full while downloading {repo}/{file}; free space or set HF_HOME elsewhere.", e);
            }
            catch (Exception e) when (attempt < 5 && e is IOException or HttpRequestException or TimeoutException)
            {
                log?.Invoke($"{file}: transfer interrupted ({e.Message}); resuming (attempt {attempt + 1})");
                await Task.Delay(TimeSpan.FromMilliseconds(200 * attempt), ct);
            }
        }
    }

    private static async Task<int> ReadWithStallTimeout(Stream input, byte[] buffer, CancellationToken ct)
    {
        using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
        stall.CancelAfter(TimeSpan.FromSeconds(60));
        try { return await input.ReadAsync(buffer, stall.Token); }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested) { throw new TimeoutException("no data for 60 s"); }
    }

    private static void Verify(string path, string etag, long? size, string repo, string file)
    {
        long length = new FileInfo(path).Length;
        if (size is long expected && length != expected)
        {
            File.Delete(path);
            throw new HubException($"{repo}/{file}: downloaded {length} bytes but the Hub announced {expected}; the partial file was removed.");
        }
        if (etag.Length == 64 && etag.All(Uri.IsHexDigit))
        {
            using var stream = File.OpenRead(path);
            string actual = Convert.ToHexStringLower(SHA256.HashData(stream));
            if (!actual.Equals(etag, StringComparison.OrdinalIgnoreCase))
            {
                stream.Dispose();
                File.Delete(path);
                throw new HubException($"{repo}/{file} is corrupted: its SHA-256 is {actual}, the Hub says {etag}. The file was removed; try again.");
            }
        }
    }

    private static bool IsDiskFull(IOException e) => e.HResult is 28 or unchecked((int)0x80070070) || e.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase);

    private HttpRequestMessage Request(HttpMethod method, string url)
    {
        var r = new HttpRequestMessage(method, url);
        if (Token is not null) r.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token);
        return r;
    }

    private async Task<HttpResponseMessage> Send(HttpRequestMessage request, string repo, CancellationToken ct, string? file = null, HttpCompletionOption option = HttpCompletionOption.ResponseContentRead)
    {
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, option, ct);
        }
        catch (HttpRequestException e) when (file is null)
        {
            throw new HubException($"Cannot reach {Endpoint} ({e.Message}). Set HF_HUB_OFFLINE=1 to use the local cache.", e);
        }
        if (response.IsSuccessStatusCode) return response;
        string what = file is null ? $"repository '{repo}'" : $"'{repo}/{file}'";
        var status = response.StatusCode;
        response.Dispose();
        throw status switch
        {
            HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden => new HubException(
                $"Access to {what} was refused ({(int)status}): it may be gated or private. Accept its license on the Hub and set HF_TOKEN."),
            HttpStatusCode.NotFound => new HubException($"The Hub has no {what} ({Endpoint}). Check the name and --revision."),
            _ => new HubException($"The Hub answered {(int)status} for {what}."),
        };
    }

    private static string? Header(HttpResponseMessage r, string name) =>
        r.Headers.TryGetValues(name, out var v) ? v.FirstOrDefault() : r.Content.Headers.TryGetValues(name, out var c) ? c.FirstOrDefault() : null;

    /// <summary>A one-line progress bar on a terminal; a log line every few seconds otherwise.</summary>
    private sealed class Progress(Action<string>? log, bool interactive)
    {
        private long _total, _done;
        private long _lastReport = Environment.TickCount64;
        private readonly Lock _lock = new();

        public void Start(string file, long size, long already)
        {
            lock (_lock) { _total += size; _done += already; }
            log?.Invoke($"downloading {file} ({size / 1048576.0:F1} MiB{(already > 0 ? $", resuming at {already / 1048576.0:F1} MiB" : "")})");
        }

        public void Skip(long size) { lock (_lock) { _total += size; _done += size; } }

        public void Advance(long n)
        {
            lock (_lock)
            {
                _done += n;
                long now = Environment.TickCount64;
                if (now - _lastReport < (interactive ? 200 : 5000)) return;
                _lastReport = now;
                Report();
            }
        }

        private void Report()
        {
            double fraction = _total > 0 ? (double)_done / _total : 0;
            if (interactive)
            {
                int width = 30, filled = (int)(fraction * width);
                Console.Error.Write($"\r[{new string('#', filled)}{new string('.', width - filled)}] {fraction,6:P1} {_done / 1048576.0:F0}/{_total / 1048576.0:F0} MiB");
            }
            else log?.Invoke($"downloaded {_done / 1048576.0:F0} of {_total / 1048576.0:F0} MiB ({fraction:P0})");
        }

        public void Done()
        {
            lock (_lock)
            {
                Report();
                if (interactive) Console.Error.WriteLine();
            }
        }
    }
}
