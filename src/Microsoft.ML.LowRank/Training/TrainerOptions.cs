using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Training;

/// <summary>How the learning rate evolves over the optimizer steps (Hugging Face's schedules).</summary>
public enum LearningRateSchedule
{
    /// <summary>The base rate throughout; warmup settings are ignored.</summary>
    Constant,
    /// <summary>Linear warmup from 0, then the base rate.</summary>
    ConstantWithWarmup,
    /// <summary>Linear warmup from 0, then linear decay to 0 at the last step.</summary>
    Linear,
    /// <summary>Linear warmup from 0, then half a cosine wave down to 0 at the last step.</summary>
    Cosine,
}

/// <summary>
/// How the losses of the micro-batches of one optimizer step are combined under gradient accumulation.
/// </summary>
public enum AccumulationLossWeighting
{
    /// <summary>
    /// Each micro-batch loss (a mean over that micro-batch) is scaled by 1/n for n micro-batches, so the accumulated
    /// gradient is the gradient of the mean of the micro-batch means. This equals the gradient of one batch n times as
    /// large exactly when every micro-batch has the same number of loss terms (same number of examples for
    /// sequence tasks, same number of unmasked target tokens for token tasks); this is the classic Hugging Face behaviour.
    /// </summary>
    MeanOfMicroBatches,

    /// <summary>
    /// Each micro-batch loss is scaled by its share of the step's loss terms, <see cref="Batch.TargetCount"/>/Σ TargetCount,
    /// so the accumulated gradient equals the gradient of the mean over all target tokens of the step: the same as one
    /// large batch whatever the padding. Requires every batch to report <see cref="Batch.TargetCount"/> (the
    /// <see cref="TokenBatcher"/> does); batches without it fall back to <see cref="MeanOfMicroBatches"/>.
    /// </summary>
    TokenWeighted,
}

/// <summary>
/// Settings of a <see cref="Trainer"/> run. Every field has a documented default; <see cref="Validate"/> checks them.
/// </summary>
public sealed class TrainerOptions
{
    /// <summary>Peak learning rate (the base rate every schedule scales). Default 2e-4.</summary>
    public double LearningRate = 2e-4;

    /// <summary>Passes over the training data, used when <see cref="MaxSteps"/> is 0. Default 3.</summary>
    public int MaxEpochs = 3;

    /// <summary>Number of optimizer steps to take; when positive it overrides <see cref="MaxEpochs"/> (the data is
    /// cycled as often as needed). Default 0 (train for <see cref="MaxEpochs"/>).</summary>
    public int MaxSteps;

    /// <summary>Examples per micro-batch. Default 16.</summary>
    public int BatchSize = 16;

    /// <summary>
    /// Micro-batches per optimizer step. Each micro-batch loss is scaled before backward so the accumulated gradient is
    /// a mean (see <see cref="LossWeighting"/>); the optimizer, clipping and scheduler act once per step. The last step of an
    /// epoch may have fewer micro-batches; its losses are then scaled by its own count. Default 1.
    /// </summary>
    public int GradientAccumulationSteps = 1;

    /// <summary>How micro-batch losses are combined. Default <see cref="AccumulationLossWeighting.MeanOfMicroBatches"/>.</summary>
    public AccumulationLossWeighting LossWeighting = AccumulationLossWeighting.MeanOfMicroBatches;

    /// <summary>Clip the global 2-norm of the gradients to this value before each step; null or a value &lt;= 0 disables
    /// clipping (the norm is still computed, for reporting and non-finite detection). Default 1.0.</summary>
    public double? MaxGradNorm = 1.0;

    /// <summary>Decoupled weight decay for AdamW. Applied to parameters of 2 or more dimensions only: biases, norm weights
    /// and other 1-D parameters never decay (see <see cref="ParameterGroups"/>). Default 0.</summary>
    public double WeightDecay;

    /// <summary>AdamW's first-moment decay. Default 0.9.</summary>
    public double Beta1 = 0.9;

    /// <summary>AdamW's second-moment decay. Default 0.999.</summary>
    public double Beta2 = 0.999;

    /// <summary>AdamW's denominator term. Default 1e-8.</summary>
    public double Epsilon = 1e-8;

    /// <summary>Learning-rate schedule. Default <see cref="LearningRateSchedule.Linear"/>.</summary>
    public LearningRateSchedule Schedule = LearningRateSchedule.Linear;

    /// <summary>Warmup steps; when 0, ceil(<see cref="WarmupRatio"/> × total steps) is used. Default 0.</summary>
    public int WarmupSteps;

    /// <summary>Fraction of the total steps used for warmup when <see cref="WarmupSteps"/> is 0. Default 0.06.</summary>
    public double WarmupRatio = 0.06;

    /// <summary>Evaluate on the validation data every this many optimizer steps; 0 evaluates at the end of every epoch.
    /// Ignored without validation data. Default 0.</summary>
    public int EvaluationSteps;

    /// <summary>Stop after this many evaluations in a row without an improvement of the validation loss larger than
    /// <see cref="EarlyStoppingMinDelta"/>; null disables early stopping. Default null.</summary>
    public int? EarlyStoppingPatience;

