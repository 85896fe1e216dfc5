using Glm.Server.Cli;

namespace Glm.Server.Tests;

[Collection("console")] // sets process environment variables
public class OptionsTests
{
    [Fact]
    public void FlagsBeatEnvironmentWhichBeatsAppSettings()
    {
        string settings = Path.Combine(Directory.CreateTempSubdirectory().FullName, "appsettings.json");
        File.WriteAllText(settings, """{"Glm": {"port": 9001, "max-model-len": 2048, "served-model-name": "from-settings", "enable-prefix-caching": false, "max-num-seqs": 7}}""");
        Environment.SetEnvironmentVariable("GLM_PORT", "9002");
        Environment.SetEnvironmentVariable("GLM_SERVED_MODEL_NAME", "from-env");
        try
        {
            var o = ServerOptions.Parse(["--port", "9003"], settings);
            Assert.Equal(9003, o.Port);                  // flag over environment and settings
            Assert.Equal("from-env", o.ServedModelName); // environment over settings
            Assert.Equal(2048, o.MaxModelLen);           // settings when nothing else says
            Assert.Equal(7, o.MaxNumSeqs);
            Assert.False(o.EnablePrefixCaching);
        }
        finally
        {
            Environment.SetEnvironmentVariable("GLM_PORT", null);
            Environment.SetEnvironmentVariable("GLM_SERVED_MODEL_NAME", null);
        }
    }

    [Theory]
    [InlineData("--quantization", "int3")]
    [InlineData("--kv-cache-dtype", "int2")]
    [InlineData("--port", "eighty")]
    [InlineData("--device", "tpu")]
    [InlineData("--int4-activations", "int4")]
    [InlineData("--tool-call-parser", "hermes")]
    [InlineData("--reasoning-parser", "deepseek_r1")]
    [InlineData("--user-content-special-tokens", "maybe")]
    [InlineData("--max-queue-len", "-1")]
    public void BadFlagsAreUsageErrors(string flag, string value) =>
        Assert.Throws<CliException>(() => ServerOptions.Parse([flag, value], "/nonexistent/appsettings.json"));

    [Fact]
    public void ParsersCanBeNamedOrTurnedOffAndModelNamesListed()
    {
        var o = ServerOptions.Parse(["--tool-call-parser=glm47", "--reasoning-parser", "none", "--served-model-name", "glm-4.5-air, claude-sonnet-4-5"], "/nonexistent/appsettings.json");
        Assert.Equal("glm47", o.ToolCallParser);
        Assert.Null(o.ReasoningParser);
        Assert.Equal("glm-4.5-air", o.ModelName);
        Assert.Equal(["glm-4.5-air", "claude-sonnet-4-5"], o.ModelNames);
    }

    [Fact]
    public void Int4ActivationsDefaultToInt8AndCanBeFloat()
    {
        Assert.Equal(Kernels.Cpu.Int4Activations.Int8, ServerOptions.Parse([], "/nonexistent/appsettings.json").ResolveInt4Activations());
        Assert.Equal(Kernels.Cpu.Int4Activations.Float, ServerOptions.Parse(["--int4-activations", "float"], "/nonexistent/appsettings.json").ResolveInt4Activations());
    }
}
