namespace Glm.Text.Tokenization;

/// <summary>A token matched on the raw text before pre-tokenization (tokenizer.json added_tokens).</summary>
public sealed record AddedToken(int Id, string Content, bool Special, bool LStrip, bool RStrip, bool SingleWord, bool Normalized);
