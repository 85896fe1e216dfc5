namespace Glm.Server.Hub;

/// <summary>
/// Validates every name that reaches the cache's file system from a repository, a mirror or a flag: file names
/// from the model listing and from model.safetensors.index.json, ETags, commit hashes, revisions and repository
/// ids. A repository (or a hostile mirror) controls all of these, so none is joined to a path before it is
/// known to name a place inside the cache: a relative path of ordinary segments, or a plain hash.
/// </summary>
public static class HubNames
{
    /// <summary>A file path inside a snapshot: relative, '/'-separated, no empty, '.' or '..' segment, no control characters.</summary>
    public static string RepositoryFile(string? name, string repo, string source)
    {
        if (string.IsNullOrEmpty(name)) throw Refuse(repo, source, "an empty file name");
        if (name.Length > 1024) throw Refuse(repo, source, $"a file name of {name.Length} characters");
        if (name.Contains('\\') || name.StartsWith('/') || Path.IsPathRooted(name) || (name.Length >= 2 && name[1] == ':'))
            throw Refuse(repo, source, $"the file name '{Printable(name)}', which is not a relative '/'-separated path");
        foreach (char c in name)
            if (char.IsControl(c) || char.IsSurrogate(c)) throw Refuse(repo, source, $"the file name '{Printable(name)}', which holds a control character");
        foreach (string segment in name.Split('/'))
            if (segment is "" or "." or "..")
                throw Refuse(repo, source, $"the file name '{Printable(name)}', which leaves or skips a directory ('{segment}' segment)");
        return name;
    }

    /// <summary>A blob name: a hex digest (40 for git blob SHA-1, 64 for LFS SHA-256; 32 to 128 accepted).</summary>
    public static string Etag(string? etag, string repo, string file)
    {
        if (etag is null || etag.Length is < 32 or > 128 || !etag.All(Uri.IsHexDigit))
            throw new HubException($"The Hub sent the ETag '{Printable(etag ?? "")}' for {repo}/{file}, which is not a plain hash; refusing to use it as a file name.");
        return etag.ToLowerInvariant();
    }

    /// <summary>A commit: 40 hex digits.</summary>
    public static string Commit(string? sha, string repo)
    {
        if (sha is null || !HubCache.IsCommitHash(sha))
            throw new HubException($"The Hub sent the commit '{Printable(sha ?? "")}' for '{repo}', which is not a 40-digit hash; refusing it.");
        return sha.ToLowerInvariant();
    }

    /// <summary>A revision kept under refs/: a branch, tag or "refs/pr/N"; ordinary segments only.</summary>
    public static string Revision(string revision)
    {
        if (string.IsNullOrEmpty(revision) || revision.Length > 256 || revision.Contains('\\') || revision.StartsWith('/')
            || revision.Split('/').Any(s => s is "" or "." or "..") || revision.Any(c => char.IsControl(c) || char.IsSurrogate(c)))
            throw new HubException($"--revision '{Printable(revision)}' is not a branch, tag or commit name.");
        return revision;
    }

    /// <summary>"org/name" with the characters the Hub allows.</summary>
    public static string RepoId(string repo)
    {
        var parts = repo.Split('/');
        if (parts.Length != 2 || parts.Any(p => p.Length == 0 || p.Length > 96 || p is "." or ".." || !p.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
            throw new HubException($"'{Printable(repo)}' is not a Hub repository id (org/name of letters, digits, '-', '_' and '.').");
        return repo;
    }

    /// <summary>Checks that a path built from validated names still resolves under <paramref name="root"/>.</summary>
    public static string Inside(string root, string path)
    {
        string fullRoot = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root)) + Path.DirectorySeparatorChar;
        string full = Path.GetFullPath(path);
        if (!full.StartsWith(fullRoot, StringComparison.Ordinal))
            throw new HubException($"Refusing to write '{full}': it is outside the cache directory {fullRoot}.");
        return full;
    }

    private static HubException Refuse(string repo, string source, string what) =>
        new($"'{repo}' lists {what} in {source}; refusing to download anything from it.");

    private static string Printable(string s) =>
        new(s.Take(200).Select(c => char.IsControl(c) || char.IsSurrogate(c) ? '?' : c).ToArray());
}
