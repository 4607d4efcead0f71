using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>
/// Transforms text before pre-tokenization (lower-casing, Unicode normalization, replacements), keeping track of
/// where each char came from so that token offsets point into the original text. The set of normalizers is closed.
/// </summary>
public abstract class Normalizer
{
    private protected Normalizer()
    {
    }

    /// <summary>Normalizes a string.</summary>
    public string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Normalize(NormalizedText.FromOriginal(text, 0, text.Length)).Text;
    }

    internal abstract NormalizedText Normalize(NormalizedText text);

    /// <summary>Applies a per-code-point mapping; <paramref name="map"/> appends the output of one code point.</summary>
    private protected static NormalizedText MapCodePoints(NormalizedText text, Action<int, int, int, AlignedTextBuilder> map)
    {
        string s = text.Text;
        var builder = new AlignedTextBuilder(s.Length + 8);
        for (int i = 0; i < s.Length;)
        {
            int cp = s.ConvertToUtf32OrSelf(i, out int len);
            var (os, oe) = text.MapRange(i, i + len);
            map(cp, os, oe, builder);
            i += len;
        }
        var result = builder.Build(text.OriginalStart, text.OriginalEnd);
        return result.Text == s ? text : result;
    }
}

/// <summary>Unicode normalization to NFC, NFD, NFKC or NFKD (implemented without ICU).</summary>
public sealed class UnicodeNormalizer : Normalizer
{
    /// <summary>Creates a Unicode normalizer.</summary>
    public UnicodeNormalizer(NormalizationForm form) => Form = form;

    /// <summary>The normalization form.</summary>
    public NormalizationForm Form { get; }

    internal override NormalizedText Normalize(NormalizedText text) =>
        UnicodeData.Normalize(text, Form is NormalizationForm.FormKC or NormalizationForm.FormKD, Form is NormalizationForm.FormC or NormalizationForm.FormKC);
}

/// <summary>Lower-cases text (per code point, as Rust's <c>char::to_lowercase</c>).</summary>
public sealed class LowercaseNormalizer : Normalizer
{
    internal override NormalizedText Normalize(NormalizedText text)
    {
        bool change = false;
        foreach (char c in text.Text)
        {
            if (c >= 0x80 ? true : c is >= 'A' and <= 'Z')
            {
                change = true;
                break;
            }
        }
        return change ? MapCodePoints(text, UnicodeData.AppendLower) : text;
    }
}

/// <summary>Removes combining marks (use after NFD to strip accents).</summary>
public sealed class StripAccentsNormalizer : Normalizer
{
    internal override NormalizedText Normalize(NormalizedText text) =>
        MapCodePoints(text, static (cp, s, e, b) =>
        {
            if (CharUnicodeInfo.GetUnicodeCategory(cp) is not (UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark))
            {
                b.AppendCodePoint(cp, s, e);
            }
        });
}

/// <summary>
/// BERT's normalizer: removes control chars and maps whitespace to spaces, puts spaces around CJK ideographs,
/// strips accents (NFD then drop non-spacing marks) and lower-cases.
/// </summary>
public sealed class BertNormalizer : Normalizer
{
    /// <summary>Creates a BERT normalizer.</summary>
    /// <param name="cleanText">Remove control chars and turn all whitespace into plain spaces.</param>
    /// <param name="handleChineseChars">Put spaces around CJK ideographs.</param>
    /// <param name="stripAccents">Strip accents; <see langword="null"/> follows <paramref name="lowercase"/>.</param>
    /// <param name="lowercase">Lower-case the text.</param>
    public BertNormalizer(bool cleanText = true, bool handleChineseChars = true, bool? stripAccents = null, bool lowercase = true)
    {
        CleanText = cleanText;
        HandleChineseChars = handleChineseChars;
        StripAccents = stripAccents ?? lowercase;
        Lowercase = lowercase;
    }

