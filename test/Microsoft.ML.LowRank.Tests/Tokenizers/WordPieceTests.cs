using Microsoft.ML.LowRank.Tokenizers;

namespace Microsoft.ML.LowRank.Tests.Tokenizers;

/// <summary>BERT-style WordPiece on a hand-made tokenizer.json; every expected id is worked out by hand.</summary>
public class WordPieceTests
{
    // 0 [PAD] 1 [UNK] 2 [CLS] 3 [SEP] 4 [MASK] 5 hello 6 world 7 , 8 ! 9 un 10 ##aff 11 ##able 12 the 13 cafe 14 中 15 国
    // 16 a 17 ##b 18 ##c 19 . 20 what 21 ' 22 s 23 naive 24 ##s 25 ? 26 $
    internal static readonly string[] Vocab =
    [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", ",", "!", "un", "##aff", "##able", "the", "cafe", "中", "国",
        "a", "##b", "##c", ".", "what", "'", "s", "naive", "##s", "?", "$",
    ];

    internal static string Json(bool templateProcessing = false)
    {
        string vocab = "{" + string.Join(", ", Vocab.Select((t, i) => $"\"{t}\": {i}")) + "}";
        string added = string.Join(", ", new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Select((t, i) =>
            $$"""{"id": {{i}}, "content": "{{t}}", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}"""));
        string post = templateProcessing
            ? """
              {"type": "TemplateProcessing",
               "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
               "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                        {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
               "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}}
              """
            : """{"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}""";
        return $$"""
        {
          "version": "1.0", "truncation": null, "padding": null,
          "added_tokens": [{{added}}],
          "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
          "pre_tokenizer": {"type": "BertPreTokenizer"},
          "post_processor": {{post}},
          "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
          "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 10,
                    "vocab": {{vocab}}
          }
        }
        """;
    }

    internal static Tokenizer Bert(bool templateProcessing = false) => Tokenizer.FromJson(Json(templateProcessing));

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void LowercasesAndSplitsPunctuation(bool template)
    {
        var e = Bert(template).Encode("Hello, World!");
        Assert.Equal([2, 5, 7, 6, 8, 3], e.Ids);
        Assert.Equal(["[CLS]", "hello", ",", "world", "!", "[SEP]"], e.Tokens);
        Assert.Equal([(0, 0), (0, 5), (5, 6), (7, 12), (12, 13), (0, 0)], e.Offsets);
        Assert.Equal([0, 0, 0, 0, 0, 0], e.TypeIds);
        Assert.Equal([1, 1, 1, 1, 1, 1], e.AttentionMask);
        Assert.Equal([1, 0, 0, 0, 0, 1], e.SpecialTokensMask);
    }

    [Fact]
    public void SplitsIntoLongestPiecesWithContinuationPrefix()
    {
        var e = Bert().Encode("unaffable", addSpecialTokens: false);
        Assert.Equal([9, 10, 11], e.Ids);
        Assert.Equal(["un", "##aff", "##able"], e.Tokens);
        Assert.Equal([(0, 2), (2, 5), (5, 9)], e.Offsets);
        Assert.Equal([16, 17, 18, 17, 18], Bert().EncodeToIds("abcbc", addSpecialTokens: false)); // a ##b ##c ##b ##c
    }

    [Fact]
    public void StripsAccentsAndKeepsOffsetsOnTheOriginal()
    {
        var tok = Bert();
        var e = tok.Encode("Café", addSpecialTokens: false);
        Assert.Equal([13], e.Ids);
        Assert.Equal([(0, 4)], e.Offsets);

        e = tok.Encode("CAFÉS", addSpecialTokens: false); // cafe ##s
        Assert.Equal([13, 24], e.Ids);
        Assert.Equal([(0, 4), (4, 5)], e.Offsets);

        Assert.Equal([23], tok.EncodeToIds("naïve", addSpecialTokens: false));
        Assert.Equal([23], tok.EncodeToIds("nai\u0308ve", addSpecialTokens: false)); // combining diaeresis
    }

    [Fact]
    public void SplitsCjkIdeographs()
    {
        var e = Bert().Encode("the中国", addSpecialTokens: false);
        Assert.Equal([12, 14, 15], e.Ids);
        Assert.Equal([(0, 3), (3, 4), (4, 5)], e.Offsets);
    }

