using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Training;

/// <summary>
/// What a <see cref="ITrainingHook"/> sees: the model, the optimizer and scheduler, and where training stands. One
/// instance lives for the whole run; its values change as training advances.
/// </summary>
public sealed class TrainingContext
{
    internal TrainingContext(Trainer trainer, CancellationToken cancellationToken)
    {
        Trainer = trainer;
        CancellationToken = cancellationToken;
    }

    /// <summary>The trainer.</summary>
    public Trainer Trainer { get; }

    /// <summary>The model being trained.</summary>
    public nn.Module Model => Trainer.Model;

    /// <summary>The optimizer (hooks may reset parameter state with <see cref="optim.Optimizer.reset_state"/>).</summary>
    public optim.Optimizer Optimizer => Trainer.Optimizer;

    /// <summary>The learning-rate scheduler.</summary>
    public optim.lr_scheduler.LRScheduler Scheduler => Trainer.Scheduler ?? throw new InvalidOperationException("training has not started");

    /// <summary>The options of the run.</summary>
    public TrainerOptions Options => Trainer.Options;

    /// <summary>The run's cancellation token.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>Optimizer steps completed so far.</summary>
    public int GlobalStep { get; internal set; }

    /// <summary>The 1-based number of the optimizer step in progress (in <see cref="ITrainingHook.BeforeStep"/>,
    /// <see cref="ITrainingHook.AfterBackward"/> and <see cref="ITrainingHook.AfterOptimizerStep"/>): <see cref="GlobalStep"/> + 1.</summary>
    public int Step => GlobalStep + 1;

    /// <summary>Total optimizer steps planned for the run.</summary>
    public int TotalSteps { get; internal set; }

    /// <summary>The current epoch (0-based).</summary>
    public int Epoch { get; internal set; }

    /// <summary>The loss of the step in progress (the weighted mean of its micro-batch losses), once its backward has run;
    /// the last step's loss afterwards.</summary>
    public double? Loss { get; internal set; }

    /// <summary>The gradient norm of the step in progress before clipping (set before <see cref="ITrainingHook.AfterOptimizerStep"/>).</summary>
    public double? GradNorm { get; internal set; }

    /// <summary>The last validation loss, or null.</summary>
    public double? EvalLoss { get; internal set; }

    internal string? StopRequest { get; private set; }

    /// <summary>Asks the trainer to stop after the current step (reported as <see cref="StopReason.HookRequested"/>).</summary>
    /// <param name="reason">Why.</param>
    public void RequestStop(string reason) => StopRequest = reason ?? "stop requested by a hook";
}

/// <summary>
/// Plugs a method into the training loop (PeriodicLoRA merges, Delta-LoRA weight updates, AdaLoRA budgets, ...).
/// Every member has an empty default; implement the ones you need. Order within one optimizer step:
/// <see cref="BeforeStep"/> → forward/backward of every micro-batch → <see cref="AfterBackward"/> (accumulated
/// gradients, before clipping) → clipping → optimizer step → <see cref="AfterOptimizerStep"/> (gradients still present)
/// → scheduler step → gradients cleared. Hooks run in the order they were added, outside any dispose scope of the
/// trainer: open one for temporaries.
/// </summary>
public interface ITrainingHook
{
    /// <summary>Once, before the first step (after a resume has restored the checkpoint).</summary>
    /// <param name="context">The training context.</param>
    void OnTrainBegin(TrainingContext context) { }

    /// <summary>Before the first micro-batch of each optimizer step.</summary>
    /// <param name="context">The training context.</param>
    void BeforeStep(TrainingContext context) { }

    /// <summary>After the backward pass of the last micro-batch of a step, before gradient clipping.</summary>
    /// <param name="context">The training context.</param>
    void AfterBackward(TrainingContext context) { }

    /// <summary>Right after the optimizer update, before the scheduler step and before gradients are cleared.</summary>
    /// <param name="context">The training context.</param>
    void AfterOptimizerStep(TrainingContext context) { }

    /// <summary>After the last step of each epoch.</summary>
    /// <param name="context">The training context.</param>
    void OnEpochEnd(TrainingContext context) { }

    /// <summary>Once, when training ends normally, by early stopping, by a stop request or by cancellation (before the
    /// cancellation exception propagates); not after a failure.</summary>
    /// <param name="context">The training context.</param>
    void OnTrainEnd(TrainingContext context) { }

