using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Training;

namespace Microsoft.ML.LowRank.Pipeline;

/// <summary>The element type the base model's weights are loaded in for training and prediction (adapter weights stay
/// float32 either way).</summary>
public enum TrainingPrecision
{
    /// <summary>bfloat16 on a CUDA device, float32 on the CPU.</summary>
    Automatic,

    /// <summary>float32.</summary>
    Float32,

    /// <summary>bfloat16 (half the memory of float32; the frozen base runs in bfloat16).</summary>
    BFloat16,

    /// <summary>float16 (on CUDA; libtorch's CPU kernels lack several float16 operations).</summary>
    Float16,
}

/// <summary>Early stopping on the validation loss (needs <see cref="LowRankTrainerOptions.ValidationSet"/>), as in ML.NET's
/// ImageClassification early-stopping criteria.</summary>
public sealed class EarlyStoppingOptions
{
    /// <summary>Stop after this many evaluations in a row without an improvement larger than <see cref="MinDelta"/>. Default 2.</summary>
    public int Patience = 2;

    /// <summary>Smallest decrease of the validation loss that counts as an improvement. Default 0.</summary>
    public double MinDelta;
}

/// <summary>What <see cref="LowRankTrainerOptions.MetricsCallback"/> receives after every optimizer step and every evaluation.</summary>
public sealed class LowRankTrainingMetrics
{
    /// <summary>Whether this is a step report or a validation result.</summary>
    public required TrainingProgressKind Kind { get; init; }

    /// <summary>Optimizer steps completed.</summary>
    public required int Step { get; init; }

    /// <summary>Total optimizer steps planned.</summary>
    public required int TotalSteps { get; init; }

    /// <summary>Fractional epoch.</summary>
    public required double Epoch { get; init; }

    /// <summary>Mean training loss since the previous step report.</summary>
    public required double TrainingLoss { get; init; }

    /// <summary>The validation loss (evaluation reports), else <see langword="null"/>.</summary>
    public double? ValidationLoss { get; init; }

    /// <summary>Learning rate of the next step.</summary>
    public required double LearningRate { get; init; }

    /// <summary>Real tokens per second since the previous step report.</summary>
    public required double TokensPerSecond { get; init; }

    /// <summary>Time since training started.</summary>
    public required TimeSpan Elapsed { get; init; }

    /// <summary>Estimated time to the last step, or <see langword="null"/>.</summary>
    public TimeSpan? Eta { get; init; }

    /// <inheritdoc/>
    public override string ToString() => ValidationLoss is { } v
        ? FormattableString.Invariant($"step {Step}/{TotalSteps} epoch {Epoch:F2} validation loss {v:F4}")
        : FormattableString.Invariant($"step {Step}/{TotalSteps} epoch {Epoch:F2} loss {TrainingLoss:F4} lr {LearningRate:E2} {TokensPerSecond:F0} tok/s");
}

/// <summary>
/// Settings shared by every low-rank task trainer (ML.NET's <c>TorchSharpBaseTrainer.Options</c>): the base model folder,
/// the adapter method, batching, schedule, precision, sequence length, validation, early stopping, checkpoints and
/// reporting. Fields with documented defaults, as in ML.NET. The adapter method is just another option:
/// <see cref="Method"/> takes any <see cref="LowRankAdapterOptions"/> (see <see cref="AdapterMethods.Methods"/>).
/// </summary>
public abstract class LowRankTrainerOptions
{
    /// <summary>A Hugging Face model folder: <c>config.json</c>, <c>model.safetensors</c> (or a sharded index) and the
    /// tokenizer files (<c>tokenizer.json</c>, or <c>vocab.json</c> + <c>merges.txt</c>, or <c>vocab.txt</c>). Required;
    /// <c>Fit</c> fails naming the missing file otherwise. Default <see langword="null"/>.</summary>
    public string? ModelFolder;

    /// <summary>The adapter method and its settings: any options class of <see cref="AdapterMethods.Methods"/> (for example
    /// <c>AdapterMethods.Create("rslora")</c>). Target modules left null take the method's default for the model type.
    /// Default LoRA with r = 8, α = 16.</summary>
    public LowRankAdapterOptions Method = new LoraOptions { R = 8, LoraAlpha = 16 };

    /// <summary>Examples per micro-batch. Default 16.</summary>
    public int BatchSize = 16;

    /// <summary>Micro-batches per optimizer step. Default 1.</summary>
    public int GradientAccumulationSteps = 1;

    /// <summary>Passes over the training data (used when <see cref="MaxSteps"/> is 0). Default 3.</summary>
    public int MaxEpochs = 3;

