using System.Globalization;

namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>What happens to the delimiters when a pre-tokenizer splits text.</summary>
public enum SplitDelimiterBehavior
{
    /// <summary>Delimiters are dropped.</summary>
    Removed,

    /// <summary>Each delimiter is a piece of its own.</summary>
    Isolated,

    /// <summary>A delimiter is appended to the piece before it.</summary>
    MergedWithPrevious,

    /// <summary>A delimiter is prepended to the piece after it.</summary>
    MergedWithNext,

    /// <summary>Consecutive delimiters form one piece.</summary>
    Contiguous,
}

/// <summary>When the metaspace pre-tokenizer prepends its replacement char.</summary>
public enum PrependScheme
{
    /// <summary>Before every piece of text (after each added token too).</summary>
    Always,

    /// <summary>Only before the text at the very start of the input.</summary>
    First,

    /// <summary>Never.</summary>
    Never,
}

/// <summary>
/// Splits normalized text into pieces ("words") that the model tokenizes independently. The set of pre-tokenizers
/// is closed.
/// </summary>
public abstract class PreTokenizer
{
    private protected PreTokenizer()
    {
    }

    /// <summary>Splits a string, returning each piece with its char range in <paramref name="text"/>.</summary>
    public IReadOnlyList<(string Piece, int Start, int End)> PreTokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var pieces = new List<NormalizedText>();
        Split(NormalizedText.FromOriginal(text, 0, text.Length), pieces);
        return pieces.Select(p => (p.Text, p.OriginalStart, p.OriginalEnd)).ToArray();
    }

    internal abstract void Split(NormalizedText text, List<NormalizedText> output);

    /// <summary>Cuts <paramref name="text"/> at the given delimiter ranges following <paramref name="behavior"/>.</summary>
    private protected static void SplitAt(NormalizedText text, List<(int Start, int End)> delimiters, SplitDelimiterBehavior behavior, bool invert, List<NormalizedText> output)
    {
        // Build the alternating list of (start, end, isDelimiter) regions covering the text.
        var regions = new List<(int Start, int End, bool IsDelimiter)>(delimiters.Count * 2 + 1);
        int pos = 0;
        foreach (var (s, e) in delimiters)
        {
            if (s > pos)
            {
                regions.Add((pos, s, invert));
            }
            if (e > s)
            {
                regions.Add((s, e, !invert));
            }
            pos = e;
        }
        if (pos < text.Length)
        {
            regions.Add((pos, text.Length, invert));
        }

        switch (behavior)
        {
            case SplitDelimiterBehavior.Removed:
                foreach (var r in regions)
                {
                    if (!r.IsDelimiter)
                    {
                        output.Add(text.Slice(r.Start, r.End));
                    }
                }
                break;
            case SplitDelimiterBehavior.Isolated:
                foreach (var r in regions)
                {
                    output.Add(text.Slice(r.Start, r.End));
                }
                break;
            case SplitDelimiterBehavior.Contiguous:
                for (int i = 0; i < regions.Count; i++)
                {
                    int start = regions[i].Start, end = regions[i].End;
                    while (regions[i].IsDelimiter && i + 1 < regions.Count && regions[i + 1].IsDelimiter)
                    {
                        end = regions[++i].End;
                    }
                    output.Add(text.Slice(start, end));
                }
                break;
            case SplitDelimiterBehavior.MergedWithPrevious:
            {
                int start = -1, end = -1;
                foreach (var r in regions)
                {
                    if (r.IsDelimiter && start >= 0)
                    {
                        output.Add(text.Slice(start, r.End));
                        start = -1;
                    }
                    else if (r.IsDelimiter)
                    {
                        output.Add(text.Slice(r.Start, r.End));
                    }
                    else
                    {
                        if (start >= 0)
                        {
                            output.Add(text.Slice(start, end));
                        }
                        start = r.Start;
                        end = r.End;
                    }
                }
                if (start >= 0)
                {
                    output.Add(text.Slice(start, end));
                }
                break;
            }
            case SplitDelimiterBehavior.MergedWithNext:
            {
                int pending = -1;
                foreach (var r in regions)
                {
                    if (r.IsDelimiter)
                    {
                        if (pending >= 0)
                        {
                            output.Add(text.Slice(pending, r.Start));
                        }
                        pending = r.Start;
                    }
                    else
                    {
                        output.Add(text.Slice(pending >= 0 ? pending : r.Start, r.End));
                        pending = -1;
                    }
                }
                if (pending >= 0)
                {
                    output.Add(text.Slice(pending, text.Length));
                }
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(behavior));
        }
    }

    /// <summary>Delimiter ranges made of the chars (code points) matching <paramref name="isDelimiter"/>, one range per char.</summary>
    private protected static List<(int, int)> CharRanges(string s, Func<int, bool> isDelimiter)
    {
        var list = new List<(int, int)>();
        for (int i = 0; i < s.Length;)
        {
            int cp = s.ConvertToUtf32OrSelf(i, out int len);
            if (isDelimiter(cp))
            {
                list.Add((i, i + len));
            }
            i += len;
        }
        return list;
    }
}

