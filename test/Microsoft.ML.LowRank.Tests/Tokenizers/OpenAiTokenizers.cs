using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Tokenizers;

namespace Microsoft.ML.LowRank.Tests.Tokenizers;

/// <summary>One block of gpt-tokenizer's TestPlans.txt.</summary>
public sealed record TestPlan(string Encoding, string Sample, int[] Expected)
{
    public override string ToString() => $"{Encoding}: \"{Sample}\"";
}

/// <summary>The real OpenAI vocabularies, loaded once per test run.</summary>
internal static class OpenAiTokenizers
{
    private static readonly ConcurrentDictionary<string, Lazy<Tokenizer>> s_tokenizers = new();
    private static readonly Lazy<IReadOnlyList<TestPlan>> s_plans = new(() => ParsePlans(File.ReadAllLines(TestAssets.TestPlans)));

    public static IReadOnlyList<TestPlan> Plans => s_plans.Value;

    /// <summary>
    /// A tokenizer by source: "gpt2-files" (encoder.json + vocab.bpe), "gpt2-json" (a tokenizer.json built from those),
    /// or a tiktoken encoding name loaded from its .tiktoken file.
    /// </summary>
    public static Tokenizer Get(string source) => s_tokenizers.GetOrAdd(source, s => new Lazy<Tokenizer>(() => s switch
    {
        "gpt2-files" => Tokenizer.FromGpt2Files(TestAssets.Gpt2VocabJson, TestAssets.Gpt2Merges),
        "gpt2-json" => Tokenizer.FromJson(BuildGpt2TokenizerJson(arrayMerges: false)),
        "gpt2-json-array-merges" => Tokenizer.FromJson(BuildGpt2TokenizerJson(arrayMerges: true)),
        "gpt2-json-split-layout" => Tokenizer.FromJson(BuildGpt2TokenizerJson(arrayMerges: false, splitLayout: true)),
        "p50k_edit" => Tokenizer.FromTiktoken(TestAssets.Tiktoken("p50k_base"), "p50k_edit"),
        _ => Tokenizer.FromFile(TestAssets.Tiktoken(s)),
    })).Value;

    internal static IReadOnlyList<TestPlan> ParsePlans(string[] lines)
    {
        var plans = new List<TestPlan>();
        string? encoding = null, sample = null;
        foreach (string line in lines)
        {
            if (line.StartsWith("EncodingName:", StringComparison.Ordinal))
            {
                encoding = line.Substring("EncodingName:".Length).Trim();
            }
            else if (line.StartsWith("Sample:", StringComparison.Ordinal))
            {
                sample = line.Length > "Sample: ".Length ? line.Substring("Sample: ".Length) : "";
            }
            else if (line.StartsWith("Encoded:", StringComparison.Ordinal))
            {
                string list = line.Substring("Encoded:".Length).Trim().TrimStart('[').TrimEnd(']');
                var ids = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();
                plans.Add(new TestPlan(encoding ?? throw new FormatException("Encoded line before EncodingName."),
                    sample ?? throw new FormatException("Encoded line before Sample."), ids));
                encoding = null;
                sample = null;
            }
        }
        return plans;
    }

    /// <summary>A Hugging Face tokenizer.json for GPT-2, built from encoder.json and vocab.bpe like HF's converter does.</summary>
    /// <param name="arrayMerges">Write merges as ["a", "b"] pairs (the newer format) rather than "a b" strings.</param>
    /// <param name="splitLayout">Use the LLaMA-3/Qwen2 layout: a Split regex pre-tokenizer followed by a regex-less ByteLevel
    /// one, and a model with ignore_merges.</param>
    internal static string BuildGpt2TokenizerJson(bool arrayMerges, bool splitLayout = false)
    {
        var vocab = JsonNode.Parse(File.ReadAllText(TestAssets.Gpt2VocabJson))!.AsObject();
        var merges = new JsonArray();
        foreach (string line in File.ReadLines(TestAssets.Gpt2Merges))
        {
            if (line.StartsWith("#version", StringComparison.Ordinal) || line.Length == 0)
            {
                continue;
            }
            if (arrayMerges)
            {
                var parts = line.Split(' ');
                merges.Add(new JsonArray(parts[0], parts[1]));
            }
            else
            {
                merges.Add(line);
            }
        }
        var byteLevel = () => new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(new JsonObject
            {
                ["id"] = 50256, ["content"] = "<|endoftext|>", ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = true, ["special"] = true,
            }),
            ["normalizer"] = null,
            ["pre_tokenizer"] = splitLayout
                ? new JsonObject
                {
                    ["type"] = "Sequence",
                    ["pretokenizers"] = new JsonArray(
                        new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = SplitPatterns.Gpt2 }, ["behavior"] = "Isolated", ["invert"] = false },
                        new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false }),
                }
                : byteLevel(),
            ["post_processor"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true },
            ["decoder"] = byteLevel(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "", ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = splitLayout,
                ["vocab"] = vocab, ["merges"] = merges,
            },
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = false });
    }
}