    /// <summary>Optimizer steps to take; when positive it overrides <see cref="MaxEpochs"/>. Default 0.</summary>
    public int MaxSteps;

    /// <summary>Peak learning rate. Default 2e-4.</summary>
    public double LearningRate = 2e-4;

    /// <summary>Learning-rate schedule. Default <see cref="LearningRateSchedule.Linear"/> (warmup, then linear decay to 0).</summary>
    public LearningRateSchedule Schedule = LearningRateSchedule.Linear;

    /// <summary>Fraction of the steps used for linear warmup. Default 0.06.</summary>
    public double WarmupRatio = 0.06;

    /// <summary>AdamW's decoupled weight decay (2-D parameters only). Default 0.</summary>
    public double WeightDecay;

    /// <summary>Clip the gradient norm to this value; null disables clipping. Default 1.0.</summary>
    public double? MaxGradNorm = 1.0;

    /// <summary>The element type of the base weights. Default <see cref="TrainingPrecision.Automatic"/> (float32 on the CPU).</summary>
    public TrainingPrecision Precision = TrainingPrecision.Automatic;

    /// <summary>Longest token sequence (longer inputs are truncated); capped by the model's <c>max_position_embeddings</c>.
    /// Default 512.</summary>
    public int MaxSequenceLength = 512;

    /// <summary>Data with the columns the trainer reads (in a chain: after the earlier steps, e.g. with the label already
    /// mapped to a key), evaluated (mean loss) after every epoch, or every <see cref="EvaluationSteps"/> steps; needed for
    /// <see cref="EarlyStopping"/>. Default <see langword="null"/>.</summary>
    public IDataView? ValidationSet;

    /// <summary>Evaluate every this many steps instead of every epoch (0: every epoch). Default 0.</summary>
    public int EvaluationSteps;

    /// <summary>Early stopping on the validation loss, or <see langword="null"/> (off). Default <see langword="null"/>.</summary>
    public EarlyStoppingOptions? EarlyStopping;

    /// <summary>A folder that receives resumable training checkpoints (<c>checkpoint-N</c>), or <see langword="null"/>. Default <see langword="null"/>.</summary>
    public string? CheckpointFolder;

    /// <summary>With <see cref="CheckpointFolder"/>: write a checkpoint every this many steps (0: at the end only). Default 0.</summary>
    public int SaveSteps;

    /// <summary>Called after every optimizer step and every validation, on the training thread. Default <see langword="null"/>.</summary>
    public Action<LowRankTrainingMetrics>? MetricsCallback;

    /// <summary>Report progress to <see cref="LowRankContext.Log"/> every this many steps. Default 1 (every step).</summary>
    public int LoggingSteps = 1;

    /// <summary>Visit the training examples in a new order every epoch. Default true.</summary>
    public bool ShuffleEachEpoch = true;

    /// <summary>
    /// The column holding each row's task (or domain, or instruction cluster) for mixture-of-LoRA-experts methods whose
    /// routing reads one: the task id of a task router (<c>mmoelora</c>, <c>poly</c>, <c>mocle</c>), the domain label that
    /// supervises MoA's router (<c>moa</c>, training only), the task type of LoRAMoE's localized balancing constraint.
    /// A key column (from <c>MapValueToKey</c>: task id = key − 1; key 0, missing, fails), an Int32/Int64/UInt32 column
    /// (task id = the value) or a String column (ids in order of first appearance in the training data, as
    /// <c>MapValueToKey</c> orders keys by default; the mapping is saved with the model and a value the training data did
    /// not have fails at prediction). Ids must be below the method's <c>num_tasks</c> (MoA: <c>num_experts</c>; LoRAMoE: 2),
    /// else Fit fails naming the column. A task router reads the column at prediction time too; MoA's router predicts
    /// the domain itself, so its column is needed only at Fit. Without a column, a task router with one task routes
    /// every row as task 0 and MoCLE clusters the rows (k-means on their instance embeddings, seeded, the centroids saved
    /// with the model); other task-routed methods fail at Fit naming this option. Methods without such routing ignore
    /// the column (with a warning in the log). Default <see langword="null"/>.
    /// </summary>
    public string? TaskColumnName;

    /// <summary>
    /// A vector-of-Single column holding each row's instance embedding for mixture-of-LoRA-experts methods whose router
    /// reads one (Octavius' global gate, of size <c>instance_dim</c>, by default the hidden size) or whose rows are
    /// clustered (MoCLE without a task column). <see langword="null"/> derives it from the model, as Octavius does: the
    /// mean of the frozen input token embeddings over the row's instruction tokens (the prompt for causal LM; the whole
    /// encoded input, special tokens included, for the other tasks; padding excluded). Read at Fit and at prediction.
    /// Default <see langword="null"/>.
    /// </summary>
    public string? InstanceColumnName;

