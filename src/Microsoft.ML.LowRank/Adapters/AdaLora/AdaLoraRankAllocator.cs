using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.AdaLora;

/// <summary>
/// AdaLoRA's rank allocator (PEFT's <c>RankAllocator</c> plus <c>AdaLoraModel.update_and_allocate</c> and the
/// orthogonality regulariser of <c>AdaLoraModel.forward</c>), as a training hook for one adapter.
/// <list type="bullet">
/// <item>Importance: for every entry θ of every A, E, B, the sensitivity I = |θ·∇θ| is smoothed,
/// Ī ← β₁Ī + (1 − β₁)I, with its uncertainty Ū ← β₂Ū + (1 − β₂)|I − Ī|; an entry's score is Ī·Ū and triplet i of a
/// matrix scores S_i = s(E_i) + mean_j s(A_ij) + mean_j s(B_ji).</item>
/// <item>Budget: <see cref="AdaLoraOptions.BudgetSchedule"/> from b₀ = Σ r_init to b_T = target_r × matrices.</item>
/// <item>Masking: on masking steps E_i = 0 for every triplet with S_i ≤ the (b₀ − b)-th smallest score over all matrices
/// (global). At t = T − tfinal the final mask is forced, stored as the rank pattern and the scores are reset; after
/// that the stored pattern is re-applied every step and the scores are no longer updated.</item>
/// <item>Regulariser: R = mean over the adapter's A and B of ‖AAᵀ − I‖_F and ‖BᵀB − I‖_F (not squared), added to the
/// loss with weight <see cref="AdaLoraOptions.OrthRegWeight"/>.</item>
/// </list>
/// In a <see cref="Trainer"/> it runs in <see cref="ITrainingHook.AfterOptimizerStep"/> (after optimizer.step, before the
/// gradients are cleared: post-step θ times the step's clipped, accumulated gradient) with t = the 1-based number of
/// completed optimizer steps, and adds the regulariser through <see cref="ITrainingHook.AuxiliaryLoss"/>.
/// </summary>
public sealed class AdaLoraRankAllocator : ITrainingHook
{
    private readonly LowRankModel _model;
    private readonly List<(string path, AdaLoraLayer layer)> _layers;
    private readonly Dictionary<string, (Tensor avgIpt, Tensor avgUnc)> _scores = new(StringComparer.Ordinal);

