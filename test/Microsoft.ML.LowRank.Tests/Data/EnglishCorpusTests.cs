using Microsoft.ML.LowRank.Data;

namespace Microsoft.ML.LowRank.Tests.Data;

/// <summary>The pre-training corpus: paragraph unwrapping, chapter splitting, the validation hold-out, the real packages.</summary>
public class EnglishCorpusTests
{
    [Fact]
    public void UnwrapsHardWrappedParagraphs()
    {
        Assert.Equal("Call me Ishmael. Some years ago.", EnglishCorpus.Unwrap("Call me Ishmael. Some years\nago."));
        Assert.Equal("one two three\n\nfour five", EnglishCorpus.Unwrap("  one two\r\nthree\n\n\n  four\nfive  \n"));
        Assert.Equal("", EnglishCorpus.Unwrap("\n \n"));
    }

    [Fact]
    public void SplitsChaptersAtTheirHeadings()
    {
        var docs = EnglishCorpus.SplitChapters("CHAPTER 1. Start.\n\nFirst line\nwrapped.\n\nCHAPTER 2. Next.\n\nSecond.\nCHAPTER 10 is not a heading\n");
        Assert.Equal(["moby-dick/chapter-001", "moby-dick/chapter-002"], docs.Select(d => d.Id));
        Assert.Equal("CHAPTER 1. Start.\n\nFirst line wrapped.", docs[0].Text);
        Assert.Equal("CHAPTER 2. Next.\n\nSecond. CHAPTER 10 is not a heading", docs[1].Text);
        Assert.Throws<InvalidDataException>(() => EnglishCorpus.SplitChapters("no chapters here"));
    }

    [Fact]
    public void HoldsOutEvery25thDocumentOfEachSource()
    {
        var docs = Enumerable.Range(0, 60).Select(i => new TextDocument($"a/{i}", "x"))
            .Concat(Enumerable.Range(0, 20).Select(i => new TextDocument($"b/{i}", "y"))).ToList();
        var (train, validation) = EnglishCorpus.Split(docs);
        Assert.Equal(["a/12", "a/37", "b/12"], validation.Select(d => d.Id));
        Assert.Equal(77, train.Count);
        Assert.Empty(train.Intersect(validation));
    }

    [Fact]
    public void LoadsMobyDickAndTheStateOfTheUnion()
    {
        var moby = EnglishCorpus.MobyDick();
        Assert.Equal(135, moby.Count);
        Assert.StartsWith("CHAPTER 1. Loomings.\n\nCall me Ishmael. Some years ago—never mind how long precisely—having little or no money", moby[0].Text);
        Assert.DoesNotContain("\n", moby[0].Text.Replace("\n\n", "", StringComparison.Ordinal));
        var sotu = EnglishCorpus.StateOfTheUnion();
        Assert.Equal(233, sotu.Count);
        Assert.Equal("sotu/1790_george_washington_n", sotu[0].Id);
        Assert.StartsWith("Mr. Speaker, Mr. President, and distinguished Members of the House and Senate", sotu.Single(d => d.Id == "sotu/1989_george_bush_r").Text);
        long words = moby.Concat(sotu).Sum(d => (long)d.Text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.InRange(words, 1_950_000, 2_050_000); // 208 k (Moby Dick, wc -w) + 1.79 M (the package's README)
        var (train, validation) = EnglishCorpus.Split([.. moby, .. sotu]);
        // Positions 12, 37, ...: 5 of 135 chapters and 9 of 233 addresses.
        Assert.Equal(5 + 9, validation.Count);
        Assert.Equal(135 + 233 - 14, train.Count);
        Assert.Equal(["moby-dick/chapter-013", "moby-dick/chapter-038", "moby-dick/chapter-063", "moby-dick/chapter-088", "moby-dick/chapter-113"],
            validation.Where(d => d.Id.StartsWith("moby", StringComparison.Ordinal)).Select(d => d.Id));
    }
}
