using System.Text.Json;

namespace Microsoft.ML.LowRank.Data;

/// <summary>One labelled sentence of the UCI Sentiment Labelled Sentences data set.</summary>
/// <param name="Text">The sentence, with surrounding whitespace trimmed.</param>
/// <param name="Label">True for a positive sentence (class 1), false for a negative one (class 0).</param>
/// <param name="Source">The source: <c>amazon</c>, <c>imdb</c> or <c>yelp</c>.</param>
public sealed record SentimentSentence(string Text, bool Label, string Source);

/// <summary>
/// The UCI Sentiment Labelled Sentences (Kotzias et al., "From Group to Individual Labels using Deep Features", KDD 2015;
/// CC BY 4.0): 1000 sentences from each of Amazon product reviews, IMDb movie reviews and Yelp restaurant reviews, 500
/// positive and 500 negative each. Read from the copy in the npm package <c>sentiment@5.0.2</c>
/// (<c>test/fixtures/{amazon,imdb,yelp}.json</c>, rows <c>{"text","class"}</c>), whose files end with an empty sentinel
/// row (<c>{"text":"","class":null}</c>) that is dropped here.
/// </summary>
public static class UciSentiment
{
    /// <summary>The three sources, in the order <see cref="Load"/> returns them.</summary>
    public static IReadOnlyList<string> Sources { get; } = ["amazon", "imdb", "yelp"];

    /// <summary>Loads the sentences of one source, or of all three (amazon, imdb, yelp, in file order).</summary>
    /// <param name="source">amazon, imdb or yelp; null for all.</param>
    /// <returns>The sentences.</returns>
    /// <exception cref="ArgumentException">An unknown source.</exception>
    public static IReadOnlyList<SentimentSentence> Load(string? source = null)
    {
        if (source is not null && !Sources.Contains(source))
            throw new ArgumentException($"Unknown sentiment source '{source}'; known: {string.Join(", ", Sources)}.", nameof(source));
        var result = new List<SentimentSentence>(3000);
        foreach (var s in source is null ? Sources : [source])
            result.AddRange(LoadFile(KnownAssets.File(KnownAssets.Sentiment, $"test/fixtures/{s}.json"), s));
        return result;
    }

    /// <summary>
    /// Reads one fixture file: a JSON array of <c>{"text": string, "class": 0|1}</c>. A row with an empty text and a null
    /// class (the package's trailing sentinel) is skipped; any other row without a 0/1 class or a non-empty text is an error.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="source">The source name stored in each sentence.</param>
    /// <returns>The sentences.</returns>
    /// <exception cref="InvalidDataException">A malformed row (the message names the row).</exception>
    public static IReadOnlyList<SentimentSentence> LoadFile(string path, string source)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(source);
        using var stream = File.OpenRead(path);
        using var doc = JsonDocument.Parse(stream);
        if (doc.RootElement.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{path}: expected a JSON array of {{\"text\",\"class\"}} rows.");
        var result = new List<SentimentSentence>(1000);
        int row = 0;
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            string? text = e.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            bool hasClass = e.TryGetProperty("class", out var c) && c.ValueKind == JsonValueKind.Number;
            if (string.IsNullOrWhiteSpace(text) && !hasClass)
            {
                row++;
                continue; // the sentinel row
            }
            if (string.IsNullOrWhiteSpace(text)) throw new InvalidDataException($"{path}: row {row} has no text.");
            if (!hasClass || !c.TryGetInt32(out int label) || label is not (0 or 1))
                throw new InvalidDataException($"{path}: row {row} has no class 0 or 1.");
            result.Add(new SentimentSentence(text.Trim(), label == 1, source));
            row++;
        }
        return result;
    }
}
