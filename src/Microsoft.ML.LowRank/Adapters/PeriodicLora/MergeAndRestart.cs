using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Training;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.PeriodicLora;

/// <summary>How the learning rate runs across the stages of a merge-and-restart method.</summary>
public enum StageLearningRate
{
    /// <summary>The trainer's schedule runs once over the whole run, unaware of stages (JSON "global").</summary>
    Global,

    /// <summary>The trainer's schedule (same kind, same warmup rule) restarts at every stage and runs over that stage's
    /// length, e.g. warmup then linear decay within each stage (JSON "per_stage").</summary>
    PerStage,
}

/// <summary>
/// Base of the merge-and-restart methods (PeriodicLoRA, COLA; methods.md §4.1-§4.2): the forward is LoRA's; training is
/// split into stages and after the last optimizer step of each stage (never after the run's final step) the adapter is
/// unloaded into the base: W ← W + λ·s·B·A. With λ = 1 the adapter is then re-initialised (A as at creation, Kaiming
/// uniform or gaussian; B = 0) and the optimizer forgets the state of A and B (moments and step counts); with λ &lt; 1
/// B ← (1 − λ)·B and the optimizer state is kept. Either way the model's output is unchanged at that instant. The base
/// weights change by design (they are the deliverable: save the model with
/// <see cref="LowRankModel.GetBaseStateDict"/> or <see cref="LowRankModel.MergeAndUnload"/>).
/// </summary>
public abstract class MergeAndRestartOptions : LoraOptions, IAdapterTrainingMethod
{
    /// <summary><c>stage_lr_schedule</c>: "global" (default) or "per_stage" (see <see cref="PeriodicLora.StageLearningRate"/>).</summary>
    public StageLearningRate StageLearningRate { get; set; } = StageLearningRate.Global;

    /// <summary>The fraction λ of the adapter unloaded at a stage boundary (1: full merge and restart).</summary>
    protected virtual double UnloadFraction => 1.0;

    /// <summary>The method's name in messages.</summary>
    protected abstract string MethodName { get; }

    /// <summary>The steps after which the adapter is unloaded, for a run of <paramref name="totalSteps"/> optimizer
    /// steps: sorted, distinct, each in [1, totalSteps − 1].</summary>
    /// <param name="totalSteps">The run's planned optimizer steps.</param>
    /// <returns>The boundaries.</returns>
    public abstract IReadOnlyList<int> StageBoundaries(int totalSteps);

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (InitLoraWeights is not (LoraInitialization.Default or LoraInitialization.Gaussian))
            throw new NotSupportedException($"{MethodName} re-initialises the adapter at every stage as init_lora_weights says; only the default (Kaiming A, zero B) and gaussian inits are supported, not {InitLoraWeights}");
    }

    /// <summary>Adds a <see cref="MergeAndRestartHook"/> for the adapter when it is active and trainable.</summary>
    /// <param name="setup">The trainer being built.</param>
    public void ConfigureTraining(AdapterTrainingSetup setup)
    {
        ArgumentNullException.ThrowIfNull(setup);
        if (InferenceMode || !setup.Model.ActiveAdapters.Contains(setup.AdapterName)) return;
        setup.Hooks.Add(new MergeAndRestartHook(setup.Model, setup.AdapterName, (MergeAndRestartOptions)Clone(), UnloadFraction, MethodName));
    }

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["stage_lr_schedule"] = StageLearningRate == StageLearningRate.PerStage ? "per_stage" : "global";
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        StageLearningRate = Str(o, "stage_lr_schedule") switch
        {
            null or "global" => StageLearningRate.Global,
            "per_stage" => StageLearningRate.PerStage,
            var s => throw new FormatException($"stage_lr_schedule: expected \"global\" or \"per_stage\", got \"{s}\""),
        };
    }
}

/// <summary>
/// The training hook of <see cref="MergeAndRestartOptions"/> (PeriodicLoRA, COLA): unloads the adapter into the base at
/// each stage boundary (after the optimizer step, before the scheduler step), re-initialises it and resets its optimizer
/// state, and with <see cref="StageLearningRate.PerStage"/> sets each step's learning rate from the stage's own schedule.
/// Its checkpoint state holds the base weights, the re-initialisation generator and the unload count, so a resumed run
/// is identical to an uninterrupted one.
/// </summary>
public sealed class MergeAndRestartHook : ITrainingHook, IDisposable
{
    private readonly BaseWeightWriter _writer;
    private readonly string _adapter;
    private readonly double _lambda;
    private readonly MergeAndRestartOptions _options;
    private readonly string _method;
    private Generator? _generator;
    private bool _generatorRestored;
    private int[] _boundaries = Array.Empty<int>();

    internal MergeAndRestartHook(LowRankModel model, string adapterName, MergeAndRestartOptions options, double lambda, string method)
    {
        _writer = new BaseWeightWriter(model, adapterName, method);
        _adapter = adapterName;
        _options = options;
        _lambda = lambda;
        _method = method;
    }

    /// <summary>The steps after which the adapter is unloaded in this run (known once training has begun).</summary>
    public IReadOnlyList<int> Boundaries => _boundaries;

    /// <summary>Unloads done so far (including those before a resume).</summary>
    public int Unloads { get; private set; }

