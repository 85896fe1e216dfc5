namespace Glm.Kernels.Attention;

public enum KvCacheDType
{
    /// <summary>Exact: what transformers keeps in a float32 run.</summary>
    F32,
    Bf16,
    /// <summary>E4M3 with one float scale per token and head.</summary>
    Fp8,
    /// <summary>Asymmetric 4-bit per token and head (FP16 scale and zero point), two values a byte.</summary>
    Int4,
}

public static class KvCacheDTypes
{
    public static KvCacheDType Parse(string text) => text.ToLowerInvariant() switch
    {
        "f32" or "fp32" or "float32" => KvCacheDType.F32,
        "bf16" or "bfloat16" => KvCacheDType.Bf16,
        "fp8" or "fp8_e4m3" or "fp8-e4m3" => KvCacheDType.Fp8,
        "int4" => KvCacheDType.Int4,
        _ => throw new ArgumentException($"unknown KV cache dtype '{text}' (expected auto, f32, bf16, fp8 or int4)"),
    };

    public static string Name(this KvCacheDType d) => d switch
    {
        KvCacheDType.F32 => "f32",
        KvCacheDType.Bf16 => "bf16",
        KvCacheDType.Fp8 => "fp8",
        _ => "int4",
    };
}
