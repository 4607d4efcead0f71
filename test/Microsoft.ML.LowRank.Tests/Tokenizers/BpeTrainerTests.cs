using System.Text.Json;
using Microsoft.ML.LowRank.Tokenizers;

namespace Microsoft.ML.LowRank.Tests.Tokenizers;

/// <summary>The byte-level BPE trainer: hand-checked merges, a naive reference, exact round trips, the written tokenizer.json.</summary>
public class BpeTrainerTests
{
    private const char Space = '\u0120'; // 'Ġ', the byte-level symbol of ' '

    private static ByteLevelBpeModelData Train(IEnumerable<string> texts, int vocabularySize, long minFrequency = 2)
    {
        var trainer = new ByteLevelBpeTrainer(new ByteLevelBpeTrainerOptions { VocabularySize = vocabularySize, MinFrequency = minFrequency });
        trainer.Feed(texts);
        return trainer.Train();
    }

    [Fact]
    public void TinyCorpusMergesByHand()
    {
        // Words (GPT-2 pre-tokenizer): "ab" x1, "Ġab" x2, "Ġabc" x1.
        // Pair counts: (a,b) = 4, (Ġ,a) = 3, (b,c) = 1 -> merge "ab".
        // Then (Ġ,ab) = 3, (ab,c) = 1 -> merge "Ġab". Then only (Ġab,c) = 1 < min frequency 2: stop.
        var data = Train(["ab ab ab abc"], vocabularySize: 1000);
        Assert.Equal(new[] { ("a", "b"), (Space + "", "ab") }, data.Merges);
        Assert.Equal(3 + 256 + 2, data.Vocabulary.Count);
        Assert.Equal(["<|endoftext|>", "<pad>", "<s>"], data.Vocabulary.Take(3));
        Assert.Equal("ab", data.Vocabulary[259]);
        Assert.Equal(Space + "ab", data.Vocabulary[260]);

        // With min frequency 1 the third merge is (Ġab, c).
        var all = Train(["ab ab ab abc"], vocabularySize: 1000, minFrequency: 1);
        Assert.Equal(new[] { ("a", "b"), (Space + "", "ab"), (Space + "ab", "c") }, all.Merges);

        // The vocabulary size caps the merges.
        var capped = Train(["ab ab ab abc"], vocabularySize: 260, minFrequency: 1);
        Assert.Equal(new[] { ("a", "b") }, capped.Merges);

        // The tokenizer built from it segments the training words as the trainer did.
        var tok = data.ToTokenizer();
        var enc = tok.Encode("ab abc", addSpecialTokens: false);
        Assert.Equal(["ab", Space + "ab", "c"], enc.Tokens);
        Assert.Equal([259, 260, tok.TokenToId("c")!.Value], enc.Ids);
    }

    [Fact]
    public void TiesGoToTheSmallerLeftThenRightId()
    {
        // "xy" and "Ġyx": (x,y), (Ġ,y), (y,x) all occur once. Byte symbols are sorted by code point after the 3 specials:
        // '!'..'~' are ids 3..96 (x = 90, y = 91), and 'Ġ' (U+0120) comes after the 188 symbols below U+0100: id 223.
        var data = Train(["xy yx"], vocabularySize: 1000, minFrequency: 1);
        var tok = data.ToTokenizer();
        Assert.Equal(90, tok.TokenToId("x"));
        Assert.Equal(91, tok.TokenToId("y"));
        Assert.Equal(223, tok.TokenToId(Space.ToString()));
        Assert.Equal(new[] { ("x", "y"), ("y", "x"), (Space + "", "yx") }, data.Merges);
    }

    [Fact]
    public void MatchesANaiveRecountEveryStepReference()
    {
        var rng = new Random(7);
        var words = Enumerable.Range(0, 400).Select(_ => new string(Enumerable.Range(0, rng.Next(1, 9)).Select(_ => "abcde"[Math.Min(4, (int)(rng.NextDouble() * rng.NextDouble() * 6))]).ToArray()));
        var text = string.Join(" ", words) + " x-y, z.";
        var trainer = new ByteLevelBpeTrainer(new ByteLevelBpeTrainerOptions { VocabularySize = 3 + 256 + 80, MinFrequency = 2 });
        trainer.Feed(text);
        var data = trainer.Train();
        var expected = NaiveMerges(trainer.WordCounts, data.Vocabulary.Take(3 + 256).ToList(), 80, 2);
        Assert.True(expected.Count >= 40, $"the corpus should allow many merges, got {expected.Count}");
        Assert.Equal(expected, data.Merges);
    }

    /// <summary>The textbook algorithm: recount every pair of every word at each step, take the most frequent (ties: smaller ids).</summary>
    private static List<(string, string)> NaiveMerges(IReadOnlyDictionary<string, long> wordCounts, List<string> vocab, int maxMerges, long minFrequency)
    {
        var words = wordCounts.Select(kv => (Symbols: kv.Key.Select(c => c.ToString()).ToList(), Count: kv.Value)).ToList();
        var ids = new Dictionary<string, int>();
        for (int i = 0; i < vocab.Count; i++) ids[vocab[i]] = i;
        var merges = new List<(string, string)>();
        while (merges.Count < maxMerges)
        {
            var counts = new Dictionary<(string, string), long>();
            foreach (var (s, c) in words)
                for (int k = 0; k + 1 < s.Count; k++) counts[(s[k], s[k + 1])] = counts.GetValueOrDefault((s[k], s[k + 1])) + c;
            if (counts.Count == 0) break;
            var best = counts.OrderByDescending(kv => kv.Value).ThenBy(kv => ids[kv.Key.Item1]).ThenBy(kv => ids[kv.Key.Item2]).First();
            if (best.Value < minFrequency) break;
            merges.Add(best.Key);
            string merged = best.Key.Item1 + best.Key.Item2;
            if (!ids.ContainsKey(merged)) ids[merged] = ids.Count;
            foreach (var (s, _) in words)
            {
                for (int k = 0; k + 1 < s.Count; k++)
                {
                    if (s[k] == best.Key.Item1 && s[k + 1] == best.Key.Item2)
                    {
                        s[k] = merged;
                        s.RemoveAt(k + 1);
                    }
                }
            }
        }
        return merges;
    }

