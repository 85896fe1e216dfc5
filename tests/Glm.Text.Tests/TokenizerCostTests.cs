using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Glm.Text.Tokenization;
using Glm.TestSupport;

namespace Glm.Text.Tests;

/// <summary>
/// BPE cost stays near-linear in a word's length (a hostile client sends one 32k-letter word), merges stay those
/// of the rank-ordered reference, and tokenization stops when its request is cancelled.
/// </summary>
public class TokenizerCostTests
{
    private static readonly BpeTokenizer Demo = BpeTokenizer.Load(Path.Combine(Fixtures.DemoModel, "tokenizer.json"));

    private static string RandomLetters(int n, int seed)
    {
        var rng = new Random(seed);
        var sb = new StringBuilder(n);
        for (int i = 0; i < n; i++) sb.Append((char)('a' + rng.Next(26)));
        return sb.ToString();
    }

    /// <summary>The fastest of several runs: other work on a shared machine (parallel tests, GC) only ever adds time.</summary>
    private static double MinSeconds(Action a, int runs)
    {
        var times = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            var sw = Stopwatch.StartNew();
            a();
            times[i] = sw.Elapsed.TotalSeconds;
        }
        return times.Min();
    }

    [Fact]
    public void A256kCharacterWordCostsASmallMultipleOfA16kOnePerCharacter()
    {
        // Distinct words each run, so the word cache cannot answer (it also skips words this long).
        int seed = 1;
        string small = RandomLetters(16_384, 7), large = RandomLetters(262_144, 8);
        Demo.Encode(small);
        double tSmall = MinSeconds(() => Demo.Encode(RandomLetters(16_384, seed++)), 7);
        double tLarge = MinSeconds(() => Demo.Encode(large), 3);
        // 16x the characters; linear gives 16x, n log n a little more, the old quadratic merge loop 256x. The bound
        // sits halfway (in log) between, so a loaded CI machine's noise does not decide it (72x was seen under load).
        double ratio = tLarge / tSmall;
        Assert.True(ratio < 128, $"256k letters took {tLarge:F3}s, 16k took {tSmall:F3}s: {ratio:F1}x for 16x the length");
    }

    /// <summary>The textbook merge loop (lowest rank, leftmost first), rescanning every pair after each merge.</summary>
    private static List<string> ReferenceMerge(string word, Dictionary<(string, string), int> ranks)
    {
        var symbols = word.Select(c => c.ToString()).ToList();
        while (symbols.Count > 1)
        {
            int bestRank = int.MaxValue, bestAt = -1;
            for (int k = 0; k < symbols.Count - 1; k++)
                if (ranks.TryGetValue((symbols[k], symbols[k + 1]), out int r) && r < bestRank) { bestRank = r; bestAt = k; }
            if (bestAt < 0) break;
            symbols[bestAt] += symbols[bestAt + 1];
            symbols.RemoveAt(bestAt + 1);
        }
        return symbols;
    }

    [Theory]
    [InlineData("tokenizer_glm")]
    [InlineData("tokenizer_gpt2")]
    public void HeapMergesEqualTheReferenceLoopOnRandomWords(string style)
    {
        string path = Path.Combine(Fixtures.Dir(style), "tokenizer.json");
        var tokenizer = BpeTokenizer.Load(path);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var model = doc.RootElement.GetProperty("model");
        var ranks = new Dictionary<(string, string), int>();
        int rank = 0;
        foreach (var m in model.GetProperty("merges").EnumerateArray())
        {
            string[] pair = m.ValueKind == JsonValueKind.Array ? [m[0].GetString()!, m[1].GetString()!] : m.GetString()!.Split(' ', 2);
            ranks.TryAdd((pair[0], pair[1]), rank++);
        }
        var vocab = model.GetProperty("vocab").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32());
        // Words over a few letters with repeats (so equal-rank pairs compete and merges chain), as one piece each.
        int seed = Environment.TickCount;
        var rng = new Random(seed);
        string[] alphabets = ["ab", "abc", "aaab", "theinsg", "etaoinshrdlu"];
        for (int round = 0; round < 300; round++)
        {
            string alphabet = alphabets[rng.Next(alphabets.Length)];
            var sb = new StringBuilder();
            int n = rng.Next(1, 200);
            for (int i = 0; i < n; i++) sb.Append(alphabet[rng.Next(alphabet.Length)]);
            string word = sb.ToString();
            int[] expected = ReferenceMerge(word, ranks).Select(s => vocab[s]).ToArray();
            Assert.True(expected.SequenceEqual(tokenizer.Encode(word)), $"seed {seed}: '{word}'");
        }
    }

    [Fact]
    public void EncodingStopsWhenCancelled()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        string text = string.Join(' ', Enumerable.Range(0, 10_000).Select(i => RandomLetters(8, i)));
        Assert.Throws<OperationCanceledException>(() => Demo.Encode(text, cts.Token));
        Assert.NotEmpty(Demo.Encode(text)); // the same text without a cancelled token
    }
}