    /// <summary>An extra loss term for the micro-batch just computed (e.g. a mixture-of-experts router's auxiliary
    /// losses), or null. Called after the loss function of every training micro-batch, inside that micro-batch's
    /// dispose scope; the returned scalar is added to the micro-batch loss before its backward pass (so it is part of the
    /// reported training loss). Not called during evaluation.</summary>
    /// <param name="context">The training context.</param>
    /// <returns>A scalar tensor depending on trainable parameters, or null.</returns>
    Tensor? AuxiliaryLoss(TrainingContext context) => null;

    /// <summary>Adds named values to a <see cref="TrainingProgressKind.Step"/> report's <see cref="TrainingProgress.Metrics"/>
    /// (e.g. router load and entropy); called just before the report is raised.</summary>
    /// <param name="context">The training context.</param>
    /// <param name="metrics">The report's metrics; add entries.</param>
    void ReportMetrics(TrainingContext context, IDictionary<string, double> metrics) { }

    /// <summary>State to save in checkpoints (null: none). The trainer writes the tensors and disposes nothing.</summary>
    /// <returns>Named tensors.</returns>
    IReadOnlyDictionary<string, Tensor>? GetState() => null;

    /// <summary>Restores the state saved by <see cref="GetState"/> when resuming; the tensors are disposed after the call,
    /// so copy what you keep.</summary>
    /// <param name="state">The saved tensors.</param>
    void SetState(IReadOnlyDictionary<string, Tensor> state) { }
}

/// <summary>The kind of a <see cref="TrainingProgress"/> report.</summary>
public enum TrainingProgressKind
{
    /// <summary>Periodic training report (every <see cref="TrainerOptions.LoggingSteps"/> steps and after the last step).</summary>
    Step,
    /// <summary>A validation loss was computed.</summary>
    Evaluation,
    /// <summary>A step was skipped because its loss or gradient norm was not finite.</summary>
    SkippedStep,
    /// <summary>A checkpoint was written.</summary>
    Checkpoint,
}

/// <summary>A progress report raised by <see cref="Trainer.Progress"/> on the training thread.</summary>
public sealed class TrainingProgress : EventArgs
{
    /// <summary>What happened.</summary>
    public required TrainingProgressKind Kind { get; init; }

    /// <summary>Optimizer steps completed.</summary>
    public required int Step { get; init; }

    /// <summary>Total optimizer steps planned.</summary>
    public required int TotalSteps { get; init; }

    /// <summary>Fractional epoch: completed epochs plus the fraction of the current epoch's batches consumed.</summary>
    public required double Epoch { get; init; }

    /// <summary>Mean training loss of the steps since the previous <see cref="TrainingProgressKind.Step"/> report (for
    /// other kinds: the last step's loss; NaN when no step has completed).</summary>
    public required double Loss { get; init; }

    /// <summary>Learning rate of the first parameter group for the next step.</summary>
    public required double LearningRate { get; init; }

    /// <summary>Gradient norm (before clipping) of the last step; NaN when no step has completed.</summary>
    public required double GradNorm { get; init; }

    /// <summary>Real (non-padding) tokens per second processed since the previous step report.</summary>
    public required double TokensPerSecond { get; init; }

    /// <summary>Time since this run (or resumed run) started.</summary>
    public required TimeSpan Elapsed { get; init; }

    /// <summary>Estimated time to the last step, from this run's average step time; null before the first step.</summary>
    public required TimeSpan? Eta { get; init; }

    /// <summary>The validation loss (for <see cref="TrainingProgressKind.Evaluation"/>), else null.</summary>
    public double? EvalLoss { get; init; }

    /// <summary>The checkpoint folder written (for <see cref="TrainingProgressKind.Checkpoint"/>), else null.</summary>
    public string? CheckpointPath { get; init; }

    /// <summary>Why a step was skipped (for <see cref="TrainingProgressKind.SkippedStep"/>), else null.</summary>
    public string? Message { get; init; }

    /// <summary>Named values contributed by training hooks (<see cref="ITrainingHook.ReportMetrics"/>) to a
    /// <see cref="TrainingProgressKind.Step"/> report, e.g. a mixture-of-experts adapter's expert load and router entropy;
    /// null when no hook contributes.</summary>
    public IReadOnlyDictionary<string, double>? Metrics { get; init; }