    /// <summary>Creates the allocator for an adapter of a model (its options are the model's live config, which
    /// receives the rank pattern).</summary>
    /// <param name="model">The adapted model.</param>
    /// <param name="adapterName">The AdaLoRA adapter to allocate.</param>
    public AdaLoraRankAllocator(LowRankModel model, string adapterName)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        AdapterName = adapterName ?? throw new ArgumentNullException(nameof(adapterName));
        if (!model.PeftConfig.TryGetValue(adapterName, out var o) || o is not AdaLoraOptions ada)
            throw new ArgumentException($"adapter '{adapterName}' is not an AdaLoRA adapter of this model", nameof(adapterName));
        Options = ada;
        _layers = model.AdapterLayers().Where(l => l.layer is AdaLoraLayer a && a.HasAdapter(adapterName))
            .Select(l => (l.name, (AdaLoraLayer)l.layer)).ToList();
        if (_layers.Count == 0) throw new ArgumentException($"adapter '{adapterName}' has no AdaLoRA layer", nameof(adapterName));
        if (_layers.FirstOrDefault(l => l.layer.Rank(adapterName) != l.layer.RankNum(adapterName)) is { layer: not null } shrunk)
            throw new NotSupportedException($"AdaLoRA adapter '{adapterName}' holds pruned ranks ({shrunk.path}: {shrunk.layer.Rank(adapterName)} of r_init {shrunk.layer.RankNum(adapterName)}), as loaded from a saved rank pattern; the rank allocator needs every matrix at r_init, so such an adapter cannot be trained with budget allocation again");
        InitialBudget = _layers.Sum(l => l.layer.Rank(adapterName));
        TargetBudget = Options.TargetR * _layers.Count;
        if (TargetBudget > InitialBudget)
            throw new ArgumentException($"the target budget {TargetBudget} (target_r {Options.TargetR} × {_layers.Count} matrices) exceeds the initial budget {InitialBudget}");
        TotalStep = Options.TotalStep;
    }

    /// <summary>The adapter allocated.</summary>
    public string AdapterName { get; }

    /// <summary>The adapter's options (the model's live config).</summary>
    public AdaLoraOptions Options { get; }

    /// <summary>b₀: the number of triplets held at the start (Σ r_init).</summary>
    public int InitialBudget { get; }

    /// <summary>b_T: target_r × the number of adapted matrices.</summary>
    public int TargetBudget { get; }

    /// <summary>T: the total number of optimizer steps (from the options, or from the trainer when training starts).</summary>
    public int? TotalStep { get; private set; }

    /// <summary>The budget computed by the last <see cref="UpdateAndAllocate"/> call (null before the first, and after
    /// the final allocation, when the schedule is no longer consulted).</summary>
    public int? LastBudget { get; private set; }

    /// <summary>The step of the last masking, or null.</summary>
    public int? LastMaskStep { get; private set; }

    /// <summary>The adapted matrices (module names), in the order the allocator visits them.</summary>
    public IReadOnlyList<string> ModuleNames => _layers.Select(l => l.path).ToList();

    /// <summary>The number of triplets kept by the last masking (all triplets before the first).</summary>
    public int KeptTriplets => _layers.Sum(l => l.layer.KeptTriplets(AdapterName)?.Count(k => k) ?? l.layer.Rank(AdapterName));

    /// <summary>Sets T (for use outside a <see cref="Trainer"/>, e.g. a hand-written loop) and writes it to the options.</summary>
    /// <param name="totalStep">The total number of optimizer steps.</param>
    public void SetTotalStep(int totalStep)
    {
        Options.CheckSchedule(totalStep);
        TotalStep = totalStep;
        Options.TotalStep = totalStep;
    }

    // ------------------------------------------------------------------ importance

    /// <summary>Updates the smoothed sensitivity and uncertainty of every A, E, B entry from the current values and
    /// gradients (a missing gradient counts as zero).</summary>
    public void UpdateImportance()
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        double b1 = Options.Beta1, b2 = Options.Beta2;
        foreach (var (path, layer) in _layers)
            foreach (var (key, p) in Params(layer))
            {
                var name = path + "." + key;
                var ipt = p.grad is { } g ? (p * g).abs() : zeros_like(p);
                if (!_scores.TryGetValue(name, out var s))
                {
                    s = (zeros_like(p).DetachFromDisposeScope(), zeros_like(p).DetachFromDisposeScope());
                    _scores[name] = s;
                }
                s.avgIpt.mul_(b1).add_(ipt, 1 - b1);
                s.avgUnc.mul_(b2).add_((ipt - s.avgIpt).abs(), 1 - b2);
            }
    }

    private IEnumerable<(string key, nn.Parameter p)> Params(AdaLoraLayer layer)
    {
        yield return ("lora_A", layer.LoraA(AdapterName));
        yield return ("lora_E", layer.LoraE(AdapterName));
        yield return ("lora_B", layer.LoraB(AdapterName));
    }

    /// <summary>The triplet scores S of one adapted matrix (zeros before any importance update).</summary>
    /// <param name="modulePath">The module's name.</param>
    /// <returns>[r] scores (the caller owns the tensor).</returns>
    public Tensor TripletScores(string modulePath)
    {
        var (path, layer) = _layers.FirstOrDefault(l => l.path == modulePath);
        if (layer is null) throw new KeyNotFoundException($"'{modulePath}' is not an adapted matrix of adapter '{AdapterName}'");
        using var scope = NewDisposeScope();
        Tensor Score(string key, nn.Parameter p) => _scores.TryGetValue(path + "." + key, out var s) ? s.avgIpt * s.avgUnc : zeros_like(p);
        var sE = Score("lora_E", layer.LoraE(AdapterName)).view(-1);
        var sA = Score("lora_A", layer.LoraA(AdapterName)).mean(1);
        var sB = Score("lora_B", layer.LoraB(AdapterName)).mean(0);
        return (sE + sA + sB).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Masks the lowest-scoring triplets so that at most <paramref name="budget"/> remain over all matrices: E_i = 0
    /// where S_i ≤ the (b₀ − budget)-th smallest score (nothing when budget ≥ b₀). Records the kept flags in the layers
    /// and returns them keyed as <see cref="AdaLoraOptions.RankPattern"/>.
    /// </summary>
    /// <param name="budget">The number of triplets to keep.</param>
    /// <returns>The rank pattern.</returns>
    public Dictionary<string, bool[]> MaskToBudget(int budget)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var scores = _layers.Select(l => TripletScores(l.path)).ToList();
        var all = cat(scores.ToArray(), 0);
        int k = InitialBudget - budget;
        var keepAll = k <= 0 ? ones_like(all).to_type(ScalarType.Bool) : all.gt(all.sort().values.select(0, k - 1));
        var flags = keepAll.ToArray<bool>();
        var pattern = new Dictionary<string, bool[]>(StringComparer.Ordinal);
        int offset = 0;
        for (int i = 0; i < _layers.Count; i++)
        {
            var (path, layer) = _layers[i];
            int r = (int)scores[i].size(0);
            var keep = flags.AsSpan(offset, r).ToArray();
            offset += r;
            var e = layer.LoraE(AdapterName);
            e.masked_fill_(keepAll.narrow(0, offset - r, r).logical_not().unsqueeze(1), 0.0);
            layer.RecordKept(AdapterName, keep);
            pattern[path + ".lora_E"] = keep;
        }
        return pattern;
    }

    /// <summary>Re-applies the options' rank pattern: E_i = 0 for every triplet it drops.</summary>
    public void MaskUsingRankPattern()
    {
        foreach (var (path, layer) in _layers)
            if (Options.PatternFor(path) is { } keep) layer.ApplyRankMask(AdapterName, keep);
    }

    /// <summary>Discards the importance scores (PEFT's reset_ipt).</summary>
    public void ResetImportance()
    {
        foreach (var (a, u) in _scores.Values) { a.Dispose(); u.Dispose(); }
        _scores.Clear();
    }

    /// <summary>
    /// PEFT's <c>update_and_allocate(global_step)</c>: before T − tfinal, update the importance and mask to the scheduled
    /// budget on masking steps (storing the rank pattern in the options); at T − tfinal, force the final mask to b_T,
    /// store it and reset the scores; after it, re-apply the stored pattern. Call after optimizer.step() and before the
    /// gradients are cleared.
    /// </summary>
    /// <param name="globalStep">The step t (the <see cref="Trainer"/> passes the 1-based number of completed steps).</param>
    /// <returns>The rank pattern when this call masked to a budget, else null.</returns>
    public IReadOnlyDictionary<string, bool[]>? UpdateAndAllocate(int globalStep)
    {
        int total = TotalStep ?? throw new InvalidOperationException("AdaLoRA needs total_step before allocating ranks: set AdaLoraOptions.TotalStep or call SetTotalStep");
        int final = total - Options.TFinal;
        if (globalStep < final)
        {
            UpdateImportance();
            var (budget, mask) = Options.BudgetSchedule(globalStep, total, InitialBudget, TargetBudget);
            LastBudget = budget;
            if (!mask) return null;
            var pattern = MaskToBudget(budget);
            Options.RankPattern = pattern;
            LastMaskStep = globalStep;
            return pattern;
        }
        if (globalStep == final)
        {
            var (budget, _) = Options.BudgetSchedule(globalStep, total, InitialBudget, TargetBudget);
            LastBudget = budget;
            var pattern = MaskToBudget(budget);
            Options.RankPattern = pattern;
            LastMaskStep = globalStep;
            ResetImportance();
            return pattern;
        }
        MaskUsingRankPattern();
        return null;
    }

    /// <summary>The orthogonality regulariser R = mean over the adapter's matrices of ‖AAᵀ − I‖_F and ‖BᵀB − I‖_F
    /// (differentiable; not weighted).</summary>
    /// <returns>The scalar.</returns>
    public Tensor OrthogonalRegularization()
    {
        using var scope = NewDisposeScope();
        Tensor? sum = null;
        int count = 0;
        foreach (var (_, layer) in _layers)
        {
            var a = layer.LoraA(AdapterName);
            var b = layer.LoraB(AdapterName);
            var ca = a.matmul(a.t());
            var cb = b.t().matmul(b);
            var ta = (ca - eye(ca.size(0), dtype: ca.dtype, device: ca.device)).square().sum().sqrt();
            var tb = (cb - eye(cb.size(0), dtype: cb.dtype, device: cb.device)).square().sum().sqrt();
            sum = sum is null ? ta + tb : sum + ta + tb;
            count += 2;
        }
        return (sum! / count).MoveToOuterDisposeScope();
    }

    // ------------------------------------------------------------------ hook

    /// <summary>Takes T from the trainer (or checks that the configured one equals it).</summary>
    /// <param name="context">The training context.</param>
    public void OnTrainBegin(TrainingContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (Options.TotalStep is { } t && t != context.TotalSteps)
            throw new InvalidOperationException($"AdaLoRA total_step is {t} but the trainer runs {context.TotalSteps} optimizer steps; the cubic budget schedule needs the exact number (set total_step = {context.TotalSteps}, or leave it unset to take the trainer's)");
        SetTotalStep(context.TotalSteps);
    }

    /// <summary>The weighted regulariser, or null when its weight is 0.</summary>
    /// <param name="context">The training context.</param>
    /// <returns>orth_reg_weight × R.</returns>
    public Tensor? AuxiliaryLoss(TrainingContext context) => Options.OrthRegWeight > 0 ? OrthogonalRegularization() * Options.OrthRegWeight : null;

    /// <summary>Runs <see cref="UpdateAndAllocate"/> with the 1-based number of the step just taken.</summary>
    /// <param name="context">The training context.</param>
    public void AfterOptimizerStep(TrainingContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        UpdateAndAllocate(context.Step);
    }

    /// <summary>The smoothed scores and the last allocation (for checkpoints).</summary>
    /// <returns>Named tensors (the scores are aliases; the rank flags are new uint8 tensors, left to the caller's scope).</returns>
    public IReadOnlyDictionary<string, Tensor>? GetState()
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (n, (a, u)) in _scores)
        {
            d["exp_avg_ipt." + n] = a;
            d["exp_avg_unc." + n] = u;
        }
        foreach (var (path, layer) in _layers)
            if (layer.KeptTriplets(AdapterName) is { } keep)
                d["kept." + path] = tensor(keep.Select(k => k ? (byte)1 : (byte)0).ToArray());
        return d.Count == 0 ? null : d;
    }

    /// <summary>Restores what <see cref="GetState"/> saved: the smoothed scores, and the last allocation (into the layers
    /// and the options' rank pattern).</summary>
    /// <param name="state">Saved tensors.</param>
    public void SetState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        ResetImportance();
        var pattern = new Dictionary<string, bool[]>(StringComparer.Ordinal);
        foreach (var (k, v) in state)
        {
            if (k.StartsWith("kept.", StringComparison.Ordinal))
            {
                var path = k["kept.".Length..];
                var (_, layer) = _layers.FirstOrDefault(l => l.path == path);
                if (layer is null) throw new InvalidDataException($"AdaLoRA state: '{path}' is not an adapted matrix of adapter '{AdapterName}'");
                var keep = v.to_type(ScalarType.Byte).ToArray<byte>().Select(b => b != 0).ToArray();
                layer.RecordKept(AdapterName, keep);
                pattern[path + ".lora_E"] = keep;
                continue;
            }
            if (!k.StartsWith("exp_avg_ipt.", StringComparison.Ordinal)) continue;
            var n = k["exp_avg_ipt.".Length..];
            if (!state.TryGetValue("exp_avg_unc." + n, out var u)) throw new InvalidDataException($"AdaLoRA state: no uncertainty for '{n}'");
            _scores[n] = (v.clone().DetachFromDisposeScope(), u.clone().DetachFromDisposeScope());
        }
        if (pattern.Count > 0) Options.RankPattern = pattern;
    }
}
