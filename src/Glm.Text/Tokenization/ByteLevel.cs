namespace Glm.Text.Tokenization;

/// <summary>GPT-2's reversible map between bytes and printable characters, used by byte-level BPE vocabularies.</summary>
public static class ByteLevel
{
    public static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> CharToByte = BuildCharToByte();

    /// <summary>GPT-2's own pre-tokenizer regex, used when ByteLevel has use_regex = true.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        var direct = new bool[256];
        for (int b = '!'; b <= '~'; b++) direct[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) direct[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) direct[b] = true;
        int next = 0;
        for (int b = 0; b < 256; b++) map[b] = direct[b] ? (char)b : (char)(256 + next++);
        return map;
    }

    private static Dictionary<char, byte> BuildCharToByte()
    {
        var d = new Dictionary<char, byte>();
        for (int b = 0; b < 256; b++) d[ByteToChar[b]] = (byte)b;
        return d;
    }

    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }

    /// <summary>Appends the bytes a vocabulary token stands for; characters outside the map are kept as UTF-8.</summary>
    public static void Decode(string token, List<byte> into)
    {
        foreach (char c in token)
        {
            if (CharToByte.TryGetValue(c, out byte b)) into.Add(b);
            else into.AddRange(System.Text.Encoding.UTF8.GetBytes(c.ToString()));
        }
    }
}
