using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>Settings of a <see cref="ByteLevelBpeTrainer"/>.</summary>
public sealed class ByteLevelBpeTrainerOptions
{
    /// <summary>Target vocabulary size, special tokens and the 256 byte symbols included. Training stops earlier when no
    /// pair occurs at least <see cref="MinFrequency"/> times. Default 4096.</summary>
    public int VocabularySize { get; set; } = 4096;

    /// <summary>Special tokens, given ids 0, 1, ... in this order and written as special added tokens (matched literally,
    /// never split). Default <c>&lt;|endoftext|&gt;</c>, <c>&lt;pad&gt;</c>, <c>&lt;s&gt;</c>.</summary>
    public IReadOnlyList<string> SpecialTokens { get; set; } = ["<|endoftext|>", "<pad>", "<s>"];

    /// <summary>A pair is merged only when it occurs at least this many times. Default 2.</summary>
    public long MinFrequency { get; set; } = 2;

    /// <summary>Whether the pre-tokenizer adds a space before a text that does not start with one (GPT-2: false).
    /// Default false.</summary>
    public bool AddPrefixSpace { get; set; }

    /// <summary>Checks the settings.</summary>
    /// <exception cref="ArgumentException">A setting is out of range (the message names it).</exception>
    public void Validate()
    {
        int specials = SpecialTokens?.Count ?? throw new ArgumentException("ByteLevelBpeTrainerOptions.SpecialTokens must not be null.");
        if (SpecialTokens.Any(string.IsNullOrEmpty))
            throw new ArgumentException("ByteLevelBpeTrainerOptions.SpecialTokens must not contain empty tokens.");
        if (SpecialTokens.Distinct(StringComparer.Ordinal).Count() != specials)
            throw new ArgumentException("ByteLevelBpeTrainerOptions.SpecialTokens has duplicates.");
        if (VocabularySize < 256 + specials)
            throw new ArgumentOutOfRangeException(nameof(VocabularySize), VocabularySize,
                $"ByteLevelBpeTrainerOptions.VocabularySize must be at least 256 byte symbols + {specials} special tokens = {256 + specials}.");
        if (MinFrequency < 1)
            throw new ArgumentOutOfRangeException(nameof(MinFrequency), MinFrequency, "ByteLevelBpeTrainerOptions.MinFrequency must be >= 1.");
    }
}

/// <summary>
/// Trains a byte-level BPE vocabulary (GPT-2 style) from text: the text is split into words by the GPT-2 byte-level
/// pre-tokenizer (<see cref="ByteLevelPreTokenizer"/>, the same one the resulting tokenizer uses), words are counted,
/// each word starts as its byte symbols, and the most frequent adjacent pair of symbols (weighted by word counts) is
/// merged into a new symbol, greedily, until the vocabulary is full.
/// </summary>
/// <remarks>
/// Vocabulary order (as Hugging Face's trainer): special tokens first, then the 256 byte symbols sorted by code point, then
/// one token per merge in merge order. Ties between pairs of equal count go to the pair with the smaller left id, then
/// the smaller right id, so training is deterministic. Pair counts are updated incrementally (only the words containing
/// the merged pair are revisited) with a lazily invalidated priority queue; the result equals the naive "recount every
/// pair and take the maximum" algorithm, which the tests check on a small corpus.
/// </remarks>
public sealed class ByteLevelBpeTrainer
{
    private readonly ByteLevelBpeTrainerOptions _options;
    private readonly ByteLevelPreTokenizer _preTokenizer;
    private readonly Dictionary<string, long> _words = new(StringComparer.Ordinal);

    /// <summary>Creates a trainer.</summary>
    /// <param name="options">Settings (default: <see cref="ByteLevelBpeTrainerOptions"/>' defaults).</param>
    public ByteLevelBpeTrainer(ByteLevelBpeTrainerOptions? options = null)
    {
        _options = options ?? new ByteLevelBpeTrainerOptions();
        _options.Validate();
        _preTokenizer = new ByteLevelPreTokenizer(_options.AddPrefixSpace, useRegex: true);
    }

    /// <summary>The distinct pre-tokenized words seen so far (byte-level strings) and their counts.</summary>
    public IReadOnlyDictionary<string, long> WordCounts => _words;