/// <summary>
/// GPT-2's byte-level pre-tokenizer: optionally adds a leading space, splits with the GPT-2 regex (or another
/// pattern), then rewrites each piece as the byte-level chars of its UTF-8 bytes.
/// </summary>
public sealed class ByteLevelPreTokenizer : PreTokenizer
{
    private readonly RegexSplitter? _splitter;

    /// <summary>Creates a byte-level pre-tokenizer.</summary>
    /// <param name="addPrefixSpace">Add a space at the start of the text when there is none.</param>
    /// <param name="useRegex">Split with <paramref name="pattern"/> before mapping to bytes.</param>
    /// <param name="pattern">The split pattern; GPT-2's by default.</param>
    public ByteLevelPreTokenizer(bool addPrefixSpace = false, bool useRegex = true, string pattern = SplitPatterns.Gpt2)
    {
        AddPrefixSpace = addPrefixSpace;
        UseRegex = useRegex;
        _splitter = useRegex ? new RegexSplitter(pattern) : null;
    }

    /// <summary>Whether a space is added at the start of the text.</summary>
    public bool AddPrefixSpace { get; }

    /// <summary>Whether the text is split with the regex.</summary>
    public bool UseRegex { get; }

    internal override void Split(NormalizedText text, List<NormalizedText> output)
    {
        if (AddPrefixSpace && text.Length > 0 && text.Text[0] != ' ')
        {
            text = PrependNormalizer.Prepend(text, " ");
        }
        if (_splitter is null)
        {
            if (text.Length > 0)
            {
                output.Add(ByteLevelAlphabet.Transform(text));
            }
            return;
        }
        var matches = new List<(int Start, int End)>();
        _splitter.Matches(text.Text, matches);
        // Isolated split: matches and the (rare) gaps between them are pieces.
        int pos = 0;
        foreach (var (start, end) in matches)
        {
            if (start > pos)
            {
                output.Add(ByteLevelAlphabet.TransformRange(text, pos, start));
            }
            if (end > start)
            {
                output.Add(ByteLevelAlphabet.TransformRange(text, start, end));
            }
            pos = end;
        }
        if (pos < text.Length)
        {
            output.Add(ByteLevelAlphabet.TransformRange(text, pos, text.Length));
        }
    }
}

/// <summary>Splits on a regex or literal string.</summary>
public sealed class SplitPreTokenizer : PreTokenizer
{
    private readonly RegexSplitter? _splitter;

