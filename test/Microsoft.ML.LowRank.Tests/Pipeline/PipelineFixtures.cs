using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Tests.Helpers;

namespace Microsoft.ML.LowRank.Tests.Pipeline;

/// <summary>
/// Model folders for the pipeline tests: a copy of a tiny fixture model (test/fixtures/models) plus a small hand-made
/// tokenizer.json over a toy English vocabulary (ids 0-4 special, words from 5, id 96 an end-of-text token) — a
/// WordPiece tokenizer with [CLS]/[SEP] post-processing for BERT models (some words split into sub-words), a word-level
/// tokenizer for decoders. Folders are made once per process.
/// </summary>
internal static class PipelineFixtures
{
    public static readonly string[] Sports = ["football", "tennis", "goal", "match", "team"];
    public static readonly string[] Politics = ["vote", "senate", "law", "election", "party"];
    public static readonly string[] Tech = ["software", "chip", "code", "robot", "cloud"];
    public static readonly string[] Filler = ["the", "a", "today", "we", "saw", "about", "news", "new", "story", "people", "said", "it", "was", "very", "and", "this", "really", "great", "our", "they"];
    public static readonly string[] People = ["alice", "bob", "carol", "dave", "erin"];
    public static readonly string[] Places = ["paris", "london", "tokyo", "berlin", "rome"];
    public static readonly string[] NerFiller = ["lives", "visited", "met", "went", "to", "from", "with", "in", "near", "likes"];
    public static readonly (string Word, string Opposite)[] Opposites =
        [("hot", "cold"), ("big", "small"), ("up", "down"), ("left", "right"), ("day", "night"), ("yes", "no"), ("fast", "slow"), ("open", "shut")];

    /// <summary>Whole-word entries that tokenize into several WordPiece sub-words (not in the vocabulary whole).</summary>
    public static readonly string[] SplitWords = ["amsterdam", "bobby", "parisian"];

    private static readonly string[] Pieces = ["am", "##ster", "##dam", "##by", "##ian", "opposite", "of"];

    private static readonly ConcurrentDictionary<string, string> s_folders = new();

    private static readonly string s_root = RegisterCleanup(Path.Combine(Path.GetTempPath(), $"lowrank-pipeline-{Environment.ProcessId}"));

    private static string RegisterCleanup(string root)
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { if (Directory.Exists(root)) Directory.Delete(root, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        };
        return root;
    }

    public static IReadOnlyList<string> Words { get; } = BuildWords();

    private static string[] BuildWords()
    {
        var words = new List<string>();
        foreach (var group in new[] { Sports, Politics, Tech, Filler, People, Places, NerFiller, Pieces })
            foreach (var w in group) if (!words.Contains(w)) words.Add(w);
        foreach (var (a, b) in Opposites)
        {
            if (!words.Contains(a)) words.Add(a);
            if (!words.Contains(b)) words.Add(b);
        }
        if (words.Count > 91) throw new InvalidOperationException($"{words.Count} toy words do not fit ids 5..95");
        return [.. words];
    }

