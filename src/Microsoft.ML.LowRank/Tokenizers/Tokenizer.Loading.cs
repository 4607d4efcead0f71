using System.Text.Json;

namespace Microsoft.ML.LowRank.Tokenizers;

public sealed partial class Tokenizer
{
    /// <summary>
    /// Loads a tokenizer from a file: a Hugging Face <c>tokenizer.json</c>, or a tiktoken rank file whose name is
    /// that of a known encoding (<c>r50k_base.tiktoken</c>, <c>p50k_base</c>, <c>p50k_edit</c>, <c>cl100k_base</c>,
    /// <c>o200k_base</c>). A directory is handled by <see cref="FromDirectory"/>.
    /// </summary>
    public static Tokenizer FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
        {
            return FromDirectory(path);
        }
        if (path.EndsWith(".tiktoken", StringComparison.OrdinalIgnoreCase))
        {
            return FromTiktoken(path, Path.GetFileNameWithoutExtension(path));
        }
        return FromJson(File.ReadAllText(path));
    }

    /// <summary>
    /// Loads the tokenizer of a model folder: <c>tokenizer.json</c>, else GPT-2's <c>vocab.json</c> +
    /// <c>merges.txt</c>, else BERT's <c>vocab.txt</c>, else a single <c>*.tiktoken</c> file.
    /// </summary>
    public static Tokenizer FromDirectory(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        string json = Path.Combine(directory, "tokenizer.json");
        if (File.Exists(json))
        {
            return FromJson(File.ReadAllText(json));
        }
        string vocab = Path.Combine(directory, "vocab.json"), merges = Path.Combine(directory, "merges.txt");
        if (File.Exists(vocab) && File.Exists(merges))
        {
            return FromGpt2Files(vocab, merges);
        }
        string vocabTxt = Path.Combine(directory, "vocab.txt");
        if (File.Exists(vocabTxt))
        {
            return FromBertVocab(vocabTxt);
        }
        var tiktoken = Directory.GetFiles(directory, "*.tiktoken");
        if (tiktoken.Length == 1)
        {
            return FromFile(tiktoken[0]);
        }
        throw new FileNotFoundException($"No tokenizer.json, vocab.json + merges.txt, vocab.txt or single .tiktoken file in '{directory}'.");
    }

    /// <summary>Parses a Hugging Face <c>tokenizer.json</c>.</summary>
    public static Tokenizer FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        return TokenizerJson.Read(doc.RootElement);
    }

    /// <summary>Creates GPT-2's byte-level BPE tokenizer from its <c>vocab.json</c> (encoder.json) and <c>merges.txt</c> (vocab.bpe).</summary>
    public static Tokenizer FromGpt2Files(string vocabJsonPath, string mergesPath)
    {
        using var vocab = File.OpenRead(vocabJsonPath);
        using var merges = File.OpenRead(mergesPath);
        return FromGpt2(vocab, merges);
    }

    /// <summary>Creates GPT-2's byte-level BPE tokenizer from the contents of <c>vocab.json</c> and <c>merges.txt</c>.</summary>
    public static Tokenizer FromGpt2(Stream vocabJson, Stream merges)
    {
        ArgumentNullException.ThrowIfNull(vocabJson);
        ArgumentNullException.ThrowIfNull(merges);
        var vocab = JsonSerializerHelpers.ReadVocabulary(vocabJson);
        var mergeList = ReadMerges(merges);
        var model = new BpeModel(vocab, mergeList);
        var added = vocab.TryGetValue("<|endoftext|>", out int eot) ? new[] { new AddedToken("<|endoftext|>", eot) } : [];
        return new Tokenizer(model, preTokenizer: new ByteLevelPreTokenizer(addPrefixSpace: false),
            postProcessor: new ByteLevelPostProcessor(trimOffsets: false), decoder: new ByteLevelDecoder(), addedTokens: added);
    }

    /// <summary>Creates a BERT WordPiece tokenizer from a <c>vocab.txt</c> (uncased by default).</summary>
    public static Tokenizer FromBertVocab(string vocabTxtPath, bool lowercase = true)
    {
        var model = WordPieceModel.FromVocabFile(vocabTxtPath);
        var specials = new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }
            .Where(t => model.TokenToId(t) is not null)
            .Select(t => new AddedToken(t, model.TokenToId(t)!.Value))
            .ToArray();
        int cls = model.TokenToId("[CLS]") ?? throw new FormatException("vocab.txt has no [CLS] token.");
        int sep = model.TokenToId("[SEP]") ?? throw new FormatException("vocab.txt has no [SEP] token.");
        return new Tokenizer(model, new BertNormalizer(lowercase: lowercase), new BertPreTokenizer(),
            new BertPostProcessor(("[SEP]", sep), ("[CLS]", cls)), new WordPieceDecoder(), specials);
    }

    /// <summary>Loads a tiktoken rank file for a known encoding (r50k_base, p50k_base, p50k_edit, cl100k_base, o200k_base).</summary>
    /// <param name="path">The <c>.tiktoken</c> file.</param>
    /// <param name="encodingName">The encoding, which selects the split regex and the special tokens.</param>
    public static Tokenizer FromTiktoken(string path, string encodingName)
    {
        var (pattern, specials) = TiktokenEncodings.Get(encodingName);
        return FromTiktoken(path, pattern, specials);
    }

    /// <summary>Loads a tiktoken rank file with an explicit split regex and special tokens.</summary>
    public static Tokenizer FromTiktoken(string path, string pattern, IReadOnlyDictionary<string, int> specialTokens)
    {
        using var stream = File.OpenRead(path);
        return FromTiktoken(stream, pattern, specialTokens);
    }

    /// <summary>Reads a tiktoken rank file with an explicit split regex and special tokens.</summary>
    public static Tokenizer FromTiktoken(Stream ranks, string pattern, IReadOnlyDictionary<string, int> specialTokens)
    {
        ArgumentNullException.ThrowIfNull(specialTokens);
        var model = TiktokenModel.FromStream(ranks);
        return new Tokenizer(model, preTokenizer: new ByteLevelPreTokenizer(addPrefixSpace: false, useRegex: true, pattern: pattern),
            decoder: new ByteLevelDecoder(), addedTokens: specialTokens.Select(kv => new AddedToken(kv.Key, kv.Value)));
    }

    /// <summary>Reads a merges.txt: an optional "#version" line, then one "left right" pair per line.</summary>
    internal static List<(string, string)> ReadMerges(Stream merges)
    {
        var list = new List<(string, string)>(50_000);
        using var reader = new StreamReader(merges, System.Text.Encoding.UTF8);
        string? line;
        bool first = true;
        while ((line = reader.ReadLine()) is not null)
        {
            if (first && line.StartsWith("#version", StringComparison.Ordinal))
            {
                first = false;
                continue;
            }
            first = false;
            if (line.Length == 0)
            {
                continue;
            }
            list.Add(SplitMerge(line));
        }
        return list;
    }

    internal static (string, string) SplitMerge(string line)
    {
        int space = line.IndexOf(' ', 1);
        if (space <= 0 || space == line.Length - 1)
        {
            throw new FormatException($"The merge '{line}' is not 'left right'.");
        }
        return (line.Substring(0, space), line.Substring(space + 1));
    }
}

