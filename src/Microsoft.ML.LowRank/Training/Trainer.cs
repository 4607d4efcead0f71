using System.Buffers;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Training;

/// <summary>
/// Trains the parameters of any <see cref="nn.Module"/> that have <c>requires_grad == true</c> against a loss function:
/// seeded shuffling, gradient accumulation, gradient clipping, a learning-rate schedule, periodic evaluation, early
/// stopping, non-finite loss detection, progress events, cancellation, training hooks, and atomic checkpoints from which
/// a run resumes with bit-identical losses (on the CPU).
/// </summary>
/// <remarks>
/// Each optimizer step runs inside a dispose scope (one more per micro-batch, so activations are freed early): nothing a
/// step allocates outlives it except the optimizer state. Determinism: the data order is a pure function of
/// <see cref="TrainerOptions.Seed"/> and the epoch; torch's default generators are seeded with the same seed when a fresh
/// run starts, and their states are saved in checkpoints.
/// </remarks>
public sealed class Trainer : IDisposable
{
    private readonly Func<Batch, Tensor> _loss;
    private readonly List<(string Name, nn.Parameter Param)> _trainable;
    // What the optimizer updates: _trainable, or float32 masters in place of half-precision parameters.
    private readonly List<(string Name, nn.Parameter Param)> _optimized;
    private readonly MasterWeights? _masters;
    private readonly Device _device;
    private readonly RunState _state = new();
    private TrainingContext? _ctx;
    private Dictionary<string, Tensor>? _rngAtStepStart;
    private bool _started, _disposed;

