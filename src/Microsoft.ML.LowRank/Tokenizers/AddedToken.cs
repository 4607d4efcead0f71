namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>
/// A token matched literally in the text before the model runs (tokenizer.json's <c>added_tokens</c>), such as
/// "&lt;|endoftext|&gt;", "[CLS]" or "&lt;|im_start|&gt;".
/// </summary>
public sealed record AddedToken
{
    /// <summary>Creates an added token.</summary>
    /// <param name="content">The literal text of the token.</param>
    /// <param name="id">Its id.</param>
    /// <param name="special">Whether it is a special token (skipped when decoding with <c>skipSpecialTokens</c>).</param>
    public AddedToken(string content, int id, bool special = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(content);
        Content = content;
        Id = id;
        Special = special;
        Normalized = !special;
    }

    /// <summary>The literal text of the token.</summary>
    public string Content { get; }

    /// <summary>The token id.</summary>
    public int Id { get; }

    /// <summary>Whether this is a special token (skipped by <c>Decode(ids, skipSpecialTokens: true)</c>).</summary>
    public bool Special { get; init; }

    /// <summary>Only match when the token is not part of a larger word.</summary>
    public bool SingleWord { get; init; }

    /// <summary>Whitespace before the token is absorbed into it.</summary>
    public bool LStrip { get; init; }

    /// <summary>Whitespace after the token is absorbed into it.</summary>
    public bool RStrip { get; init; }

    /// <summary>Match against the normalized text (rather than the raw input).</summary>
    public bool Normalized { get; init; }
}

/// <summary>Finds added tokens in text: leftmost match first, the longest among those starting at the same char.</summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, (string Content, AddedToken Token)[]> _byFirstChar;

    public AddedTokenMatcher(IEnumerable<(string Content, AddedToken Token)> tokens)
    {
        _byFirstChar = tokens
            .Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    public bool IsEmpty => _byFirstChar.Count == 0;

    /// <summary>Splits <paramref name="s"/> into (start, end, token) matches; gaps are the text between them.</summary>
    public void FindAll(string s, List<(int Start, int End, AddedToken Token)> output)
    {
        if (_byFirstChar.Count == 0)
        {
            return;
        }
        int minEnd = 0; // a match may not start before the end of the previous one (after lstrip)
        for (int i = 0; i < s.Length; i++)
        {
            if (!_byFirstChar.TryGetValue(s[i], out var candidates))
            {
                continue;
            }
            foreach (var (content, token) in candidates)
            {
                if (!s.AsSpan(i).StartsWith(content, StringComparison.Ordinal))
                {
                    continue;
                }
                int start = i, end = i + content.Length;
                if (token.SingleWord && ((start > 0 && IsWordChar(s, start - 1)) || (end < s.Length && IsWordChar(s, end))))
                {
                    continue;
                }
                if (token.LStrip)
                {
                    while (start > minEnd && UnicodeData.IsWhiteSpace(s[start - 1]))
                    {
                        start--;
                    }
                }
                if (token.RStrip)
                {
                    while (end < s.Length && UnicodeData.IsWhiteSpace(s[end]))
                    {
                        end++;
                    }
                }
                output.Add((start, end, token));
                minEnd = end;
                i = end - 1;
                break;
            }
        }
    }

    private static bool IsWordChar(string s, int index)
    {
        char c = s[index];
        return c == '_' || char.IsLetterOrDigit(c) || char.IsSurrogate(c);
    }
}
