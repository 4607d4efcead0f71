using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Pipeline;

namespace Microsoft.ML.LowRank;

/// <summary>
/// Saving and loading trained pipelines (<c>ctx.Model</c>), as in ML.NET. A model file is a zip:
/// <list type="bullet">
/// <item><c>lowrank-model.json</c>: format name and version, and the list of transformers in order (kind and folder);</item>
/// <item><c>Schema.json</c>: the input schema (column names, types, key values);</item>
/// <item><c>Model/NNN/</c>: one folder per transformer. Key mappings store their dictionaries (<c>transform.json</c>);
/// low-rank task transformers store <c>lowrank.json</c> (task, column names, label values, base model folder, the SHA-256
/// of the base weights), the adapter in PEFT format (<c>adapter/adapter_config.json</c>,
/// <c>adapter/adapter_model.safetensors</c>) and the tokenizer files (<c>tokenizer/</c>).</item>
/// </list>
/// The base model's weights are not stored: loading opens the recorded base model folder (or one given to
/// <see cref="Load(string, out DataViewSchema, string)"/>) and fails when its weights' hash differs.
/// </summary>
public sealed class ModelOperationsCatalog
{
    internal const string FormatName = "Microsoft.ML.LowRank.Model";
    internal const int FormatVersion = 1;
    private readonly LowRankContext _context;

    internal ModelOperationsCatalog(LowRankContext context)
    {
        _context = context;
    }

