using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Adapters.LoraPrune;

/// <summary>The importance LoRAPrune ranks structures by (the reference's <c>prune_metric</c>).</summary>
public enum LoraPruneMetric
{
    /// <summary><c>"lora"</c> (default): |Ĝ ⊙ (s·B·A + W₀)| with the gradient surrogate Ĝ = g_B·A + B·g_A − g_B·g_A built
    /// from the LoRA gradients only.</summary>
    Lora,
    /// <summary><c>"magnitude"</c>: |s·B·A + W₀| (no gradient).</summary>
    Magnitude,
}

/// <summary>
/// LoRAPrune options (Zhang et al., arXiv 2305.18403; reference aim-uofa/LoRAPrune): LoRA (ΔW = (α/r)·B·A) on the
/// targeted linears, plus structured pruning of the base model during fine-tuning — attention heads and MLP channels are
/// masked by an importance computed from the LoRA weights and gradients (<see cref="LoraPruner"/>, added to every
/// <see cref="Trainer"/> built on the model), following a cubic sparsity schedule. Defaults are the reference's
/// (r 8, α 16, dropout 0.05, ratio 0.5, warm-up and cool-down 10 % of the steps, pruning every 10 steps, all linear
/// layers of the blocks targeted). Not a PEFT method: the config's peft_type is "LORAPRUNE" and the adapter file adds
/// each layer's mask (<c>lora_mask</c>) to the LoRA keys.
/// </summary>
public sealed class LoraPruneOptions : LowRankAdapterOptions, IAdapterTrainingMethod
{
    /// <inheritdoc/>
    public override string PeftType => "LORAPRUNE";

    /// <summary><c>r</c>: the LoRA rank. Default 8.</summary>
    public int R { get; set; } = 8;

    /// <summary><c>lora_alpha</c>: α in the scaling α/r. Default 16.</summary>
    public double LoraAlpha { get; set; } = 16;

    /// <summary><c>lora_dropout</c>: dropout on the adapter input. Default 0.05.</summary>
    public double LoraDropout { get; set; } = 0.05;

    /// <summary><c>fan_in_fan_out</c>: set automatically when a GPT-2 Conv1D is targeted. Default false.</summary>
    public bool FanInFanOut { get; set; }

    /// <summary><c>ratio</c>: the target fraction of units (heads, MLP channels) pruned in every prunable block. Default 0.5.</summary>
    public double Ratio { get; set; } = 0.5;

    /// <summary><c>init_ratio</c>: the fraction before the ramp. Default 0.</summary>
    public double InitRatio { get; set; }

    /// <summary><c>warmup_iters</c>: the fraction of the total steps before the ramp starts. Default 0.1.</summary>
    public double WarmupIters { get; set; } = 0.1;

    /// <summary><c>cooldown_iters</c>: the fraction of the total steps at the end held at the target ratio. Default 0.1.</summary>
    public double CooldownIters { get; set; } = 0.1;

    /// <summary><c>prune_freq</c>: pruning happens on steps that are multiples of this (0-based step index). Default 10.</summary>
    public int PruneFreq { get; set; } = 10;

    /// <summary><c>prune_metric</c>. Default <see cref="LoraPruneMetric.Lora"/>.</summary>
    public LoraPruneMetric PruneMetric { get; set; } = LoraPruneMetric.Lora;

    /// <summary><c>sensitivity_momentum</c>: the EMA coefficient of the importance, S ← m·S + (1 − m)·S_new. Default 0.9
    /// (hard-coded in the reference).</summary>
    public double SensitivityMomentum { get; set; } = 0.9;

    /// <summary><c>protected_layers_ratio</c>: the leading fraction of blocks never pruned (⌊fraction·L⌋ blocks); the
    /// last block is never pruned either. Default 0.1 (the reference's).</summary>
    public double ProtectedLayersRatio { get; set; } = 0.1;

