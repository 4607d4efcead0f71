using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Pipeline;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Training;

namespace Microsoft.ML.LowRank;

/// <summary>
/// The starting point of every pipeline, shaped like ML.NET's <c>MLContext</c>: data loading (<see cref="Data"/>),
/// transforms (<see cref="Transforms"/>, with the shared low-rank catalog <see cref="TransformsCatalog.LowRank"/>),
/// task catalogs with trainers and evaluators (<see cref="MulticlassClassification"/>, <see cref="Regression"/>,
/// <see cref="TextGeneration"/>), model persistence (<see cref="Model"/>), a <see cref="Log"/> event, device choice
/// (<see cref="GpuDeviceId"/>, <see cref="FallbackToCpu"/>) and cooperative cancellation (<see cref="CancelExecution"/>,
/// <see cref="CancellationToken"/>).
/// </summary>
/// <example>
/// <code>
/// var ctx = new LowRankContext(seed: 1);
/// var pipeline = ctx.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
///     .Append(ctx.MulticlassClassification.Trainers.TextClassification(new TextClassificationTrainer.Options
///         { ModelFolder = "models/bert", Sentence1ColumnName = "Text" }))
///     .Append(ctx.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
/// var model = pipeline.Fit(train);
/// </code>
/// </example>
public sealed class LowRankContext
{
    private readonly Random _random;
    private readonly CancellationTokenSource _cancel = new();

    /// <summary>Creates a context.</summary>
    /// <param name="seed">Seeds every random choice made through the context (data splits, shuffles, adapter
    /// initialisation, training order, dropout) so that the same program gives the same results; <see langword="null"/>
    /// draws a random seed.</param>
    public LowRankContext(int? seed = null)
    {
        Seed = seed;
        _random = seed is int s ? new Random(s) : new Random();
        Data = new DataOperationsCatalog(_random);
        Transforms = new TransformsCatalog(this);
        MulticlassClassification = new MulticlassClassificationCatalog(this);
        Regression = new RegressionCatalog(this);
        TextGeneration = new TextGenerationCatalog(this);
        Model = new ModelOperationsCatalog(this);
    }

    /// <summary>The seed given to the constructor, or <see langword="null"/>.</summary>
    public int? Seed { get; }

    /// <summary>Loading, splitting and reading data views.</summary>
    public DataOperationsCatalog Data { get; }

    /// <summary>Transforms: <see cref="TransformsCatalog.Conversion"/> (key mapping) and <see cref="TransformsCatalog.LowRank"/>
    /// (every low-rank task estimator and the adapter method registry in one place).</summary>
    public TransformsCatalog Transforms { get; }

    /// <summary>Multiclass tasks: text classification (single sentences and pairs), named-entity recognition; and their evaluators.</summary>
    public MulticlassClassificationCatalog MulticlassClassification { get; }

    /// <summary>Regression tasks: sentence-pair similarity; and the regression evaluator.</summary>
    public RegressionCatalog Regression { get; }

    /// <summary>Causal-LM instruction tuning and its evaluator (loss, perplexity).</summary>
    public TextGenerationCatalog TextGeneration { get; }

    /// <summary>Saving and loading trained pipelines (<c>.zip</c>).</summary>
    public ModelOperationsCatalog Model { get; }

    /// <summary>Messages from the context's components: <see cref="ChannelMessageKind.Info"/> for progress (one per
    /// optimizer step while training, with <see cref="LoggingEventArgs.Progress"/> set), <see cref="ChannelMessageKind.Trace"/>
    /// for details, <see cref="ChannelMessageKind.Warning"/> for skipped rows and fallbacks. Raised on the thread that
    /// runs <c>Fit</c>.</summary>
    public event EventHandler<LoggingEventArgs>? Log;

    /// <summary>The CUDA device to train and predict on; <see langword="null"/> (the default, as in ML.NET) uses the CPU.</summary>
    public int? GpuDeviceId { get; set; }

    /// <summary>When <see cref="GpuDeviceId"/> is set but no such CUDA device exists: true (the default) falls back to the
    /// CPU with a warning; false makes <c>Fit</c> and <c>Load</c> throw.</summary>
    public bool FallbackToCpu { get; set; } = true;

    /// <summary>An outside token that also cancels the context's work (checked at every micro-batch and row). Default none.</summary>
    public CancellationToken CancellationToken { get; set; }

    /// <summary>Folder for temporary files (model zips are unpacked there while loading). Default <see cref="Path.GetTempPath"/>.</summary>
    public string TempFilePath { get; set; } = Path.GetTempPath();