    /// <inheritdoc/>
    public override string ToString() => Kind switch
    {
        TrainingProgressKind.Evaluation => $"step {Step}/{TotalSteps} epoch {Epoch:F2} eval_loss {EvalLoss:G6}",
        TrainingProgressKind.Checkpoint => $"step {Step}/{TotalSteps} checkpoint {CheckpointPath}",
        TrainingProgressKind.SkippedStep => $"step {Step + 1} skipped: {Message}",
        _ => $"step {Step}/{TotalSteps} epoch {Epoch:F2} loss {Loss:G6} lr {LearningRate:G4} grad_norm {GradNorm:G4} {TokensPerSecond:F0} tok/s eta {Eta}",
    };
}

/// <summary>Why training stopped.</summary>
public enum StopReason
{
    /// <summary>All epochs (or <see cref="TrainerOptions.MaxSteps"/>) done.</summary>
    Completed,
    /// <summary>The validation loss stopped improving.</summary>
    EarlyStopping,
    /// <summary>A hook called <see cref="TrainingContext.RequestStop"/>.</summary>
    HookRequested,
    /// <summary>The cancellation token was triggered.</summary>
    Cancelled,
    /// <summary>An exception ended training (see <see cref="Trainer.Result"/> for what was done before).</summary>
    Failed,
}

/// <summary>One validation result.</summary>
/// <param name="Step">Optimizer steps completed when it was computed.</param>
/// <param name="Epoch">Fractional epoch.</param>
/// <param name="Loss">Mean validation loss.</param>
public sealed record EvaluationRecord(int Step, double Epoch, double Loss);

/// <summary>A step skipped for a non-finite value.</summary>
/// <param name="Step">The 1-based number the step would have had.</param>
/// <param name="Epoch">The epoch.</param>
/// <param name="Reason">What was not finite.</param>
public sealed record SkippedStepRecord(int Step, int Epoch, string Reason);

/// <summary>The outcome of <see cref="Trainer.Train"/> (also available as <see cref="Trainer.Result"/> after a cancellation).</summary>
public sealed class TrainingResult
{
    /// <summary>Optimizer steps completed (including those before a resume).</summary>
    public required int GlobalStep { get; init; }

    /// <summary>Total optimizer steps that were planned.</summary>
    public required int TotalSteps { get; init; }

    /// <summary>Why training stopped.</summary>
    public required StopReason StopReason { get; init; }

    /// <summary>The loss of every completed step, index i for step i + 1 (including steps before a resume, read from the
    /// checkpoint): the weighted mean of the step's micro-batch losses, in float64.</summary>
    public required IReadOnlyList<double> StepLosses { get; init; }

    /// <summary>Gradient norm before clipping of every completed step.</summary>
    public required IReadOnlyList<double> GradNorms { get; init; }

    /// <summary>Learning rate (first group) used by every completed step.</summary>
    public required IReadOnlyList<double> LearningRates { get; init; }

    /// <summary>Every validation result.</summary>
    public required IReadOnlyList<EvaluationRecord> Evaluations { get; init; }

    /// <summary>Steps skipped for non-finite values.</summary>
    public required IReadOnlyList<SkippedStepRecord> SkippedSteps { get; init; }

    /// <summary>Best validation loss, or null.</summary>
    public double? BestEvalLoss { get; init; }

    /// <summary>Step of the best validation loss, or null.</summary>
    public int? BestStep { get; init; }

    /// <summary>The last checkpoint written by this run, or null.</summary>
    public string? LastCheckpoint { get; init; }

    /// <summary>Wall-clock time of this run.</summary>
    public required TimeSpan Elapsed { get; init; }
}

/// <summary>A training failure tied to a step (e.g. a non-finite loss).</summary>
public sealed class TrainingException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">The message.</param>
    public TrainingException(string message) : base(message) { }

    /// <summary>Creates the exception with a cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="inner">The cause.</param>
    public TrainingException(string message, Exception inner) : base(message, inner) { }

    /// <summary>Creates the exception for a step.</summary>
    /// <param name="message">The message.</param>
    /// <param name="step">The 1-based step.</param>
    /// <param name="epoch">The epoch.</param>
    public TrainingException(string message, int step, int epoch) : base(message)
    {
        Step = step;
        Epoch = epoch;
    }

    /// <summary>The 1-based optimizer step, when the failure belongs to one.</summary>
    public int? Step { get; }

    /// <summary>The epoch, when known.</summary>
    public int? Epoch { get; }
}
