using System.Globalization;
using Microsoft.ML.LowRank.Tokenizers;
using NormalizationForm = System.Text.NormalizationForm;

namespace Microsoft.ML.LowRank.Tests.Tokenizers;

/// <summary>Normalizers, pre-tokenizers, decoders and the BPE merge loop on their own.</summary>
public class ComponentTests
{
    private static string Nfc(string s) => new UnicodeNormalizer(NormalizationForm.FormC).Normalize(s);

    private static string Nfd(string s) => new UnicodeNormalizer(NormalizationForm.FormD).Normalize(s);

    private static string Nfkc(string s) => new UnicodeNormalizer(NormalizationForm.FormKC).Normalize(s);

    private static string Nfkd(string s) => new UnicodeNormalizer(NormalizationForm.FormKD).Normalize(s);

    [Fact]
    public void NormalizesUnicodeWithoutIcu()
    {
        Assert.Equal("e\u0301", Nfd("\u00e9"));
        Assert.Equal("\u00e9", Nfc("e\u0301"));
        Assert.Equal("fi", Nfkc("\ufb01"));
        Assert.Equal("1", Nfkd("\u2460"));
        Assert.Equal("D\u017D", Nfkc("\u01C4"));
        Assert.Equal("DZ\u030C", Nfkd("\u01C4"));
        Assert.Equal("\u1112\u1161\u11AB", Nfd("\uD55C")); // 한
        Assert.Equal("\uD55C", Nfc("\u1112\u1161\u11AB"));
        Assert.Equal("\uAC00", Nfc("\u1100\u1161"));
        Assert.Equal("d\u0323\u0307", Nfd("\u1E0B\u0323")); // canonical reordering
        Assert.Equal("\u1E0D\u0307", Nfc("d\u0307\u0323"));
        Assert.Equal("\u0915\u093C", Nfc("\u0958")); // composition exclusion
        Assert.Equal("\u00C5", Nfc("\u212B")); // singleton
        Assert.Equal("\u00E1\u0301", Nfc("a\u0301\u0301")); // the second accent is blocked
        Assert.Equal("\U0001D157\U0001D165", Nfd("\U0001D15E"));
        Assert.Equal("plain ascii", Nfkc("plain ascii"));
    }

    [Fact]
    public void NormalizationFormsAreConsistentOverTheBmp()
    {
        for (int cp = 0xA0; cp < 0x10000; cp++)
        {
            if (cp is >= 0xD800 and <= 0xDFFF)
            {
                continue;
            }
            string s = ((char)cp).ToString();
            string d = Nfd(s), kd = Nfkd(s);
            Assert.Equal(d, Nfd(Nfc(s)));
            Assert.Equal(d, Nfd(d));
            Assert.Equal(kd, Nfkd(Nfkc(s)));
            Assert.Equal(Nfc(s), Nfc(d));
        }
    }

    [Fact]
    public void LowercasesLikeRust()
    {
        Assert.Equal("\u00e0b i\u0307 \u03c3\u03b1\u03c3 \U00010428", new LowercaseNormalizer().Normalize("\u00c0B \u0130 \u03a3\u0391\u03a3 \U00010400"));
        Assert.Equal("cafe", new BertNormalizer().Normalize("Caf\u00e9"));
        Assert.Equal("caf\u00e9", new BertNormalizer(stripAccents: false).Normalize("Caf\u00e9"));
        Assert.Equal(" \u4e2d  \u56fd ", new BertNormalizer().Normalize("\u4e2d\u56fd"));
    }

    [Fact]
    public void StandInCharsHaveTheirCategory()
    {
        foreach (UnicodeCategory c in Enum.GetValues<UnicodeCategory>())
        {
            char standIn = RegexSplitter.StandIn(c);
            var expected = c switch
            {
                UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator
                    or UnicodeCategory.Control or UnicodeCategory.Surrogate => UnicodeCategory.OtherNotAssigned, // no supplementary chars of these
                _ => c,
            };
            Assert.Equal(expected, CharUnicodeInfo.GetUnicodeCategory(standIn));
        }
    }

    [Theory]
    [InlineData(SplitDelimiterBehavior.Removed, new[] { "the", "final", "countdown" })]
    [InlineData(SplitDelimiterBehavior.Isolated, new[] { "the", "-", "final", "-", "-", "countdown" })]
    [InlineData(SplitDelimiterBehavior.MergedWithPrevious, new[] { "the-", "final-", "-", "countdown" })]
    [InlineData(SplitDelimiterBehavior.MergedWithNext, new[] { "the", "-final", "-", "-countdown" })]
    [InlineData(SplitDelimiterBehavior.Contiguous, new[] { "the", "-", "final", "--", "countdown" })]
    public void SplitsWithEachBehavior(SplitDelimiterBehavior behavior, string[] expected)
    {
        var pieces = new SplitPreTokenizer("-", behavior, isRegex: false).PreTokenize("the-final--countdown");
        Assert.Equal(expected, pieces.Select(p => p.Piece));
        Assert.All(pieces, p => Assert.Equal(p.Piece, "the-final--countdown"[p.Start..p.End]));
    }