    /// <summary>Smallest decrease of the validation loss that counts as an improvement. Default 0.</summary>
    public double EarlyStoppingMinDelta;

    /// <summary>Seed of the data order and of torch's default generators (dropout). Default 42.</summary>
    public int Seed = 42;

    /// <summary>Visit the training examples in a new seeded order every epoch. Default true.</summary>
    public bool ShuffleEachEpoch = true;

    /// <summary>Drop the last micro-batch of an epoch when it has fewer than <see cref="BatchSize"/> examples. Default false.</summary>
    public bool DropLastBatch;

    /// <summary>Folder that receives checkpoints (<c>checkpoint-{step}</c> sub-folders, written atomically); null disables
    /// checkpointing. Default null.</summary>
    public string? CheckpointFolder;

    /// <summary>Save a checkpoint every this many optimizer steps; 0 saves only when training ends (normally, by early
    /// stopping or by cancellation). Default 0.</summary>
    public int SaveSteps;

    /// <summary>Keep only this many most recent checkpoints (older ones are deleted after a successful save); null keeps
    /// all. Default null.</summary>
    public int? KeepLastCheckpoints;

    /// <summary>When a step's loss or gradient norm is NaN or infinite: false throws a <see cref="TrainingException"/>
    /// naming the step; true discards that step's gradients, skips its optimizer and scheduler updates (its micro-batches
    /// are consumed) and goes on. Default false.</summary>
    public bool SkipNonFiniteSteps;

    /// <summary>LoRA+ learning-rate ratio λ: parameters of the B group (see <see cref="ParameterGroups"/>) train with
    /// λ × <see cref="LearningRate"/>. Null disables LoRA+. Default null.</summary>
    public double? LoraPlusRatio;

    /// <summary>Raise a <see cref="TrainingProgressKind.Step"/> progress event every this many optimizer steps (and after
    /// the last one). Default 10.</summary>
    public int LoggingSteps = 10;

    /// <summary>Builds the optimizer from the parameter groups and these options; null uses (fused) AdamW with
    /// <see cref="Beta1"/>, <see cref="Beta2"/> and <see cref="Epsilon"/>. The groups already carry their learning rate
    /// (<see cref="LearningRate"/>, times <see cref="LoraPlusRatio"/> for LoRA+ B groups) and weight decay, which take
    /// precedence over the optimizer-wide values the factory passes. Default null.</summary>
    public Func<IReadOnlyList<torch.optim.ParamGroup>, TrainerOptions, torch.optim.Optimizer>? OptimizerFactory;

    /// <summary>Run the loss function (forward) inside an autocast region of this type on the model's device
    /// (<see cref="torch.autocast"/>): BFloat16 (CPU and CUDA) or Float16 (CUDA). Backward, clipping and the optimizer run
    /// outside it. Null disables autocast. Default null.</summary>
    public ScalarType? Autocast;

    /// <summary>Dynamic loss scaling (<see cref="GradScaler"/>): the loss is scaled before backward, gradients are unscaled
    /// and checked before clipping, and a step whose gradients overflow is skipped (recorded in
    /// <see cref="TrainingResult.SkippedSteps"/>, never an error) with the scale halved. Null: on exactly when
    /// <see cref="Autocast"/> is Float16 or a trainable parameter is Float16. Default null.</summary>
    public bool? LossScaling;

    /// <summary>The loss scale the scaler starts from. Default 65536 (2¹⁶).</summary>
    public double InitialLossScale = 65536;

    /// <summary>Clean steps before the loss scale doubles. Default 2000.</summary>
    public int LossScaleGrowthInterval = 2000;

    /// <summary>Keep float32 master copies of float16/bfloat16 trainable parameters: the optimizer (and its state) works on
    /// the float32 masters, which are copied back into the model after every step. Null: on when any trainable parameter
    /// is float16/bfloat16. (Adapters on a half-precision base are float32 already unless created otherwise.) Default null.</summary>
    public bool? MasterWeights;

    /// <summary>When not null, sets the model's gradient checkpointing per transformer block
    /// (<see cref="Models.TransformerBackbone.GradientCheckpointing"/>) for models the trainer knows (a
    /// <see cref="Models.PretrainedModel"/> or an adapted one). Null leaves the model as it is. Default null.</summary>
    public bool? GradientCheckpointing;

    /// <summary>When not null, sets <see cref="Models.PretrainedModel.ChunkedCrossEntropy"/> (causal-LM loss without full
    /// logits) on the model. Null leaves the model as it is. Default null.</summary>
    public bool? ChunkedCrossEntropy;

    /// <summary>Before the first step, estimate the run's peak memory with <see cref="MemoryPlanner"/> (for a
    /// <see cref="Models.PretrainedModel"/> or an adapted one; the sequence length is the first batch's) and throw an
    /// <see cref="InsufficientMemoryException"/> naming the estimate and settings that would fit when it exceeds the
    /// memory available on the device. Default true.</summary>
    public bool MemoryCheck = true;

    /// <summary>Memory available to the run for <see cref="MemoryCheck"/>, in bytes; null asks the device
    /// (<see cref="MemoryPlanner.AvailableBytes"/>). Default null.</summary>
    public long? MemoryBudgetBytes;

