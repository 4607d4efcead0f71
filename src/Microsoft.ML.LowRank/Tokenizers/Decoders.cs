using System.Globalization;
using System.Text.RegularExpressions;

namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>
/// Turns a list of token strings back into text. Decoders are chained (<see cref="SequenceDecoder"/>), each mapping
/// the list of strings to a new list; the final list is concatenated.
/// </summary>
public abstract class Decoder
{
    /// <summary>Transforms the token strings; the result is concatenated (or fed to the next decoder).</summary>
    public abstract IReadOnlyList<string> DecodeChain(IReadOnlyList<string> tokens);

    /// <summary>Decodes token strings to text.</summary>
    public string Decode(IReadOnlyList<string> tokens) => string.Concat(DecodeChain(tokens));
}

/// <summary>Maps GPT-2's byte-level chars back to bytes and decodes them as UTF-8 (invalid bytes become U+FFFD).</summary>
public sealed class ByteLevelDecoder : Decoder
{
    /// <inheritdoc/>
    public override IReadOnlyList<string> DecodeChain(IReadOnlyList<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (string token in tokens)
        {
            bool all = true;
            foreach (char c in token)
            {
                if (ByteLevelAlphabet.CharToByte(c) < 0)
                {
                    all = false;
                    break;
                }
            }
            if (all)
            {
                foreach (char c in token)
                {
                    bytes.Add((byte)ByteLevelAlphabet.CharToByte(c));
                }
            }
            else
            {
                bytes.AddRange(System.Text.Encoding.UTF8.GetBytes(token));
            }
        }
        return new[] { System.Text.Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes)) };
    }
}

/// <summary>Replaces "▁" by spaces; in the first token, the prepended "▁" is dropped.</summary>
public sealed class MetaspaceDecoder : Decoder
{
    /// <summary>Creates a metaspace decoder.</summary>
    public MetaspaceDecoder(char replacement = '\u2581', PrependScheme prependScheme = PrependScheme.Always)
    {
        Replacement = replacement;
        PrependScheme = prependScheme;
    }

    /// <summary>The char that stands for a space.</summary>
    public char Replacement { get; }

    /// <summary>The prepend scheme of the matching pre-tokenizer.</summary>
    public PrependScheme PrependScheme { get; }

    /// <inheritdoc/>
    public override IReadOnlyList<string> DecodeChain(IReadOnlyList<string> tokens)
    {
        var result = new string[tokens.Count];
        for (int i = 0; i < tokens.Count; i++)
        {
            var sb = new System.Text.StringBuilder(tokens[i].Length);
            foreach (char c in tokens[i])
            {
                if (c != Replacement)
                {
                    sb.Append(c);
                }
                else if (i != 0 || PrependScheme == PrependScheme.Never)
                {
                    sb.Append(' ');
                }
            }
            result[i] = sb.ToString();
        }
        return result;
    }
}

