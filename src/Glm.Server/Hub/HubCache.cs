namespace Glm.Server.Hub;

/// <summary>
/// The Hugging Face cache layout, shared with the Python tools: hub/models--org--name/{blobs/ETAG,
/// snapshots/COMMIT/FILE → ../../blobs/ETAG, refs/REVISION containing COMMIT}.
/// </summary>
public sealed class HubCache(string root)
{
    public string Root { get; } = root;

    /// <summary>$HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.</summary>
    public static HubCache Default()
    {
        string? hub = Environment.GetEnvironmentVariable("HF_HUB_CACHE");
        if (string.IsNullOrEmpty(hub))
        {
            string home = Environment.GetEnvironmentVariable("HF_HOME") is { Length: > 0 } h
                ? h
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "huggingface");
            hub = Path.Combine(home, "hub");
        }
        return new HubCache(hub);
    }

    // Every path is checked to resolve inside the cache; the names themselves are validated by HubNames.
    public string RepoDirectory(string repo) => HubNames.Inside(Root, Path.Combine(Root, "models--" + repo.Replace("/", "--")));
    public string BlobPath(string repo, string etag) => HubNames.Inside(Root, Path.Combine(RepoDirectory(repo), "blobs", etag));
    public string SnapshotDirectory(string repo, string commit) => HubNames.Inside(Root, Path.Combine(RepoDirectory(repo), "snapshots", commit));
    public string RefPath(string repo, string revision) => HubNames.Inside(Root, Path.Combine(RepoDirectory(repo), "refs", revision));

    public string? CommitFor(string repo, string revision)
    {
        if (IsCommitHash(revision) && Directory.Exists(SnapshotDirectory(repo, revision))) return revision;
        string path = RefPath(repo, revision);
        string? commit = File.Exists(path) ? File.ReadAllText(path).Trim() : null;
        return commit is not null && IsCommitHash(commit) ? commit : null;
    }

    public void WriteRef(string repo, string revision, string commit)
    {
        if (IsCommitHash(revision)) return;
        string path = RefPath(repo, revision);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, commit);
    }

    /// <summary>Points snapshots/COMMIT/FILE at the blob (a relative symlink, as huggingface_hub makes).</summary>
    public void LinkSnapshot(string repo, string commit, string file, string etag)
    {
        string snapshot = SnapshotDirectory(repo, commit);
        string link = HubNames.Inside(snapshot, Path.Combine(snapshot, file));
        Directory.CreateDirectory(Path.GetDirectoryName(link)!);
        // A directory on the way that is itself a link (planted by an earlier, hostile snapshot) could lead outside.
        for (var dir = new DirectoryInfo(Path.GetDirectoryName(link)!); dir.FullName.Length > snapshot.Length; dir = dir.Parent!)
            if (dir.LinkTarget is not null) throw new HubException($"Refusing to write through the symbolic link {dir.FullName} in the cache.");
        if (File.Exists(link) || new FileInfo(link).LinkTarget is not null) File.Delete(link);
        string target = Path.GetRelativePath(Path.GetDirectoryName(link)!, BlobPath(repo, etag));
        try { File.CreateSymbolicLink(link, target); }
        catch (IOException) { File.Copy(BlobPath(repo, etag), link); } // filesystems without symlinks
    }

    public static bool IsCommitHash(string s) => s.Length == 40 && s.All(Uri.IsHexDigit);
}
