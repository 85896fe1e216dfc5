namespace Glm.Text.Parsing;

internal static class StreamingMarkers
{
    /// <summary>
    /// Length of the longest suffix of <paramref name="text"/> that is a proper prefix of <paramref name="marker"/>:
    /// text that must be held back because the next delta may complete the marker.
    /// </summary>
    public static int PartialSuffix(string text, string marker)
    {
        for (int len = Math.Min(marker.Length - 1, text.Length); len > 0; len--)
            if (string.CompareOrdinal(text, text.Length - len, marker, 0, len) == 0) return len;
        return 0;
    }
}