/// <summary>Joins WordPiece tokens: "##" pieces are glued to the previous one, others are preceded by a space.</summary>
public sealed class WordPieceDecoder : Decoder
{
    /// <summary>Creates a WordPiece decoder.</summary>
    /// <param name="prefix">The continuation prefix.</param>
    /// <param name="cleanup">Whether to remove the spaces tokenization put before punctuation and contractions.</param>
    public WordPieceDecoder(string prefix = "##", bool cleanup = true)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        Prefix = prefix;
        Cleanup = cleanup;
    }

    /// <summary>The continuation prefix.</summary>
    public string Prefix { get; }

    /// <summary>Whether tokenization spaces are cleaned up.</summary>
    public bool Cleanup { get; }

    /// <inheritdoc/>
    public override IReadOnlyList<string> DecodeChain(IReadOnlyList<string> tokens)
    {
        var result = new string[tokens.Count];
        for (int i = 0; i < tokens.Count; i++)
        {
            string token = tokens[i];
            if (i != 0)
            {
                token = token.StartsWith(Prefix, StringComparison.Ordinal) ? token.Substring(Prefix.Length) : " " + token;
            }
            result[i] = Cleanup ? CleanupSpaces(token) : token;
        }
        return result;
    }

    /// <summary>Removes spaces before punctuation and in common English contractions.</summary>
    internal static string CleanupSpaces(string s) => s
        .Replace(" .", ".", StringComparison.Ordinal)
        .Replace(" ?", "?", StringComparison.Ordinal)
        .Replace(" !", "!", StringComparison.Ordinal)
        .Replace(" ,", ",", StringComparison.Ordinal)
        .Replace(" ' ", "'", StringComparison.Ordinal)
        .Replace(" n't", "n't", StringComparison.Ordinal)
        .Replace(" 'm", "'m", StringComparison.Ordinal)
        .Replace(" do not", " don't", StringComparison.Ordinal)
        .Replace(" 's", "'s", StringComparison.Ordinal)
        .Replace(" 've", "'ve", StringComparison.Ordinal)
        .Replace(" 're", "'re", StringComparison.Ordinal);
}

/// <summary>Replaces the end-of-word suffix (e.g. "&lt;/w&gt;") by a space (nothing for the last token).</summary>
public sealed class BpeDecoder : Decoder
{
    /// <summary>Creates a BPE suffix decoder.</summary>
    public BpeDecoder(string suffix = "</w>")
    {
        ArgumentException.ThrowIfNullOrEmpty(suffix);
        Suffix = suffix;
    }

    /// <summary>The end-of-word suffix.</summary>
    public string Suffix { get; }

    /// <inheritdoc/>
    public override IReadOnlyList<string> DecodeChain(IReadOnlyList<string> tokens)
    {
        var result = new string[tokens.Count];
        for (int i = 0; i < tokens.Count; i++)
        {
            result[i] = tokens[i].Replace(Suffix, i == tokens.Count - 1 ? "" : " ", StringComparison.Ordinal);
        }
        return result;
    }
}

/// <summary>Replaces a string (or regex) in every token.</summary>
public sealed class ReplaceDecoder : Decoder
{
    private readonly Regex? _regex;

    /// <summary>Creates a replace decoder.</summary>
    public ReplaceDecoder(string pattern, string content, bool isRegex = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(pattern);
        ArgumentNullException.ThrowIfNull(content);
        Pattern = pattern;
        Content = content;
        _regex = isRegex ? new Regex(pattern, RegexOptions.CultureInvariant) : null;
    }

    /// <summary>The pattern.</summary>
    public string Pattern { get; }

    /// <summary>The replacement.</summary>
    public string Content { get; }

    /// <inheritdoc/>
    public override IReadOnlyList<string> DecodeChain(IReadOnlyList<string> tokens) =>
        tokens.Select(t => _regex is null ? t.Replace(Pattern, Content, StringComparison.Ordinal) : _regex.Replace(t, Content.Replace("$", "$$", StringComparison.Ordinal))).ToArray();
}

/// <summary>Turns runs of byte tokens (<c>&lt;0xE2&gt;</c>) back into the UTF-8 text they encode.</summary>
public sealed class ByteFallbackDecoder : Decoder
{
    /// <inheritdoc/>
    public override IReadOnlyList<string> DecodeChain(IReadOnlyList<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        var pending = new List<byte>();
        foreach (string token in tokens)
        {
            if (token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
                && byte.TryParse(token.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out byte b))
            {
                pending.Add(b);
                continue;
            }
            Flush(pending, result);
            result.Add(token);
        }
        Flush(pending, result);
        return result;
    }

