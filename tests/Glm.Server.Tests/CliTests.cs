using System.Text.Json;
using Glm.Models.Architectures;
using Glm.Models.Inference;
using Glm.TestSupport;

namespace Glm.Server.Tests;

[CollectionDefinition("console", DisableParallelization = true)]
public class ConsoleCollection;

/// <summary>The CLI as a user runs it: the complete verb, and clear one-line errors for broken model directories.</summary>
[Collection("console")]
public class CliTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        Console.SetOut(stdout);
        Console.SetError(stderr);
        try
        {
            int code = Program.Main(args);
            return (code, stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }

    [Theory]
    [InlineData("glm")]
    [InlineData("glm4_moe_lite")]
    public void CompleteVerbPrintsTheGreedyContinuationOfTheInProcessApi(string arch)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Dir(arch), "expected.json")));
        var c = doc.RootElement.GetProperty("cases")[1];
        var prompt = c.GetProperty("prompt").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var expected = c.GetProperty("greedy").EnumerateArray().Select(x => x.GetInt32()).ToArray();

        var (code, stdout, stderr) = Run("complete", "--model", Fixtures.Dir(arch), "--prompt-ids", string.Join(",", prompt),
            "--max-tokens", expected.Length.ToString(), "--temperature", "0", "--ignore-eos");
        Assert.True(code == 0, stderr);
        using var output = JsonDocument.Parse(stdout);
        var ids = output.RootElement.GetProperty("token_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        Assert.Equal(expected, ids);
        Assert.Equal(JsonValueKind.String, output.RootElement.GetProperty("text").ValueKind);

        using var model = ModelLoader.Load(Fixtures.Dir(arch));
        Assert.Equal(SequenceRunner.Greedy(model, prompt, expected.Length), ids);
    }

    [Fact]
    public void QuantizeVerbWritesAModelThatCompleteLoadsAsStored()
    {
        string output = Directory.CreateTempSubdirectory("glm-quantize-cli-").FullName;
        var (code, _, stderr) = Run("quantize", "--model", Fixtures.Dir("glm4_moe"), "--quantization", "fp8-int4", "--output", output);
        Assert.True(code == 0, stderr);
        Assert.True(File.Exists(Path.Combine(output, "model.safetensors")));
        var (code2, stdout, stderr2) = Run("complete", "--model", output, "--prompt-ids", "5,6,7", "--max-tokens", "4", "--temperature", "0", "--ignore-eos");
        Assert.True(code2 == 0, stderr2);
        Assert.Equal(4, JsonDocument.Parse(stdout).RootElement.GetProperty("token_ids").GetArrayLength());
    }

    [Theory]
    [InlineData(new[] { "quantize", "--quantization", "int4" }, "quantize needs --output DIR")]
    [InlineData(new[] { "quantize", "--output", "/tmp/x" }, "quantize needs --quantization")]
    [InlineData(new[] { "serve", "--device", "gpu" }, "--device must be cpu, cuda or cuda:N")]
    public void VerbsRefuseWhatTheyCannotDoWithAUsageError(string[] args, string message)
    {
        var (code, _, stderr) = Run(args);
        Assert.Equal(2, code);
        Assert.Contains(message, stderr);
    }

    [NoCudaLibraryFact]
    public void DeviceCudaWithoutTheLibrarySaysWhatIsMissing()
    {        var (code, _, stderr) = Run("complete", "--device", "cuda", "--model", Fixtures.Dir("glm"), "--prompt-ids", "1", "--max-tokens", "1");
        Assert.Equal(2, code);
        Assert.Contains("--device cuda: libglm_cuda.so was not found", stderr);
    }

    [Fact]
    public void CompleteVerbDecodesTextWithATokenizer()
    {
        var (code, stdout, stderr) = Run("complete", "--model", Fixtures.DemoModel, "--prompt-ids", "2,4,7,213,688,15,8", "--max-tokens", "12", "--temperature", "0");
        Assert.True(code == 0, stderr);
        using var output = JsonDocument.Parse(stdout);
        Assert.StartsWith("\n<think>The user greets me.", output.RootElement.GetProperty("text").GetString());
    }

    public static TheoryData<string, string> BrokenDirectories() => new()
    {
        { "truncated", "truncated" },
        { "unknown-architecture", "Unsupported architecture 'LlamaForCausalLM'" },
        { "no-config", "No config.json" },
        { "missing-tensor", "Tensor 'model.layers.0.self_attn.q_proj.weight' is missing" },
        { "wrong-shape", "has shape [1024, 32], expected [1024, 64]" },
    };

    [Theory]
    [MemberData(nameof(BrokenDirectories))]
    public void BrokenModelDirectoryGivesOneClearErrorAndNonZeroExit(string kind, string expected)
    {
        string dir = Directory.CreateTempSubdirectory("glm-broken-").FullName;
        string source = Fixtures.Dir("glm");
        foreach (var f in Directory.GetFiles(source)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        string weights = Path.Combine(dir, "model.safetensors");
        switch (kind)
        {
            case "truncated":
                using (var s = File.OpenWrite(weights)) s.SetLength(s.Length / 2);
                break;
            case "unknown-architecture":
                File.WriteAllText(Path.Combine(dir, "config.json"), File.ReadAllText(Path.Combine(dir, "config.json")).Replace("GlmForCausalLM", "LlamaForCausalLM"));
                break;
            case "no-config":
                File.Delete(Path.Combine(dir, "config.json"));
                break;
            case "missing-tensor":
                RewriteHeader(weights, h => h.Replace("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.weigh_"));
                break;
            case "wrong-shape":
                // Claim the embedding is [1024, 32] of F32: same byte size, wrong shape.
                RewriteHeader(weights, h => h.Replace("\"model.embed_tokens.weight\":{\"dtype\":\"BF16\",\"shape\":[1024,64]", "\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[1024,32]"));
                break;
        }
        var (code, stdout, stderr) = Run("complete", "--model", dir, "--prompt-ids", "1,2,3", "--max-tokens", "2");
        Assert.NotEqual(0, code);
        Assert.Equal("", stdout);
        Assert.Contains(expected, stderr);
        Assert.DoesNotContain("   at ", stderr); // no stack trace for the user
        Assert.StartsWith("error: ", stderr.Split('\n').Last(l => l.Length > 0));
    }

    /// <summary>Edits a safetensors JSON header in place, keeping its length (padding with spaces).</summary>
    private static void RewriteHeader(string path, Func<string, string> edit)
    {
        var bytes = File.ReadAllBytes(path);
        long n = BitConverter.ToInt64(bytes, 0);
        string header = System.Text.Encoding.UTF8.GetString(bytes, 8, (int)n);
        string compact = JsonSerializer.Serialize(JsonDocument.Parse(header).RootElement);
        string edited = edit(compact);
        Assert.NotEqual(compact, edited);
        Assert.True(edited.Length <= n);
        var newHeader = System.Text.Encoding.UTF8.GetBytes(edited.PadRight((int)n));
        Buffer.BlockCopy(newHeader, 0, bytes, 8, newHeader.Length);
        File.WriteAllBytes(path, bytes);
    }
}

/// <summary>Runs where libglm_cuda is not installed (on a machine with it, the verb would start on the GPU instead).</summary>
public sealed class NoCudaLibraryFactAttribute : FactAttribute
{
    public NoCudaLibraryFactAttribute()
    {
        if (Glm.Kernels.Cuda.CudaRuntime.IsAvailable(out _)) Skip = "libglm_cuda is installed here: the refusal it tests cannot happen";
    }
}