    private static readonly string[] s_unicodeCorpus =
    [
        "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs.",
        "Café, naïve, résumé, coöperate — “curly quotes” and ‘single’ ones… 50% off!",
        "日本語のテキストと中文文本。 Emoji: 😀🎉👍🏽 and flags 🇫🇷.",
        "Tabs\tand  double  spaces,\nnew lines\r\n and trailing spaces   ",
        "Numbers 1234567890 and 3.14159, e-mail a.b@c.org, URL https://example.org/x?y=1&z=2",
    ];

    [Fact]
    public void EncodeDecodeIsTheIdentityOnUnicodeText()
    {
        var data = Train(Enumerable.Repeat(s_unicodeCorpus, 3).SelectMany(x => x), vocabularySize: 500);
        Assert.True(data.Merges.Count > 50);
        var tok = data.ToTokenizer();
        string[] texts =
        [
            .. s_unicodeCorpus,
            "Unseen: Ελληνικά, русский, العربية, עברית, हिन्दी, 한국어, 🦀🧪, \u0000\u0007 control chars, \uFEFF BOM",
            "   leading spaces and a lone surrogate-free astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
            "",
            " ",
            "\n\n\n",
        ];
        foreach (var text in texts)
        {
            var ids = tok.EncodeToIds(text, addSpecialTokens: false);
            Assert.All(ids, id => Assert.InRange(id, 3, data.Vocabulary.Count - 1));
            Assert.Equal(text, tok.Decode(ids));
        }
        // Frequent words became single tokens.
        Assert.Single(tok.EncodeToIds(" the", addSpecialTokens: false));
        Assert.True(tok.CountTokens(s_unicodeCorpus[0], addSpecialTokens: false) < s_unicodeCorpus[0].Length / 2);
    }

    [Fact]
    public void WrittenTokenizerJsonLoadsAndAgrees()
    {
        var data = Train(s_unicodeCorpus, vocabularySize: 400);
        string folder = Path.Combine(Path.GetTempPath(), "lowrank-bpe-" + Guid.NewGuid().ToString("N"));
        try
        {
            string path = data.Save(folder);
            using (var doc = JsonDocument.Parse(File.ReadAllText(path)))
            {
                var root = doc.RootElement;
                Assert.Equal("BPE", root.GetProperty("model").GetProperty("type").GetString());
                Assert.Equal("ByteLevel", root.GetProperty("pre_tokenizer").GetProperty("type").GetString());
                Assert.Equal("ByteLevel", root.GetProperty("decoder").GetProperty("type").GetString());
                Assert.Equal(data.Merges.Count, root.GetProperty("model").GetProperty("merges").GetArrayLength());
                Assert.Equal(data.Vocabulary.Count, root.GetProperty("model").GetProperty("vocab").EnumerateObject().Count());
                var added = root.GetProperty("added_tokens").EnumerateArray().Select(a => (a.GetProperty("content").GetString(), a.GetProperty("id").GetInt32(), a.GetProperty("special").GetBoolean())).ToList();
                Assert.Equal([("<|endoftext|>", 0, true), ("<pad>", 1, true), ("<s>", 2, true)], added);
            }
            var loaded = Tokenizer.FromDirectory(folder);
            var inMemory = data.ToTokenizer();
            Assert.Equal(data.Vocabulary.Count, loaded.VocabularySize);
            for (int i = 0; i < data.Vocabulary.Count; i++) Assert.Equal(i, loaded.TokenToId(data.Vocabulary[i]));
            foreach (var text in s_unicodeCorpus) Assert.Equal(inMemory.EncodeToIds(text), loaded.EncodeToIds(text));
            // Special tokens are matched literally, never split, and skipped when decoding unless asked.
            var ids = loaded.EncodeToIds("the fox<|endoftext|><s>the dog", addSpecialTokens: false);
            Assert.Contains(0, ids);
            Assert.Contains(2, ids);
            Assert.True(loaded.IsSpecialToken(0) && loaded.IsSpecialToken(1) && loaded.IsSpecialToken(2));
            Assert.Equal("the foxthe dog", loaded.Decode(ids));
            Assert.Equal("the fox<|endoftext|><s>the dog", loaded.Decode(ids, skipSpecialTokens: false));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void BadOptionsAreRejected()
    {
        Assert.Contains("VocabularySize", Assert.Throws<ArgumentOutOfRangeException>(() => new ByteLevelBpeTrainer(new ByteLevelBpeTrainerOptions { VocabularySize = 100 })).Message);
        Assert.Contains("duplicates", Assert.Throws<ArgumentException>(() => new ByteLevelBpeTrainer(new ByteLevelBpeTrainerOptions { SpecialTokens = ["<a>", "<a>"] })).Message);
        Assert.Contains("MinFrequency", Assert.Throws<ArgumentOutOfRangeException>(() => new ByteLevelBpeTrainer(new ByteLevelBpeTrainerOptions { MinFrequency = 0 })).Message);
    }
}