    /// <summary>Seed of the adapter initialisation, data order and dropout; <see langword="null"/> draws one from the
    /// context (deterministic for a seeded context). Default <see langword="null"/>.</summary>
    public int? Seed;

    /// <summary>Checks the settings; throws <see cref="ArgumentOutOfRangeException"/> or <see cref="ArgumentException"/>
    /// naming the field.</summary>
    public virtual void Validate()
    {
        static void Check(bool ok, string name, object? value, string rule)
        {
            if (!ok) throw new ArgumentOutOfRangeException(name, value, $"{name} {rule}");
        }
        if (Method is null) throw new ArgumentException("Method must be set to an adapter method's options (e.g. new LoraOptions())", nameof(Method));
        Method.Validate();
        Check(BatchSize >= 1, nameof(BatchSize), BatchSize, "must be >= 1");
        Check(GradientAccumulationSteps >= 1, nameof(GradientAccumulationSteps), GradientAccumulationSteps, "must be >= 1");
        Check(MaxEpochs >= 0 && MaxSteps >= 0 && (MaxEpochs > 0 || MaxSteps > 0), nameof(MaxEpochs), MaxEpochs, "or MaxSteps must be positive");
        Check(double.IsFinite(LearningRate) && LearningRate >= 0, nameof(LearningRate), LearningRate, "must be a finite value >= 0");
        Check(WarmupRatio >= 0 && WarmupRatio <= 1, nameof(WarmupRatio), WarmupRatio, "must be in [0, 1]");
        Check(double.IsFinite(WeightDecay) && WeightDecay >= 0, nameof(WeightDecay), WeightDecay, "must be a finite value >= 0");
        Check(MaxSequenceLength >= 2, nameof(MaxSequenceLength), MaxSequenceLength, "must be >= 2");
        Check(EvaluationSteps >= 0, nameof(EvaluationSteps), EvaluationSteps, "must be >= 0");
        Check(SaveSteps >= 0, nameof(SaveSteps), SaveSteps, "must be >= 0");
        Check(LoggingSteps >= 1, nameof(LoggingSteps), LoggingSteps, "must be >= 1");
        Check(EarlyStopping is null || EarlyStopping.Patience >= 1, nameof(EarlyStopping), EarlyStopping?.Patience, "Patience must be >= 1");
        Check(EarlyStopping is null || EarlyStopping.MinDelta >= 0, nameof(EarlyStopping), EarlyStopping?.MinDelta, "MinDelta must be >= 0");
        if (EarlyStopping is not null && ValidationSet is null)
            throw new ArgumentException("EarlyStopping needs a ValidationSet", nameof(EarlyStopping));
        if (!Enum.IsDefined(Precision)) throw new ArgumentOutOfRangeException(nameof(Precision), Precision, "unknown precision");
        if (TaskColumnName is { Length: 0 }) throw new ArgumentException("TaskColumnName is empty: give a column name or null", nameof(TaskColumnName));
        if (InstanceColumnName is { Length: 0 }) throw new ArgumentException("InstanceColumnName is empty: give a column name or null", nameof(InstanceColumnName));
    }

    /// <summary>Whether the trainer packs the training examples (<see cref="TrainerOptions.PackSequences"/>); tasks whose
    /// data is a <see cref="TokenBatcher"/> may offer it.</summary>
    internal virtual bool PackTrainingSequences => false;

    /// <summary>The trainer settings these options stand for.</summary>
    internal TrainerOptions ToTrainerOptions(int seed) => new()
    {
        PackSequences = PackTrainingSequences,
        LearningRate = LearningRate,
        MaxEpochs = MaxEpochs,
        MaxSteps = MaxSteps,
        BatchSize = BatchSize,
        GradientAccumulationSteps = GradientAccumulationSteps,
        MaxGradNorm = MaxGradNorm,
        WeightDecay = WeightDecay,
        Schedule = Schedule,
        WarmupRatio = WarmupRatio,
        EvaluationSteps = EvaluationSteps,
        EarlyStoppingPatience = EarlyStopping?.Patience,
        EarlyStoppingMinDelta = EarlyStopping?.MinDelta ?? 0,
        Seed = seed,
        ShuffleEachEpoch = ShuffleEachEpoch,
        CheckpointFolder = CheckpointFolder,
        SaveSteps = SaveSteps,
        LoggingSteps = LoggingSteps,
    };
}