    [Fact]
    public void UnknownAndTooLongWordsBecomeUnk()
    {
        var tok = Bert();
        Assert.Equal([1], tok.EncodeToIds("xyz", addSpecialTokens: false));
        Assert.Equal([1], tok.EncodeToIds("abx", addSpecialTokens: false)); // a ##b then nothing for x: the whole word is [UNK]
        Assert.Equal([1], tok.EncodeToIds("abcbcbcbcbc", addSpecialTokens: false)); // 11 chars > max_input_chars_per_word (10)
        var e = tok.Encode("hello xyz", addSpecialTokens: false);
        Assert.Equal(["hello", "[UNK]"], e.Tokens);
        Assert.Equal([(0, 5), (6, 9)], e.Offsets);
    }

    [Fact]
    public void CleansControlCharsAndWhitespace()
    {
        var tok = Bert();
        Assert.Equal([5, 6], tok.EncodeToIds("hello\tworld\u0000\n", addSpecialTokens: false));
        var e = tok.Encode("hel\u200Blo", addSpecialTokens: false); // zero-width space (Cf) is removed
        Assert.Equal([5], e.Ids);
        Assert.Equal([(0, 6)], e.Offsets);
        Assert.Equal([20, 21, 22], tok.EncodeToIds("what's", addSpecialTokens: false));
    }

    [Fact]
    public void MatchesAddedTokensBeforeNormalization()
    {
        var tok = Bert();
        var e = tok.Encode("Hello [MASK] world");
        Assert.Equal([2, 5, 4, 6, 3], e.Ids);
        Assert.Equal((6, 12), e.Offsets[2]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EncodesPairsWithTokenTypeIds(bool template)
    {
        var e = Bert(template).EncodePair("Hello", "World!");
        Assert.Equal([2, 5, 3, 6, 8, 3], e.Ids);
        Assert.Equal([0, 0, 0, 1, 1, 1], e.TypeIds);
        Assert.Equal([(0, 0), (0, 5), (0, 0), (0, 5), (5, 6), (0, 0)], e.Offsets);
        Assert.Equal([null, 0, null, 1, 1, null], e.SequenceIds);
        Assert.Equal([1, 0, 1, 0, 0, 1], e.SpecialTokensMask);

        var plain = Bert(template).EncodePair("Hello", "World!", addSpecialTokens: false);
        Assert.Equal([5, 6, 8], plain.Ids);
        Assert.Equal([0, 1, 1], plain.TypeIds);
    }

    [Fact]
    public void DecodesWordPieces()
    {
        var tok = Bert();
        Assert.Equal("hello, world!", tok.Decode([2, 5, 7, 6, 8, 3]));
        Assert.Equal("[CLS] hello, world! [SEP]", tok.Decode([2, 5, 7, 6, 8, 3], skipSpecialTokens: false));
        Assert.Equal("unaffable", tok.Decode([9, 10, 11]));
        // As in current HF tokenizers, the cleanup runs on each token, so " ' " (three tokens) is not joined back.
        Assert.Equal("what ' s", tok.Decode(tok.EncodeToIds("what's")));
        Assert.Equal("hello world?", tok.Decode(tok.EncodeToIds("Hello WORLD ?")));
    }

    [Fact]
    public void ExposesTheVocabulary()
    {
        var tok = Bert();
        Assert.Equal(27, tok.VocabularySize);
        Assert.Equal(2, tok.TokenToId("[CLS]"));
        Assert.Equal(10, tok.TokenToId("##aff"));
        Assert.Null(tok.TokenToId("nope"));
        Assert.Equal("##aff", tok.IdToToken(10));
        Assert.Null(tok.IdToToken(999));
        Assert.True(tok.IsSpecialToken(3));
        Assert.False(tok.IsSpecialToken(5));
        Assert.Equal(6, tok.CountTokens("Hello, World!"));
        Assert.Equal(4, tok.CountTokens("Hello, World!", addSpecialTokens: false));
    }

    [Fact]
    public void LoadsFromBertVocabTxt()
    {
        string dir = Directory.CreateTempSubdirectory("lowrank-bert-").FullName;
        try
        {
            File.WriteAllLines(Path.Combine(dir, "vocab.txt"), Vocab);
            var tok = Tokenizer.FromDirectory(dir);
            Assert.Equal([2, 5, 7, 6, 8, 3], tok.EncodeToIds("Hello, World!"));
            Assert.Equal([2, 5, 3, 6, 8, 3], tok.EncodePair("Hello", "World!").Ids);
            Assert.Equal("hello, world!", tok.Decode([2, 5, 7, 6, 8, 3]));

            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), Json());
            Assert.Equal([9, 10, 11], Tokenizer.FromDirectory(dir).EncodeToIds("unaffable", addSpecialTokens: false));
            Assert.Equal([9, 10, 11], Tokenizer.FromFile(Path.Combine(dir, "tokenizer.json")).EncodeToIds("unaffable", addSpecialTokens: false));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