    /// <summary>Creates a trainer for a model and a loss function.</summary>
    /// <param name="model">The model; its parameters with <c>requires_grad == true</c> are trained (decided now).</param>
    /// <param name="lossFunction">Computes the scalar loss of a batch (a mean over its terms) with the model; the batch
    /// is already on the device of the model's first trainable parameter.</param>
    /// <param name="options">Settings (copied; default: <see cref="TrainerOptions"/>' defaults). When the model is a
    /// <see cref="Adapters.LowRankModel"/>, every adapter whose options implement <see cref="IAdapterTrainingMethod"/>
    /// adjusts this copy (optimizer, hooks) first.</param>
    /// <exception cref="ArgumentException">The model has no trainable parameter.</exception>
    public Trainer(nn.Module model, Func<Batch, Tensor> lossFunction, TrainerOptions? options = null)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        _loss = lossFunction ?? throw new ArgumentNullException(nameof(lossFunction));
        Options = options?.Clone() ?? new TrainerOptions();
        Options.Validate();
        _trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => (p.name, p.parameter)).ToList();
        if (_trainable.Count == 0)
            throw new ArgumentException("the model has no parameter with requires_grad = true: nothing to train", nameof(model));
        _device = _trainable[0].Param.device;
        if (model is Adapters.LowRankModel adapted)
            foreach (var name in adapted.AdapterNames)
                if (adapted.PeftConfig[name] is IAdapterTrainingMethod method)
                    method.ConfigureTraining(new AdapterTrainingSetup(adapted, name, Options, Hooks));
        ApplyModelOptions(model, Options);
        bool lowPrecision = _trainable.Any(p => p.Param.dtype is ScalarType.Float16 or ScalarType.BFloat16);
        if (Options.MasterWeights ?? lowPrecision)
        {
            _masters = new MasterWeights(_trainable);
            if (!_masters.Any)
            {
                _masters.Dispose();
                _masters = null;
            }
        }
        _optimized = _masters?.Optimized ?? _trainable;
        bool fp16 = Options.Autocast == ScalarType.Float16 || _trainable.Any(p => p.Param.dtype == ScalarType.Float16);
        if (Options.LossScaling ?? fp16) Scaler = new GradScaler(Options.InitialLossScale, growthInterval: Options.LossScaleGrowthInterval);
        var groups = ParameterGroups.Build(_optimized.Select(p => (p.Name, p.Param)), Options.LearningRate, Options.WeightDecay, Options.LoraPlusRatio);
        Optimizer = Options.OptimizerFactory?.Invoke(groups, Options)
            ?? optim.AdamW(groups, Options.LearningRate, Options.Beta1, Options.Beta2, Options.Epsilon, Options.WeightDecay);
        if (Optimizer is null) throw new InvalidOperationException("TrainerOptions.OptimizerFactory returned null");
    }

    /// <summary>Creates a trainer for a pretrained model: the loss is the one the model computes from the batch's labels.</summary>
    /// <param name="model">The model (freeze what must not train with <c>requires_grad = false</c> first).</param>
    /// <param name="options">Settings.</param>
    public Trainer(PretrainedModel model, TrainerOptions? options = null) : this(model, ModelLoss(model), options) { }

    private static Func<Batch, Tensor> ModelLoss(PretrainedModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return batch => model.forward(batch.ToModelInputs()).Loss
            ?? throw new TrainingException("the model returned no loss: the batches need labels");
    }

    /// <summary>The loss scaler when loss scaling is on (see <see cref="TrainerOptions.LossScaling"/>), else null.</summary>
    public GradScaler? Scaler { get; }

    private static void ApplyModelOptions(nn.Module model, TrainerOptions o)
    {
        var pretrained = model as PretrainedModel ?? (model as Adapters.LowRankModel)?.Model;
        if (pretrained is null) return;
        if (o.GradientCheckpointing is { } gc) pretrained.Backbone.GradientCheckpointing = gc;
        if (o.ChunkedCrossEntropy is { } cc) pretrained.ChunkedCrossEntropy = cc;
    }

    private IBatchSource PackTrainingData(IBatchSource train)
    {
        var pretrained = Model as PretrainedModel ?? (Model as Adapters.LowRankModel)?.Model;
        if (pretrained is not null && pretrained.Config.Family is not (ModelFamily.Llama or ModelFamily.Gpt2))
            throw new ArgumentException($"TrainerOptions.PackSequences needs a decoder (LLaMA family or GPT-2); this model is {pretrained.Config.Family}", nameof(train));
        return train switch
        {
            PackedTokenBatcher p when Options.PackedLength is null || Options.PackedLength == p.PackedLength => p,
            PackedTokenBatcher p => throw new ArgumentException($"the training data is packed to {p.PackedLength} tokens but TrainerOptions.PackedLength is {Options.PackedLength}", nameof(train)),
            TokenBatcher t => PackedTokenBatcher.From(t, Options.PackedLength),
            _ => throw new ArgumentException($"TrainerOptions.PackSequences needs a TokenBatcher as training data, got {train.GetType().Name}", nameof(train)),
        };
    }

    /// <summary>The memory plan of the run when <see cref="TrainerOptions.MemoryCheck"/> estimated one (null otherwise).</summary>
    public MemoryPlan? MemoryPlan { get; private set; }

    private void CheckMemory(IBatchSource train)
    {
        var pretrained = Model as PretrainedModel ?? (Model as Adapters.LowRankModel)?.Model;
        if (pretrained is null || pretrained.Config.Family is not (ModelFamily.Llama or ModelFamily.Gpt2) || pretrained.Task != ModelTask.CausalLM) return;
        int seq;
        using (NewDisposeScope())
        {
            var first = train.GetBatch(Enumerable.Range(0, Math.Min(Options.BatchSize, train.Count)).ToList());
            seq = (int)first.InputIds.size(1);
        }
        if (seq < 2) return;
        var baseType = pretrained.parameters().First().dtype;
        if (Options.Autocast is { } ac && baseType == ScalarType.Float32) baseType = ac;
        int rank = 8;
        var method = PlannedMethod.Lora;
        IReadOnlyCollection<string>? targets = null;
        if (Model is Adapters.LowRankModel adapted && adapted.AdapterNames.Count > 0 && adapted.PeftConfig[adapted.AdapterNames[0]] is Adapters.Lora.LoraOptions lo)
        {
            rank = lo.R;
            if (lo.TargetModules is { IsAllLinear: false, Names: { } names }) targets = names.ToList();
            if (!_trainable.Any(p => p.Name.Contains("lora_A", StringComparison.Ordinal))) method = PlannedMethod.LoraFA;
        }
        var options = new MemoryPlanOptions
        {
            Config = pretrained.Config, Method = method, Rank = rank, TargetModules = targets, BatchSize = Options.BatchSize, SequenceLength = seq,
            BaseType = baseType, AdapterType = _optimized[0].Param.dtype, GradientCheckpointing = pretrained.Backbone.GradientCheckpointing,
            ChunkedCrossEntropy = pretrained.ChunkedCrossEntropy, CrossEntropyChunkRows = pretrained.CrossEntropyChunkRows, Device = _device.type,
        };
        var plan = MemoryPlanner.Estimate(options);
        long available = Options.MemoryBudgetBytes ?? MemoryPlanner.AvailableBytes(_device);
        // Weights and adapters are loaded already (the device's free memory no longer includes them).
        long resident = Options.MemoryBudgetBytes is null ? plan.BaseWeightBytes + plan.AdapterBytes : 0;
        if (available > 0) MemoryPlan = MemoryPlanner.EnsureFits(options, available, resident);
        else MemoryPlan = plan;
    }

    /// <summary>The model being trained.</summary>
    public nn.Module Model { get; }

    /// <summary>The options in force (a copy of those given).</summary>
    public TrainerOptions Options { get; }

    /// <summary>The optimizer over the trainable parameters (grouped by <see cref="ParameterGroups"/>).</summary>
    public optim.Optimizer Optimizer { get; }

    /// <summary>The learning-rate scheduler; created when <see cref="Train"/> starts.</summary>
    public optim.lr_scheduler.LRScheduler? Scheduler { get; private set; }

    /// <summary>The trained parameters with their names.</summary>
    public IReadOnlyList<(string Name, nn.Parameter Parameter)> TrainableParameters => _trainable;

    /// <summary>Hooks called during training, in order (add them before <see cref="Train"/>).</summary>
    public IList<ITrainingHook> Hooks { get; } = new List<ITrainingHook>();

    /// <summary>Raised on the training thread: periodic step reports, evaluations, skipped steps and checkpoints.</summary>
    public event EventHandler<TrainingProgress>? Progress;

    /// <summary>The outcome of the last <see cref="Train"/> call, also when it was cancelled; null before.</summary>
    public TrainingResult? Result { get; private set; }

    // ------------------------------------------------------------------ training

    /// <summary>
    /// Trains. Runs until <see cref="TrainerOptions.MaxEpochs"/> or <see cref="TrainerOptions.MaxSteps"/>, early stopping, or
    /// a hook's stop request. A trainer trains once; to continue later, create a new one and resume from a checkpoint.
    /// </summary>
    /// <param name="train">Training data.</param>
    /// <param name="validation">Validation data (for evaluation and early stopping), or null.</param>
    /// <param name="resumeFromCheckpoint">A checkpoint folder (or a run folder, whose latest checkpoint is used) to resume
    /// from: parameters, optimizer, scheduler, random generators, data position and histories are restored, and the run
    /// continues exactly as the interrupted one would have. Null starts afresh.</param>
    /// <param name="cancellationToken">Stops training at the next micro-batch boundary: the partial step is discarded, a
    /// checkpoint of the last completed step is written when checkpointing is configured, hooks see
    /// <see cref="ITrainingHook.OnTrainEnd"/>, then <see cref="OperationCanceledException"/> is thrown
    /// (<see cref="Result"/> holds what was done).</param>
    /// <returns>Losses, evaluations and why training stopped.</returns>
    /// <exception cref="TrainingException">A non-finite loss or gradient norm (unless skipping is enabled), or a loss
    /// function that does not return a scalar depending on the trainable parameters.</exception>
    public TrainingResult Train(IBatchSource train, IBatchSource? validation = null, string? resumeFromCheckpoint = null,
        CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(train);
        if (_started) throw new InvalidOperationException("a Trainer trains once; create a new Trainer and resume from a checkpoint to continue");
        _started = true;
        var o = Options;
        if (o.PackSequences) train = PackTrainingData(train);

        int batchesPerEpoch = BatchCount(train.Count, o.BatchSize, o.DropLastBatch);
        if (batchesPerEpoch == 0)
            throw new ArgumentException($"the training data ({train.Count} examples, batch size {o.BatchSize}, drop last {o.DropLastBatch}) yields no batch", nameof(train));
        if (validation is { Count: 0 }) throw new ArgumentException("the validation data is empty", nameof(validation));
        int stepsPerEpoch = (batchesPerEpoch + o.GradientAccumulationSteps - 1) / o.GradientAccumulationSteps;
        int totalSteps = o.MaxSteps > 0 ? o.MaxSteps : checked(o.MaxEpochs * stepsPerEpoch);
        int warmup = o.WarmupSteps > 0 ? o.WarmupSteps : (int)Math.Ceiling(o.WarmupRatio * totalSteps);
        Scheduler = o.Schedule switch
        {
            LearningRateSchedule.Constant => optim.lr_scheduler.get_constant_schedule(Optimizer),
            LearningRateSchedule.ConstantWithWarmup => optim.lr_scheduler.get_constant_schedule_with_warmup(Optimizer, warmup),
            LearningRateSchedule.Linear => optim.lr_scheduler.get_linear_schedule_with_warmup(Optimizer, warmup, totalSteps),
            LearningRateSchedule.Cosine => optim.lr_scheduler.get_cosine_schedule_with_warmup(Optimizer, warmup, totalSteps),
            _ => throw new ArgumentOutOfRangeException(nameof(o.Schedule), o.Schedule, "unknown schedule"),
        };

        if (o.MemoryCheck && resumeFromCheckpoint is null) CheckMemory(train);
        var ctx = _ctx = new TrainingContext(this, cancellationToken) { TotalSteps = totalSteps };
        if (o.CheckpointFolder is { } folder)
        {
            Directory.CreateDirectory(folder);
            Checkpoints.CleanTemporary(folder);
        }
        if (resumeFromCheckpoint is not null) LoadCheckpoint(resumeFromCheckpoint, train.Count);
        else manual_seed(o.Seed);
        ctx.GlobalStep = _state.GlobalStep;
        ctx.Epoch = _state.Epoch;
        ctx.Loss = _state.StepLosses.Count > 0 ? _state.StepLosses[^1] : null;
        ctx.EvalLoss = _state.Evaluations.Count > 0 ? _state.Evaluations[^1].Loss : null;

        var run = new RunInfo(train, validation, batchesPerEpoch, totalSteps, Stopwatch.StartNew());
        StopReason? stop = null;
        string? lastCheckpoint = null;
        (int, int, int)? lastCheckpointPosition = null;

        Model.train();
        foreach (var h in Hooks) h.OnTrainBegin(ctx);
        try
        {
            while (stop is null)
            {
                if (o.MaxSteps > 0 ? _state.GlobalStep >= totalSteps : _state.Epoch >= o.MaxEpochs) { stop = StopReason.Completed; break; }
                var plan = DataOrder.Plan(train.Count, o.BatchSize, o.Seed, _state.Epoch, o.ShuffleEachEpoch, o.DropLastBatch);
                ctx.Epoch = _state.Epoch;
                while (stop is null && _state.BatchInEpoch < plan.Count && !(o.MaxSteps > 0 && _state.GlobalStep >= totalSteps))
                {
                    int n = Math.Min(o.GradientAccumulationSteps, plan.Count - _state.BatchInEpoch);
                    var outcome = RunStep(run, plan, _state.BatchInEpoch, n, cancellationToken);
                    if (outcome == StepOutcome.Cancelled) { stop = StopReason.Cancelled; break; }
                    _state.BatchInEpoch += n;
                    if (outcome == StepOutcome.Skipped) continue;

                    run.StepsThisRun++;
                    if (_state.GlobalStep % o.LoggingSteps == 0 || _state.GlobalStep == totalSteps) ReportSteps(run);
                    if (validation is not null && o.EvaluationSteps > 0 && _state.GlobalStep % o.EvaluationSteps == 0)
                        stop = EvaluateAndCheck(run, cancellationToken);
                    if (stop is null && ctx.StopRequest is not null) stop = StopReason.HookRequested;
                    if (stop != StopReason.Cancelled && o.CheckpointFolder is not null && o.SaveSteps > 0 && _state.GlobalStep % o.SaveSteps == 0)
                    {
                        lastCheckpoint = SaveCheckpoint(run, useStepStartRng: false);
                        lastCheckpointPosition = Position;
                    }
                }
                if (stop is null && _state.BatchInEpoch >= plan.Count)
                {
                    foreach (var h in Hooks) h.OnEpochEnd(ctx);
                    if (validation is not null && o.EvaluationSteps == 0) stop = EvaluateAndCheck(run, cancellationToken);
                    if (stop is null && ctx.StopRequest is not null) stop = StopReason.HookRequested;
                    if (stop != StopReason.Cancelled)
                    {
                        _state.Epoch++;
                        _state.BatchInEpoch = 0;
                    }
                }
            }

            if (run.LogSteps > 0) ReportSteps(run);
            if (o.CheckpointFolder is not null && lastCheckpointPosition != Position)
                lastCheckpoint = SaveCheckpoint(run, useStepStartRng: stop == StopReason.Cancelled && run.InsideStep);
            foreach (var h in Hooks) h.OnTrainEnd(ctx);
        }
        finally
        {
            Result = BuildResult(run, stop ?? StopReason.Failed, lastCheckpoint);
            DisposeRngSnapshot();
        }
        if (stop == StopReason.Cancelled) throw new OperationCanceledException("training was cancelled", cancellationToken);
        return Result!;
    }

    /// <summary>Mean loss over a data set, in evaluation mode under no_grad: per-batch mean losses weighted by batch size
    /// (Hugging Face's convention), batches of <see cref="TrainerOptions.BatchSize"/> in natural order.</summary>
    /// <param name="data">The data.</param>
    /// <param name="cancellationToken">Cancels the evaluation.</param>
    /// <returns>The mean loss.</returns>
    public double Evaluate(IBatchSource data, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(data);
        if (data.Count == 0) throw new ArgumentException("the evaluation data is empty", nameof(data));
        return EvaluateCore(data, cancellationToken) ?? throw new OperationCanceledException("evaluation was cancelled", cancellationToken);
    }

    private double? EvaluateCore(IBatchSource data, CancellationToken ct)
    {
        bool wasTraining = Model.training;
        Model.eval();
        try
        {
            using var ng = no_grad();
            double sum = 0;
            long count = 0;
            foreach (var idx in DataOrder.Plan(data.Count, Options.BatchSize, 0, 0, shuffle: false, dropLast: false))
            {
                if (ct.IsCancellationRequested) return null;
                using var scope = NewDisposeScope();
                var batch = data.GetBatch(idx).To(_device);
                Tensor? lossOrNull;
                using (Options.Autocast is { } ac ? autocast(_device, ac) : null) lossOrNull = _loss(batch);
                var loss = lossOrNull ?? throw new TrainingException("the loss function returned null");
                if (loss.numel() != 1) throw new TrainingException($"the loss function must return a scalar, got shape [{string.Join(", ", loss.shape)}]");
                sum += loss.ToDouble() * batch.Size;
                count += batch.Size;
            }
            return sum / count;
        }
        finally
        {
            Model.train(wasTraining);
        }
    }

    // ------------------------------------------------------------------ one optimizer step

    private enum StepOutcome { Completed, Skipped, Cancelled }

    private sealed class RunInfo(IBatchSource train, IBatchSource? validation, int batchesPerEpoch, int totalSteps, Stopwatch clock)
    {
        public IBatchSource Train { get; } = train;
        public IBatchSource? Validation { get; } = validation;
        public int BatchesPerEpoch { get; } = batchesPerEpoch;
        public int TotalSteps { get; } = totalSteps;
        public Stopwatch Clock { get; } = clock;
        public int StepsThisRun;
        public bool InsideStep;
        // logging window
        public int LogSteps;
        public double LogLossSum;
        public long LogTokens;
        public TimeSpan LogStart;
    }

    private (int, int, int) Position => (_state.GlobalStep, _state.Epoch, _state.BatchInEpoch);

    private StepOutcome RunStep(RunInfo run, List<int[]> plan, int first, int n, CancellationToken ct)
    {
        var o = Options;
        var ctx = _ctx!;
        int stepNo = _state.GlobalStep + 1;
        if (o.CheckpointFolder is not null) CaptureRngSnapshot();
        run.InsideStep = true;
        foreach (var h in Hooks) h.BeforeStep(ctx);

        using var scope = NewDisposeScope();
        Batch?[] batches = new Batch?[n];
        double[] weights = new double[n];
        bool tokenWeighted = false;
        if (o.LossWeighting == AccumulationLossWeighting.TokenWeighted)
        {
            long total = 0;
            tokenWeighted = true;
            for (int i = 0; i < n; i++)
            {
                batches[i] = run.Train.GetBatch(plan[first + i]);
                if (batches[i]!.TargetCount is { } c) total += c;
                else tokenWeighted = false;
            }
            if (tokenWeighted && total > 0)
                for (int i = 0; i < n; i++) weights[i] = (double)batches[i]!.TargetCount!.Value / total;
            else tokenWeighted = false;
        }
        if (!tokenWeighted)
            for (int i = 0; i < n; i++) weights[i] = 1.0 / n;

        double stepLoss = 0;
        long tokens = 0;
        for (int i = 0; i < n; i++)
        {
            if (ct.IsCancellationRequested)
            {
                Optimizer.zero_grad();
                return StepOutcome.Cancelled;
            }
            var batch = (batches[i] ?? run.Train.GetBatch(plan[first + i])).To(_device);
            tokens += batch.TokenCount;
            using (NewDisposeScope())
            {
                Tensor? lossOrNull;
                using (o.Autocast is { } ac ? autocast(_device, ac) : null) lossOrNull = _loss(batch);
                var loss = lossOrNull ?? throw new TrainingException("the loss function returned null", stepNo, _state.Epoch);
                if (loss.numel() != 1)
                    throw new TrainingException($"the loss function must return a scalar, got shape [{string.Join(", ", loss.shape)}]", stepNo, _state.Epoch);
                foreach (var h in Hooks)
                    if (h.AuxiliaryLoss(ctx) is { } extra) loss = loss + extra;
                if (!loss.requires_grad)
                    throw new TrainingException("the loss does not depend on any parameter that requires grad (is everything frozen, or was the loss computed under no_grad?)", stepNo, _state.Epoch);
                double value = loss.ToDouble();
                if (!double.IsFinite(value))
                {
                    if (Scaler is not null) return Overflow(run, stepNo, $"the loss is {value} at step {stepNo} (loss scale {Scaler.Scale})");
                    return NonFinite(run, stepNo, $"the loss is {value} at step {stepNo} (epoch {_state.Epoch}, micro-batch {i + 1} of {n})");
                }
                double factor = weights[i] * (Scaler?.Scale ?? 1.0);
                if (factor == 1.0) loss.backward();
                else loss.mul(factor).backward();
                stepLoss += value * weights[i];
            }
        }
        ctx.Loss = stepLoss;
        _masters?.GradientsToMasters();
        if (Scaler is not null && Scaler.Unscale(_optimized.Select(p => (Tensor)p.Param).ToList()))
            return Overflow(run, stepNo, $"the gradients overflowed at step {stepNo} with loss scale {Scaler.Scale}");
        foreach (var h in Hooks) h.AfterBackward(ctx);

        double maxNorm = o.MaxGradNorm is { } m && m > 0 ? m : double.PositiveInfinity;
        double gradNorm = nn.utils.clip_grad_norm_(_optimized.Select(p => (Tensor)p.Param), maxNorm);
        if (!double.IsFinite(gradNorm))
            return NonFinite(run, stepNo, $"the gradient norm is {gradNorm} at step {stepNo} (epoch {_state.Epoch}) although the loss {stepLoss} is finite");
        ctx.GradNorm = gradNorm;

        double lr = Optimizer.param_groups[0].LearningRate;
        Optimizer.step();
        _masters?.MastersToModel();
        Scaler?.Update(overflow: false);
        foreach (var h in Hooks) h.AfterOptimizerStep(ctx);
        Scheduler!.step();
        Optimizer.zero_grad();

        _state.GlobalStep++;
        _state.StepLosses.Add(stepLoss);
        _state.GradNorms.Add(gradNorm);
        _state.LearningRates.Add(lr);
        ctx.GlobalStep = _state.GlobalStep;
        run.LogSteps++;
        run.LogLossSum += stepLoss;
        run.LogTokens += tokens;
        run.InsideStep = false;
        return StepOutcome.Completed;
    }

    // A loss-scale overflow: the step is skipped and the scale backs off (expected under float16, never an error).
    private StepOutcome Overflow(RunInfo run, int stepNo, string what)
    {
        Optimizer.zero_grad();
        _masters?.ZeroModelGrads();
        foreach (var (_, p) in _trainable) p.grad = null;
        Scaler!.Update(overflow: true);
        _state.Skipped.Add(new SkippedStepRecord(stepNo, _state.Epoch, what));
        run.InsideStep = false;
        Raise(run, TrainingProgressKind.SkippedStep, message: what);
        return StepOutcome.Skipped;
    }

    private StepOutcome NonFinite(RunInfo run, int stepNo, string what)
    {
        Optimizer.zero_grad();
        if (!Options.SkipNonFiniteSteps)
        {
            run.InsideStep = false;
            throw new TrainingException(what + "; lower the learning rate, check the data, or set TrainerOptions.SkipNonFiniteSteps to skip such steps",
                stepNo, _state.Epoch);
        }
        _state.Skipped.Add(new SkippedStepRecord(stepNo, _state.Epoch, what));
        run.InsideStep = false;
        Raise(run, TrainingProgressKind.SkippedStep, message: what);
        return StepOutcome.Skipped;
    }

    private StopReason? EvaluateAndCheck(RunInfo run, CancellationToken ct)
    {
        var loss = EvaluateCore(run.Validation!, ct);
        if (loss is null) return StopReason.Cancelled;
        var o = Options;
        _state.Evaluations.Add(new EvaluationRecord(_state.GlobalStep, FractionalEpoch(run), loss.Value));
        _ctx!.EvalLoss = loss.Value;
        if (_state.BestEvalLoss is not { } best || best - loss.Value > o.EarlyStoppingMinDelta)
        {
            _state.BestEvalLoss = loss.Value;
            _state.BestStep = _state.GlobalStep;
            _state.BadEvaluations = 0;
        }
        else _state.BadEvaluations++;
        Raise(run, TrainingProgressKind.Evaluation, evalLoss: loss.Value);
        return o.EarlyStoppingPatience is { } patience && _state.BadEvaluations >= patience ? StopReason.EarlyStopping : null;
    }

    // ------------------------------------------------------------------ progress

    private double FractionalEpoch(RunInfo run) => _state.Epoch + (double)_state.BatchInEpoch / run.BatchesPerEpoch;

    private void ReportSteps(RunInfo run)
    {
        if (run.LogSteps == 0) return;
        var now = run.Clock.Elapsed;
        double seconds = (now - run.LogStart).TotalSeconds;
        Raise(run, TrainingProgressKind.Step, loss: run.LogLossSum / run.LogSteps, tokensPerSecond: seconds > 0 ? run.LogTokens / seconds : 0);
        run.LogSteps = 0;
        run.LogLossSum = 0;
        run.LogTokens = 0;
        run.LogStart = now;
    }

    private void Raise(RunInfo run, TrainingProgressKind kind, double? loss = null, double tokensPerSecond = 0, double? evalLoss = null,
        string? checkpoint = null, string? message = null)
    {
        var handler = Progress;
        if (handler is null) return;
        Dictionary<string, double>? metrics = null;
        if (kind == TrainingProgressKind.Step && _ctx is { } hctx)
        {
            var m = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var h in Hooks) h.ReportMetrics(hctx, m);
            if (m.Count > 0) metrics = m;
        }
        var elapsed = run.Clock.Elapsed;
        TimeSpan? eta = run.StepsThisRun > 0
            ? TimeSpan.FromTicks(elapsed.Ticks / run.StepsThisRun * Math.Max(0, run.TotalSteps - _state.GlobalStep))
            : null;
        handler(this, new TrainingProgress
        {
            Kind = kind,
            Step = _state.GlobalStep,
            TotalSteps = run.TotalSteps,
            Epoch = FractionalEpoch(run),
            Loss = loss ?? (_state.StepLosses.Count > 0 ? _state.StepLosses[^1] : double.NaN),
            LearningRate = Optimizer.param_groups[0].LearningRate,
            GradNorm = _state.GradNorms.Count > 0 ? _state.GradNorms[^1] : double.NaN,
            TokensPerSecond = tokensPerSecond,
            Elapsed = elapsed,
            Eta = eta,
            EvalLoss = evalLoss,
            CheckpointPath = checkpoint,
            Message = message,
            Metrics = metrics,
        });
    }

    private TrainingResult BuildResult(RunInfo run, StopReason reason, string? lastCheckpoint) => new()
    {
        GlobalStep = _state.GlobalStep,
        TotalSteps = run.TotalSteps,
        StopReason = reason,
        StepLosses = _state.StepLosses.ToArray(),
        GradNorms = _state.GradNorms.ToArray(),
        LearningRates = _state.LearningRates.ToArray(),
        Evaluations = _state.Evaluations.ToArray(),
        SkippedSteps = _state.Skipped.ToArray(),
        BestEvalLoss = _state.BestEvalLoss,
        BestStep = _state.BestStep,
        LastCheckpoint = lastCheckpoint,
        Elapsed = run.Clock.Elapsed,
    };

    private static int BatchCount(int count, int batchSize, bool dropLast)
        => dropLast ? count / batchSize : (count + batchSize - 1) / batchSize;

    // ------------------------------------------------------------------ random generator states

    private List<(string Key, Generator Generator)> Generators()
    {
        var list = new List<(string, Generator)> { ("cpu", default_generator()) };
        if (_device.type == DeviceType.CUDA) list.Add((_device.ToString(), Generator.Default(_device)));
        return list;
    }

    private Dictionary<string, Tensor> CaptureRng()
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, g) in Generators())
        {
            using (g) d[key] = g.get_state().DetachFromDisposeScope();
        }
        return d;
    }

    private void CaptureRngSnapshot()
    {
        DisposeRngSnapshot();
        _rngAtStepStart = CaptureRng();
    }

    private void DisposeRngSnapshot()
    {
        if (_rngAtStepStart is null) return;
        foreach (var t in _rngAtStepStart.Values) t.Dispose();
        _rngAtStepStart = null;
    }

    // ------------------------------------------------------------------ checkpoints

    private const string Format = "Microsoft.ML.LowRank.Training/1";

    private string SaveCheckpoint(RunInfo run, bool useStepStartRng)
    {
        var folder = Options.CheckpointFolder!;
        var path = Checkpoints.WriteAtomically(folder, _state.GlobalStep, dir => WriteCheckpoint(run, dir, useStepStartRng));
        if (Options.KeepLastCheckpoints is { } keep) Checkpoints.Rotate(folder, keep);
        Raise(run, TrainingProgressKind.Checkpoint, checkpoint: path);
        return path;
    }

    private void WriteCheckpoint(RunInfo run, string dir, bool useStepStartRng)
    {
        using var scope = NewDisposeScope();
        Checkpoints.BeforeFile(Checkpoints.ParametersFileName);
        Safetensors.Save(Path.Combine(dir, Checkpoints.ParametersFileName),
            _optimized.Select(p => new KeyValuePair<string, Tensor>(p.Name, p.Param)));

        using var opt = Optimizer.state_dict();
        Checkpoints.BeforeFile(Checkpoints.OptimizerFileName);
        Safetensors.Save(Path.Combine(dir, Checkpoints.OptimizerFileName), opt.Tensors);

        var rng = useStepStartRng && _rngAtStepStart is not null ? _rngAtStepStart : CaptureRng();
        try
        {
            Checkpoints.BeforeFile(Checkpoints.RngFileName);
            Safetensors.Save(Path.Combine(dir, Checkpoints.RngFileName), rng);
        }
        finally
        {
            if (!ReferenceEquals(rng, _rngAtStepStart)) foreach (var t in rng.Values) t.Dispose();
        }

        var hookTensors = new List<KeyValuePair<string, Tensor>>();
        for (int i = 0; i < Hooks.Count; i++)
            if (Hooks[i].GetState() is { } hs)
                foreach (var (k, t) in hs) hookTensors.Add(new($"{i}.{k}", t));
        if (hookTensors.Count > 0)
        {
            Checkpoints.BeforeFile(Checkpoints.HooksFileName);
            Safetensors.Save(Path.Combine(dir, Checkpoints.HooksFileName), hookTensors);
        }

        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            var o = Options;
            w.WriteStartObject();
            w.WriteString("format", Format);
            w.WriteNumber("global_step", _state.GlobalStep);
            w.WriteNumber("epoch", _state.Epoch);
            w.WriteNumber("batch_in_epoch", _state.BatchInEpoch);
            w.WriteNumber("total_steps", run.TotalSteps);
            w.WriteStartObject("data");
            w.WriteNumber("seed", o.Seed);
            w.WriteNumber("train_count", run.Train.Count);
            w.WriteNumber("batch_size", o.BatchSize);
            w.WriteNumber("gradient_accumulation_steps", o.GradientAccumulationSteps);
            w.WriteBoolean("shuffle", o.ShuffleEachEpoch);
            w.WriteBoolean("drop_last", o.DropLastBatch);
            w.WriteEndObject();
            w.WriteStartArray("trainable");
            foreach (var (name, _) in _trainable) w.WriteStringValue(name);
            w.WriteEndArray();
            var sch = Scheduler!.state_dict();
            w.WriteStartObject("scheduler");
            w.WriteNumber("last_epoch", sch.last_epoch);
            w.WriteStartArray("base_lrs");
            foreach (var v in sch.base_lrs) Checkpoints.WriteDouble(w, v);
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteStartObject("optimizer");
            foreach (var (k, v) in opt.Scalars) Checkpoints.WriteDouble(w, k, v);
            w.WriteEndObject();
            if (Scaler is not null)
            {
                w.WriteStartObject("loss_scaler");
                Checkpoints.WriteDouble(w, "scale", Scaler.Scale);
                w.WriteNumber("growth_tracker", Scaler.GrowthTracker);
                w.WriteEndObject();
            }
            w.WriteStartObject("early_stopping");
            if (_state.BestEvalLoss is { } best) Checkpoints.WriteDouble(w, "best_eval_loss", best);
            if (_state.BestStep is { } bs) w.WriteNumber("best_step", bs);
            w.WriteNumber("bad_evaluations", _state.BadEvaluations);
            w.WriteEndObject();
            WriteDoubles(w, "step_losses", _state.StepLosses);
            WriteDoubles(w, "grad_norms", _state.GradNorms);
            WriteDoubles(w, "learning_rates", _state.LearningRates);
            w.WriteStartArray("evaluations");
            foreach (var e in _state.Evaluations)
            {
                w.WriteStartObject();
                w.WriteNumber("step", e.Step);
                Checkpoints.WriteDouble(w, "epoch", e.Epoch);
                Checkpoints.WriteDouble(w, "loss", e.Loss);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("skipped_steps");
            foreach (var s in _state.Skipped)
            {
                w.WriteStartObject();
                w.WriteNumber("step", s.Step);
                w.WriteNumber("epoch", s.Epoch);
                w.WriteString("reason", s.Reason);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        Checkpoints.WriteFile(Path.Combine(dir, Checkpoints.StateFileName), buffer.WrittenSpan);
    }

    private static void WriteDoubles(Utf8JsonWriter w, string name, List<double> values)
    {
        w.WriteStartArray(name);
        foreach (var v in values) Checkpoints.WriteDouble(w, v);
        w.WriteEndArray();
    }

    private void LoadCheckpoint(string path, int trainCount)
    {
        var dir = path;
        if (!File.Exists(Path.Combine(dir, Checkpoints.StateFileName)))
            dir = Checkpoints.FindLatest(path) ?? throw new FileNotFoundException(
                $"'{path}' is neither a checkpoint (no {Checkpoints.StateFileName}) nor a folder holding checkpoint-* folders", path);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, Checkpoints.StateFileName)));
        var root = doc.RootElement;
        if (!root.TryGetProperty("format", out var fmt) || fmt.GetString() != Format)
            throw new InvalidDataException($"{dir} is not a checkpoint of this trainer (format {(root.TryGetProperty("format", out var f2) ? f2.GetString() : "missing")}, expected {Format})");

        // The data position is meaningful only for the same data plan.
        var o = Options;
        var data = root.GetProperty("data");
        void Same(string what, long saved, long now)
        {
            if (saved != now) throw new InvalidOperationException($"cannot resume from {dir}: {what} was {saved} and is now {now}; the data position would not match");
        }
        Same("the seed", data.GetProperty("seed").GetInt64(), o.Seed);
        Same("the number of training examples", data.GetProperty("train_count").GetInt64(), trainCount);
        Same("the batch size", data.GetProperty("batch_size").GetInt64(), o.BatchSize);
        Same("the number of gradient accumulation steps", data.GetProperty("gradient_accumulation_steps").GetInt64(), o.GradientAccumulationSteps);
        Same("shuffling (1 = on)", data.GetProperty("shuffle").GetBoolean() ? 1 : 0, o.ShuffleEachEpoch ? 1 : 0);
        Same("dropping the last batch (1 = on)", data.GetProperty("drop_last").GetBoolean() ? 1 : 0, o.DropLastBatch ? 1 : 0);
        var savedNames = root.GetProperty("trainable").EnumerateArray().Select(e => e.GetString()!).ToList();
        if (!savedNames.SequenceEqual(_trainable.Select(p => p.Name)))
        {
            var missing = _trainable.Select(p => p.Name).Except(savedNames).Take(5).ToList();
            var extra = savedNames.Except(_trainable.Select(p => p.Name)).Take(5).ToList();
            throw new InvalidOperationException($"cannot resume from {dir}: its trainable parameters differ from the model's " +
                $"(not in the checkpoint: [{string.Join(", ", missing)}]; only in the checkpoint: [{string.Join(", ", extra)}]; or a different order)");
        }

        using (var scope = NewDisposeScope())
        {
            var saved = Safetensors.Load(Path.Combine(dir, Checkpoints.ParametersFileName));
            using (no_grad())
            {
                foreach (var (name, p) in _optimized)
                {
                    if (!saved.TryGetValue(name, out var t)) throw new InvalidDataException($"{dir}: parameter '{name}' is missing from {Checkpoints.ParametersFileName}");
                    if (!t.shape.SequenceEqual(p.shape))
                        throw new InvalidDataException($"{dir}: parameter '{name}' has shape [{string.Join(", ", t.shape)}] but the model's is [{string.Join(", ", p.shape)}]");
                    p.copy_(t);
                }
            }
            _masters?.MastersToModel();
            if (Scaler is not null && root.TryGetProperty("loss_scaler", out var ls))
            {
                Scaler.Scale = Checkpoints.ReadDouble(ls.GetProperty("scale"));
                Scaler.GrowthTracker = ls.GetProperty("growth_tracker").GetInt32();
            }

            using var opt = new optim.OptimizerState();
            foreach (var (k, t) in Safetensors.Load(Path.Combine(dir, Checkpoints.OptimizerFileName))) opt.Tensors[k] = t;
            foreach (var prop in root.GetProperty("optimizer").EnumerateObject()) opt.Scalars[prop.Name] = Checkpoints.ReadDouble(prop.Value);
            Optimizer.load_state_dict(opt);

            var sch = root.GetProperty("scheduler");
            Scheduler!.load_state_dict(new optim.lr_scheduler.SchedulerState(sch.GetProperty("last_epoch").GetInt32(),
                sch.GetProperty("base_lrs").EnumerateArray().Select(Checkpoints.ReadDouble).ToArray()));

            var rng = Safetensors.Load(Path.Combine(dir, Checkpoints.RngFileName));
            foreach (var (key, g) in Generators())
            {
                using (g)
                {
                    if (rng.TryGetValue(key, out var s)) g.set_state(s);
                    else if (key == "cpu") throw new InvalidDataException($"{dir}: the CPU generator state is missing");
                }
            }

            var hooksFile = Path.Combine(dir, Checkpoints.HooksFileName);
            if (File.Exists(hooksFile))
            {
                var all = Safetensors.Load(hooksFile);
                for (int i = 0; i < Hooks.Count; i++)
                {
                    var prefix = $"{i}.";
                    var mine = all.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))
                        .ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value, StringComparer.Ordinal);
                    if (mine.Count > 0) Hooks[i].SetState(mine);
                }
            }
        }

        _state.GlobalStep = root.GetProperty("global_step").GetInt32();
        _state.Epoch = root.GetProperty("epoch").GetInt32();
        _state.BatchInEpoch = root.GetProperty("batch_in_epoch").GetInt32();
        _state.StepLosses.AddRange(root.GetProperty("step_losses").EnumerateArray().Select(Checkpoints.ReadDouble));
        _state.GradNorms.AddRange(root.GetProperty("grad_norms").EnumerateArray().Select(Checkpoints.ReadDouble));
        _state.LearningRates.AddRange(root.GetProperty("learning_rates").EnumerateArray().Select(Checkpoints.ReadDouble));
        foreach (var e in root.GetProperty("evaluations").EnumerateArray())
            _state.Evaluations.Add(new EvaluationRecord(e.GetProperty("step").GetInt32(), Checkpoints.ReadDouble(e.GetProperty("epoch")), Checkpoints.ReadDouble(e.GetProperty("loss"))));
        foreach (var s in root.GetProperty("skipped_steps").EnumerateArray())
            _state.Skipped.Add(new SkippedStepRecord(s.GetProperty("step").GetInt32(), s.GetProperty("epoch").GetInt32(), s.GetProperty("reason").GetString() ?? ""));
        var es = root.GetProperty("early_stopping");
        _state.BestEvalLoss = es.TryGetProperty("best_eval_loss", out var b) ? Checkpoints.ReadDouble(b) : null;
        _state.BestStep = es.TryGetProperty("best_step", out var bst) ? bst.GetInt32() : null;
        _state.BadEvaluations = es.GetProperty("bad_evaluations").GetInt32();
    }

    private sealed class RunState
    {
        public int GlobalStep, Epoch, BatchInEpoch, BadEvaluations;
        public double? BestEvalLoss;
        public int? BestStep;
        public readonly List<double> StepLosses = new(), GradNorms = new(), LearningRates = new();
        public readonly List<EvaluationRecord> Evaluations = new();
        public readonly List<SkippedStepRecord> Skipped = new();
    }

    /// <summary>Disposes the optimizer (its state tensors). The model is not disposed.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        DisposeRngSnapshot();
        Optimizer.Dispose();
        _masters?.Dispose();
    }
}
