using Glm.Models.Quantization;

namespace Glm.Server.Cli;

/// <summary>
/// quantize: writes --model quantized under --quantization into --output once, as safetensors in published
/// layouts (see <see cref="QuantizedCheckpointWriter"/>), so later loads read the codes at disk speed instead of
/// quantizing every start.
/// </summary>
public static class QuantizeCommand
{
    public static int Run(ServerOptions o, Serilog.ILogger log)
    {
        if (o.Output is null) throw new CliException("quantize needs --output DIR");
        if (o.Quantization is "none" or "") throw new CliException("quantize needs --quantization (fp8, int4, fp8-int4 or a JSON policy file)");
        string dir = Hosting.ModelHost.ResolveModelDirectory(o, log);
        var policy = QuantizationPolicy.Resolve(o.Quantization);
        var started = System.Diagnostics.Stopwatch.StartNew();
        var result = QuantizedCheckpointWriter.Write(dir, o.Output, policy);
        log.Information("Wrote {Output}: {Quantized} matrices quantized ({Formats}), {Copied} tensors copied, {GiB:F2} GiB in {Seconds:F1}s",
            o.Output, result.Quantized, string.Join(", ", result.Formats.Select(f => $"{f.Value} {f.Key}")), result.Copied, result.Bytes / 1073741824.0,
            started.Elapsed.TotalSeconds);
        return 0;
    }
}