/// <summary>The split patterns and special tokens of OpenAI's tiktoken encodings.</summary>
public static class TiktokenEncodings
{
    /// <summary>The names of the known encodings.</summary>
    public static IReadOnlyList<string> Names { get; } = ["r50k_base", "p50k_base", "p50k_edit", "cl100k_base", "o200k_base"];

    /// <summary>The split regex and special tokens of an encoding.</summary>
    public static (string Pattern, IReadOnlyDictionary<string, int> SpecialTokens) Get(string encodingName)
    {
        ArgumentNullException.ThrowIfNull(encodingName);
        const string Eot = "<|endoftext|>", FimPrefix = "<|fim_prefix|>", FimMiddle = "<|fim_middle|>", FimSuffix = "<|fim_suffix|>", EndOfPrompt = "<|endofprompt|>";
        return encodingName switch
        {
            "r50k_base" or "gpt2" or "p50k_base" => (SplitPatterns.Gpt2, new Dictionary<string, int> { [Eot] = 50256 }),
            "p50k_edit" => (SplitPatterns.Gpt2, new Dictionary<string, int> { [Eot] = 50256, [FimPrefix] = 50281, [FimMiddle] = 50282, [FimSuffix] = 50283 }),
            "cl100k_base" => (SplitPatterns.Cl100kBase, new Dictionary<string, int>
            {
                [Eot] = 100257, [FimPrefix] = 100258, [FimMiddle] = 100259, [FimSuffix] = 100260, [EndOfPrompt] = 100276,
            }),
            "o200k_base" => (SplitPatterns.O200kBase, new Dictionary<string, int> { [Eot] = 199999, [EndOfPrompt] = 200018 }),
            _ => throw new ArgumentException($"Unknown tiktoken encoding '{encodingName}'; known: {string.Join(", ", Names)}.", nameof(encodingName)),
        };
    }
}
