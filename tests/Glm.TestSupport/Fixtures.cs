using System.Runtime.CompilerServices;

namespace Glm.TestSupport;

/// <summary>Paths to the test data under tests/fixtures and to the embedded demo model, found from this source file.</summary>
public static class Fixtures
{
    public static string Root { get; } = FindRoot();

    public static string Dir(string name) => Path.Combine(Root, "tests", "fixtures", name);

    public static string DemoModel => Path.Combine(Root, "models", "glm-demo");

    /// <summary>Case <paramref name="index"/> of an architecture fixture's expected.json: its prompt and transformers' greedy continuation.</summary>
    public static (int[] Prompt, int[] Greedy) TransformersCase(string arch, int index)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir(arch), "expected.json")));
        var c = doc.RootElement.GetProperty("cases")[index];
        return (c.GetProperty("prompt").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                c.GetProperty("greedy").EnumerateArray().Select(x => x.GetInt32()).ToArray());
    }

    private static string FindRoot([CallerFilePath] string here = "")
    {
        // Prefer the checkout this file was compiled from; fall back to walking up from the test binaries.
        foreach (var start in new[] { Path.GetDirectoryName(here)!, AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "Glm.Server.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("cannot find the repository root (Glm.Server.sln)");
    }
}
