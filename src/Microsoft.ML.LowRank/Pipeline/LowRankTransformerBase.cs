using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Training;

namespace Microsoft.ML.LowRank.Pipeline;

/// <summary>
/// Base of the transformers that low-rank trainers return: a base model with a trained adapter, applied row by row.
/// <see cref="Transform"/> is lazy: a row's forward pass runs when a cursor first reads one of the output columns of that
/// row (all output columns of a row share one forward pass). The transformer owns native model memory: dispose it (or
/// the <see cref="TransformerChain{TLastTransformer}"/> holding it) when done.
/// </summary>
public abstract class LowRankTransformerBase : ITransformer, IDisposable
{
    private protected LowRankTransformerBase(LowRankContext context, LowRankRuntime runtime, ModelTask task, int? numLabels, TrainingResult? trainingResult)
    {
        Context = context;
        Runtime = runtime;
        Task = task;
        NumLabels = numLabels;
        TrainingResult = trainingResult;
    }

    private protected LowRankContext Context { get; }

    internal LowRankRuntime Runtime { get; }

    internal ModelTask Task { get; }

    internal int? NumLabels { get; }

    /// <summary>The base model folder the adapter applies to.</summary>
    public string ModelFolder => Runtime.Base.Folder;

    /// <summary>"sha256:..." of the base model's weight files; saved models record it and refuse another base on load.</summary>
    public string BaseModelHash => Runtime.Base.WeightsHash;

    /// <summary>A copy of the adapter method's options as trained (target modules resolved).</summary>
    public LowRankAdapterOptions Method => Runtime.Peft.PeftConfig[Runtime.Peft.ActiveAdapter].Clone();

    /// <summary>The adapted model (for inspection, merging or saving the adapter alone with
    /// <see cref="LowRankModel.Save"/>); owned by this transformer.</summary>
    public LowRankModel AdaptedModel => Runtime.Peft;

    /// <summary>Losses, evaluations and the stop reason of the training run; <see langword="null"/> for a loaded model.</summary>
    public TrainingResult? TrainingResult { get; }

    /// <summary>Trainable (adapter) and total parameter counts of the adapted model.</summary>
    public (long Trainable, long Total) ParameterCounts
    {
        get
        {
            // A loaded adapter is frozen; count its parameters as the trainable part it was.
            long adapter = Runtime.Peft.CountParameters().PerAdapter.Values.Sum();
            return (adapter, Runtime.Peft.GetNbTrainableParameters().all);
        }
    }

    /// <summary>The column the model reads each row's task (or domain) from for a mixture-of-experts router
    /// (<see cref="LowRankTrainerOptions.TaskColumnName"/>), or <see langword="null"/> when its routing reads none.</summary>
    public string? TaskColumnName => Runtime.Routing?.TaskColumn;

    /// <summary>The task values of a String task column in task-id order (value i is task i), as learned at Fit and saved
    /// with the model; <see langword="null"/> for key or integer task columns, or without one.</summary>
    public IReadOnlyList<string>? TaskValues => Runtime.Routing is { TaskColumn: not null, Kind: TaskValueKind.Text } r ? r.Values.ToArray() : null;

    /// <summary>Always true: each row is mapped on its own.</summary>
    public bool IsRowToRowMapper => true;