    /// <summary>Creates a split pre-tokenizer.</summary>
    /// <param name="pattern">The delimiter: a regex or a literal string (see <paramref name="isRegex"/>).</param>
    /// <param name="behavior">What to do with the delimiters.</param>
    /// <param name="invert">Whether the matches are the pieces rather than the delimiters.</param>
    /// <param name="isRegex">Whether <paramref name="pattern"/> is a regex.</param>
    public SplitPreTokenizer(string pattern, SplitDelimiterBehavior behavior, bool invert = false, bool isRegex = true)
    {
        ArgumentException.ThrowIfNullOrEmpty(pattern);
        Pattern = pattern;
        Behavior = behavior;
        Invert = invert;
        IsRegex = isRegex;
        _splitter = isRegex ? new RegexSplitter(pattern) : null;
    }

    /// <summary>The delimiter pattern.</summary>
    public string Pattern { get; }

    /// <summary>What happens to the delimiters.</summary>
    public SplitDelimiterBehavior Behavior { get; }

    /// <summary>Whether the matches are the pieces rather than the delimiters.</summary>
    public bool Invert { get; }

    /// <summary>Whether <see cref="Pattern"/> is a regex.</summary>
    public bool IsRegex { get; }

    internal override void Split(NormalizedText text, List<NormalizedText> output)
    {
        var matches = new List<(int, int)>();
        if (_splitter is not null)
        {
            _splitter.Matches(text.Text, matches);
        }
        else
        {
            string s = text.Text;
            for (int i = s.IndexOf(Pattern, StringComparison.Ordinal); i >= 0; i = s.IndexOf(Pattern, i + Pattern.Length, StringComparison.Ordinal))
            {
                matches.Add((i, i + Pattern.Length));
            }
        }
        SplitAt(text, matches, Behavior, Invert, output);
    }
}

/// <summary>
/// SentencePiece's metaspace pre-tokenizer: replaces spaces by "▁", prepends "▁" following the
/// <see cref="PrependScheme"/>, and optionally splits so that each "▁" starts a new piece.
/// </summary>
public sealed class MetaspacePreTokenizer : PreTokenizer
{
    /// <summary>Creates a metaspace pre-tokenizer.</summary>
    public MetaspacePreTokenizer(char replacement = '\u2581', PrependScheme prependScheme = PrependScheme.Always, bool split = true)
    {
        Replacement = replacement;
        PrependScheme = prependScheme;
        SplitOnReplacement = split;
    }

    /// <summary>The char spaces are replaced with.</summary>
    public char Replacement { get; }

    /// <summary>When the replacement char is prepended.</summary>
    public PrependScheme PrependScheme { get; }

    /// <summary>Whether each replacement char starts a new piece.</summary>
    public bool SplitOnReplacement { get; }

    internal override void Split(NormalizedText text, List<NormalizedText> output)
    {
        string rep = Replacement.ToString();
        text = ReplaceNormalizer.ReplaceAll(text, null, " ", rep);
        bool prepend = PrependScheme switch
        {
            PrependScheme.Always => true,
            PrependScheme.First => text.OriginalStart == 0,
            _ => false,
        };
        if (prepend && text.Length > 0 && text.Text[0] != Replacement)
        {
            text = PrependNormalizer.Prepend(text, rep);
        }
        if (!SplitOnReplacement)
        {
            if (text.Length > 0)
            {
                output.Add(text);
            }
            return;
        }
        SplitAt(text, CharRanges(text.Text, c => c == Replacement), SplitDelimiterBehavior.MergedWithNext, false, output);
    }
}

/// <summary>BERT's basic tokenization: split on whitespace (dropped) and isolate each punctuation char.</summary>
public sealed class BertPreTokenizer : PreTokenizer
{
    internal override void Split(NormalizedText text, List<NormalizedText> output)
    {
        var words = new List<NormalizedText>();
        SplitAt(text, CharRanges(text.Text, UnicodeData.IsWhiteSpace), SplitDelimiterBehavior.Removed, false, words);
        foreach (var w in words)
        {
            SplitAt(w, CharRanges(w.Text, UnicodeData.IsBertPunctuation), SplitDelimiterBehavior.Isolated, false, output);
        }
    }
}