    /// <summary>Saves a trained pipeline and the schema of the data it was trained on.</summary>
    /// <param name="model">A transformer or a chain of transformers (key mappings, low-rank task transformers).</param>
    /// <param name="inputSchema">The schema of the data the model takes (usually the training data's), or <see langword="null"/>.</param>
    /// <param name="filePath">The zip to write (replaced when it exists).</param>
    /// <exception cref="NotSupportedException">A transformer of the pipeline cannot be saved.</exception>
    public void Save(ITransformer model, DataViewSchema? inputSchema, string filePath)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(filePath);
        var dir = Path.GetDirectoryName(Path.GetFullPath(filePath));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        var temp = filePath + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            using (var stream = File.Create(temp))
                Save(model, inputSchema, stream);
            File.Move(temp, filePath, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>Saves a trained pipeline into a stream (left open).</summary>
    /// <param name="model">The transformer or chain.</param>
    /// <param name="inputSchema">The input schema, or <see langword="null"/>.</param>
    /// <param name="stream">The stream.</param>
    public void Save(ITransformer model, DataViewSchema? inputSchema, Stream stream)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(stream);
        var flat = Flatten(model).ToList();
        using var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true);
        var list = new JsonArray();
        for (int i = 0; i < flat.Count; i++)
        {
            var prefix = $"Model/{i:D3}/";
            var save = new ModelSaveContext(zip, prefix);
            string kind = PipelinePersistence.Save(flat[i], save);
            list.Add((JsonNode)new JsonObject { ["kind"] = kind, ["path"] = prefix });
        }
        new ModelSaveContext(zip, "").WriteJson("lowrank-model.json", new JsonObject
        {
            ["format"] = FormatName,
            ["version"] = FormatVersion,
            ["chain"] = model is IEnumerable<ITransformer>,
            ["transformers"] = list,
        });
        new ModelSaveContext(zip, "").WriteJson("Schema.json", SchemaCodec.Write(inputSchema ?? DataViewSchema.Empty));
    }

    /// <summary>Loads a pipeline saved with <see cref="Save(ITransformer, DataViewSchema, string)"/>. Low-rank transformers
    /// open the base model folder recorded at save time and check its weights against the recorded hash.</summary>
    /// <param name="filePath">The zip.</param>
    /// <param name="inputSchema">Receives the schema the model was saved with.</param>
    /// <returns>The pipeline: a <see cref="TransformerChain{TLastTransformer}"/> when a chain was saved, else the transformer
    /// itself (dispose it to free the models).</returns>
    /// <exception cref="InvalidDataException">The file is not a model of this library, or the base model's weights differ
    /// from those the adapter was trained on (the message names both hashes).</exception>
    public ITransformer Load(string filePath, out DataViewSchema inputSchema) => Load(filePath, out inputSchema, null);

    /// <summary>Loads a pipeline, taking the base model from <paramref name="baseModelFolder"/> instead of the folder recorded
    /// at save time (for example on another machine). Its weights must hash to the recorded value.</summary>
    /// <param name="filePath">The zip.</param>
    /// <param name="inputSchema">Receives the schema the model was saved with.</param>
    /// <param name="baseModelFolder">The base model folder, or <see langword="null"/> for the recorded one.</param>
    /// <returns>The pipeline.</returns>
    public ITransformer Load(string filePath, out DataViewSchema inputSchema, string? baseModelFolder)
    {
        ArgumentException.ThrowIfNullOrEmpty(filePath);
        if (!File.Exists(filePath)) throw new FileNotFoundException($"model file not found: {filePath}", filePath);
        using var stream = File.OpenRead(filePath);
        return Load(stream, out inputSchema, baseModelFolder, filePath);
    }

    /// <summary>Loads a pipeline from a stream (left open).</summary>
    /// <param name="stream">The zip stream.</param>
    /// <param name="inputSchema">Receives the saved input schema.</param>
    /// <param name="baseModelFolder">The base model folder, or <see langword="null"/> for the recorded one.</param>
    /// <returns>The pipeline.</returns>
    public ITransformer Load(Stream stream, out DataViewSchema inputSchema, string? baseModelFolder = null) =>
        Load(stream, out inputSchema, baseModelFolder, "model stream");

    private ITransformer Load(Stream stream, out DataViewSchema inputSchema, string? baseModelFolder, string name)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ZipArchive zip;
        try
        {
            zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{name} is not a model file (not a zip): {e.Message}", e);
        }
        var temp = Directory.CreateTempSubdirectory("lowrank-load-").FullName;
        var loaded = new List<ITransformer>();
        bool chain = true;
        try
        {
            using (zip)
            {
                var root = new ModelLoadContext(zip, "", name, _context, baseModelFolder, temp);
                if (zip.GetEntry("lowrank-model.json") is null) throw root.Corrupt("lowrank-model.json is missing (not a model saved by Microsoft.ML.LowRank)");
                var manifest = root.ReadJson("lowrank-model.json");
                if ((string?)manifest["format"] != FormatName) throw root.Corrupt($"unknown format '{(string?)manifest["format"]}'");
                int version = manifest["version"]?.GetValue<int>() ?? 0;
                if (version > FormatVersion) throw root.Corrupt($"format version {version} is newer than this library reads ({FormatVersion})");
                chain = manifest["chain"]?.GetValue<bool>() ?? true;
                inputSchema = zip.GetEntry("Schema.json") is null ? DataViewSchema.Empty : SchemaCodec.Read(root.ReadJson("Schema.json"), name);
                foreach (var node in manifest["transformers"]?.AsArray() ?? [])
                {
                    var kind = (string?)node?["kind"] ?? throw root.Corrupt("a transformer has no kind");
                    var path = (string?)node?["path"] ?? throw root.Corrupt("a transformer has no path");
                    loaded.Add(PipelinePersistence.Load(kind, new ModelLoadContext(zip, path, name, _context, baseModelFolder, temp)));
                }
            }
            // A single transformer comes back as itself, a chain as a chain (as saved).
            return chain || loaded.Count != 1 ? new TransformerChain<ITransformer>(loaded) : loaded[0];
        }
        catch
        {
            foreach (var t in loaded) (t as IDisposable)?.Dispose();
            throw;
        }
        finally
        {
            try { Directory.Delete(temp, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>Creates an engine that runs <paramref name="transformer"/> on single objects (ML.NET's <c>CreatePredictionEngine</c>).</summary>
    /// <typeparam name="TSrc">The input class.</typeparam>
    /// <typeparam name="TDst">The output class.</typeparam>
    /// <param name="transformer">The trained pipeline.</param>
    /// <returns>The engine.</returns>
    public PredictionEngine<TSrc, TDst> CreatePredictionEngine<[System.Diagnostics.CodeAnalysis.DynamicallyAccessedMembers(SchemaDefinition.Members)] TSrc,
        [System.Diagnostics.CodeAnalysis.DynamicallyAccessedMembers(SchemaDefinition.MembersAndConstructor)] TDst>(ITransformer transformer)
        where TSrc : class
        where TDst : class, new() => new(_context.Data, transformer);

    private static IEnumerable<ITransformer> Flatten(ITransformer model)
    {
        if (model is IEnumerable<ITransformer> chain)
        {
            foreach (var t in chain)
                foreach (var inner in Flatten(t)) yield return inner;
        }
        else
        {
            yield return model;
        }
    }
}

/// <summary>Writes the entries of one transformer under a folder of the model zip.</summary>
internal sealed class ModelSaveContext(ZipArchive zip, string prefix)
{
    public void WriteText(string name, string text)
    {
        var entry = zip.CreateEntry(prefix + name, CompressionLevel.Optimal);
        using var w = new StreamWriter(entry.Open(), new System.Text.UTF8Encoding(false));
        w.Write(text);
    }

    public void WriteJson(string name, JsonNode node) => WriteText(name, node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

    public void WriteFile(string name, string path)
    {
        var entry = zip.CreateEntry(prefix + name, CompressionLevel.Optimal);
        using var dst = entry.Open();
        using var src = File.OpenRead(path);
        src.CopyTo(dst);
    }
}

/// <summary>Reads the entries of one transformer from the model zip.</summary>
internal sealed class ModelLoadContext(ZipArchive zip, string prefix, string path, LowRankContext context, string? baseModelFolder, string tempFolder)
{
    public string Path { get; } = path;

    public LowRankContext Context { get; } = context;

    public string? BaseModelFolder { get; } = baseModelFolder;

    public InvalidDataException Corrupt(string what) => new($"{Path} is not a valid model file: {what}");

    public JsonObject ReadJson(string name)
    {
        var entry = zip.GetEntry(prefix + name) ?? throw Corrupt($"entry {prefix + name} is missing");
        using var r = new StreamReader(entry.Open());
        try
        {
            return JsonNode.Parse(r.ReadToEnd()) as JsonObject ?? throw Corrupt($"{prefix + name} is not a JSON object");
        }
        catch (JsonException e)
        {
            throw Corrupt($"{prefix + name} is not valid JSON: {e.Message}");
        }
    }

    /// <summary>Extracts the entries under <c>prefix + folder</c> into a new temporary folder; null when there are none.</summary>
    public string? Extract(string folder)
    {
        var start = prefix + folder;
        var entries = zip.Entries.Where(e => e.FullName.StartsWith(start, StringComparison.Ordinal) && e.FullName.Length > start.Length).ToList();
        if (entries.Count == 0) return null;
        var dir = System.IO.Path.Combine(tempFolder, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        foreach (var e in entries)
        {
            var relative = e.FullName[start.Length..];
            if (relative.Contains("..", StringComparison.Ordinal) || System.IO.Path.IsPathRooted(relative)) throw Corrupt($"entry name '{e.FullName}' is not allowed");
            var target = System.IO.Path.Combine(dir, relative);
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(target)!);
            e.ExtractToFile(target);
        }
        return dir;
    }
}
