using Microsoft.ML.LowRank.Tokenizers;

namespace Microsoft.ML.LowRank.Tests.Tokenizers;

/// <summary>Added/special tokens, truncation and padding.</summary>
public class AddedTokenAndBatchTests
{
    /// <summary>A word-level tokenizer (whitespace split) with added tokens of every flavour.</summary>
    private static Tokenizer WordLevel() => Tokenizer.FromJson("""
        {
          "version": "1.0",
          "added_tokens": [
            {"id": 3, "content": "<mask>", "single_word": false, "lstrip": true, "rstrip": false, "normalized": false, "special": true},
            {"id": 4, "content": "<x>", "single_word": false, "lstrip": false, "rstrip": true, "normalized": false, "special": true},
            {"id": 5, "content": "ab", "single_word": true, "lstrip": false, "rstrip": false, "normalized": false, "special": false},
            {"id": 6, "content": "Foo", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false},
            {"id": 7, "content": "<long_token>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 8, "content": "<long", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
          ],
          "normalizer": {"type": "Lowercase"},
          "pre_tokenizer": {"type": "WhitespaceSplit"},
          "post_processor": null,
          "decoder": null,
          "model": {"type": "WordLevel", "vocab": {"hello": 0, "world": 1, "[UNK]": 2}, "unk_token": "[UNK]"}
        }
        """);

    [Fact]
    public void SplitsAddedTokensOutOfTheText()
    {
        var tok = WordLevel();
        var e = tok.Encode("hello <mask> world");
        Assert.Equal([0, 3, 1], e.Ids);
        Assert.Equal((5, 12), e.Offsets[1]); // lstrip: the space before <mask> belongs to it

        e = tok.Encode("hello<x>   world");
        Assert.Equal([0, 4, 1], e.Ids);
        Assert.Equal((5, 11), e.Offsets[1]); // rstrip: the spaces after <x> belong to it

        Assert.Equal([0, 7, 1], tok.EncodeToIds("hello<long_token>world")); // the longest match wins
        Assert.Equal([0, 8, 2, 1], tok.EncodeToIds("hello<long_tok world"));
    }

    [Fact]
    public void SingleWordTokensOnlyMatchWholeWords()
    {
        var tok = WordLevel();
        Assert.Equal([5, 0], tok.EncodeToIds("ab hello"));
        Assert.Equal([2], tok.EncodeToIds("abhello")); // not a word of its own: the word is unknown
        Assert.Equal([0, 5], tok.EncodeToIds("hello ab"));
    }

    [Fact]
    public void NormalizedAddedTokensMatchTheNormalizedText()
    {
        var tok = WordLevel();
        var e = tok.Encode("FOO Hello");
        Assert.Equal([6, 0], e.Ids);
        Assert.Equal(["Foo", "hello"], e.Tokens);
        Assert.Equal([(0, 3), (4, 9)], e.Offsets);
    }

    [Fact]
    public void DecodeSkipsOnlySpecialTokens()
    {
        var tok = WordLevel();
        var ids = tok.EncodeToIds("hello <mask> ab world");
        Assert.Equal([0, 3, 5, 1], ids);
        Assert.Equal("hello ab world", tok.Decode(ids)); // no decoder: tokens joined with spaces
        Assert.Equal("hello <mask> ab world", tok.Decode(ids, skipSpecialTokens: false));
        Assert.Equal(9, tok.VocabularySize);
    }

    [Fact]
    public void TokenizerBuiltInCodeWorksLikeJson()
    {
        var model = new WordLevelModel(new Dictionary<string, int> { ["hello"] = 0, ["world"] = 1, ["[UNK]"] = 2 });
        var tok = new Tokenizer(model, new LowercaseNormalizer(), new WhitespaceSplitPreTokenizer(),
            TemplatePostProcessor.Parse("<s> $A </s>", "<s> $A </s> $B:1 </s>:1", new Dictionary<string, int> { ["<s>"] = 10, ["</s>"] = 11 }),
            addedTokens: [new AddedToken("<s>", 10), new AddedToken("</s>", 11)]);
        Assert.Equal([10, 0, 1, 11], tok.EncodeToIds("Hello World"));
        var pair = tok.EncodePair("hello", "world");
        Assert.Equal([10, 0, 11, 1, 11], pair.Ids);
        Assert.Equal([0, 0, 0, 1, 1], pair.TypeIds);
        Assert.Equal(2, tok.PostProcessor!.AddedTokenCount(false));
        Assert.Equal(3, tok.PostProcessor!.AddedTokenCount(true));
    }

