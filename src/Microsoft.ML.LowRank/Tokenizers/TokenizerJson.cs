using System.Text;
using System.Text.Json;

namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>Small JSON reading helpers.</summary>
internal static class JsonSerializerHelpers
{
    /// <summary>Reads a JSON object of token to id.</summary>
    public static Dictionary<string, int> ReadVocabulary(Stream json)
    {
        using var doc = JsonDocument.Parse(json);
        return ReadVocabulary(doc.RootElement);
    }

    public static Dictionary<string, int> ReadVocabulary(JsonElement element)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw new FormatException("The vocabulary must be a JSON object of token to id.");
        }
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in element.EnumerateObject())
        {
            vocab[p.Name] = p.Value.GetInt32();
        }
        return vocab;
    }

    public static string? GetString(this JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    public static bool GetBool(this JsonElement e, string name, bool defaultValue) =>
        e.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : defaultValue;

    public static bool? GetNullableBool(this JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;

    public static int? GetInt(this JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;

    public static JsonElement? GetObject(this JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.Object or JsonValueKind.Array ? v : null;

    public static char GetChar(this JsonElement e, string name, char defaultValue)
    {
        string? s = e.GetString(name);
        return string.IsNullOrEmpty(s) ? defaultValue : s[0];
    }
}

/// <summary>Reads Hugging Face's <c>tokenizer.json</c> format.</summary>
internal static class TokenizerJson
{
    public static Tokenizer Read(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new FormatException("tokenizer.json must contain a JSON object.");
        }
        var model = root.GetObject("model") is JsonElement m ? ReadModel(m) : throw new FormatException("tokenizer.json has no model.");
        var normalizer = root.GetObject("normalizer") is JsonElement n ? ReadNormalizer(n) : null;
        var preTokenizer = root.GetObject("pre_tokenizer") is JsonElement p ? ReadPreTokenizer(p) : null;
        var postProcessor = root.GetObject("post_processor") is JsonElement pp ? ReadPostProcessor(pp) : null;
        var decoder = root.GetObject("decoder") is JsonElement d ? ReadDecoder(d) : null;
        var added = new List<AddedToken>();
        if (root.GetObject("added_tokens") is JsonElement a)
        {
            foreach (var t in a.EnumerateArray())
            {
                string content = t.GetString("content") ?? throw new FormatException("An added token has no content.");
                int id = t.GetInt("id") ?? throw new FormatException($"The added token '{content}' has no id.");
                bool special = t.GetBool("special", false);
                added.Add(new AddedToken(content, id, special)
                {
                    SingleWord = t.GetBool("single_word", false),
                    LStrip = t.GetBool("lstrip", false),
                    RStrip = t.GetBool("rstrip", false),
                    Normalized = t.GetBool("normalized", !special),
                });
            }
        }
        return new Tokenizer(model, normalizer, preTokenizer, postProcessor, decoder, added)
        {
            Truncation = root.GetObject("truncation") is JsonElement tr ? ReadTruncation(tr) : null,
            Padding = root.GetObject("padding") is JsonElement pd ? ReadPadding(pd) : null,
        };
    }

    private static string TypeOf(JsonElement e, string what) =>
        e.GetString("type") ?? throw new FormatException($"A {what} in tokenizer.json has no type.");

    private static Exception Unsupported(string what, string type) =>
        new NotSupportedException($"The {what} type '{type}' of this tokenizer.json is not supported.");

    internal static TokenizerModel ReadModel(JsonElement e)
    {
        string? type = e.GetString("type");
        if (type is null)
        {
            // Older files omit the type: infer it from the fields.
            type = e.TryGetProperty("merges", out _) ? "BPE"
                : e.TryGetProperty("vocab", out var v) && v.ValueKind == JsonValueKind.Array ? "Unigram"
                : e.TryGetProperty("max_input_chars_per_word", out _) ? "WordPiece" : "WordLevel";
        }
        switch (type)
        {
            case "BPE":
            {
                var vocab = JsonSerializerHelpers.ReadVocabulary(e.GetProperty("vocab"));
                var merges = new List<(string, string)>();
                if (e.GetObject("merges") is JsonElement ms)
                {
                    foreach (var item in ms.EnumerateArray())
                    {
                        if (item.ValueKind == JsonValueKind.String)
                        {
                            merges.Add(Tokenizer.SplitMerge(item.GetString()!));
                        }
                        else if (item.ValueKind == JsonValueKind.Array && item.GetArrayLength() == 2)
                        {
                            merges.Add((item[0].GetString()!, item[1].GetString()!));
                        }
                        else
                        {
                            throw new FormatException("A BPE merge must be \"left right\" or [\"left\", \"right\"].");
                        }
                    }
                }
                return new BpeModel(vocab, merges, new BpeOptions
                {
                    UnknownToken = e.GetString("unk_token"),
                    ContinuingSubwordPrefix = e.GetString("continuing_subword_prefix"),
                    EndOfWordSuffix = e.GetString("end_of_word_suffix"),
                    FuseUnknown = e.GetBool("fuse_unk", false),
                    ByteFallback = e.GetBool("byte_fallback", false),
                    IgnoreMerges = e.GetBool("ignore_merges", false),
                });
            }
            case "WordPiece":
                return new WordPieceModel(JsonSerializerHelpers.ReadVocabulary(e.GetProperty("vocab")), e.GetString("unk_token") ?? "[UNK]",
                    e.GetString("continuing_subword_prefix") ?? "##", e.GetInt("max_input_chars_per_word") ?? 100);
            case "WordLevel":
                return new WordLevelModel(JsonSerializerHelpers.ReadVocabulary(e.GetProperty("vocab")), e.GetString("unk_token"));
            default:
                throw Unsupported("model", type);
        }
    }

    internal static Normalizer ReadNormalizer(JsonElement e)
    {
        string type = TypeOf(e, "normalizer");
        return type switch
        {
            "Sequence" => new SequenceNormalizer(e.GetProperty("normalizers").EnumerateArray().Select(ReadNormalizer).ToArray()),
            "NFC" => new UnicodeNormalizer(NormalizationForm.FormC),
            "NFD" => new UnicodeNormalizer(NormalizationForm.FormD),
            "NFKC" => new UnicodeNormalizer(NormalizationForm.FormKC),
            "NFKD" => new UnicodeNormalizer(NormalizationForm.FormKD),
            "Lowercase" => new LowercaseNormalizer(),
            "StripAccents" => new StripAccentsNormalizer(),
            "Strip" => new StripNormalizer(e.GetBool("strip_left", true), e.GetBool("strip_right", true)),
            "BertNormalizer" => new BertNormalizer(e.GetBool("clean_text", true), e.GetBool("handle_chinese_chars", true),
                e.GetNullableBool("strip_accents"), e.GetBool("lowercase", true)),
            "Prepend" => new PrependNormalizer(e.GetString("prepend") ?? "\u2581"),
            "Replace" => ReadReplace(e, (p, c, r) => new ReplaceNormalizer(p, c, r)),
            "ByteLevel" => new ByteLevelNormalizer(),
            _ => throw Unsupported("normalizer", type),
        };
    }

    private static T ReadReplace<T>(JsonElement e, Func<string, string, bool, T> create)
    {
        var pattern = e.GetProperty("pattern");
        string content = e.GetString("content") ?? "";
        if (pattern.GetString("String") is string s)
        {
            return create(s, content, false);
        }
        if (pattern.GetString("Regex") is string r)
        {
            return create(r, content, true);
        }
        throw new FormatException("A Replace pattern must have a String or a Regex.");
    }

    internal static PreTokenizer ReadPreTokenizer(JsonElement e)
    {
        string type = TypeOf(e, "pre-tokenizer");
        switch (type)
        {
            case "Sequence":
                return new SequencePreTokenizer(e.GetProperty("pretokenizers").EnumerateArray().Select(ReadPreTokenizer).ToArray());
            case "ByteLevel":
                return new ByteLevelPreTokenizer(e.GetBool("add_prefix_space", true), e.GetBool("use_regex", true));
            case "Split":
            {
                var pattern = e.GetProperty("pattern");
                string? regex = pattern.GetString("Regex");
                string text = regex ?? pattern.GetString("String") ?? throw new FormatException("A Split pattern must have a String or a Regex.");
                return new SplitPreTokenizer(text, ReadBehavior(e.GetString("behavior")), e.GetBool("invert", false), isRegex: regex is not null);
            }
            case "Metaspace":
                return new MetaspacePreTokenizer(ReadReplacement(e), ReadPrependScheme(e), e.GetBool("split", true));
            case "BertPreTokenizer":
                return new BertPreTokenizer();
            case "Whitespace":
                return new WhitespacePreTokenizer();
            case "WhitespaceSplit":
                return new WhitespaceSplitPreTokenizer();
            case "Punctuation":
                return new PunctuationPreTokenizer(ReadBehavior(e.GetString("behavior") ?? "Isolated"));
            case "Digits":
                return new DigitsPreTokenizer(e.GetBool("individual_digits", false));
            case "CharDelimiterSplit":
                return new CharDelimiterSplitPreTokenizer(e.GetChar("delimiter", ' '));
            default:
                throw Unsupported("pre-tokenizer", type);
        }
    }

    private static char ReadReplacement(JsonElement e) => e.GetChar("replacement", e.GetChar("str_rep", '\u2581'));

    private static PrependScheme ReadPrependScheme(JsonElement e) => e.GetString("prepend_scheme") switch
    {
        "always" => PrependScheme.Always,
        "first" => PrependScheme.First,
        "never" => PrependScheme.Never,
        null => e.GetBool("add_prefix_space", true) ? PrependScheme.Always : PrependScheme.Never,
        string s => throw new FormatException($"Unknown prepend_scheme '{s}'."),
    };

    private static SplitDelimiterBehavior ReadBehavior(string? behavior) => behavior switch
    {
        "Removed" => SplitDelimiterBehavior.Removed,
        "Isolated" => SplitDelimiterBehavior.Isolated,
        "MergedWithPrevious" => SplitDelimiterBehavior.MergedWithPrevious,
        "MergedWithNext" => SplitDelimiterBehavior.MergedWithNext,
        "Contiguous" => SplitDelimiterBehavior.Contiguous,
        _ => throw new FormatException($"Unknown split behavior '{behavior}'."),
    };

    private static (string, int) ReadTokenAndId(JsonElement e, string name)
    {
        var pair = e.GetProperty(name);
        return (pair[0].GetString()!, pair[1].GetInt32());
    }

    internal static PostProcessor ReadPostProcessor(JsonElement e)
    {
        string type = TypeOf(e, "post-processor");
        switch (type)
        {
            case "Sequence":
                return new SequencePostProcessor(e.GetProperty("processors").EnumerateArray().Select(ReadPostProcessor).ToArray());
            case "ByteLevel":
                return new ByteLevelPostProcessor(e.GetBool("trim_offsets", true), e.GetBool("add_prefix_space", true));
            case "BertProcessing":
                return new BertPostProcessor(ReadTokenAndId(e, "sep"), ReadTokenAndId(e, "cls"));
            case "RobertaProcessing":
                return new RobertaPostProcessor(ReadTokenAndId(e, "sep"), ReadTokenAndId(e, "cls"), e.GetBool("trim_offsets", true), e.GetBool("add_prefix_space", true));
            case "TemplateProcessing":
            {
                var specials = new Dictionary<string, (int[], string[])>();
                if (e.GetObject("special_tokens") is JsonElement st)
                {
                    foreach (var p in st.EnumerateObject())
                    {
                        var ids = p.Value.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
                        var tokens = p.Value.GetProperty("tokens").EnumerateArray().Select(x => x.GetString()!).ToArray();
                        specials[p.Value.GetString("id") ?? p.Name] = (ids, tokens);
                    }
                }
                return new TemplatePostProcessor(ReadTemplate(e.GetProperty("single")), e.GetObject("pair") is JsonElement pair ? ReadTemplate(pair) : null, specials);
            }
            default:
                throw Unsupported("post-processor", type);
        }
    }

    private static TemplatePiece[] ReadTemplate(JsonElement e) => e.EnumerateArray().Select(item =>
    {
        if (item.TryGetProperty("Sequence", out var seq))
        {
            return new TemplatePiece(true, seq.GetString("id") ?? "A", seq.GetInt("type_id") ?? 0);
        }
        if (item.TryGetProperty("SpecialToken", out var sp))
        {
            return new TemplatePiece(false, sp.GetString("id") ?? throw new FormatException("A template special token has no id."), sp.GetInt("type_id") ?? 0);
        }
        throw new FormatException("A template piece must be a Sequence or a SpecialToken.");
    }).ToArray();

    internal static Decoder ReadDecoder(JsonElement e)
    {
        string type = TypeOf(e, "decoder");
        return type switch
        {
            "Sequence" => new SequenceDecoder(e.GetProperty("decoders").EnumerateArray().Select(ReadDecoder).ToArray()),
            "ByteLevel" => new ByteLevelDecoder(),
            "Metaspace" => new MetaspaceDecoder(ReadReplacement(e), ReadPrependScheme(e)),
            "WordPiece" => new WordPieceDecoder(e.GetString("prefix") ?? "##", e.GetBool("cleanup", true)),
            "BPEDecoder" => new BpeDecoder(e.GetString("suffix") ?? "</w>"),
            "Replace" => ReadReplace(e, (p, c, r) => new ReplaceDecoder(p, c, r)),
            "ByteFallback" => new ByteFallbackDecoder(),
            "Fuse" => new FuseDecoder(),
            "Strip" => new StripDecoder(e.GetChar("content", ' '), e.GetInt("start") ?? 0, e.GetInt("stop") ?? 0),
            "CTC" => new CtcDecoder(e.GetString("pad_token") ?? "<pad>", e.GetString("word_delimiter_token") ?? "|", e.GetBool("cleanup", true)),
            _ => throw Unsupported("decoder", type),
        };
    }

    private static TruncationOptions ReadTruncation(JsonElement e) => new()
    {
        MaxLength = e.GetInt("max_length") ?? throw new FormatException("truncation has no max_length."),
        Strategy = e.GetString("strategy") switch
        {
            "OnlyFirst" => TruncationStrategy.OnlyFirst,
            "OnlySecond" => TruncationStrategy.OnlySecond,
            _ => TruncationStrategy.LongestFirst,
        },
        Direction = e.GetString("direction") == "Left" ? TruncationDirection.Left : TruncationDirection.Right,
    };

    private static PaddingOptions ReadPadding(JsonElement e)
    {
        int? fixedLength = null;
        if (e.TryGetProperty("strategy", out var strategy) && strategy.ValueKind == JsonValueKind.Object && strategy.TryGetProperty("Fixed", out var f))
        {
            fixedLength = f.GetInt32();
        }
        return new PaddingOptions
        {
            Length = fixedLength,
            PadToMultipleOf = e.GetInt("pad_to_multiple_of"),
            Direction = e.GetString("direction") == "Left" ? PaddingDirection.Left : PaddingDirection.Right,
            PadId = e.GetInt("pad_id") ?? 0,
            PadTypeId = e.GetInt("pad_type_id") ?? 0,
            PadToken = e.GetString("pad_token") ?? "[PAD]",
        };
    }
}