    /// <summary>The input schema plus the transformer's output columns.</summary>
    /// <param name="inputSchema">The input schema.</param>
    /// <returns>The output schema.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An input column is missing or has the wrong type.</exception>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        return RowMappedDataView.MakeSchema(inputSchema, MakeColumns(inputSchema));
    }

    /// <summary>Adds the output columns (computed lazily, one forward pass per row).</summary>
    /// <param name="input">The input data.</param>
    /// <returns>The transformed data.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An input column is missing or has the wrong type.</exception>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new RowMappedDataView(input, MakeColumns(input.Schema));
    }

    private protected abstract List<MappedColumn> MakeColumns(DataViewSchema inputSchema);

    /// <summary>The routing columns of an input schema (checked) and per-row readers.</summary>
    private protected RowRoutingReader RowRouting(DataViewSchema inputSchema) => new(Runtime.Routing, inputSchema);

    /// <summary>The kind written into saved models (e.g. "TextClassification").</summary>
    internal abstract string PersistKind { get; }

    /// <summary>Writes the task's own settings (column names, label values...).</summary>
    private protected abstract void SaveTask(JsonObject o);

    internal void Save(ModelSaveContext save)
    {
        var o = new JsonObject
        {
            ["kind"] = PersistKind,
            ["signature"] = "LRTASK01",
            ["model_folder"] = ModelFolder,
            ["base_weights_sha256"] = BaseModelHash,
            ["model_type"] = Runtime.Base.Config.ModelType,
            ["model_task"] = Task.ToString(),
            ["num_labels"] = NumLabels,
            ["precision"] = Runtime.Precision.ToString(),
            ["max_sequence_length"] = Runtime.MaxLength,
            ["peft_type"] = Runtime.Peft.PeftType,
        };
        var task = new JsonObject();
        SaveTask(task);
        o["task"] = task;
        if (Runtime.Routing is { } routing) o["routing"] = routing.ToJson();
        save.WriteJson("lowrank.json", o);
        var temp = Directory.CreateTempSubdirectory("lowrank-save-").FullName;
        try
        {
            Runtime.Peft.Save(temp);
            save.WriteFile("adapter/" + AdapterFiles.ConfigName, Path.Combine(temp, AdapterFiles.ConfigName));
            save.WriteFile("adapter/" + AdapterFiles.WeightsName, Path.Combine(temp, AdapterFiles.WeightsName));
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }
        foreach (var (name, path) in Runtime.Base.TokenizerFiles()) save.WriteFile("tokenizer/" + name, path);
    }

    /// <summary>Reads a saved task transformer: checks the base model's hash, loads the adapter and the tokenizer.</summary>
    internal static LowRankTransformerBase Load(ModelLoadContext load)
    {
        var o = load.ReadJson("lowrank.json");
        string kind = (string?)o["kind"] ?? throw load.Corrupt("lowrank.json has no 'kind'");
        string recorded = (string?)o["model_folder"] ?? throw load.Corrupt("lowrank.json has no 'model_folder'");
        string hash = (string?)o["base_weights_sha256"] ?? throw load.Corrupt("lowrank.json has no 'base_weights_sha256'");
        var folder = load.BaseModelFolder ?? recorded;
        BaseModelInfo info;
        try
        {
            info = BaseModelInfo.Inspect(folder, load.BaseModelFolder is null ? "the base model folder recorded in the model file" : "baseModelFolder");
        }
        catch (Exception e) when (e is IOException or ArgumentException or InvalidDataException)
        {
            throw new FileNotFoundException($"{load.Path}: the base model the adapter was trained on cannot be opened ({e.Message}); pass its folder to Load(path, out schema, baseModelFolder)", folder, e);
        }
        if (info.WeightsHash != hash)
            throw new InvalidDataException($"{load.Path}: the base model weights in '{info.Folder}' ({info.WeightsHash}) differ from the base model the adapter was trained on ({hash}); load the model with the same base model");
        var task = Enum.Parse<ModelTask>((string?)o["model_task"] ?? "CausalLM");
        int? numLabels = o["num_labels"] is JsonValue nl ? nl.GetValue<int>() : null;
        var precision = Enum.Parse<TrainingPrecision>((string?)o["precision"] ?? nameof(TrainingPrecision.Automatic));
        int maxLength = o["max_sequence_length"]?.GetValue<int>() ?? 512;
        var tokenizerFolder = load.Extract("tokenizer/");
        var tokenizer = tokenizerFolder is null ? info.LoadTokenizer() : Tokenizers.Tokenizer.FromDirectory(tokenizerFolder);
        var adapterFolder = load.Extract("adapter/") ?? throw load.Corrupt("the adapter files are missing");
        var device = load.Context.ResolveDevice("ModelOperationsCatalog");
        var runtime = new LowRankRuntime(info, tokenizer, maxLength, device, precision);
        try
        {
            runtime.LoadAdapter(task, numLabels, adapterFolder);
            if (o["routing"] is JsonObject routing) runtime.Routing = TaskRouting.FromJson(routing);
            var t = (JsonObject?)o["task"] ?? new JsonObject();
            return kind switch
            {
                TextClassificationTransformer.Kind => TextClassificationTransformer.Create(load.Context, runtime, task, numLabels, t),
                SentenceSimilarityTransformer.Kind => SentenceSimilarityTransformer.Create(load.Context, runtime, task, numLabels, t),
                NamedEntityRecognitionTransformer.Kind => NamedEntityRecognitionTransformer.Create(load.Context, runtime, task, numLabels, t),
                CausalLMTransformer.Kind => CausalLMTransformer.Create(load.Context, runtime, task, numLabels, t),
                _ => throw load.Corrupt($"unknown transformer kind '{kind}'"),
            };
        }
        catch
        {
            runtime.Dispose();
            throw;
        }
    }

    /// <summary>Releases the model.</summary>
    public void Dispose()
    {
        Runtime.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>Shares one computation per row between the output columns of a cursor: the value is recomputed when the
    /// input row's position changes.</summary>
    private protected sealed class RowCache<T>(LowRankContext context, DataViewRow row, Func<T> compute)
        where T : class
    {
        private long _position = long.MinValue;
        private T? _value;

        public T Get()
        {
            if (_value is null || row.Position != _position)
            {
                context.CheckAlive();
                _value = compute();
                _position = row.Position;
            }
            return _value;
        }
    }

    /// <summary>One <see cref="RowCache{T}"/> per input cursor.</summary>
    private protected sealed class RowCaches<T>(Func<DataViewRow, RowCache<T>> factory)
        where T : class
    {
        private readonly ConditionalWeakTable<DataViewRow, RowCache<T>> _caches = new();

        public RowCache<T> For(DataViewRow row) => _caches.GetValue(row, r => factory(r));
    }

    private protected static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