    [Fact]
    public void RobertaProcessingAddsSeparatorsAndTrimsOffsets()
    {
        var gpt2 = OpenAiTokenizers.Get("gpt2-files");
        var roberta = new Tokenizer(gpt2.Model, preTokenizer: new ByteLevelPreTokenizer(addPrefixSpace: true),
            postProcessor: new RobertaPostProcessor(("</s>", 50258), ("<s>", 50257)), decoder: new ByteLevelDecoder(),
            addedTokens: [new AddedToken("<s>", 50257), new AddedToken("</s>", 50258)]);
        var e = roberta.Encode("Hello world");
        Assert.Equal(["<s>", "\u0120Hello", "\u0120world", "</s>"], e.Tokens);
        Assert.Equal([(0, 0), (0, 5), (6, 11), (0, 0)], e.Offsets); // the added prefix space is kept in the first offset only
        var pair = roberta.EncodePair("Hello", "world");
        Assert.Equal(["<s>", "\u0120Hello", "</s>", "</s>", "\u0120world", "</s>"], pair.Tokens);
        Assert.Equal([0, 0, 0, 0, 0, 0], pair.TypeIds);
        Assert.Equal([null, 0, null, null, 1, null], pair.SequenceIds);
        Assert.Equal(" Hello world", roberta.Decode(e.Ids)); // the byte-level decoder keeps the added prefix space

        var trimming = new Tokenizer(gpt2.Model, preTokenizer: gpt2.PreTokenizer, postProcessor: new ByteLevelPostProcessor(trimOffsets: true, addPrefixSpace: false));
        Assert.Equal([(0, 5), (6, 11)], trimming.Encode("Hello world").Offsets);
    }

    [Fact]
    public void PadsRightAndLeft()
    {
        var bert = WordPieceTests.Bert();
        var right = bert.EncodeBatch(["hello world", "hello"], padding: new PaddingOptions { PadId = 0, PadToken = "[PAD]" });
        Assert.Equal(new[,] { { 2, 5, 6, 3 }, { 2, 5, 3, 0 } }, right.InputIds);
        Assert.Equal(new[,] { { 1, 1, 1, 1 }, { 1, 1, 1, 0 } }, right.AttentionMask);
        Assert.Equal(new[,] { { 0, 0, 0, 0 }, { 0, 0, 0, 0 } }, right.TypeIds);
        Assert.Equal("[PAD]", right.Encodings[1].Tokens[3]);
        Assert.Equal(1, right.Encodings[1].SpecialTokensMask[3]);

        var left = bert.EncodeBatch(["hello world", "hello"], padding: new PaddingOptions { Direction = PaddingDirection.Left });
        Assert.Equal(new[,] { { 2, 5, 6, 3 }, { 0, 2, 5, 3 } }, left.InputIds);
        Assert.Equal(new[,] { { 1, 1, 1, 1 }, { 0, 1, 1, 1 } }, left.AttentionMask);
        Assert.Equal(new long[] { 2, 5, 6, 3, 0, 2, 5, 3 }, left.InputIdsFlat());
        Assert.Equal(new long[] { 1, 1, 1, 1, 0, 1, 1, 1 }, left.AttentionMaskFlat());
        Assert.Equal((0, 0), left.Encodings[1].Offsets[0]);
        Assert.Equal((0, 5), left.Encodings[1].Offsets[2]);
    }

    [Fact]
    public void PadsToAFixedLengthOrAMultiple()
    {
        var bert = WordPieceTests.Bert();
        var fixedLength = bert.EncodeBatch(["hello", "hello world"], padding: new PaddingOptions { Length = 6, PadId = 0 });
        Assert.Equal(2, fixedLength.BatchSize);
        Assert.Equal(6, fixedLength.SequenceLength);
        Assert.Equal(new[,] { { 2, 5, 3, 0, 0, 0 }, { 2, 5, 6, 3, 0, 0 } }, fixedLength.InputIds);

        var multiple = bert.EncodeBatch(["hello", "hello world , world"], padding: new PaddingOptions { PadToMultipleOf = 4 });
        Assert.Equal(8, multiple.SequenceLength); // longest is 6
    }

