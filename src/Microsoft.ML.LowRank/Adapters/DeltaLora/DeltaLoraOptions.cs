using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Training;

namespace Microsoft.ML.LowRank.Adapters.DeltaLora;

/// <summary>
/// Delta-LoRA (Zi et al., 2309.02411; methods.md §4.3): LoRA whose per-step change also updates the frozen weight. After
/// every optimizer step t &gt; <see cref="StartStep"/>, W ← W + λ·s·(B_t·A_t − B_{t−1}·A_{t−1}) with λ =
/// <see cref="UpdateRatio"/> and s the layer's LoRA scaling, so W receives a full-rank accumulated update without
/// gradients or optimizer moments of its own (the previous A, B are kept: r·(in + out) extra per matrix). Dropout on the
/// LoRA path is removed, as the method requires (a non-zero <see cref="LoraOptions.LoraDropout"/> is rejected). The
/// forward is LoRA's.
/// </summary>
/// <remarks>
/// Defaults: λ = 2 (third-party <c>update_ratio</c>, the paper's value per methods.md) and K = 500 (the paper's, recalled).
/// <see cref="StartStep"/> counts completed optimizer steps: K = 0 updates W from the first step on. The deliverable is a
/// full-weight model (<see cref="LowRankModel.MergeAndUnload"/>, or <see cref="LowRankModel.GetBaseStateDict"/> plus the
/// adapter): the adapter alone is not enough. A float16/bfloat16 base is updated through a float32 master copy. The config
/// is PEFT's LoRA config plus <c>delta_lora_update_ratio</c> and <c>delta_lora_start_step</c>.
/// </remarks>
public sealed class DeltaLoraOptions : LoraOptions, IAdapterTrainingMethod
{
    /// <summary><c>delta_lora_update_ratio</c>: λ. Default 2.</summary>
    public double UpdateRatio { get; set; } = 2.0;

    /// <summary><c>delta_lora_start_step</c>: K, the optimizer steps completed before W starts to be updated. Default 500.</summary>
    public int StartStep { get; set; } = 500;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (LoraDropout != 0) throw new ArgumentException($"Delta-LoRA removes dropout on the LoRA path: lora_dropout must be 0, got {LoraDropout}");
        if (!double.IsFinite(UpdateRatio)) throw new ArgumentException($"delta_lora_update_ratio must be finite, got {UpdateRatio}");
        if (StartStep < 0) throw new ArgumentException($"delta_lora_start_step must be >= 0, got {StartStep}");
    }

    /// <summary>Adds a <see cref="DeltaLoraHook"/> for the adapter when it is active and trainable.</summary>
    /// <param name="setup">The trainer being built.</param>
    public void ConfigureTraining(AdapterTrainingSetup setup)
    {
        ArgumentNullException.ThrowIfNull(setup);
        if (InferenceMode || !setup.Model.ActiveAdapters.Contains(setup.AdapterName)) return;
        setup.Hooks.Add(new DeltaLoraHook(setup.Model, setup.AdapterName, UpdateRatio, StartStep));
    }

    /// <inheritdoc/>
    public override bool Accepts(JsonObject config) => base.Accepts(config) && config.ContainsKey("delta_lora_update_ratio");

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["delta_lora_update_ratio"] = NumberNode(UpdateRatio);
        o["delta_lora_start_step"] = StartStep;
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        UpdateRatio = Num(o, "delta_lora_update_ratio") ?? 2.0;
        if (o["delta_lora_start_step"] is { } s) StartStep = Int(s, "delta_lora_start_step");
    }
}
