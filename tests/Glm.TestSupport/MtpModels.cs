using Glm.Models.Loading;
using Glm.Models.Synthetic;

namespace Glm.TestSupport;

/// <summary>How a test's MTP layer is made.</summary>
public enum MtpKind
{
    /// <summary>Random weights (std 0.02): drafts rarely right.</summary>
    Random,
    /// <summary>Drafts the token it is given: eh_proj passes the embedding half through, the block adds nothing, shared_head.head is the embedding table.</summary>
    EmbeddingEcho,
    /// <summary>
    /// Drafts about what the main model just predicted: eh_proj passes the hidden half through, shared_head.head is
    /// lm_head, the MLP adds nothing and attention adds a strong random term, so the draft hangs on the hidden
    /// state the layer was handed and on its own KV. A tiny random model that repeats itself accepts some.
    /// </summary>
    HiddenEcho,
}

/// <summary>A copy of a model directory with an MTP layer added (the fixtures and the demo ship none).</summary>
public static class MtpModels
{
    private static readonly Dictionary<(string, MtpKind), string> Made = [];

    static MtpModels() => AppDomain.CurrentDomain.ProcessExit += (_, _) =>
    {
        lock (Made)
            foreach (var dir in Made.Values)
                try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    };

    public static string With(string source, MtpKind kind)
    {
        lock (Made)
        {
            if (Made.TryGetValue((source, kind), out var made)) return made;
            string dir = Path.Combine(Path.GetTempPath(), $"glm-mtp-test-{Environment.ProcessId}-{Path.GetFileName(source)}-{kind}");
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            Directory.CreateDirectory(dir);
            foreach (var f in Directory.GetFiles(source)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
            SyntheticCheckpoint.AddMtpLayer(dir, seed: 5, kind == MtpKind.Random ? null : EchoValues(dir, kind));
            return Made[(source, kind)] = dir;
        }
    }

    private static Dictionary<string, float[]> EchoValues(string dir, MtpKind kind)
    {
        var c = Glm.Models.ModelConfig.Load(dir);
        using var ckpt = new Checkpoint(dir);
        int h = c.HiddenSize, attentionWidth = c.IsLatent ? c.NumHeads * c.VHeadDim : c.NumHeads * c.HeadDim;
        string p = $"model.layers.{c.NumLayers}";
        bool hidden = kind == MtpKind.HiddenEcho;
        var eh = new float[h * 2 * h];
        for (int i = 0; i < h; i++) eh[i * 2 * h + (hidden ? h : 0) + i] = 1;
        var rng = new Random(9);
        var values = new Dictionary<string, float[]>
        {
            [$"{p}.eh_proj.weight"] = eh,
            [$"{p}.shared_head.head.weight"] = ckpt.ReadFloats(hidden ? "lm_head.weight" : "model.embed_tokens.weight", c.VocabSize, h),
            [$"{p}.self_attn.o_proj.weight"] = hidden
                ? Enumerable.Range(0, h * attentionWidth).Select(_ => (float)(rng.NextDouble() * 2 - 1) * 1.5f).ToArray()
                : new float[h * attentionWidth],
        };
        // Every MLP output zero, so the block adds nothing more to the residual stream.
        if (c.NumRoutedExperts > 0)
        {
            for (int e = 0; e < c.NumRoutedExperts; e++) values[$"{p}.mlp.experts.{e}.down_proj.weight"] = new float[h * c.MoeIntermediateSize];
            values[$"{p}.mlp.shared_experts.down_proj.weight"] = new float[h * c.MoeIntermediateSize * c.NumSharedExperts];
        }
        else values[$"{p}.mlp.down_proj.weight"] = new float[h * c.IntermediateSize];
        return values;
    }
}
