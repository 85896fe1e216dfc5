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
}
