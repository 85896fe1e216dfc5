namespace Glm.Text.Tokenization;

/// <summary>
/// The two markers that carry "this is literal text" from message contents through a chat template to the
/// tokenizer. They are Unicode noncharacters (reserved for a program's internal use, never interchanged), and a
/// request that contains them itself is refused before rendering, so only the server can place them.
/// </summary>
public static class LiteralText
{
    public const char Begin = '\uFDD0';
    public const char End = '\uFDD1';

    public static bool ContainsMarker(string s) => s.AsSpan().IndexOfAny(Begin, End) >= 0;
}