    /// <summary>Whether control chars are removed and whitespace made plain spaces.</summary>
    public bool CleanText { get; }

    /// <summary>Whether CJK ideographs are surrounded by spaces.</summary>
    public bool HandleChineseChars { get; }

    /// <summary>Whether accents are stripped.</summary>
    public bool StripAccents { get; }

    /// <summary>Whether the text is lower-cased.</summary>
    public bool Lowercase { get; }

    internal override NormalizedText Normalize(NormalizedText text)
    {
        if (CleanText)
        {
            text = MapCodePoints(text, static (cp, s, e, b) =>
            {
                if (cp is 0 or 0xFFFD)
                {
                    return;
                }
                if (cp is '\t' or '\n' or '\r' || UnicodeData.IsWhiteSpace(cp))
                {
                    b.Append(' ', s, e);
                }
                else if (!UnicodeData.IsOther(cp))
                {
                    b.AppendCodePoint(cp, s, e);
                }
            });
        }
        if (HandleChineseChars)
        {
            text = MapCodePoints(text, static (cp, s, e, b) =>
            {
                if (UnicodeData.IsCjk(cp))
                {
                    // The added spaces align with the ideograph itself.
                    b.Append(' ', s, e);
                    b.AppendCodePoint(cp, s, e);
                    b.Append(' ', s, e);
                }
                else
                {
                    b.AppendCodePoint(cp, s, e);
                }
            });
        }
        if (StripAccents)
        {
            text = UnicodeData.Normalize(text, compatibility: false, compose: false);
            text = MapCodePoints(text, static (cp, s, e, b) =>
            {
                if (CharUnicodeInfo.GetUnicodeCategory(cp) != UnicodeCategory.NonSpacingMark)
                {
                    b.AppendCodePoint(cp, s, e);
                }
            });
        }
        if (Lowercase)
        {
            text = new LowercaseNormalizer().Normalize(text);
        }
        return text;
    }
}

/// <summary>Replaces every occurrence of a string (or regex match) by some content.</summary>
public sealed class ReplaceNormalizer : Normalizer
{
    private readonly Regex? _regex;

    /// <summary>Creates a replace normalizer.</summary>
    /// <param name="pattern">The string (or regex, see <paramref name="isRegex"/>) to replace.</param>
    /// <param name="content">The replacement.</param>
    /// <param name="isRegex">Whether <paramref name="pattern"/> is a regular expression.</param>
    public ReplaceNormalizer(string pattern, string content, bool isRegex = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(pattern);
        ArgumentNullException.ThrowIfNull(content);
        Pattern = pattern;
        Content = content;
        IsRegex = isRegex;
        _regex = isRegex ? new Regex(pattern, RegexOptions.CultureInvariant) : null;
    }

    /// <summary>The pattern.</summary>
    public string Pattern { get; }

    /// <summary>The replacement.</summary>
    public string Content { get; }

    /// <summary>Whether <see cref="Pattern"/> is a regular expression.</summary>
    public bool IsRegex { get; }

    internal override NormalizedText Normalize(NormalizedText text) => ReplaceAll(text, _regex, Pattern, Content);

    internal static NormalizedText ReplaceAll(NormalizedText text, Regex? regex, string pattern, string content)
    {
        string s = text.Text;
        var matches = new List<(int Start, int End)>();
        if (regex is not null)
        {
            foreach (ValueMatch m in regex.EnumerateMatches(s))
            {
                if (m.Length > 0)
                {
                    matches.Add((m.Index, m.Index + m.Length));
                }
            }
        }
        else
        {
            for (int i = s.IndexOf(pattern, StringComparison.Ordinal); i >= 0; i = s.IndexOf(pattern, i + pattern.Length, StringComparison.Ordinal))
            {
                matches.Add((i, i + pattern.Length));
            }
        }
        if (matches.Count == 0)
        {
            return text;
        }
        if (regex is null && pattern.Length == content.Length)
        {
            // Same length: the alignment does not move.
            return text.WithSameAlignment(s.Replace(pattern, content, StringComparison.Ordinal));
        }
        var builder = new AlignedTextBuilder(s.Length + matches.Count * content.Length);
        int pos = 0;
        foreach (var (start, end) in matches)
        {
            for (int i = pos; i < start; i++)
            {
                builder.Append(s[i], text.CharStart(i), text.CharEnd(i));
            }
            var (os, oe) = text.MapRange(start, end);
            builder.Append(content, os, oe);
            pos = end;
        }
        for (int i = pos; i < s.Length; i++)
        {
            builder.Append(s[i], text.CharStart(i), text.CharEnd(i));
        }
        return builder.Build(text.OriginalStart, text.OriginalEnd);
    }
}