    /// <summary>Cancels every running and future <c>Fit</c> and transform of this context: they throw
    /// <see cref="OperationCanceledException"/> at the next micro-batch or row (a fitting trainer discards its partial step).</summary>
    public void CancelExecution() => _cancel.Cancel();

    /// <summary>Whether <see cref="CancelExecution"/> was called or <see cref="CancellationToken"/> is cancelled.</summary>
    public bool IsCancellationRequested => _cancel.IsCancellationRequested || CancellationToken.IsCancellationRequested;

    /// <summary>Throws <see cref="OperationCanceledException"/> when the context is cancelled (ML.NET's <c>CheckAlive</c>).</summary>
    public void CheckAlive()
    {
        if (IsCancellationRequested)
            throw new OperationCanceledException("the operation was cancelled through the LowRankContext", CancellationToken.IsCancellationRequested ? CancellationToken : _cancel.Token);
    }

    /// <summary>A token cancelled with the context (internal use: passed to the trainer).</summary>
    internal CancellationToken CreateLinkedToken(out IDisposable? registration)
    {
        if (!CancellationToken.CanBeCanceled)
        {
            registration = null;
            return _cancel.Token;
        }
        var linked = CancellationTokenSource.CreateLinkedTokenSource(_cancel.Token, CancellationToken);
        registration = linked;
        return linked.Token;
    }

    /// <summary>The next seed from the context's generator (each component draws its own, as in ML.NET).</summary>
    internal int NextSeed()
    {
        lock (_random)
            return _random.Next();
    }

    /// <summary>Raises <see cref="Log"/>.</summary>
    internal void Write(ChannelMessageKind kind, string source, string message, TrainingProgress? progress = null) =>
        Log?.Invoke(this, new LoggingEventArgs(message, kind, source, progress));

    /// <summary>The device for training and prediction: CUDA <see cref="GpuDeviceId"/> when available, else the CPU (or an error
    /// when <see cref="FallbackToCpu"/> is false).</summary>
    internal Device ResolveDevice(string source)
    {
        if (GpuDeviceId is not int id)
            return Device.CPU;
        if (id < 0)
            throw new ArgumentOutOfRangeException(nameof(GpuDeviceId), id, "GpuDeviceId must be >= 0 (or null for the CPU)");
        int count = torch.cuda.is_available() ? torch.cuda.device_count() : 0;
        if (id < count)
            return new Device(DeviceType.CUDA, id);
        string why = count == 0 ? "CUDA is not available" : $"only {count} CUDA device(s) exist";
        if (!FallbackToCpu)
            throw new InvalidOperationException($"GpuDeviceId is {id} but {why}, and FallbackToCpu is false");
        Write(ChannelMessageKind.Warning, source, $"GpuDeviceId is {id} but {why}: using the CPU");
        return Device.CPU;
    }
}

/// <summary>The kind of a <see cref="LoggingEventArgs"/> message (ML.NET's <c>ChannelMessageKind</c>).</summary>
public enum ChannelMessageKind
{
    /// <summary>Details for debugging.</summary>
    Trace,

    /// <summary>Progress and results.</summary>
    Info,

    /// <summary>Something unexpected that did not stop the work.</summary>
    Warning,

    /// <summary>A failure.</summary>
    Error,
}

/// <summary>A message of <see cref="LowRankContext.Log"/> (ML.NET's <c>LoggingEventArgs</c>, plus the training progress).</summary>
public sealed class LoggingEventArgs : EventArgs
{
    /// <summary>Creates the message.</summary>
    /// <param name="rawMessage">The message text.</param>
    /// <param name="kind">Its kind.</param>
    /// <param name="source">The component that wrote it.</param>
    /// <param name="progress">The training progress it reports, or <see langword="null"/>.</param>
    public LoggingEventArgs(string rawMessage, ChannelMessageKind kind = ChannelMessageKind.Info, string source = "", TrainingProgress? progress = null)
    {
        RawMessage = rawMessage ?? "";
        Kind = kind;
        Source = source ?? "";
        Progress = progress;
    }

    /// <summary>The message with its source and kind, as ML.NET formats it: <c>[Source=..., Kind=...] text</c>.</summary>
    public string Message => $"[Source={Source}, Kind={Kind}] {RawMessage}";

    /// <summary>The message text alone.</summary>
    public string RawMessage { get; }

    /// <summary>The kind of message.</summary>
    public ChannelMessageKind Kind { get; }

    /// <summary>The component that wrote it (e.g. <c>TextClassificationTrainer</c>).</summary>
    public string Source { get; }

    /// <summary>For training progress messages: the step report (loss, learning rate, tokens/s, ETA); otherwise <see langword="null"/>.</summary>
    public TrainingProgress? Progress { get; }
}