    /// <inheritdoc/>
    public void OnTrainBegin(TrainingContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        _boundaries = _options.StageBoundaries(context.TotalSteps).ToArray();
        for (int i = 0; i < _boundaries.Length; i++)
            if (_boundaries[i] < 1 || _boundaries[i] >= context.TotalSteps || (i > 0 && _boundaries[i] <= _boundaries[i - 1]))
                throw new InvalidOperationException($"{_method}: invalid stage boundaries [{string.Join(", ", _boundaries)}] for {context.TotalSteps} steps");
        if (!_generatorRestored)
        {
            _generator?.Dispose();
            _generator = NewGenerator(SeedOf(context.Options.Seed));
        }
    }

    private Generator NewGenerator(ulong seed) => new(seed, _writer.Layers[0].layer.LoraA(_adapter).weight.device);

    /// <summary>The seed of the re-initialisation generator for a trainer seed.</summary>
    /// <param name="trainerSeed"><see cref="TrainerOptions.Seed"/>.</param>
    /// <returns>The seed.</returns>
    public static ulong SeedOf(int trainerSeed) => unchecked((ulong)(uint)trainerSeed * 0x9E3779B97F4A7C15UL + 0x504C6F5241UL);

    /// <summary>The stage [start, end) holding the step that follows <paramref name="completedSteps"/> completed ones.</summary>
    /// <param name="completedSteps">Optimizer steps completed.</param>
    /// <param name="totalSteps">Planned steps.</param>
    /// <returns>First step index (0-based) of the stage and its end (exclusive).</returns>
    public (int start, int end) StageOf(int completedSteps, int totalSteps)
    {
        int start = 0, end = totalSteps;
        foreach (var b in _boundaries)
        {
            if (b <= completedSteps) start = b;
            else { end = b; break; }
        }
        return (start, end);
    }

    /// <inheritdoc/>
    public void BeforeStep(TrainingContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (_options.StageLearningRate != StageLearningRate.PerStage) return;
        var o = context.Options;
        var (start, end) = StageOf(context.GlobalStep, context.TotalSteps);
        int length = end - start, k = context.GlobalStep - start;
        int warmup = o.WarmupSteps > 0 ? o.WarmupSteps : (int)Math.Ceiling(o.WarmupRatio * length);
        double factor = o.Schedule switch
        {
            LearningRateSchedule.Constant => 1.0,
            LearningRateSchedule.ConstantWithWarmup => optim.lr_scheduler.ConstantWithWarmupFactor(k, warmup),
            LearningRateSchedule.Linear => optim.lr_scheduler.LinearWithWarmupFactor(k, warmup, length),
            LearningRateSchedule.Cosine => optim.lr_scheduler.CosineWithWarmupFactor(k, warmup, length, 0.5),
            _ => throw new ArgumentOutOfRangeException(nameof(context), o.Schedule, "unknown schedule"),
        };
        var groups = context.Optimizer.param_groups;
        var baseLrs = context.Scheduler.base_lrs;
        for (int i = 0; i < groups.Count; i++) groups[i].LearningRate = baseLrs[i] * factor;
    }

    /// <inheritdoc/>
    public void AfterOptimizerStep(TrainingContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (Array.BinarySearch(_boundaries, context.Step) >= 0) Unload(context.Optimizer);
    }

    /// <summary>Unloads the adapter into the base now (what a stage boundary does).</summary>
    /// <param name="optimizer">The optimizer whose state for A and B is reset on a full unload (null: none).</param>
    public void Unload(optim.Optimizer? optimizer)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        for (int i = 0; i < _writer.Layers.Count; i++)
        {
            var layer = _writer.Layers[i].layer;
            _writer.Add(i, _lambda == 1.0 ? layer.GetDeltaWeight(_adapter) : layer.GetDeltaWeight(_adapter) * _lambda);
            var a = layer.LoraA(_adapter).weight;
            var b = layer.LoraB(_adapter).weight;
            if (_lambda == 1.0)
            {
                _generator ??= NewGenerator(SeedOf(0));
                if (_options.InitLoraWeights == LoraInitialization.Gaussian) a.normal_(0, 1.0 / layer.Rank(_adapter), _generator);
                else nn.init.kaiming_uniform_(a, Math.Sqrt(5), generator: _generator);
                b.zero_();
                optimizer?.reset_state(a);
                optimizer?.reset_state(b);
            }
            else b.mul_(1 - _lambda);
        }
        Unloads++;
    }

    /// <summary>Frees the hook's tensors and generator (training is over; the base weights stay as written).</summary>
    /// <param name="context">The training context.</param>
    public void OnTrainEnd(TrainingContext context) => Dispose();

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor>? GetState()
    {
        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            ["unloads"] = tensor(new long[] { Unloads }),
        };
        if (_generator is not null) state["generator"] = _generator.get_state();
        _writer.AddState(state, "base.");
        return state;
    }

    /// <inheritdoc/>
    public void SetState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        _writer.SetState(state, "base.");
        Unloads = state.TryGetValue("unloads", out var u) ? (int)u.ToInt64() : 0;
        if (state.TryGetValue("generator", out var g))
        {
            _generator ??= NewGenerator(0);
            _generator.set_state(g);
            _generatorRestored = true;
        }
    }

    /// <summary>Frees the generator and any float32 master copies of half-precision base weights.</summary>
    public void Dispose()
    {
        _writer.Dispose();
        _generator?.Dispose();
        _generator = null;
    }
}