    /// <summary>Counts the words of a text (call once per document, so no word spans two documents).</summary>
    /// <param name="text">The text.</param>
    public void Feed(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length == 0) return;
        var pieces = new List<NormalizedText>();
        _preTokenizer.Split(NormalizedText.FromOriginal(text, 0, text.Length), pieces);
        foreach (var p in pieces)
        {
            if (p.Length == 0) continue;
            ref long c = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_words, p.Text, out _);
            c++;
        }
    }

    /// <summary>Counts the words of several texts.</summary>
    /// <param name="texts">The texts.</param>
    public void Feed(IEnumerable<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        foreach (var t in texts) Feed(t);
    }

    /// <summary>Learns the merges from the words fed so far.</summary>
    /// <returns>The vocabulary and merges.</returns>
    public ByteLevelBpeModelData Train()
    {
        var specials = _options.SpecialTokens.ToArray();
        var vocab = new List<string>(_options.VocabularySize);
        vocab.AddRange(specials);
        var alphabet = ByteLevelAlphabet.ByteToChar.Select(c => c.ToString()).OrderBy(s => s[0]).ToArray();
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var s in specials) ids[s] = ids.Count;
        foreach (var a in alphabet)
        {
            if (ids.ContainsKey(a)) throw new ArgumentException($"The special token '{a}' is also a byte symbol.");
            ids[a] = vocab.Count;
            vocab.Add(a);
        }

        // Words as symbol-id arrays with counts.
        int n = _words.Count;
        var symbols = new int[n][];
        var counts = new long[n];
        int w = 0;
        foreach (var (word, count) in _words.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var s = new int[word.Length];
            for (int i = 0; i < word.Length; i++) s[i] = ids[word[i].ToString()];
            symbols[w] = s;
            counts[w] = count;
            w++;
        }

        var pairCounts = new Dictionary<long, long>();
        var where = new Dictionary<long, HashSet<int>>();
        for (int i = 0; i < n; i++)
        {
            var s = symbols[i];
            for (int k = 0; k + 1 < s.Length; k++)
            {
                long key = Key(s[k], s[k + 1]);
                pairCounts[key] = pairCounts.GetValueOrDefault(key) + counts[i];
                if (!where.TryGetValue(key, out var set)) where[key] = set = new HashSet<int>();
                set.Add(i);
            }
        }
        var queue = new PriorityQueue<long, (long Count, int Left, int Right)>(Comparer<(long Count, int Left, int Right)>.Create((a, b) =>
            a.Count != b.Count ? b.Count.CompareTo(a.Count) : a.Left != b.Left ? a.Left.CompareTo(b.Left) : a.Right.CompareTo(b.Right)));
        foreach (var (key, c) in pairCounts) queue.Enqueue(key, (c, Left(key), Right(key)));

        var merges = new List<(string, string)>();
        var mergeSet = new HashSet<long>();
        var touched = new HashSet<long>();
        while (vocab.Count < _options.VocabularySize && queue.TryDequeue(out long best, out var priority))
        {
            long current = pairCounts.GetValueOrDefault(best);
            if (priority.Count != current)
            {
                if (current > 0 && priority.Count > current) queue.Enqueue(best, (current, priority.Left, priority.Right));
                continue;
            }
            if (current < _options.MinFrequency) break;
            int a = Left(best), b = Right(best);
            string merged = vocab[a] + vocab[b];
            if (ids.ContainsKey(merged))
            {
                // Two different pairs can spell the same string; the token already exists, merge into it.
            }
            else
            {
                ids[merged] = vocab.Count;
                vocab.Add(merged);
            }
            int z = ids[merged];
            if (mergeSet.Add(best)) merges.Add((vocab[a], vocab[b]));
            touched.Clear();
            foreach (int i in where[best].ToArray())
            {
                var s = symbols[i];
                if (!Contains(s, a, b)) continue;
                long c = counts[i];
                for (int k = 0; k + 1 < s.Length; k++)
                {
                    long key = Key(s[k], s[k + 1]);
                    pairCounts[key] -= c;
                    touched.Add(key);
                }
                var t = Replace(s, a, b, z);
                symbols[i] = t;
                for (int k = 0; k + 1 < t.Length; k++)
                {
                    long key = Key(t[k], t[k + 1]);
                    pairCounts[key] = pairCounts.GetValueOrDefault(key) + c;
                    if (!where.TryGetValue(key, out var set)) where[key] = set = new HashSet<int>();
                    set.Add(i);
                    touched.Add(key);
                }
            }
            where.Remove(best);
            foreach (long key in touched)
            {
                long c = pairCounts[key];
                if (c <= 0)
                {
                    pairCounts.Remove(key);
                    continue;
                }
                queue.Enqueue(key, (c, Left(key), Right(key)));
            }
        }
        return new ByteLevelBpeModelData(vocab, merges, specials, _options.AddPrefixSpace);
    }

    private static bool Contains(int[] s, int a, int b)
    {
        for (int k = 0; k + 1 < s.Length; k++) if (s[k] == a && s[k + 1] == b) return true;
        return false;
    }

    private static int[] Replace(int[] s, int a, int b, int z)
    {
        var result = new List<int>(s.Length);
        for (int k = 0; k < s.Length;)
        {
            if (k + 1 < s.Length && s[k] == a && s[k + 1] == b)
            {
                result.Add(z);
                k += 2;
            }
            else result.Add(s[k++]);
        }
        return result.ToArray();
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    private static int Left(long key) => (int)(key >> 32);

    private static int Right(long key) => (int)(uint)key;
}

