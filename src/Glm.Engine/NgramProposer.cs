namespace Glm.Engine;

/// <summary>
/// Prompt-lookup drafting (vLLM's "ngram" speculative method): the longest suffix of a sequence's tokens, from
/// <see cref="MaxN"/> down to <see cref="MinN"/> tokens, is looked up in its earlier tokens (prompt and output,
/// the latest occurrence first), and the tokens that followed it there are the draft. Costs no weights; pays off
/// where an agent repeats its input (code edits, quoted files, tool results).
/// </summary>
public sealed class NgramProposer(int numSpeculativeTokens, int minN = 1, int maxN = 4, int window = 4096)
{
    public int NumSpeculativeTokens { get; } = numSpeculativeTokens;
    public int MinN { get; } = minN;
    public int MaxN { get; } = maxN;

    /// <summary>Up to <paramref name="limit"/> (at most <see cref="NumSpeculativeTokens"/>) draft tokens after <paramref name="tokens"/>, or none.</summary>
    public int[]? Propose(IReadOnlyList<int> tokens, int limit)
    {
        limit = Math.Min(limit, NumSpeculativeTokens);
        int length = tokens.Count;
        if (limit <= 0) return null;
        int earliest = Math.Max(0, length - window);
        for (int n = Math.Min(MaxN, length - 1); n >= MinN; n--)
        {
            // Occurrences of the last n tokens ending before the end: the latest one whose continuation exists.
            for (int start = length - n - 1; start >= earliest; start--)
            {
                bool match = true;
                for (int k = 0; k < n && match; k++) match = tokens[start + k] == tokens[length - n + k];
                if (!match) continue;
                int from = start + n, count = Math.Min(limit, length - from);
                if (count <= 0) continue;
                var draft = new int[count];
                for (int k = 0; k < count; k++) draft[k] = tokens[from + k];
                return draft;
            }
        }
        return null;
    }
}