/// <summary>Prepends a string to non-empty text (SentencePiece's dummy prefix, "▁").</summary>
public sealed class PrependNormalizer : Normalizer
{
    /// <summary>Creates a prepend normalizer.</summary>
    public PrependNormalizer(string prefix)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        Prefix = prefix;
    }

    /// <summary>The prefix.</summary>
    public string Prefix { get; }

    internal override NormalizedText Normalize(NormalizedText text) => text.Length == 0 ? text : Prepend(text, Prefix);

    /// <summary>Prepends <paramref name="prefix"/>; its chars align with the first char of the text.</summary>
    internal static NormalizedText Prepend(NormalizedText text, string prefix)
    {
        var builder = new AlignedTextBuilder(text.Length + prefix.Length);
        var (fs, fe) = text.Length > 0 ? (text.CharStart(0), text.CharEnd(0)) : (text.OriginalStart, text.OriginalStart);
        builder.Append(prefix, fs, fe);
        for (int i = 0; i < text.Length; i++)
        {
            builder.Append(text.Text[i], text.CharStart(i), text.CharEnd(i));
        }
        return builder.Build(text.OriginalStart, text.OriginalEnd);
    }
}

/// <summary>Removes leading and/or trailing whitespace.</summary>
public sealed class StripNormalizer : Normalizer
{
    /// <summary>Creates a strip normalizer.</summary>
    public StripNormalizer(bool left = true, bool right = true)
    {
        Left = left;
        Right = right;
    }

    /// <summary>Whether leading whitespace is removed.</summary>
    public bool Left { get; }

    /// <summary>Whether trailing whitespace is removed.</summary>
    public bool Right { get; }

    internal override NormalizedText Normalize(NormalizedText text)
    {
        string s = text.Text;
        int start = 0, end = s.Length;
        if (Left)
        {
            while (start < end && UnicodeData.IsWhiteSpace(s[start]))
            {
                start++;
            }
        }
        if (Right)
        {
            while (end > start && UnicodeData.IsWhiteSpace(s[end - 1]))
            {
                end--;
            }
        }
        return text.Slice(start, end);
    }
}

/// <summary>Maps text to GPT-2's byte-level alphabet (the normalizer form of the byte-level pre-tokenizer).</summary>
public sealed class ByteLevelNormalizer : Normalizer
{
    internal override NormalizedText Normalize(NormalizedText text) => ByteLevelAlphabet.Transform(text);
}

/// <summary>Applies several normalizers in order.</summary>
public sealed class SequenceNormalizer : Normalizer
{
    /// <summary>Creates a sequence of normalizers.</summary>
    public SequenceNormalizer(IEnumerable<Normalizer> normalizers)
    {
        ArgumentNullException.ThrowIfNull(normalizers);
        Normalizers = normalizers.ToArray();
    }

    /// <summary>The normalizers, applied in order.</summary>
    public IReadOnlyList<Normalizer> Normalizers { get; }

    internal override NormalizedText Normalize(NormalizedText text)
    {
        foreach (var n in Normalizers)
        {
            text = n.Normalize(text);
        }
        return text;
    }
}
