namespace Glm.Models;

public enum Architecture
{
    /// <summary>GlmForCausalLM: dense, fused gate_up, interleaved partial RoPE.</summary>
    Glm,
    /// <summary>Glm4ForCausalLM: as Glm plus post-attention and post-MLP norms.</summary>
    Glm4,
    /// <summary>Glm4MoeForCausalLM: GLM-4.5/4.6/4.7, sigmoid-routed MoE with a shared expert, half-split RoPE.</summary>
    Glm4Moe,
    /// <summary>Glm4MoeLiteForCausalLM: GLM-4.7-Flash, multi-head latent attention plus the same MoE.</summary>
    Glm4MoeLite,
    /// <summary>
    /// GlmMoeDsaForCausalLM: GLM-5, 5.1, 5.2, 5.3. glm4_moe_lite's MLA and MoE plus DeepSeek Sparse Attention: a
    /// lightning indexer picks each query's top index_topk keys, and IndexShare layers reuse the last full layer's pick.
    /// </summary>
    GlmMoeDsa,
}
