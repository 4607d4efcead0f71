using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Adapters.AdaLora;

/// <summary>
/// AdaLoRA options (Zhang et al., arXiv 2303.10512): PEFT's <c>AdaLoraConfig</c> with .NET names (the PEFT JSON name is
/// given on each property). Each targeted weight gets an SVD-shaped update ΔW = (α / r_init)·P·diag(E)·Q (PEFT:
/// <c>lora_B</c> [out, r], <c>lora_E</c> [r, 1], <c>lora_A</c> [r, in]); during training an importance-driven rank
/// allocator (<see cref="AdaLoraRankAllocator"/>, added to every <see cref="Trainer"/> built on the model) masks the
/// least important singular triplets to a global budget that shrinks from Σ r_init to <see cref="TargetR"/> per matrix
/// along a cubic schedule, and an orthogonality regulariser is added to the loss. Defaults are PEFT's.
/// </summary>
/// <remarks>
/// Decisions (docs/methods/adalora.md): the scaling is α / (r_init + 1e-5) as in PEFT (r_init = PEFT's frozen
/// <c>ranknum</c>, never changed by pruning); the allocator is called with the 1-based number of completed optimizer
/// steps (1 … total_step), so the final allocation at total_step − tfinal always happens (PEFT's examples pass a 0-based
/// counter, which with tfinal = 0 never reaches it); an unset <see cref="TotalStep"/> is taken from the trainer, a set
/// one must equal the trainer's step count; <see cref="OrthRegWeight"/> 0 disables the regulariser (PEFT rejects 0).
/// </remarks>
public sealed class AdaLoraOptions : LowRankAdapterOptions, IAdapterTrainingMethod
{
    /// <inheritdoc/>
    public override string PeftType => "ADALORA";

    /// <summary><c>init_r</c>: the rank every targeted matrix starts with. Default 12.</summary>
    public int InitR { get; set; } = 12;

    /// <summary><c>target_r</c>: the average rank per matrix at the end of the budget schedule (the final budget is
    /// target_r × the number of adapted matrices). Default 8.</summary>
    public int TargetR { get; set; } = 8;

    /// <summary><c>lora_alpha</c>: α; the scaling is α / r_init (r_init when α ≤ 0, as in PEFT). Default 8.</summary>
    public double LoraAlpha { get; set; } = 8;

    /// <summary><c>lora_dropout</c>: dropout probability on the adapter input. Default 0.</summary>
    public double LoraDropout { get; set; }

    /// <summary><c>init_lora_weights</c>: true (default) zero-initialises E and draws A, B from N(0, 0.02²), so the adapter
    /// starts as a no-op; false leaves A, E, B ~ N(0, 1) (PEFT's torch.randn; the adapter is not a no-op).</summary>
    public bool InitLoraWeights { get; set; } = true;

    /// <summary><c>tinit</c>: steps of initial warm-up at the full budget (no masking). Default 0.</summary>
    public int TInit { get; set; }

    /// <summary><c>tfinal</c>: steps of final fine-tuning at the target budget with the final mask fixed. Default 0.</summary>
    public int TFinal { get; set; }

    /// <summary><c>deltaT</c>: the interval (in steps) between two maskings during the budget decrease. Default 1.</summary>
    public int DeltaT { get; set; } = 1;

    /// <summary><c>beta1</c>: EMA coefficient of the sensitivity smoothing. Default 0.85.</summary>
    public double Beta1 { get; set; } = 0.85;

    /// <summary><c>beta2</c>: EMA coefficient of the uncertainty. Default 0.85.</summary>
    public double Beta2 { get; set; } = 0.85;

    /// <summary><c>orth_reg_weight</c>: the weight of the orthogonality regulariser R = mean over all P and Q of
    /// ‖PᵀP − I‖_F and ‖QQᵀ − I‖_F (Frobenius norm, not squared). Default 0.5 (PEFT); the authors' code and README use
    /// 0.1. 0 disables it.</summary>
    public double OrthRegWeight { get; set; } = 0.5;