    [Fact]
    public void TruncatesSingleSequences()
    {
        var bert = WordPieceTests.Bert();
        var batch = bert.EncodeBatch(["hello world !", "hello"], new TruncationOptions { MaxLength = 3 }, new PaddingOptions());
        Assert.Equal(new[,] { { 2, 5, 3 }, { 2, 5, 3 } }, batch.InputIds);

        var left = bert.Encode("hello world !", truncation: new TruncationOptions { MaxLength = 3, Direction = TruncationDirection.Left });
        Assert.Equal([2, 8, 3], left.Ids);

        var noSpecials = bert.Encode("hello world !", addSpecialTokens: false, truncation: new TruncationOptions { MaxLength = 2 });
        Assert.Equal([5, 6], noSpecials.Ids);

        Assert.Throws<ArgumentException>(() => bert.Encode("hello", truncation: new TruncationOptions { MaxLength = 1 }));
    }

    [Fact]
    public void TruncatesPairsLongestFirst()
    {
        var bert = WordPieceTests.Bert();
        // 4 + 2 tokens into a budget of 7 - 3 = 4: the longer loses 2.
        var e = bert.EncodePair("hello world hello world", "world !", truncation: new TruncationOptions { MaxLength = 7 });
        Assert.Equal([2, 5, 6, 3, 6, 8, 3], e.Ids);
        Assert.Equal([0, 0, 0, 0, 1, 1, 1], e.TypeIds);
        // Budget 3: both are cut to the halves, the longer keeping the larger one.
        e = bert.EncodePair("hello world hello world", "world !", truncation: new TruncationOptions { MaxLength = 6 });
        Assert.Equal([2, 5, 6, 3, 6, 3], e.Ids);
        // A short first sequence is kept whole.
        e = bert.EncodePair("hello", "world hello world hello", truncation: new TruncationOptions { MaxLength = 7 });
        Assert.Equal([2, 5, 3, 6, 5, 6, 3], e.Ids);

        e = bert.EncodePair("hello world", "hello world hello", truncation: new TruncationOptions { MaxLength = 6, Strategy = TruncationStrategy.OnlySecond });
        Assert.Equal([2, 5, 6, 3, 5, 3], e.Ids);
        e = bert.EncodePair("hello world hello", "world", truncation: new TruncationOptions { MaxLength = 5, Strategy = TruncationStrategy.OnlyFirst });
        Assert.Equal([2, 5, 3, 6, 3], e.Ids);
        Assert.Throws<ArgumentException>(() => bert.EncodePair("hello", "world hello world", truncation: new TruncationOptions { MaxLength = 4, Strategy = TruncationStrategy.OnlyFirst }));
    }

    [Fact]
    public void BatchesPairs()
    {
        var bert = WordPieceTests.Bert();
        var batch = bert.EncodePairBatch([("hello", "world"), ("hello world", "world !")], padding: new PaddingOptions { PadTypeId = 0 });
        Assert.Equal(new[,] { { 2, 5, 3, 6, 3, 0, 0 }, { 2, 5, 6, 3, 6, 8, 3 } }, batch.InputIds);
        Assert.Equal(new[,] { { 0, 0, 0, 1, 1, 0, 0 }, { 0, 0, 0, 0, 1, 1, 1 } }, batch.TypeIds);
        Assert.Equal(new[,] { { 1, 1, 1, 1, 1, 0, 0 }, { 1, 1, 1, 1, 1, 1, 1 } }, batch.AttentionMask);
    }

    [Fact]
    public void RaggedBatchesHaveNoMatrix()
    {
        var batch = WordPieceTests.Bert().EncodeBatch(["hello world", "hello"]);
        Assert.False(batch.IsRectangular);
        Assert.Equal([2, 5, 6, 3], batch.Encodings[0].Ids);
        Assert.Throws<InvalidOperationException>(() => batch.InputIds);
    }

    [Fact]
    public void LargeBatchesMatchSingleEncodes()
    {
        var gpt2 = OpenAiTokenizers.Get("gpt2-files");
        var texts = Enumerable.Range(0, 40).Select(i => $"Sample {i}: {new string('x', i)} and some more words {i * 7}.").ToArray();
        var batch = gpt2.EncodeBatch(texts, new TruncationOptions { MaxLength = 12 }, new PaddingOptions { PadId = 50256, PadToken = "<|endoftext|>", Direction = PaddingDirection.Left });
        Assert.Equal(40, batch.BatchSize);
        Assert.Equal(12, batch.SequenceLength);
        var ids = batch.InputIds;
        for (int i = 0; i < texts.Length; i++)
        {
            var single = gpt2.EncodeToIds(texts[i]).Take(12).ToArray();
            var row = Enumerable.Range(0, 12).Select(t => ids[i, t]).ToArray();
            Assert.Equal(single, row.Skip(12 - single.Length));
        }
    }
}