    /// <summary>Pack the training examples of each micro-batch end to end into rows (<see cref="PackedTokenBatcher"/>):
    /// positions restart per example and attention stays inside it, so the micro-batch holds the same examples and gives
    /// the same loss as padded rows while the layers spend (almost) no compute on padding. The training data must be a
    /// <see cref="TokenBatcher"/> (or already a <see cref="PackedTokenBatcher"/>) and the model a decoder (LLaMA family or
    /// GPT-2); a custom loss function must pass <see cref="Batch.ToModelInputs"/> (position and sequence ids) to the model.
    /// Validation data stays padded. Default false.</summary>
    public bool PackSequences;

    /// <summary>Tokens per packed row with <see cref="PackSequences"/>; null: the batcher's
    /// <see cref="TokenBatcher.MaxLength"/>, or else its longest example. Default null.</summary>
    public int? PackedLength;

    /// <summary>Checks every setting.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range; the message names it.</exception>
    public void Validate()
    {
        static void Check(bool ok, string name, object value, string rule)
        {
            if (!ok) throw new ArgumentOutOfRangeException(name, value, $"TrainerOptions.{name} {rule}");
        }
        Check(double.IsFinite(LearningRate) && LearningRate >= 0, nameof(LearningRate), LearningRate, "must be a finite value >= 0");
        Check(MaxEpochs >= 0, nameof(MaxEpochs), MaxEpochs, "must be >= 0");
        Check(MaxSteps >= 0, nameof(MaxSteps), MaxSteps, "must be >= 0");
        Check(MaxSteps > 0 || MaxEpochs > 0, nameof(MaxEpochs), MaxEpochs, "or MaxSteps must be positive");
        Check(BatchSize >= 1, nameof(BatchSize), BatchSize, "must be >= 1");
        Check(GradientAccumulationSteps >= 1, nameof(GradientAccumulationSteps), GradientAccumulationSteps, "must be >= 1");
        Check(MaxGradNorm is null || !double.IsNaN(MaxGradNorm.Value), nameof(MaxGradNorm), MaxGradNorm ?? 0, "must not be NaN");
        Check(double.IsFinite(WeightDecay) && WeightDecay >= 0, nameof(WeightDecay), WeightDecay, "must be a finite value >= 0");
        Check(Beta1 >= 0 && Beta1 < 1, nameof(Beta1), Beta1, "must be in [0, 1)");
        Check(Beta2 >= 0 && Beta2 < 1, nameof(Beta2), Beta2, "must be in [0, 1)");
        Check(Epsilon >= 0, nameof(Epsilon), Epsilon, "must be >= 0");
        Check(WarmupSteps >= 0, nameof(WarmupSteps), WarmupSteps, "must be >= 0");
        Check(WarmupRatio >= 0 && WarmupRatio <= 1, nameof(WarmupRatio), WarmupRatio, "must be in [0, 1]");
        Check(EvaluationSteps >= 0, nameof(EvaluationSteps), EvaluationSteps, "must be >= 0");
        Check(EarlyStoppingPatience is null || EarlyStoppingPatience >= 1, nameof(EarlyStoppingPatience), EarlyStoppingPatience ?? 0, "must be >= 1 (or null)");
        Check(EarlyStoppingMinDelta >= 0, nameof(EarlyStoppingMinDelta), EarlyStoppingMinDelta, "must be >= 0");
        Check(SaveSteps >= 0, nameof(SaveSteps), SaveSteps, "must be >= 0");
        Check(KeepLastCheckpoints is null || KeepLastCheckpoints >= 1, nameof(KeepLastCheckpoints), KeepLastCheckpoints ?? 0, "must be >= 1 (or null)");
        Check(LoraPlusRatio is null || (double.IsFinite(LoraPlusRatio.Value) && LoraPlusRatio > 0), nameof(LoraPlusRatio), LoraPlusRatio ?? 0, "must be a finite value > 0 (or null)");
        Check(LoggingSteps >= 1, nameof(LoggingSteps), LoggingSteps, "must be >= 1");
        Check(Autocast is null or ScalarType.BFloat16 or ScalarType.Float16, nameof(Autocast), Autocast ?? ScalarType.Float32, "must be BFloat16, Float16 or null");
        Check(InitialLossScale > 0 && double.IsFinite(InitialLossScale), nameof(InitialLossScale), InitialLossScale, "must be a finite value > 0");
        Check(LossScaleGrowthInterval >= 1, nameof(LossScaleGrowthInterval), LossScaleGrowthInterval, "must be >= 1");
        Check(MemoryBudgetBytes is null || MemoryBudgetBytes > 0, nameof(MemoryBudgetBytes), MemoryBudgetBytes ?? 0, "must be > 0 (or null)");
        Check(PackedLength is null || PackedLength >= 2, nameof(PackedLength), PackedLength ?? 0, "must be >= 2 (or null)");
    }

    /// <summary>A shallow copy.</summary>
    /// <returns>The copy.</returns>
    public TrainerOptions Clone() => (TrainerOptions)MemberwiseClone();
}