    /// <summary><c>total_step</c>: the total number of optimizer steps; the budget schedule needs the exact value. Null
    /// (default): taken from the trainer when training starts (and written back here).</summary>
    public int? TotalStep { get; set; }

    /// <summary><c>fan_in_fan_out</c>: set automatically when a GPT-2 Conv1D is targeted. Default false.</summary>
    public bool FanInFanOut { get; set; }

    /// <summary><c>bias</c>: only "none" (the default) is implemented.</summary>
    public string Bias { get; set; } = "none";

    /// <summary>
    /// <c>rank_pattern</c>: the allocation of the last masking, keyed as PEFT saves it — the module name followed by
    /// ".lora_E" (e.g. "model.layers.0.self_attn.q_proj.lora_E"), one flag per initial triplet (true = kept). Written by
    /// the rank allocator; when an adapter is loaded, each listed module is created at its kept rank (the saved file holds
    /// only the kept triplets) with the scaling of r_init. Default empty.
    /// </summary>
    public IReadOnlyDictionary<string, bool[]> RankPattern { get; set; } = new Dictionary<string, bool[]>();

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (InitR < 0) throw new ArgumentException($"init_r must be non-negative, got {InitR}");
        if (TargetR < 0) throw new ArgumentException($"target_r must be non-negative, got {TargetR}");
        if (TargetR > InitR) throw new ArgumentException($"target_r ({TargetR}) must not exceed init_r ({InitR}): the AdaLoRA budget only shrinks");
        if (double.IsNaN(LoraAlpha) || double.IsInfinity(LoraAlpha)) throw new ArgumentException($"lora_alpha must be finite, got {LoraAlpha}");
        if (LoraDropout < 0 || LoraDropout >= 1) throw new ArgumentException($"lora_dropout must be in [0, 1), got {LoraDropout}");
        if (TInit < 0) throw new ArgumentException($"tinit must be non-negative, got {TInit}");
        if (TFinal < 0) throw new ArgumentException($"tfinal must be non-negative, got {TFinal}");
        if (DeltaT < 1) throw new ArgumentException($"deltaT must be at least 1, got {DeltaT}");
        if (!(Beta1 > 0 && Beta1 < 1)) throw new ArgumentException($"beta1 must be in (0, 1), got {Beta1}");
        if (!(Beta2 > 0 && Beta2 < 1)) throw new ArgumentException($"beta2 must be in (0, 1), got {Beta2}");
        if (!(OrthRegWeight >= 0) || double.IsInfinity(OrthRegWeight)) throw new ArgumentException($"orth_reg_weight must be finite and non-negative, got {OrthRegWeight}");
        if (TotalStep is { } t) CheckSchedule(t);
        if (Bias != "none") throw new NotSupportedException($"bias '{Bias}' is not implemented (only \"none\")");
        foreach (var (k, v) in RankPattern)
            if (v is null || v.Length != InitR) throw new ArgumentException($"rank_pattern['{k}'] must list init_r = {InitR} flags, got {v?.Length ?? 0}");
    }

    /// <summary>Checks that a total step count leaves a budgeting phase (PEFT's check): total_step &gt; 0 and
    /// tinit &lt; total_step − tfinal.</summary>
    /// <param name="totalStep">The total number of optimizer steps.</param>
    /// <exception cref="ArgumentException">The schedule has no budgeting phase.</exception>
    public void CheckSchedule(int totalStep)
    {
        if (totalStep <= 0) throw new ArgumentException($"total_step must be positive, got {totalStep}");
        if (TInit >= totalStep - TFinal)
            throw new ArgumentException($"the AdaLoRA schedule leaves no budgeting phase: tinit ({TInit}) must be less than total_step ({totalStep}) − tfinal ({TFinal})");
    }

    /// <summary>The cubic budget schedule (PEFT's <c>budget_schedule</c>): the total number of kept singular triplets at
    /// step <paramref name="step"/> and whether this step masks. b(t) = b₀ for t ≤ tinit (no masking); b_T for
    /// t &gt; T − tfinal (masking); otherwise ⌊b_T + (b₀ − b_T)·(1 − (t − tinit)/(T − tfinal − tinit))³⌋, masking when
    /// t is a multiple of deltaT.</summary>
    /// <param name="step">The step.</param>
    /// <param name="totalStep">T.</param>
    /// <param name="initialBudget">b₀ = Σ r_init.</param>
    /// <param name="targetBudget">b_T = target_r × the number of matrices.</param>
    /// <returns>The budget and the masking flag.</returns>
    public (int budget, bool mask) BudgetSchedule(int step, int totalStep, int initialBudget, int targetBudget)
    {
        if (step <= TInit) return (initialBudget, false);
        if (step > totalStep - TFinal) return (targetBudget, true);
        double mul = 1 - (double)(step - TInit) / (totalStep - TFinal - TInit);
        int budget = (int)((initialBudget - targetBudget) * (mul * mul * mul) + targetBudget);
        return (budget, step % DeltaT == 0);
    }

    /// <summary>The rank-pattern flags of a module, or null when the pattern does not list it (keys "path.lora_E", also
    /// accepted with an adapter-name suffix "path.lora_E.name" as PEFT keeps them in memory).</summary>
    /// <param name="modulePath">Full module name.</param>
    /// <returns>The flags, or null.</returns>
    public bool[]? PatternFor(string modulePath)
    {
        ArgumentNullException.ThrowIfNull(modulePath);
        var key = modulePath + ".lora_E";
        if (RankPattern.TryGetValue(key, out var v)) return v;
        foreach (var (k, flags) in RankPattern)
            if (k.StartsWith(key + ".", StringComparison.Ordinal) && k.IndexOf('.', key.Length + 1) < 0) return flags;
        return null;
    }

    /// <inheritdoc/>
    protected internal override AdapterLayer CreateLayer(torch.nn.Module baseLayer) => new AdaLoraLayer(baseLayer);

    /// <inheritdoc/>
    protected internal override bool IsCompatibleLayer(AdapterLayer layer) => layer is AdaLoraLayer;

    /// <summary>Creates the module's adapter: at r_init when initialising (triplets the rank pattern drops start masked),
    /// at the kept rank of the rank pattern when loading (a checkpoint of the pruned triplets is copied in next).</summary>
    /// <param name="layer">The layer.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="modulePath">The module's name.</param>
    /// <param name="context">Creation settings.</param>
    protected internal override void AddAdapter(AdapterLayer layer, string adapterName, string modulePath, AdapterCreationContext context)
    {
        var ada = layer as AdaLoraLayer ?? throw new ArgumentException($"AdaLoRA adapters go into an AdaLoraLayer, not a {layer.name}", nameof(layer));
        if (ada.FanInFanOut) FanInFanOut = true;
        var pattern = PatternFor(modulePath);
        int rank = context.Initialize || pattern is null ? InitR : pattern.Count(k => k);
        ada.UpdateLayer(adapterName, rank, InitR, LoraAlpha, LoraDropout, context.Initialize && InitLoraWeights, context);
        if (context.Initialize && pattern is not null) ada.ApplyRankMask(adapterName, pattern);
    }

    /// <inheritdoc/>
    protected override void CloneCollections()
        => RankPattern = RankPattern.ToDictionary(kv => kv.Key, kv => (bool[])kv.Value.Clone());

    /// <summary>Adds the rank allocator (budget schedule, importance scores, masking, orthogonality regulariser) to a
    /// trainer built on the model, for the one trainable AdaLoRA adapter (as in PEFT, only one may train).</summary>
    /// <param name="setup">The trainer being built.</param>
    public void ConfigureTraining(AdapterTrainingSetup setup)
    {
        ArgumentNullException.ThrowIfNull(setup);
        if (InferenceMode || !setup.Model.ActiveAdapters.Contains(setup.AdapterName)) return;
        if (setup.Hooks.OfType<AdaLoraRankAllocator>().Any(h => h.AdapterName != setup.AdapterName))
            throw new InvalidOperationException("AdaLoRA trains one adapter at a time (as in PEFT): set inference_mode on every AdaLoRA adapter except the one to train");
        if (setup.Hooks.OfType<AdaLoraRankAllocator>().Any()) return;
        setup.Hooks.Add(new AdaLoraRankAllocator(setup.Model, setup.AdapterName));
    }

    // ------------------------------------------------------------------ JSON

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["init_r"] = InitR;
        o["target_r"] = TargetR;
        o["lora_alpha"] = NumberNode(LoraAlpha);
        o["lora_dropout"] = LoraDropout;
        o["init_lora_weights"] = InitLoraWeights;
        o["tinit"] = TInit;
        o["tfinal"] = TFinal;
        o["deltaT"] = DeltaT;
        o["beta1"] = Beta1;
        o["beta2"] = Beta2;
        o["orth_reg_weight"] = OrthRegWeight;
        o["total_step"] = TotalStep;
        o["fan_in_fan_out"] = FanInFanOut;
        o["bias"] = Bias;
        if (RankPattern.Count == 0) o["rank_pattern"] = null;
        else
        {
            var rp = new JsonObject();
            foreach (var (k, v) in RankPattern) rp[k] = new JsonArray(v.Select(b => (JsonNode?)JsonValue.Create(b)).ToArray());
            o["rank_pattern"] = rp;
        }
        o["use_dora"] = false;
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        if (o["init_r"] is { } ir) InitR = Int(ir, "init_r");
        if (o["target_r"] is { } tr) TargetR = Int(tr, "target_r");
        LoraAlpha = Num(o, "lora_alpha") ?? LoraAlpha;
        LoraDropout = Num(o, "lora_dropout") ?? 0;
        InitLoraWeights = o["init_lora_weights"] switch
        {
            null => true,
            JsonValue v when v.TryGetValue<bool>(out var b) => b,
            var v => throw new NotSupportedException($"init_lora_weights {v.ToJsonString()} is not supported by AdaLoRA (true or false)"),
        };
        if (o["tinit"] is { } ti) TInit = Int(ti, "tinit");
        if (o["tfinal"] is { } tf) TFinal = Int(tf, "tfinal");
        if (o["deltaT"] is { } dt) DeltaT = Int(dt, "deltaT");
        Beta1 = Num(o, "beta1") ?? Beta1;
        Beta2 = Num(o, "beta2") ?? Beta2;
        OrthRegWeight = Num(o, "orth_reg_weight") ?? OrthRegWeight;
        TotalStep = o["total_step"] is { } ts ? Int(ts, "total_step") : null;
        FanInFanOut = Bool(o, "fan_in_fan_out") ?? false;
        Bias = Str(o, "bias") ?? "none";
        if (Bool(o, "use_dora") == true) throw new NotSupportedException("AdaLoRA does not support DoRA (as in PEFT)");
        var pattern = new Dictionary<string, bool[]>(StringComparer.Ordinal);
        switch (o["rank_pattern"])
        {
            case null:
                break;
            case JsonObject rp:
                foreach (var (k, v) in rp)
                {
                    if (v is not JsonArray arr) throw new FormatException($"rank_pattern.{k}: expected a list of true/false flags, got {v?.ToJsonString() ?? "null"}");
                    pattern[k] = arr.Select(e => e is JsonValue jv && jv.TryGetValue<bool>(out var b) ? b
                        : throw new FormatException($"rank_pattern.{k}: expected true/false flags, got {e?.ToJsonString() ?? "null"}")).ToArray();
                }
                break;
            case var v:
                throw new FormatException($"rank_pattern: expected an object, got {v.ToJsonString()}");
        }
        RankPattern = pattern;
    }
}
