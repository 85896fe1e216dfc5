namespace Glm.Kernels.Attention;

/// <summary>
/// What one token stores per layer: <see cref="KvHeads"/> keys of <see cref="KeyDim"/> and values of
/// <see cref="ValueDim"/>. For multi-head latent attention the value is the first <see cref="ValueDim"/> dims of
/// the key (the compressed latent), so no separate value is stored.
/// </summary>
public sealed record KvLayout(int Layers, int KvHeads, int KeyDim, int ValueDim, bool ValueIsKeyPrefix);
