using System.Text;
using System.Text.Json;
using Glm.Text.Tokenization;
using Glm.TestSupport;

namespace Glm.Text.Tests;

/// <summary>Ids and decodes against Hugging Face tokenizers 0.23 on both pre-tokenizer styles.</summary>
public class TokenizerParityTests
{
    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (var style in new[] { "tokenizer_glm", "tokenizer_gpt2" })
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Dir(style), "expected.json")));
            for (int i = 0; i < doc.RootElement.GetProperty("cases").GetArrayLength(); i++) data.Add(style, i);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EncodeAndDecodeMatchHuggingFace(string style, int index)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Dir(style), "expected.json")));
        var c = doc.RootElement.GetProperty("cases")[index];
        var tokenizer = BpeTokenizer.Load(Path.Combine(Fixtures.Dir(style), "tokenizer.json"));
        var expectedIds = c.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();

        Assert.Equal(expectedIds, tokenizer.Encode(c.GetProperty("text").GetString()!));
        Assert.Equal(c.GetProperty("decoded").GetString(), tokenizer.Decode(expectedIds));
        Assert.Equal(c.GetProperty("decoded_skip_special").GetString(), tokenizer.Decode(expectedIds, skipSpecialTokens: true));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void StreamedDeltasConcatenateToTheFullDecode(string style, int index)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Dir(style), "expected.json")));
        var ids = doc.RootElement.GetProperty("cases")[index].GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var tokenizer = BpeTokenizer.Load(Path.Combine(Fixtures.Dir(style), "tokenizer.json"));
        foreach (bool skip in new[] { false, true })
        {
            string full = tokenizer.Decode(ids, skip);
            var detok = new IncrementalDetokenizer(tokenizer, skip);
            var sb = new StringBuilder();
            foreach (int id in ids)
            {
                string delta = detok.Push(id);
                if (!full.Contains('\uFFFD')) Assert.DoesNotContain("\uFFFD", delta);
                sb.Append(delta);
            }
            sb.Append(detok.Finish());
            Assert.Equal(full, sb.ToString());
        }
    }

    [Fact]
    public void RandomUnicodeRoundTripsAndStreamsExactly()
    {
        var tokenizer = BpeTokenizer.Load(Path.Combine(Fixtures.Dir("tokenizer_glm"), "tokenizer.json"));
        int seed = Environment.TickCount;
        var rng = new Random(seed);
        string[] alphabet = ["a", "Z", " ", "  ", "\n", "\t", "é", "e\u0301", "中", "文", "😀", "👩‍💻", "\uD800", "\uDC00", "'s", "123456", "<think>", "<|user|>", "\r\n", "ß", "\u00A0"];
        for (int round = 0; round < 200; round++)
        {
            var sb = new StringBuilder();
            int n = rng.Next(0, 30);
            for (int i = 0; i < n; i++) sb.Append(alphabet[rng.Next(alphabet.Length)]);
            // Lone surrogates cannot be UTF-8 encoded; like any UTF-8 transport, they become U+FFFD.
            string text = Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(sb.ToString()));
            var ids = tokenizer.Encode(text);
            Assert.True(text == tokenizer.Decode(ids), $"seed {seed}: round trip of {JsonSerializer.Serialize(text)}");
            var detok = new IncrementalDetokenizer(tokenizer, false);
            var streamed = new StringBuilder();
            foreach (int id in ids) streamed.Append(detok.Push(id));
            streamed.Append(detok.Finish());
            Assert.Equal(text, streamed.ToString());
        }
    }

    [Fact]
    public void SplitUtf8SequencesAreHeldBackUntilComplete()
    {
        var tokenizer = BpeTokenizer.Load(Path.Combine(Fixtures.Dir("tokenizer_gpt2"), "tokenizer.json"));
        // Emoji are 4 UTF-8 bytes; a small vocabulary splits them over several byte tokens.
        var ids = tokenizer.Encode("😀");
        Assert.True(ids.Length > 1);
        var detok = new IncrementalDetokenizer(tokenizer, false);
        for (int i = 0; i < ids.Length - 1; i++) Assert.Equal("", detok.Push(ids[i]));
        Assert.Equal("😀", detok.Push(ids[^1]));
    }

    [Fact]
    public void UnsupportedTokenizerFailsAtLoadWithAClearMessage()
    {
        string dir = Directory.CreateTempSubdirectory().FullName;
        string path = Path.Combine(dir, "tokenizer.json");
        File.WriteAllText(path, """{"model":{"type":"Unigram","vocab":[]},"normalizer":null,"pre_tokenizer":null,"added_tokens":[]}""");
        var e = Assert.Throws<TokenizerLoadException>(() => BpeTokenizer.Load(path));
        Assert.Contains("Unigram", e.Message);
    }
}

public class PaddedVocabularyTests
{
    [Fact]
    public void IdsBeyondTheTokenizerDecodeToNothingAsInHuggingFace()
    {
        // Models pad their vocabulary past the tokenizer's; HF tokenizers skips such ids when decoding.
        var tokenizer = BpeTokenizer.Load(Path.Combine(Fixtures.Dir("tokenizer_glm"), "tokenizer.json"));
        var ids = tokenizer.Encode("Hi");
        int beyond = tokenizer.VocabSize + 5;
        Assert.Equal("Hi", tokenizer.Decode([.. ids, beyond]));
        var detok = new IncrementalDetokenizer(tokenizer, false);
        Assert.Equal("", detok.Push(beyond));
    }
}