    /// <summary>LoRAPrune targets every linear layer of the blocks by default (the reference's q, k, v, o, gate, up, down).</summary>
    /// <param name="modelType">HF model type.</param>
    /// <returns>"all-linear".</returns>
    public override ModuleSelector? DefaultTargetModules(string modelType) => ModuleSelector.AllLinear;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (R <= 0) throw new ArgumentException($"r must be positive, got {R}");
        if (double.IsNaN(LoraAlpha) || double.IsInfinity(LoraAlpha)) throw new ArgumentException($"lora_alpha must be finite, got {LoraAlpha}");
        if (LoraDropout < 0 || LoraDropout >= 1) throw new ArgumentException($"lora_dropout must be in [0, 1), got {LoraDropout}");
        if (!(Ratio >= 0 && Ratio < 1)) throw new ArgumentException($"ratio must be in [0, 1), got {Ratio}");
        if (!(InitRatio >= 0 && InitRatio <= Ratio)) throw new ArgumentException($"init_ratio must be in [0, ratio = {Ratio}], got {InitRatio}");
        if (!(WarmupIters >= 0 && CooldownIters >= 0 && WarmupIters + CooldownIters < 1))
            throw new ArgumentException($"warmup_iters ({WarmupIters}) and cooldown_iters ({CooldownIters}) must be non-negative fractions summing to less than 1");
        if (PruneFreq < 1) throw new ArgumentException($"prune_freq must be at least 1, got {PruneFreq}");
        if (!(SensitivityMomentum >= 0 && SensitivityMomentum < 1)) throw new ArgumentException($"sensitivity_momentum must be in [0, 1), got {SensitivityMomentum}");
        if (!(ProtectedLayersRatio >= 0 && ProtectedLayersRatio <= 1)) throw new ArgumentException($"protected_layers_ratio must be in [0, 1], got {ProtectedLayersRatio}");
    }

    /// <summary>The reference's cubic sparsity schedule (<c>schedule_sparsity_ratio</c>) at the 0-based step t of T:
    /// init_ratio for t ≤ w·T; ratio for t &gt; T − c·T; otherwise ratio + (init_ratio − ratio)·(1 − (t − w·T)/(T − (w + c)·T))³.</summary>
    /// <param name="step">t.</param>
    /// <param name="totalStep">T.</param>
    /// <returns>The fraction of units to prune.</returns>
    public double ScheduledRatio(int step, int totalStep)
    {
        double warm = WarmupIters * totalStep, cool = CooldownIters * totalStep;
        if (step <= warm) return InitRatio;
        if (step > totalStep - cool) return Ratio;
        double mul = 1 - (step - warm) / (totalStep - (WarmupIters + CooldownIters) * totalStep);
        return Ratio + (InitRatio - Ratio) * (mul * mul * mul);
    }

    /// <inheritdoc/>
    protected internal override AdapterLayer CreateLayer(torch.nn.Module baseLayer) => new LoraPruneLayer(baseLayer);

    /// <inheritdoc/>
    protected internal override bool IsCompatibleLayer(AdapterLayer layer) => layer is LoraPruneLayer;

    /// <inheritdoc/>
    protected internal override void AddAdapter(AdapterLayer layer, string adapterName, string modulePath, AdapterCreationContext context)
    {
        var p = layer as LoraPruneLayer ?? throw new ArgumentException($"LoRAPrune adapters go into a LoraPruneLayer, not a {layer.name}", nameof(layer));
        if (p.FanInFanOut) FanInFanOut = true;
        p.UpdateLayer(adapterName, R, LoraAlpha, LoraDropout, context);
    }

    /// <summary>Adds the pruner (importance EMA, schedule, masks) to a trainer built on the model, for the adapter when
    /// it is active and trainable (one LoRAPrune adapter prunes at a time).</summary>
    /// <param name="setup">The trainer being built.</param>
    public void ConfigureTraining(AdapterTrainingSetup setup)
    {
        ArgumentNullException.ThrowIfNull(setup);
        if (InferenceMode || !setup.Model.ActiveAdapters.Contains(setup.AdapterName)) return;
        if (setup.Hooks.OfType<LoraPruner>().Any())
            throw new InvalidOperationException("only one LoRAPrune adapter can prune at a time: set inference_mode on the others");
        setup.Hooks.Add(new LoraPruner(setup.Model, setup.AdapterName));
    }

    // ------------------------------------------------------------------ JSON

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["r"] = R;
        o["lora_alpha"] = NumberNode(LoraAlpha);
        o["lora_dropout"] = LoraDropout;
        o["fan_in_fan_out"] = FanInFanOut;
        o["bias"] = "none";
        o["ratio"] = Ratio;
        o["init_ratio"] = InitRatio;
        o["warmup_iters"] = WarmupIters;
        o["cooldown_iters"] = CooldownIters;
        o["prune_freq"] = PruneFreq;
        o["prune_metric"] = PruneMetric == LoraPruneMetric.Lora ? "lora" : "magnitude";
        o["sensitivity_momentum"] = SensitivityMomentum;
        o["protected_layers_ratio"] = ProtectedLayersRatio;
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        if (o["r"] is { } r) R = Int(r, "r");
        LoraAlpha = Num(o, "lora_alpha") ?? LoraAlpha;
        LoraDropout = Num(o, "lora_dropout") ?? LoraDropout;
        FanInFanOut = Bool(o, "fan_in_fan_out") ?? false;
        if ((Str(o, "bias") ?? "none") != "none") throw new NotSupportedException("LoRAPrune supports bias \"none\" only");
        Ratio = Num(o, "ratio") ?? Ratio;
        InitRatio = Num(o, "init_ratio") ?? InitRatio;
        WarmupIters = Num(o, "warmup_iters") ?? WarmupIters;
        CooldownIters = Num(o, "cooldown_iters") ?? CooldownIters;
        if (o["prune_freq"] is { } f) PruneFreq = Int(f, "prune_freq");
        PruneMetric = Str(o, "prune_metric") switch
        {
            null or "lora" => LoraPruneMetric.Lora,
            "magnitude" => LoraPruneMetric.Magnitude,
            var m => throw new NotSupportedException($"prune_metric '{m}' is not supported (\"lora\" or \"magnitude\"; \"grad\" needs base-weight gradients)"),
        };
        SensitivityMomentum = Num(o, "sensitivity_momentum") ?? SensitivityMomentum;
        ProtectedLayersRatio = Num(o, "protected_layers_ratio") ?? ProtectedLayersRatio;
    }
}