    /// <summary>A temporary model folder: the fixture <paramref name="fixture"/> plus a tokenizer.json.</summary>
    public static string Model(string fixture) => s_folders.GetOrAdd(fixture, f =>
    {
        var dir = Path.Combine(s_root, f);
        Directory.CreateDirectory(dir);
        foreach (var file in Directory.GetFiles(Repo.Fixture("models", f)))
            File.Copy(file, Path.Combine(dir, Path.GetFileName(file)), overwrite: true);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
        var type = (string)config["model_type"]!;
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), type is "bert" or "roberta" ? WordPieceJson() : WordLevelJson(type));
        return dir;
    });

    /// <summary>A copy of a model folder with one weight changed (a different base model with the same architecture).</summary>
    public static string PerturbedCopy(string fixture)
    {
        var source = Model(fixture);
        var dir = Path.Combine(s_root, fixture + "-perturbed-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        foreach (var file in Directory.GetFiles(source)) File.Copy(file, Path.Combine(dir, Path.GetFileName(file)));
        var weights = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        bytes[^1] ^= 0x01; // the last byte of the last tensor's data
        File.WriteAllBytes(weights, bytes);
        return dir;
    }

    private static JsonObject Added(string content, int id) => new()
    {
        ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
    };

    public static string WordPieceJson()
    {
        string[] specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
        var vocab = new JsonObject();
        for (int i = 0; i < specials.Length; i++) vocab[specials[i]] = i;
        for (int i = 0; i < Words.Count; i++) vocab[Words[i]] = i + 5;
        vocab["[EOT]"] = 96;
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(specials.Select((s, i) => (JsonNode)Added(s, i)).ToArray()),
            ["normalizer"] = new JsonObject { ["type"] = "Lowercase" },
            ["pre_tokenizer"] = new JsonObject { ["type"] = "WhitespaceSplit" },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "BertProcessing",
                ["sep"] = new JsonArray("[SEP]", 3),
                ["cls"] = new JsonArray("[CLS]", 2),
            },
            ["decoder"] = new JsonObject { ["type"] = "WordPiece", ["prefix"] = "##", ["cleanup"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "WordPiece", ["unk_token"] = "[UNK]", ["continuing_subword_prefix"] = "##", ["max_input_chars_per_word"] = 100, ["vocab"] = vocab,
            },
        }.ToJsonString();
    }

    public static string WordLevelJson(string modelType)
    {
        // LLaMA fixtures: bos 1, eos 2, pad 0; GPT-2: eos 96, pad 0 (classification fixture).
        string[] specials = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"];
        var vocab = new JsonObject();
        for (int i = 0; i < specials.Length; i++) vocab[specials[i]] = i;
        for (int i = 0; i < Words.Count; i++) vocab[Words[i]] = i + 5;
        vocab["<|endoftext|>"] = 96;
        var added = specials.Select((s, i) => (JsonNode)Added(s, i)).Append(Added("<|endoftext|>", 96)).ToArray();
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(added),
            ["normalizer"] = new JsonObject { ["type"] = "Lowercase" },
            ["pre_tokenizer"] = new JsonObject { ["type"] = "WhitespaceSplit" },
            ["post_processor"] = null,
            ["decoder"] = null,
            ["model"] = new JsonObject { ["type"] = "WordLevel", ["vocab"] = vocab, ["unk_token"] = "<unk>" },
        }.ToJsonString();
    }

    // ------------------------------------------------------------------ toy data sets

    public sealed class TopicRow
    {
        public string Text { get; set; } = "";
        public string Topic { get; set; } = "";
    }

    /// <summary>Sentences of 3-5 filler words and one keyword of the topic, at a random place.</summary>
    public static TopicRow[] Topics(int count, int seed, int minFiller = 3, int maxFiller = 5)
    {
        var rng = new Random(seed);
        var topics = new[] { ("sports", Sports), ("politics", Politics), ("tech", Tech) };
        var rows = new TopicRow[count];
        for (int i = 0; i < count; i++)
        {
            var (name, keywords) = topics[i % 3];
            var words = Enumerable.Range(0, minFiller + rng.Next(maxFiller - minFiller + 1)).Select(_ => Filler[rng.Next(Filler.Length)]).ToList();
            words.Insert(rng.Next(words.Count + 1), keywords[rng.Next(keywords.Length)]);
            rows[i] = new TopicRow { Text = string.Join(' ', words), Topic = name };
        }
        return rows;
    }

    public sealed class PairRow
    {
        public string Sentence1 { get; set; } = "";
        public string Sentence2 { get; set; } = "";
        public string Relation { get; set; } = "";
        public float Similarity { get; set; }
    }

    /// <summary>
    /// Pairs of topic sentences. <c>Relation</c> says which sentence is about sports: "first", "second" or "neither"
    /// ("both" only with <paramref name="allowBoth"/>); <c>Similarity</c> is 0.5 per sentence about sports (0, 0.5 or 1).
    /// Both sentences matter, and a model that ignored the second one could not beat chance.
    /// </summary>
    public static PairRow[] Pairs(int count, int seed, bool allowBoth = false)
    {
        var sports = Topics(count * 3, seed, 1, 2).Where(r => r.Topic == "sports").ToArray();
        var other = Topics(count * 3, seed + 1, 1, 2).Where(r => r.Topic != "sports").ToArray();
        var rng = new Random(seed + 2);
        var rows = new PairRow[count];
        for (int i = 0; i < count; i++)
        {
            bool a, b;
            do
            {
                a = rng.Next(2) == 0;
                b = rng.Next(2) == 0;
            }
            while (a && b && !allowBoth);
            var first = a ? sports[rng.Next(sports.Length)] : other[rng.Next(other.Length)];
            var second = b ? sports[rng.Next(sports.Length)] : other[rng.Next(other.Length)];
            rows[i] = new PairRow
            {
                Sentence1 = first.Text,
                Sentence2 = second.Text,
                Relation = a && b ? "both" : a ? "first" : b ? "second" : "neither",
                Similarity = (a ? 0.5f : 0f) + (b ? 0.5f : 0f),
            };
        }
        return rows;
    }

    public sealed class NerRow
    {
        public string Sentence { get; set; } = "";
        public string[] Tags { get; set; } = [];
    }

    /// <summary>Sentences like "alice visited paris with bob": person names are B-PER, places B-LOC; two-word names
    /// ("alice bob") are B-PER I-PER; some names split into several sub-words ("amsterdam", "bobby").</summary>
    public static NerRow[] Ner(int count, int seed)
    {
        var rng = new Random(seed);
        string[] people = [.. People, "bobby"];
        string[] places = [.. Places, "amsterdam"];
        var rows = new NerRow[count];
        for (int i = 0; i < count; i++)
        {
            var words = new List<string>();
            var tags = new List<string>();
            void Entity(string[] names, string type)
            {
                words.Add(names[rng.Next(names.Length)]);
                tags.Add("B-" + type);
                if (rng.Next(3) == 0)
                {
                    words.Add(names[rng.Next(names.Length)]);
                    tags.Add("I-" + type);
                }
            }
            void Other()
            {
                words.Add(NerFiller[rng.Next(NerFiller.Length)]);
                tags.Add("O");
            }
            Entity(people, "PER");
            Other();
            Entity(places, "LOC");
            if (rng.Next(2) == 0)
            {
                Other();
                bool person = rng.Next(2) == 0;
                Entity(person ? people : places, person ? "PER" : "LOC");
            }
            rows[i] = new NerRow { Sentence = string.Join(' ', words), Tags = [.. tags] };
        }
        return rows;
    }

    public sealed class InstructionRow
    {
        public string Prompt { get; set; } = "";
        public string Response { get; set; } = "";
    }

    /// <summary>"opposite of hot" → "cold", both ways, for the eight pairs.</summary>
    public static InstructionRow[] Instructions() =>
        [.. Opposites.SelectMany(p => new[] { new InstructionRow { Prompt = "opposite of " + p.Word, Response = p.Opposite }, new InstructionRow { Prompt = "opposite of " + p.Opposite, Response = p.Word } })];
}
