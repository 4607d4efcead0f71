using System.Globalization;
using System.Text.RegularExpressions;

namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>The pre-tokenization split regexes of well-known tokenizers.</summary>
public static partial class SplitPatterns
{
    /// <summary>GPT-2 / r50k_base / p50k_base (also the default of the byte-level pre-tokenizer).</summary>
    public const string Gpt2 = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>cl100k_base (GPT-3.5/GPT-4); LLaMA-3 uses the same pattern.</summary>
    public const string Cl100kBase = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>LLaMA-3's split pattern (the same as <see cref="Cl100kBase"/>).</summary>
    public const string Llama3 = Cl100kBase;

    /// <summary>Qwen2's split pattern: cl100k's with single digits.</summary>
    public const string Qwen2 = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>o200k_base (GPT-4o).</summary>
    public const string O200kBase =
        @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
        + @"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
        + @"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const RegexOptions Options = RegexOptions.CultureInvariant;

    [GeneratedRegex(Gpt2, Options)]
    private static partial Regex Gpt2Regex();

    [GeneratedRegex(Cl100kBase, Options)]
    private static partial Regex Cl100kRegex();

    [GeneratedRegex(Qwen2, Options)]
    private static partial Regex Qwen2Regex();

    [GeneratedRegex(O200kBase, Options)]
    private static partial Regex O200kRegex();

    /// <summary>A regex for a pattern: the source-generated one for the well-known patterns, a compiled one otherwise.</summary>
    internal static Regex GetRegex(string pattern) => pattern switch
    {
        Gpt2 => Gpt2Regex(),
        Cl100kBase => Cl100kRegex(),
        Qwen2 => Qwen2Regex(),
        O200kBase => O200kRegex(),
        _ => new Regex(pattern, Options | RegexOptions.Compiled),
    };
}

/// <summary>
/// Runs a split regex with code-point semantics. .NET regexes see UTF-16 units, so a supplementary-plane char
/// (an emoji, a CJK extension B ideograph) would look like two surrogates to <c>\p{L}</c> and to a single-char
/// class such as <c>[^\r\n\p{L}\p{N}]?</c>. Before matching, each surrogate pair is replaced by one BMP stand-in
/// char of the same general category, and the match positions are mapped back.
/// </summary>
internal sealed class RegexSplitter
{
    private readonly Regex _regex;

    public RegexSplitter(string pattern)
    {
        Pattern = pattern;
        _regex = SplitPatterns.GetRegex(pattern);
    }

    public string Pattern { get; }

    /// <summary>The (start, end) ranges of the matches in <paramref name="text"/>.</summary>
    public void Matches(string text, List<(int Start, int End)> output)
    {
        int firstSurrogate = text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF');
        if (firstSurrogate < 0)
        {
            foreach (ValueMatch m in _regex.EnumerateMatches(text))
            {
                output.Add((m.Index, m.Index + m.Length));
            }
            return;
        }
        // positions[i] = index in text of char i of the stand-in string (positions[len] = text.Length).
        var chars = new char[text.Length];
        var positions = new int[text.Length + 1];
        int n = 0;
        for (int i = 0; i < text.Length;)
        {
            positions[n] = i;
            int cp = text.ConvertToUtf32OrSelf(i, out int len);
            chars[n++] = len == 2 ? StandIn(CharUnicodeInfo.GetUnicodeCategory(cp)) : text[i];
            i += len;
        }
        positions[n] = text.Length;
        string mapped = new(chars, 0, n);
        foreach (ValueMatch m in _regex.EnumerateMatches(mapped))
        {
            output.Add((positions[m.Index], positions[m.Index + m.Length]));
        }
    }

    /// <summary>A BMP char of the given category that none of the usual patterns names literally.</summary>
    internal static char StandIn(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => '\u0181',
        UnicodeCategory.LowercaseLetter => '\u0180',
        UnicodeCategory.TitlecaseLetter => '\u01C5',
        UnicodeCategory.ModifierLetter => '\u02B0',
        UnicodeCategory.OtherLetter => '\u01BB',
        UnicodeCategory.NonSpacingMark => '\u0300',
        UnicodeCategory.SpacingCombiningMark => '\u0903',
        UnicodeCategory.EnclosingMark => '\u20DD',
        UnicodeCategory.DecimalDigitNumber => '\u0660',
        UnicodeCategory.LetterNumber => '\u2160',
        UnicodeCategory.OtherNumber => '\u2460',
        UnicodeCategory.ConnectorPunctuation => '\u203F',
        UnicodeCategory.DashPunctuation => '\u2010',
        UnicodeCategory.OpenPunctuation => '\u2045',
        UnicodeCategory.ClosePunctuation => '\u2046',
        UnicodeCategory.InitialQuotePunctuation => '\u2039',
        UnicodeCategory.FinalQuotePunctuation => '\u203A',
        UnicodeCategory.OtherPunctuation => '\u2016',
        UnicodeCategory.MathSymbol => '\u2200',
        UnicodeCategory.CurrencySymbol => '\u20AC',
        UnicodeCategory.ModifierSymbol => '\u02C2',
        UnicodeCategory.OtherSymbol => '\u00A9',
        UnicodeCategory.Format => '\u00AD',
        UnicodeCategory.PrivateUse => '\uE000',
        _ => '\u0378', // unassigned
    };
}