/// <summary>A trained byte-level BPE: the vocabulary in id order, the merges in rank order, and the special tokens.</summary>
public sealed class ByteLevelBpeModelData
{
    /// <summary>Creates the data.</summary>
    /// <param name="vocabulary">Tokens in id order (token i has id i).</param>
    /// <param name="merges">Merges, highest priority first.</param>
    /// <param name="specialTokens">Special tokens (must be in the vocabulary).</param>
    /// <param name="addPrefixSpace">Whether the pre-tokenizer adds a prefix space.</param>
    public ByteLevelBpeModelData(IReadOnlyList<string> vocabulary, IReadOnlyList<(string Left, string Right)> merges, IReadOnlyList<string> specialTokens, bool addPrefixSpace = false)
    {
        Vocabulary = vocabulary ?? throw new ArgumentNullException(nameof(vocabulary));
        Merges = merges ?? throw new ArgumentNullException(nameof(merges));
        SpecialTokens = specialTokens ?? throw new ArgumentNullException(nameof(specialTokens));
        AddPrefixSpace = addPrefixSpace;
        foreach (var s in specialTokens)
            if (!vocabulary.Contains(s)) throw new ArgumentException($"The special token '{s}' is not in the vocabulary.", nameof(specialTokens));
    }

    /// <summary>Tokens in id order.</summary>
    public IReadOnlyList<string> Vocabulary { get; }

    /// <summary>Merges, highest priority first.</summary>
    public IReadOnlyList<(string Left, string Right)> Merges { get; }

    /// <summary>Special tokens.</summary>
    public IReadOnlyList<string> SpecialTokens { get; }

    /// <summary>Whether the pre-tokenizer adds a prefix space.</summary>
    public bool AddPrefixSpace { get; }

    /// <summary>
    /// Writes a Hugging Face <c>tokenizer.json</c>: a <c>BPE</c> model (no unknown token, no byte fallback; merges as
    /// "left right" strings, which byte-level tokens keep unambiguous since a space is written 'Ġ'), the
    /// <c>ByteLevel</c> pre-tokenizer, post-processor (no added tokens) and decoder, and the special tokens as added
    /// tokens.
    /// </summary>
    /// <returns>The JSON text (UTF-8, indented).</returns>
    public string ToTokenizerJson()
    {
        using var stream = new MemoryStream();
        using (var j = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            j.WriteStartObject();
            j.WriteString("version", "1.0");
            j.WriteNull("truncation");
            j.WriteNull("padding");
            j.WriteStartArray("added_tokens");
            foreach (var s in SpecialTokens)
            {
                j.WriteStartObject();
                j.WriteNumber("id", IndexOf(s));
                j.WriteString("content", s);
                j.WriteBoolean("single_word", false);
                j.WriteBoolean("lstrip", false);
                j.WriteBoolean("rstrip", false);
                j.WriteBoolean("normalized", false);
                j.WriteBoolean("special", true);
                j.WriteEndObject();
            }
            j.WriteEndArray();
            j.WriteNull("normalizer");
            WriteByteLevel(j, "pre_tokenizer", AddPrefixSpace, trimOffsets: true);
            WriteByteLevel(j, "post_processor", AddPrefixSpace, trimOffsets: false);
            WriteByteLevel(j, "decoder", AddPrefixSpace, trimOffsets: true);
            j.WriteStartObject("model");
            j.WriteString("type", "BPE");
            j.WriteNull("dropout");
            j.WriteNull("unk_token");
            j.WriteNull("continuing_subword_prefix");
            j.WriteNull("end_of_word_suffix");
            j.WriteBoolean("fuse_unk", false);
            j.WriteBoolean("byte_fallback", false);
            j.WriteBoolean("ignore_merges", false);
            j.WriteStartObject("vocab");
            for (int i = 0; i < Vocabulary.Count; i++) j.WriteNumber(Vocabulary[i], i);
            j.WriteEndObject();
            j.WriteStartArray("merges");
            foreach (var (l, r) in Merges) j.WriteStringValue(l + " " + r);
            j.WriteEndArray();
            j.WriteEndObject();
            j.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private int IndexOf(string token)
    {
        for (int i = 0; i < Vocabulary.Count; i++) if (Vocabulary[i] == token) return i;
        return -1;
    }

    private static void WriteByteLevel(Utf8JsonWriter j, string name, bool addPrefixSpace, bool trimOffsets)
    {
        j.WriteStartObject(name);
        j.WriteString("type", "ByteLevel");
        j.WriteBoolean("add_prefix_space", addPrefixSpace);
        j.WriteBoolean("trim_offsets", trimOffsets);
        j.WriteBoolean("use_regex", true);
        j.WriteEndObject();
    }

    /// <summary>The tokenizer this data describes (parsed from <see cref="ToTokenizerJson"/>, so it is what a saved file loads as).</summary>
    /// <returns>The tokenizer.</returns>
    public Tokenizer ToTokenizer() => Tokenizer.FromJson(ToTokenizerJson());

    /// <summary>Writes <c>tokenizer.json</c> into a folder (created).</summary>
    /// <param name="folder">The folder.</param>
    /// <returns>The file's path.</returns>
    public string Save(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, "tokenizer.json");
        File.WriteAllText(path, ToTokenizerJson(), new UTF8Encoding(false));
        return path;
    }
}
