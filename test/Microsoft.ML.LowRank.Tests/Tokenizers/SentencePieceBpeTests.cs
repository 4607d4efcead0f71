using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Tokenizers;

namespace Microsoft.ML.LowRank.Tests.Tokenizers;

/// <summary>
/// LLaMA-2/Mistral-style SentencePiece BPE (metaspace "▁", byte fallback, ranked merges) on a hand-made
/// tokenizer.json, in the layouts Hugging Face has used for it. Expected ids are worked out by hand.
/// </summary>
public class SentencePieceBpeTests
{
    // 0 <unk> 1 <s> 2 </s> 3..258 <0x00>..<0xFF> then:
    private static readonly string[] Pieces = ["▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "ll", "ell", "▁hell", "▁hello", "or", "▁w", "▁wor", "ld", "▁world", "he"];

    private static int Id(string piece) => 259 + Array.IndexOf(Pieces, piece);

    private static int Byte(int b) => 3 + b;

    // Ranked merges. "h e" ranks after "▁ h", so "▁he" must become ▁h + e, not ▁ + he.
    private static readonly string[] Merges =
    [
        "▁ h", "l l", "e ll", "▁h ell", "▁hell o", "o r", "▁ w", "▁w or", "l d", "▁wor ld", "h e",
    ];

    private static readonly JsonNode LlamaDecoder = JsonNode.Parse("""
        {"type": "Sequence", "decoders": [
          {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
          {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
        """)!;

    /// <summary>The tokenizer in one of its layouts.</summary>
    /// <param name="layout">"metaspace-first" (current HF conversion), "legacy" (Prepend + Replace normalizer, no pre-tokenizer), "metaspace-always" (older conversion, Metaspace decoder).</param>
    /// <param name="byteFallback">Whether unknown chars fall back to byte tokens.</param>
    private static Tokenizer Create(string layout, bool byteFallback = true)
    {
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (int b = 0; b < 256; b++)
        {
            vocab[$"<0x{b:X2}>"] = Byte(b);
        }
        foreach (string p in Pieces)
        {
            vocab[p] = Id(p);
        }
        var added = new JsonArray();
        foreach (var (content, id) in new[] { ("<unk>", 0), ("<s>", 1), ("</s>", 2) })
        {
            added.Add(new JsonObject
            {
                ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = true,
            });
        }
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            ["post_processor"] = JsonNode.Parse("""
                {"type": "TemplateProcessing",
                 "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                 "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                          {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                 "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
                """),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = "<unk>", ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = true, ["byte_fallback"] = byteFallback,
                ["vocab"] = vocab, ["merges"] = new JsonArray(Merges.Select(m => (JsonNode)m!).ToArray()),
            },
        };
        switch (layout)
        {
            case "metaspace-first":
                root["normalizer"] = null;
                root["pre_tokenizer"] = JsonNode.Parse("""{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}""");
                root["decoder"] = LlamaDecoder.DeepClone();
                break;
            case "legacy":
                root["normalizer"] = JsonNode.Parse("""
                    {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
                    """);
                root["pre_tokenizer"] = null;
                root["decoder"] = LlamaDecoder.DeepClone();
                break;
            case "metaspace-always":
                root["normalizer"] = null;
                root["pre_tokenizer"] = JsonNode.Parse("""{"type": "Metaspace", "replacement": "▁", "add_prefix_space": true}""");
                root["decoder"] = JsonNode.Parse("""
                    {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "▁", "add_prefix_space": true}]}
                    """);
                break;
            default:
                throw new ArgumentException(layout);
        }
        return Tokenizer.FromJson(root.ToJsonString());
    }

    public static TheoryData<string> Layouts => new() { "metaspace-first", "legacy", "metaspace-always" };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void EncodesWordsWithMetaspace(string layout)
    {
        var e = Create(layout).Encode("hello world");
        Assert.Equal([1, Id("▁hello"), Id("▁world")], e.Ids);
        Assert.Equal(["<s>", "▁hello", "▁world"], e.Tokens);
        Assert.Equal([(0, 0), (0, 5), (5, 11)], e.Offsets);
        Assert.Equal([Id("▁hello")], Create(layout).EncodeToIds("hello", addSpecialTokens: false));
        // A leading space already provides the "▁"; the legacy normalizer prepends one anyway (as sentencepiece's legacy mode).
        int[] leadingSpace = layout == "legacy" ? [Id("▁"), Id("▁hello")] : [Id("▁hello")];
        Assert.Equal(leadingSpace, Create(layout).EncodeToIds(" hello", addSpecialTokens: false));
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void AppliesMergesByRank(string layout)
    {
        // ▁ h e: "▁ h" (rank 0) beats "h e" (rank 10), and "▁h e" is no merge.
        Assert.Equal([Id("▁h"), Id("e")], Create(layout).EncodeToIds("he", addSpecialTokens: false));
        // ▁ w o r l d: "o r" (5), "▁ w" (6), "▁w or" (7), "l d" (8), "▁wor ld" (9).
        Assert.Equal([Id("▁world")], Create(layout).EncodeToIds("world", addSpecialTokens: false));
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void FallsBackToBytesForUnknownChars(string layout)
    {
        var tok = Create(layout);
        var e = tok.Encode("héd", addSpecialTokens: false); // é = C3 A9
        Assert.Equal([Id("▁h"), Byte(0xC3), Byte(0xA9), Id("d")], e.Ids);
        Assert.Equal(["▁h", "<0xC3>", "<0xA9>", "d"], e.Tokens);
        Assert.Equal([(0, 1), (1, 2), (1, 2), (2, 3)], e.Offsets); // the prepended "▁" aligns with the first char
        Assert.Equal("héd", tok.Decode(e.Ids));
        Assert.Equal([Id("▁"), Byte(0xF0), Byte(0x9F), Byte(0x98), Byte(0x80)], tok.EncodeToIds("😀", addSpecialTokens: false));
        Assert.Equal("😀 hello", tok.Decode(tok.EncodeToIds("😀 hello")));
    }

    [Fact]
    public void FusesUnknownCharsWithoutByteFallback()
    {
        var tok = Create("metaspace-first", byteFallback: false);
        var e = tok.Encode("hééd", addSpecialTokens: false);
        Assert.Equal([Id("▁h"), 0, Id("d")], e.Ids);
        Assert.Equal([(0, 1), (1, 3), (3, 4)], e.Offsets);
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public void DecodesWithOrWithoutSpecialTokens(string layout)
    {
        var tok = Create(layout);
        Assert.Equal("hello world", tok.Decode([1, Id("▁hello"), Id("▁world")]));
        Assert.Equal("<s> hello world", tok.Decode([1, Id("▁hello"), Id("▁world")], skipSpecialTokens: false));
    }

    [Theory]
    [InlineData("metaspace-first", new[] { 1, 271, 2, 264, 272, 275 })] // "world" after </s> gets no "▁": w + or + ld
    [InlineData("metaspace-always", new[] { 1, 271, 2, 276 })]
    [InlineData("legacy", new[] { 1, 271, 2, 276 })] // each text segment is normalized (and prefixed) on its own
    public void PrependSchemeDecidesTheDummyPrefixAfterAddedTokens(string layout, int[] expected)
    {
        Assert.Equal([1, Id("▁hello"), 2, Id("w"), Id("or"), Id("ld")], new[] { 1, 271, 2, 264, 272, 275 });
        Assert.Equal(expected, Create(layout).EncodeToIds("hello</s>world"));
    }

    [Fact]
    public void EncodesPairsWithTheTemplate()
    {
        var e = Create("metaspace-first").EncodePair("hello", "world");
        Assert.Equal([1, Id("▁hello"), 1, Id("▁world")], e.Ids);
        Assert.Equal([0, 0, 1, 1], e.TypeIds);
    }
}
