using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Training;

namespace Microsoft.ML.LowRank.Adapters.Coto;

/// <summary>
/// CoTo, published first as CopRA (Zhuang et al., 2410.22911 / 2506.05713; methods.md §4.4): LoRA trained with
/// progressive random activation of whole transformer layers. The adapters of each transformer block form one group;
/// before the first step and after every optimizer step each group is active with probability
/// p(t) = min(1, p0 + (1 − p0)·t/⌈r·T⌉), t = optimizer steps completed, T = the run's steps, p0 =
/// <see cref="InitialProbability"/>, r = <see cref="Stage1Ratio"/> (so the last 1 − r of training has every layer active).
/// A group is active iff u ≤ p with u ~ U(0, 1); draws are repeated until at least one group is active. An inactive layer
/// returns its base output only, with no 1/p rescaling. Evaluation mode always uses every layer. The forward is LoRA's;
/// merging is LoRA's.
/// </summary>
/// <remarks>
/// Follows the authors' callback (zwebzone/coto README): p0 = 0.1, r = 0.75, the first draw at train begin with p0, then
/// one draw per optimizer step. Groups here are transformer blocks found by the block index in the module name (a target
/// outside any block is a group of its own) rather than consecutive runs of <c>module_num</c> modules; they coincide when
/// every block has the same targets. The draws use a generator seeded from <see cref="TrainerOptions.Seed"/> and saved in
/// checkpoints, so runs are reproducible and resumable. The config is PEFT's LoRA config plus
/// <c>coto_initial_probability</c> and <c>coto_stage1_ratio</c>.
/// </remarks>
public sealed class CotoOptions : LoraOptions, IAdapterTrainingMethod
{
    /// <summary><c>coto_initial_probability</c>: p0, in (0, 1]. Default 0.1.</summary>
    public double InitialProbability { get; set; } = 0.1;

    /// <summary><c>coto_stage1_ratio</c>: r, the fraction of training over which p grows to 1, in (0, 1]. Default 0.75.</summary>
    public double Stage1Ratio { get; set; } = 0.75;

    /// <summary>p(t): min(1, p0 + (1 − p0)·t/⌈r·T⌉).</summary>
    /// <param name="completedSteps">t.</param>
    /// <param name="totalSteps">T.</param>
    /// <returns>The activation probability.</returns>
    public double Probability(int completedSteps, int totalSteps)
    {
        int end = Math.Max(1, (int)Math.Ceiling(totalSteps * Stage1Ratio));
        return Math.Min(1.0, InitialProbability + (1 - InitialProbability) * completedSteps / end);
    }

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (!(InitialProbability > 0 && InitialProbability <= 1)) throw new ArgumentException($"coto_initial_probability must be in (0, 1], got {InitialProbability}");
        if (!(Stage1Ratio > 0 && Stage1Ratio <= 1)) throw new ArgumentException($"coto_stage1_ratio must be in (0, 1], got {Stage1Ratio}");
    }

    /// <summary>Adds a <see cref="CotoHook"/> for the adapter when it is active and trainable.</summary>
    /// <param name="setup">The trainer being built.</param>
    public void ConfigureTraining(AdapterTrainingSetup setup)
    {
        ArgumentNullException.ThrowIfNull(setup);
        if (InferenceMode || !setup.Model.ActiveAdapters.Contains(setup.AdapterName)) return;
        setup.Hooks.Add(new CotoHook(setup.Model, setup.AdapterName, (CotoOptions)Clone()));
    }

    /// <inheritdoc/>
    public override bool Accepts(JsonObject config) => base.Accepts(config) && config.ContainsKey("coto_initial_probability");

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["coto_initial_probability"] = InitialProbability;
        o["coto_stage1_ratio"] = Stage1Ratio;
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        InitialProbability = Num(o, "coto_initial_probability") ?? 0.1;
        Stage1Ratio = Num(o, "coto_stage1_ratio") ?? 0.75;
    }
}
