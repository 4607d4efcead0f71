using System.Security.Cryptography;
using Microsoft.ML.LowRank.Tokenizers;
using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Models;

/// <summary>
/// The library's built-in base model, so fine-tuning works without a model hub: a small LLaMA-style causal language
/// model (about 4 M parameters, vocabulary 4096) pre-trained by this library on public-domain English (Moby Dick and the
/// State of the Union addresses) by <c>eng/make_default_model.sh</c>; see docs/default-model.md for the recipe and its
/// numbers. Its Hugging Face files (<c>config.json</c>, <c>model.safetensors</c> in bfloat16, <c>tokenizer.json</c>,
/// <c>tokenizer_config.json</c>) are embedded resources of this assembly, extracted on first use to
/// <c>&lt;cache&gt;/models/&lt;name&gt;-&lt;hash&gt;/</c> (<see cref="LowRankCache.Root"/>), where any HF-folder API
/// (<see cref="PretrainedModel.Load"/>, <see cref="Tokenizer.FromDirectory"/>, the CLI) can read them.
/// </summary>
public static class DefaultModel
{
    /// <summary>The model's name (the folder name's prefix).</summary>
    public const string Name = "lowrank-tiny-llama-en";

    private const string ResourcePrefix = "DefaultModel/";
    private static readonly Lazy<(string Hash, string[] Resources)> s_manifest = new(ReadManifest);
    private static readonly object s_lock = new();

    /// <summary>The file names embedded (config.json, model.safetensors, tokenizer.json, tokenizer_config.json).</summary>
    public static IReadOnlyList<string> Files => s_manifest.Value.Resources.Select(r => r[ResourcePrefix.Length..]).ToArray();

    /// <summary>The first 12 hex digits of the SHA-256 over the embedded files (names and contents): part of the cache
    /// folder's name, so a new build of the model never reuses an old extraction.</summary>
    public static string ContentHash => s_manifest.Value.Hash;

    /// <summary>The folder the model is extracted to (it may not exist yet; see <see cref="EnsureCached"/>).</summary>
    public static string CacheFolder => Path.Combine(LowRankCache.Root, "models", $"{Name}-{ContentHash}");

    /// <summary>
    /// Extracts the embedded model to <see cref="CacheFolder"/> unless a complete extraction is already there, and
    /// returns that folder. Safe against concurrent callers in this and other processes: files are written to a
    /// temporary sibling folder that is renamed into place.
    /// </summary>
    /// <returns>The model folder (HF layout).</returns>
    /// <exception cref="InvalidOperationException">The assembly was built without the model resources.</exception>
    public static string EnsureCached()
    {
        string folder = CacheFolder;
        string marker = Path.Combine(folder, ".complete");
        if (File.Exists(marker)) return folder;
        lock (s_lock)
        {
            if (File.Exists(marker)) return folder;
            string parent = Path.GetDirectoryName(folder)!;
            Directory.CreateDirectory(parent);
            string temp = Path.Combine(parent, $".tmp-{Name}-{Guid.NewGuid():N}");
            Directory.CreateDirectory(temp);
            try
            {
                var assembly = typeof(DefaultModel).Assembly;
                foreach (var resource in s_manifest.Value.Resources)
                {
                    using var input = assembly.GetManifestResourceStream(resource)!;
                    using var output = File.Create(Path.Combine(temp, resource[ResourcePrefix.Length..]));
                    input.CopyTo(output);
                }
                File.WriteAllText(Path.Combine(temp, ".complete"), $"{Name} {ContentHash}\n");
                try
                {
                    if (Directory.Exists(folder) && !File.Exists(marker)) Directory.Delete(folder, recursive: true); // a broken earlier extraction
                    Directory.Move(temp, folder);
                }
                catch (IOException) when (File.Exists(marker))
                {
                    // Another process finished first; its copy is identical.
                }
            }
            finally
            {
                if (Directory.Exists(temp))
                {
                    try { Directory.Delete(temp, recursive: true); }
                    catch (IOException) { }
                    catch (UnauthorizedAccessException) { }
                }
            }
            if (!File.Exists(marker)) throw new IOException($"Could not extract the default model to {folder}.");
            return folder;
        }
    }

    /// <summary>Loads the default model (extracting it first if needed).</summary>
    /// <param name="task">The head: causal LM (the pre-trained one) or a new classification head, initialised and reported
    /// in <see cref="PretrainedModel.LoadReport"/>.</param>
    /// <param name="numLabels">Labels of a new classification head (default: the config's, 2).</param>
    /// <param name="device">Device (default CPU).</param>
    /// <param name="dtype">Element type (default float32: the weights are stored in bfloat16, whose CPU kernels are slow
    /// and too coarse to train in).</param>
    /// <returns>The model.</returns>
    public static PretrainedModel Load(ModelTask task = ModelTask.CausalLM, int? numLabels = null, Device? device = null, ScalarType dtype = ScalarType.Float32) =>
        PretrainedModel.Load(EnsureCached(), task, device, dtype, numLabels);

    /// <summary>Loads the default model's tokenizer (extracting the model first if needed).</summary>
    /// <returns>The tokenizer.</returns>
    public static Tokenizer LoadTokenizer() => Tokenizer.FromDirectory(EnsureCached());

    private static (string, string[]) ReadManifest()
    {
        var assembly = typeof(DefaultModel).Assembly;
        var resources = assembly.GetManifestResourceNames().Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal))
            .OrderBy(n => n, StringComparer.Ordinal).ToArray();
        if (!resources.Any(r => r.EndsWith("/model.safetensors", StringComparison.Ordinal)))
            throw new InvalidOperationException($"{assembly.GetName().Name} was built without the default model (no embedded {ResourcePrefix}model.safetensors); " +
                "run eng/make_default_model.sh and rebuild.");
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var r in resources)
        {
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes(r + "\n"));
            using var stream = assembly.GetManifestResourceStream(r)!;
            hash.AppendData(SHA256.HashData(stream));
        }
        return (Convert.ToHexStringLower(hash.GetHashAndReset())[..12], resources);
    }
}