    [Fact]
    public void PreTokenizesLikeHuggingFace()
    {
        Assert.Equal(["Hello", ",", "world", "!"], new WhitespacePreTokenizer().PreTokenize("Hello, world!").Select(p => p.Piece));
        Assert.Equal(["Hello,", "world!"], new WhitespaceSplitPreTokenizer().PreTokenize(" Hello,\tworld! ").Select(p => p.Piece));
        Assert.Equal(["abc", "1", "2", "3", "d", "4"], new DigitsPreTokenizer(individualDigits: true).PreTokenize("abc123d4").Select(p => p.Piece));
        Assert.Equal(["abc", "123", "d", "4"], new DigitsPreTokenizer().PreTokenize("abc123d4").Select(p => p.Piece));
        Assert.Equal(["Hey", "friend", "!", "How", "are", "you", "?"], new BertPreTokenizer().PreTokenize("Hey friend!     How are you?").Select(p => p.Piece));
        Assert.Equal(["\u2581Hey", "\u2581friend!"], new MetaspacePreTokenizer().PreTokenize("Hey friend!").Select(p => p.Piece));
        Assert.Equal(["\u2581hello", "\u2581", "\u2581world"], new MetaspacePreTokenizer().PreTokenize("hello  world").Select(p => p.Piece));
        Assert.Equal(["words", "here"], new SplitPreTokenizer(@"\w+", SplitDelimiterBehavior.Removed, invert: true).PreTokenize("words, here").Select(p => p.Piece));

        var byteLevel = new ByteLevelPreTokenizer(addPrefixSpace: true).PreTokenize("Hello wörld");
        Assert.Equal(["\u0120Hello", "\u0120w\u00c3\u00b6rld"], byteLevel.Select(p => p.Piece));
        Assert.Equal([(0, 5), (5, 11)], byteLevel.Select(p => (p.Start, p.End)));
    }

    [Fact]
    public void SplitPatternsOfTheModelFamilies()
    {
        static string[] Split(string pattern, string text) =>
            new SplitPreTokenizer(pattern, SplitDelimiterBehavior.Isolated).PreTokenize(text).Select(p => p.Piece).ToArray();
        Assert.Equal(["abc", " ", "123", "45", "!\n"], Split(SplitPatterns.Llama3, "abc 12345!\n"));
        Assert.Equal(["abc", " ", "1", "2", "3", "4", "5", "!\n"], Split(SplitPatterns.Qwen2, "abc 12345!\n"));
        Assert.Equal(["abc", " 12345", "!", "\n"], Split(SplitPatterns.Gpt2, "abc 12345!\n"));
        Assert.Equal(["Hello", "World's", " path", "//"], Split(SplitPatterns.O200kBase, "HelloWorld's path//")); // case split, contraction kept
        Assert.Equal([" \U00020000\U00020001", " ok"], Split(SplitPatterns.Cl100kBase, " \U00020000\U00020001 ok")); // CJK ext. B letters
    }

    [Fact]
    public void DecodersFollowHuggingFace()
    {
        Assert.Equal(["\ufffd", "\ufffd", "a"], new ByteFallbackDecoder().DecodeChain(["<0xE2>", "<0x82>", "a"]));
        Assert.Equal(["\u20ac", "a"], new ByteFallbackDecoder().DecodeChain(["<0xE2>", "<0x82>", "<0xAC>", "a"]));
        Assert.Equal("hello world", new BpeDecoder().Decode(["hel", "lo</w>", "wor", "ld</w>"]));
        Assert.Equal(["ab", "b"], new StripDecoder('_', 2, 1).DecodeChain(["__ab_", "_b"]));
        Assert.Equal("hello w", new CtcDecoder().Decode(["<pad>", "h", "h", "e", "<pad>", "l", "l", "<pad>", "l", "o", "|", "w"]));
        Assert.Equal("Hey friend!", new MetaspaceDecoder().Decode(["\u2581Hey", "\u2581friend!"]));
        Assert.Equal("h\u00e9", new ByteLevelDecoder().Decode(["h\u00c3", "\u00a9"]));
    }

    [Fact]
    public void HeapAndQuadraticMergeLoopsAgree()
    {
        // Fresh instances so that the per-word caches start empty.
        var small = Tokenizer.FromFile(TestAssets.Tiktoken("cl100k_base"));
        var heap = Tokenizer.FromFile(TestAssets.Tiktoken("cl100k_base"));
        ((TiktokenModel)small.Model).SmallWordLimit = int.MaxValue;
        ((TiktokenModel)heap.Model).SmallWordLimit = 0;
        var gpt2Small = Tokenizer.FromGpt2Files(TestAssets.Gpt2VocabJson, TestAssets.Gpt2Merges);
        var gpt2Heap = Tokenizer.FromGpt2Files(TestAssets.Gpt2VocabJson, TestAssets.Gpt2Merges);
        ((BpeModel)gpt2Small.Model).SmallWordLimit = int.MaxValue;
        ((BpeModel)gpt2Heap.Model).SmallWordLimit = 0;

        var samples = OpenAiTokenizers.Plans.Select(p => p.Sample)
            .Concat(["antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis", new string('z', 300), "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"])
            .Distinct();
        foreach (string s in samples)
        {
            Assert.Equal(OpenAiTokenizers.Get("cl100k_base").EncodeToIds(s), small.EncodeToIds(s));
            Assert.Equal(OpenAiTokenizers.Get("cl100k_base").EncodeToIds(s), heap.EncodeToIds(s));
            Assert.Equal(OpenAiTokenizers.Get("gpt2-files").EncodeToIds(s), gpt2Small.EncodeToIds(s));
            Assert.Equal(OpenAiTokenizers.Get("gpt2-files").EncodeToIds(s), gpt2Heap.EncodeToIds(s));
        }
    }

    [Fact]
    public void RejectsUnsupportedJson()
    {
        Assert.Throws<NotSupportedException>(() => Tokenizer.FromJson("""{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}"""));
        Assert.Throws<FormatException>(() => Tokenizer.FromJson("""{"normalizer": null}"""));
        Assert.Throws<ArgumentException>(() => Tokenizer.FromTiktoken(TestAssets.Tiktoken("r50k_base"), "nope_base"));
    }
}
