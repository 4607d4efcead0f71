using System.Text;
using System.Text.Json;

namespace Microsoft.ML.LowRank.Data;

/// <summary>
/// The lexicon baseline of the UCI sentiment data: the AFINN-165 word valences (-5..5) and emoji valences that the npm
/// package <c>sentiment@5.0.2</c> ships, applied with that package's rules (re-implemented here from its documented
/// behaviour, not copied):
/// <list type="number">
/// <item>Tokens: the text lower-cased, newlines and the characters <c>. , / # ! ? $ % ^ &amp; * ; : { } = _ ` " ~ ( )</c>
/// replaced by spaces, runs of two or more whitespace characters collapsed to one space, trimmed, split on single spaces.
/// Apostrophes and hyphens stay inside tokens ("don't", "well-made").</item>
/// <item>Score: the sum of the valences of the tokens found in the lexicon (multi-word lexicon entries such as
/// "bad luck" can never match a single token, as in the package).</item>
/// <item>Negation: a valence is negated when the previous token is a negator (<c>not</c>, <c>don't</c>, <c>isn't</c>, ...,
/// from the package's <c>negators.json</c>).</item>
/// <item>Decision: positive when the score is &gt;= 0 (the package's benchmark rule: a score of 0, which about a quarter
/// of the sentences get, counts as positive), or &gt; 0 with <c>zeroIsPositive: false</c>.</item>
/// </list>
/// With the package rule this reproduces the package README's accuracies exactly on the 1000 real rows of each source
/// (Amazon 0.726, IMDb 0.765, Yelp 0.696); the stricter "&gt; 0" rule scores higher (0.807, 0.775, 0.800): see
/// docs/default-model.md.
/// </summary>
public sealed class LexiconSentimentScorer
{
    private readonly Dictionary<string, int> _valences;
    private readonly HashSet<string> _negators;

    /// <summary>Creates a scorer from a lexicon and a set of negators.</summary>
    /// <param name="valences">Token to valence (tokens are matched after lower-casing the text).</param>
    /// <param name="negators">Tokens that negate the valence of the next token.</param>
    public LexiconSentimentScorer(IReadOnlyDictionary<string, int> valences, IEnumerable<string> negators)
    {
        ArgumentNullException.ThrowIfNull(valences);
        ArgumentNullException.ThrowIfNull(negators);
        _valences = new Dictionary<string, int>(valences, StringComparer.Ordinal);
        _negators = new HashSet<string>(negators, StringComparer.Ordinal);
    }

    /// <summary>The number of lexicon entries.</summary>
    public int Count => _valences.Count;

    /// <summary>
    /// The scorer of <c>sentiment@5.0.2</c>: <c>languages/en/labels.json</c> (AFINN-165, 3382 entries) plus
    /// <c>build/emoji.json</c> (767 emoji), and <c>languages/en/negators.json</c>; fetched on first use and hash-checked.
    /// </summary>
    /// <returns>The scorer.</returns>
    public static LexiconSentimentScorer LoadAfinn()
    {
        var valences = ReadObject(KnownAssets.File(KnownAssets.Sentiment, "languages/en/labels.json"));
        foreach (var (k, v) in ReadObject(KnownAssets.File(KnownAssets.Sentiment, "build/emoji.json"))) valences[k] = v;
        var negators = ReadObject(KnownAssets.File(KnownAssets.Sentiment, "languages/en/negators.json")).Where(kv => kv.Value != 0).Select(kv => kv.Key);
        return new LexiconSentimentScorer(valences, negators);
    }

    private static Dictionary<string, int> ReadObject(string path)
    {
        using var stream = File.OpenRead(path);
        using var doc = JsonDocument.Parse(stream);
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: expected a JSON object of word to valence.");
        var d = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int v))
                throw new InvalidDataException($"{path}: the value of '{p.Name}' is not an integer.");
            d[p.Name] = v;
        }
        return d;
    }

    /// <summary>The package's tokenisation (see the class remarks).</summary>
    /// <param name="text">The text.</param>
    /// <returns>The tokens (a single empty token for an empty text, as in the package).</returns>
    public static string[] Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var chars = text.ToLowerInvariant().ToCharArray();
        for (int i = 0; i < chars.Length; i++)
            if (chars[i] == '\n' || IsStripped(chars[i])) chars[i] = ' ';
        var sb = new StringBuilder(chars.Length);
        for (int i = 0; i < chars.Length;)
        {
            if (IsJsWhiteSpace(chars[i]) && i + 1 < chars.Length && IsJsWhiteSpace(chars[i + 1]))
            {
                while (i < chars.Length && IsJsWhiteSpace(chars[i])) i++;
                sb.Append(' ');
            }
            else sb.Append(chars[i++]);
        }
        int start = 0, end = sb.Length;
        while (start < end && IsJsWhiteSpace(sb[start])) start++;
        while (end > start && IsJsWhiteSpace(sb[end - 1])) end--;
        return sb.ToString(start, end - start).Split(' ');
    }

    private static bool IsStripped(char c) => c is '.' or ',' or '/' or '#' or '!' or '?' or '$' or '%' or '^' or '&' or '*'
        or ';' or ':' or '{' or '}' or '=' or '_' or '`' or '"' or '~' or '(' or ')';

    /// <summary>JavaScript's <c>\s</c> (and <c>String.prototype.trim</c>) whitespace set.</summary>
    private static bool IsJsWhiteSpace(char c) => c is '\t' or '\n' or '\v' or '\f' or '\r' or ' ' or '\u00A0' or '\u1680'
        or (>= '\u2000' and <= '\u200A') or '\u2028' or '\u2029' or '\u202F' or '\u205F' or '\u3000' or '\uFEFF';

    /// <summary>The lexicon score of a text: the sum of its tokens' valences, each negated after a negator.</summary>
    /// <param name="text">The text.</param>
    /// <returns>The score.</returns>
    public int Score(string text)
    {
        var tokens = Tokenize(text);
        int score = 0;
        for (int i = 0; i < tokens.Length; i++)
        {
            if (!_valences.TryGetValue(tokens[i], out int v)) continue;
            score += i > 0 && _negators.Contains(tokens[i - 1]) ? -v : v;
        }
        return score;
    }

    /// <summary>Whether a text is predicted positive.</summary>
    /// <param name="text">The text.</param>
    /// <param name="zeroIsPositive">Whether a score of 0 counts as positive (the package's rule; default true).</param>
    /// <returns>The prediction.</returns>
    public bool PredictPositive(string text, bool zeroIsPositive = true)
    {
        int s = Score(text);
        return zeroIsPositive ? s >= 0 : s > 0;
    }

    /// <summary>The fraction of sentences whose prediction equals their label.</summary>
    /// <param name="sentences">The sentences (at least one).</param>
    /// <param name="zeroIsPositive">Whether a score of 0 counts as positive.</param>
    /// <returns>The accuracy in [0, 1].</returns>
    public double Accuracy(IEnumerable<SentimentSentence> sentences, bool zeroIsPositive = true)
    {
        ArgumentNullException.ThrowIfNull(sentences);
        int n = 0, correct = 0;
        foreach (var s in sentences)
        {
            n++;
            if (PredictPositive(s.Text, zeroIsPositive) == s.Label) correct++;
        }
        if (n == 0) throw new ArgumentException("No sentences to score.", nameof(sentences));
        return (double)correct / n;
    }
}
