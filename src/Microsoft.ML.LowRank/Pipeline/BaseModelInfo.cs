using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tokenizers;

namespace Microsoft.ML.LowRank.Pipeline;

/// <summary>A checked base-model folder: its config, its tokenizer and the SHA-256 of its weight files.</summary>
internal sealed class BaseModelInfo
{
    /// <summary>Tokenizer files copied into saved models (whichever exist).</summary>
    internal static readonly string[] TokenizerFileNames =
        ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt", "vocab.txt"];

    private BaseModelInfo(string folder, ModelConfig config, IReadOnlyList<string> weightFiles)
    {
        Folder = folder;
        Config = config;
        WeightFiles = weightFiles;
    }

    /// <summary>The absolute folder.</summary>
    public string Folder { get; }

    /// <summary>The parsed config.json.</summary>
    public ModelConfig Config { get; }

    /// <summary>The weight files (index first when sharded), absolute paths.</summary>
    public IReadOnlyList<string> WeightFiles { get; }

    private string? _hash;

    /// <summary>"sha256:" + the hex SHA-256 of the weight files (each file's name, then its bytes, in order).</summary>
    public string WeightsHash => _hash ??= ComputeHash(WeightFiles);

    /// <summary>
    /// Checks that <paramref name="folder"/> is a model folder: it exists, holds a readable config.json and the weights
    /// (model.safetensors or a sharded index whose shards exist). Errors name the folder or the file.
    /// </summary>
    public static BaseModelInfo Inspect(string? folder, string optionName = "ModelFolder")
    {
        if (string.IsNullOrWhiteSpace(folder))
            throw new ArgumentException($"{optionName} is not set: give the folder of a Hugging Face model (config.json, model.safetensors and tokenizer files)", optionName);
        var full = Path.GetFullPath(folder);
        if (!Directory.Exists(full))
            throw new DirectoryNotFoundException($"{optionName} '{folder}' does not exist");
        var configPath = Path.Combine(full, "config.json");
        if (!File.Exists(configPath))
            throw new FileNotFoundException($"'{folder}' is not a model folder: {configPath} is missing", configPath);
        ModelConfig config;
        try
        {
            config = ModelConfig.FromFile(full);
        }
        catch (Exception e) when (e is JsonException or InvalidDataException or FormatException or NotSupportedException or KeyNotFoundException)
        {
            throw new InvalidDataException($"'{folder}' is not a usable model folder: {configPath} cannot be read: {e.Message}", e);
        }
        var files = new List<string>();
        var index = Path.Combine(full, "model.safetensors.index.json");
        var single = Path.Combine(full, "model.safetensors");
        if (File.Exists(index))
        {
            files.Add(index);
            JsonObject? o;
            try
            {
                o = JsonNode.Parse(File.ReadAllText(index)) as JsonObject;
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{index} is not valid JSON: {e.Message}", e);
            }
            if (o?["weight_map"] is not JsonObject map)
                throw new InvalidDataException($"{index} has no 'weight_map'");
            foreach (var shard in map.Select(kv => kv.Value?.GetValue<string>() ?? "").Distinct().Order(StringComparer.Ordinal))
            {
                var path = Path.Combine(full, shard);
                if (!File.Exists(path)) throw new FileNotFoundException($"'{folder}' is incomplete: shard {path} (listed in {index}) is missing", path);
                files.Add(path);
            }
        }
        else if (File.Exists(single))
        {
            files.Add(single);
        }
        else
        {
            throw new FileNotFoundException($"'{folder}' is not a model folder: no model.safetensors (or model.safetensors.index.json) in {full}", single);
        }
        return new BaseModelInfo(full, config, files);
    }

    /// <summary>Loads the folder's tokenizer; the error names the folder and the files looked for.</summary>
    public Tokenizer LoadTokenizer()
    {
        try
        {
            return Tokenizer.FromDirectory(Folder);
        }
        catch (FileNotFoundException e)
        {
            throw new FileNotFoundException($"the model folder '{Folder}' has no tokenizer (tokenizer.json, vocab.json + merges.txt, or vocab.txt): {e.Message}", Path.Combine(Folder, "tokenizer.json"), e);
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidDataException or NotSupportedException)
        {
            throw new InvalidDataException($"the tokenizer of '{Folder}' cannot be read: {e.Message}", e);
        }
    }

    /// <summary>The tokenizer files of the folder (name, path), for saving into a model zip.</summary>
    public IEnumerable<(string Name, string Path)> TokenizerFiles()
    {
        foreach (var name in TokenizerFileNames)
        {
            var p = Path.Combine(Folder, name);
            if (File.Exists(p)) yield return (name, p);
        }
    }

    private static string ComputeHash(IReadOnlyList<string> files)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        foreach (var f in files)
        {
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(Path.GetFileName(f) + "\0"));
            using var s = File.OpenRead(f);
            int n;
            while ((n = s.Read(buffer, 0, buffer.Length)) > 0) sha.AppendData(buffer, 0, n);
        }
        return "sha256:" + Convert.ToHexStringLower(sha.GetHashAndReset());
    }
}
