using System.Text.Json.Nodes;

namespace Microsoft.ML.LowRank.Adapters.PeriodicLora;

/// <summary>
/// PeriodicLoRA, PLoRA (Meng et al., 2402.16141; methods.md §4.1): LoRA trained in stages of
/// <see cref="StageSteps"/> optimizer steps; after each stage the adapter is unloaded into the base weights,
/// W ← W + λ·s·B·A with λ = <see cref="UnloadRatio"/>. λ = 1 (default): full unload, then A re-initialised, B = 0 and the
/// optimizer state of A and B reset (so the accumulated update reaches rank r × stages with LoRA's memory). λ &lt; 1:
/// "momentum" unloading that keeps the adapter and its optimizer state but scales B by 1 − λ, so the layer's output is
/// unchanged (the output-preserving variant of methods.md §4.1; the third-party variant that also scales A changes the
/// output and is not offered). Stage length 1 with λ = 0.1 gives the per-step momentum unloading of that port.
/// </summary>
/// <remarks>
/// Defaults are ours (the paper's stage length and λ could not be verified): 100 steps per stage, λ = 1, the trainer's
/// learning-rate schedule over the whole run. The config is PEFT's LoRA config plus <c>plora_stage_steps</c>,
/// <c>plora_unload_ratio</c> and <c>stage_lr_schedule</c> (PEFT ≥ 0.13 drops unknown keys with a warning and reads it as
/// LoRA). Trainable parameters per adapted matrix: r·(in + out) per stage.
/// </remarks>
public sealed class PeriodicLoraOptions : MergeAndRestartOptions
{
    /// <summary><c>plora_stage_steps</c>: optimizer steps per stage. Default 100.</summary>
    public int StageSteps { get; set; } = 100;

    /// <summary><c>plora_unload_ratio</c>: λ, the fraction of the adapter unloaded at each boundary, in (0, 1]. Default 1.</summary>
    public double UnloadRatio { get; set; } = 1.0;

    /// <inheritdoc/>
    protected override double UnloadFraction => UnloadRatio;

    /// <inheritdoc/>
    protected override string MethodName => "PeriodicLoRA";

    /// <inheritdoc/>
    public override IReadOnlyList<int> StageBoundaries(int totalSteps)
    {
        var list = new List<int>();
        for (long b = StageSteps; b < totalSteps; b += StageSteps) list.Add((int)b);
        return list;
    }

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (StageSteps < 1) throw new ArgumentException($"plora_stage_steps must be >= 1, got {StageSteps}");
        if (!(UnloadRatio > 0 && UnloadRatio <= 1)) throw new ArgumentException($"plora_unload_ratio must be in (0, 1], got {UnloadRatio}");
    }

    /// <inheritdoc/>
    public override bool Accepts(JsonObject config) => base.Accepts(config) && config.ContainsKey("plora_stage_steps");

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["plora_stage_steps"] = StageSteps;
        o["plora_unload_ratio"] = UnloadRatio;
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        if (o["plora_stage_steps"] is { } s) StageSteps = Int(s, "plora_stage_steps");
        UnloadRatio = Num(o, "plora_unload_ratio") ?? 1.0;
    }
}