/// <summary>Splits on whitespace, dropping it.</summary>
public sealed class WhitespaceSplitPreTokenizer : PreTokenizer
{
    internal override void Split(NormalizedText text, List<NormalizedText> output) =>
        SplitAt(text, CharRanges(text.Text, UnicodeData.IsWhiteSpace), SplitDelimiterBehavior.Removed, false, output);
}

/// <summary>Splits into runs of word chars and runs of other non-space chars (the regex <c>\w+|[^\w\s]+</c>).</summary>
public sealed class WhitespacePreTokenizer : PreTokenizer
{
    private static readonly RegexSplitter s_splitter = new(@"\w+|[^\w\s]+");

    internal override void Split(NormalizedText text, List<NormalizedText> output)
    {
        var matches = new List<(int, int)>();
        s_splitter.Matches(text.Text, matches);
        SplitAt(text, matches, SplitDelimiterBehavior.Removed, invert: true, output);
    }
}

/// <summary>Splits on punctuation chars.</summary>
public sealed class PunctuationPreTokenizer : PreTokenizer
{
    /// <summary>Creates a punctuation pre-tokenizer.</summary>
    public PunctuationPreTokenizer(SplitDelimiterBehavior behavior = SplitDelimiterBehavior.Isolated) => Behavior = behavior;

    /// <summary>What happens to punctuation.</summary>
    public SplitDelimiterBehavior Behavior { get; }

    internal override void Split(NormalizedText text, List<NormalizedText> output) =>
        SplitAt(text, CharRanges(text.Text, UnicodeData.IsBertPunctuation), Behavior, false, output);
}

/// <summary>Splits digits from the rest, each digit alone or runs of digits together.</summary>
public sealed class DigitsPreTokenizer : PreTokenizer
{
    /// <summary>Creates a digits pre-tokenizer.</summary>
    public DigitsPreTokenizer(bool individualDigits = false) => IndividualDigits = individualDigits;

    /// <summary>Whether each digit is its own piece.</summary>
    public bool IndividualDigits { get; }

    internal override void Split(NormalizedText text, List<NormalizedText> output) =>
        SplitAt(text, CharRanges(text.Text, static c => CharUnicodeInfo.GetUnicodeCategory(c) is UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber),
            IndividualDigits ? SplitDelimiterBehavior.Isolated : SplitDelimiterBehavior.Contiguous, false, output);
}

/// <summary>Splits on one delimiter char, dropping it.</summary>
public sealed class CharDelimiterSplitPreTokenizer : PreTokenizer
{
    /// <summary>Creates a char-delimiter pre-tokenizer.</summary>
    public CharDelimiterSplitPreTokenizer(char delimiter) => Delimiter = delimiter;

    /// <summary>The delimiter.</summary>
    public char Delimiter { get; }

    internal override void Split(NormalizedText text, List<NormalizedText> output) =>
        SplitAt(text, CharRanges(text.Text, c => c == Delimiter), SplitDelimiterBehavior.Removed, false, output);
}

/// <summary>Applies several pre-tokenizers in order, each to every piece of the previous one.</summary>
public sealed class SequencePreTokenizer : PreTokenizer
{
    /// <summary>Creates a sequence of pre-tokenizers.</summary>
    public SequencePreTokenizer(IEnumerable<PreTokenizer> preTokenizers)
    {
        ArgumentNullException.ThrowIfNull(preTokenizers);
        PreTokenizers = preTokenizers.ToArray();
    }

    /// <summary>The pre-tokenizers, applied in order.</summary>
    public IReadOnlyList<PreTokenizer> PreTokenizers { get; }

    internal override void Split(NormalizedText text, List<NormalizedText> output)
    {
        var current = new List<NormalizedText> { text };
        foreach (var p in PreTokenizers)
        {
            var next = new List<NormalizedText>(current.Count * 2);
            foreach (var piece in current)
            {
                p.Split(piece, next);
            }
            current = next;
        }
        output.AddRange(current);
    }
}