    private static void Flush(List<byte> pending, List<string> result)
    {
        if (pending.Count == 0)
        {
            return;
        }
        var strict = new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true);
        try
        {
            result.Add(strict.GetString(pending.ToArray()));
        }
        catch (System.Text.DecoderFallbackException)
        {
            // Invalid UTF-8: one replacement char per byte.
            for (int i = 0; i < pending.Count; i++)
            {
                result.Add("\uFFFD");
            }
        }
        pending.Clear();
    }
}

/// <summary>Concatenates all tokens into one.</summary>
public sealed class FuseDecoder : Decoder
{
    /// <inheritdoc/>
    public override IReadOnlyList<string> DecodeChain(IReadOnlyList<string> tokens) => new[] { string.Concat(tokens) };
}

/// <summary>Removes up to <see cref="Start"/> leading and <see cref="Stop"/> trailing occurrences of a char from each token.</summary>
public sealed class StripDecoder : Decoder
{
    /// <summary>Creates a strip decoder.</summary>
    public StripDecoder(char content, int start, int stop)
    {
        Content = content;
        Start = start;
        Stop = stop;
    }

    /// <summary>The char to strip.</summary>
    public char Content { get; }

    /// <summary>How many leading chars may be stripped.</summary>
    public int Start { get; }

    /// <summary>How many trailing chars may be stripped.</summary>
    public int Stop { get; }

    /// <inheritdoc/>
    public override IReadOnlyList<string> DecodeChain(IReadOnlyList<string> tokens)
    {
        var result = new string[tokens.Count];
        for (int i = 0; i < tokens.Count; i++)
        {
            string t = tokens[i];
            int s = 0;
            while (s < Start && s < t.Length && t[s] == Content)
            {
                s++;
            }
            int e = t.Length;
            while (t.Length - e < Stop && e > s && t[e - 1] == Content)
            {
                e--;
            }
            result[i] = t.Substring(s, e - s);
        }
        return result;
    }
}

/// <summary>The CTC decoder: collapses repeats, removes the pad token and turns the word delimiter into spaces.</summary>
public sealed class CtcDecoder : Decoder
{
    /// <summary>Creates a CTC decoder.</summary>
    public CtcDecoder(string padToken = "<pad>", string wordDelimiterToken = "|", bool cleanup = true)
    {
        PadToken = padToken;
        WordDelimiterToken = wordDelimiterToken;
        Cleanup = cleanup;
    }

    /// <summary>The pad (blank) token.</summary>
    public string PadToken { get; }

    /// <summary>The word delimiter token.</summary>
    public string WordDelimiterToken { get; }

    /// <summary>Whether spaces are cleaned up and the delimiter replaced.</summary>
    public bool Cleanup { get; }

    /// <inheritdoc/>
    public override IReadOnlyList<string> DecodeChain(IReadOnlyList<string> tokens)
    {
        var result = new List<string>();
        string? previous = null;
        foreach (string token in tokens)
        {
            if (token == previous)
            {
                continue;
            }
            previous = token;
            string s = token.Replace(PadToken, "", StringComparison.Ordinal);
            if (Cleanup)
            {
                s = WordPieceDecoder.CleanupSpaces(s).Replace(WordDelimiterToken, " ", StringComparison.Ordinal);
            }
            if (s.Length > 0)
            {
                result.Add(s);
            }
        }
        return result;
    }
}

/// <summary>Applies several decoders in order.</summary>
public sealed class SequenceDecoder : Decoder
{
    /// <summary>Creates a sequence of decoders.</summary>
    public SequenceDecoder(IEnumerable<Decoder> decoders)
    {
        ArgumentNullException.ThrowIfNull(decoders);
        Decoders = decoders.ToArray();
    }

    /// <summary>The decoders, applied in order.</summary>
    public IReadOnlyList<Decoder> Decoders { get; }

    /// <inheritdoc/>
    public override IReadOnlyList<string> DecodeChain(IReadOnlyList<string> tokens)
    {
        foreach (var d in Decoders)
        {
            tokens = d.DecodeChain(tokens);
        }
        return tokens;
    }
}
