using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.LoraPrune;

/// <summary>
/// LoRAPrune's pruner for one adapter (the reference's <c>update_sensitivity_dict</c>, <c>schedule_sparsity_ratio</c>
/// and <c>local_prune</c>), as a training hook.
/// <list type="bullet">
/// <item>Importance of a group (a block's attention or MLP, <see cref="PruneStructure"/>): for each adapted member,
/// the element importance |Ĝ ⊙ (s·B·A + W₀)| with Ĝ = g_B·A + B·g_A − g_B·g_A (LoRA gradients, no s) is summed over
/// each output row (over each input column for o/down projections) and over the rows of each unit, then divided by
/// (its L2 norm + 1e-8); the members' vectors are added. S ← m·S + (1 − m)·S_new, skipped when any group's S_new is not
/// finite.</item>
/// <item>Schedule: at 0-based step t of T the target fraction is <see cref="LoraPruneOptions.ScheduledRatio"/>; on steps
/// with t % prune_freq = 0 and a fraction above init_ratio, and at the last step with the final ratio, every prunable
/// group not yet at the target prunes its ⌊U·fraction⌋ lowest-importance units (units pruned before stay pruned).</item>
/// <item>Masks: a pruned unit's channels get 0 in the output masks of the group's q/k/v (or c_attn, or query/key/value)
/// and gate/up (or c_fc, or intermediate) adapter layers.</item>
/// </list>
/// In a <see cref="Trainer"/> it runs in <see cref="ITrainingHook.AfterBackward"/>: pre-step weights and the step's
/// accumulated gradients before clipping (the reference computes after clipping, which only rescales the gradients).
/// </summary>
public sealed class LoraPruner : ITrainingHook
{
    private readonly LowRankModel _model;
    private readonly List<GroupState> _groups = new();

    private sealed class GroupState(PruneGroup group, bool prunable, List<(PruneMember member, LoraPruneLayer layer, Tensor index)> members)
    {
        public PruneGroup Group { get; } = group;
        public bool Prunable { get; } = prunable;
        public List<(PruneMember member, LoraPruneLayer layer, Tensor index)> Members { get; } = members;
        public Tensor? Score;
        public bool[] Kept = Enumerable.Repeat(true, group.Units).ToArray();
    }

    /// <summary>Creates the pruner for an adapter of a model.</summary>
    /// <param name="model">The adapted model.</param>
    /// <param name="adapterName">The LoRAPrune adapter.</param>
    /// <exception cref="ArgumentException">The adapter is not a LoRAPrune adapter, or a prunable block's attention is
    /// adapted without its value projection (masking it alone would not remove heads exactly).</exception>
    public LoraPruner(LowRankModel model, string adapterName)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        AdapterName = adapterName ?? throw new ArgumentNullException(nameof(adapterName));
        if (!model.PeftConfig.TryGetValue(adapterName, out var o) || o is not LoraPruneOptions lp)
            throw new ArgumentException($"adapter '{adapterName}' is not a LoRAPrune adapter of this model", nameof(adapterName));
        Options = lp;
        var layers = model.AdapterLayers().Where(l => l.layer is LoraPruneLayer p && p.HasAdapter(adapterName))
            .ToDictionary(l => l.name, l => (LoraPruneLayer)l.layer, StringComparer.Ordinal);
        int numLayers = model.Model.Config.NumHiddenLayers;
        foreach (var g in PruneStructure.For(model.Model))
        {
            var members = new List<(PruneMember, LoraPruneLayer, Tensor)>();
            foreach (var m in g.Members)
                if (layers.TryGetValue(m.Path, out var layer))
                    members.Add((m, layer, tensor(m.UnitOfChannel, device: layer.BaseWeight.device).DetachFromDisposeScope()));
            bool prunable = members.Count > 0 && !PruneStructure.IsProtected(g.Layer, numLayers, Options.ProtectedLayersRatio);
            if (prunable && !members.Any(m => m.Item1.RemovesUnit))
                throw new ArgumentException($"LoRAPrune cannot prune {g.Name}: its masks go on the outputs of adapted {(g.Kind == PruneGroupKind.Attention ? "value projections" : "MLP input projections")}, and none of {string.Join(", ", g.Members.Where(x => x.RemovesUnit).Select(x => x.Path))} is adapted (add it to target_modules)");
            _groups.Add(new GroupState(g, prunable, members));
        }
        if (_groups.All(g => g.Members.Count == 0)) throw new ArgumentException($"adapter '{adapterName}' adapts no module of a prunable structure", nameof(adapterName));
    }

    /// <summary>The adapter pruned.</summary>
    public string AdapterName { get; }

    /// <summary>The adapter's options.</summary>
    public LoraPruneOptions Options { get; }

    /// <summary>The groups, with whether each is pruned (not protected and holding adapted members).</summary>
    public IReadOnlyList<(PruneGroup group, bool prunable)> Groups => _groups.Select(g => (g.Group, g.Prunable)).ToList();

    /// <summary>The 0-based steps at which units were pruned, with the fraction applied.</summary>
    public List<(int step, double ratio)> PruneEvents { get; } = new();

    /// <summary>The smoothed importance of a group's units (zeros before the first update).</summary>
    /// <param name="groupName">The group (e.g. "model.layers.0.mlp").</param>
    /// <returns>One value per unit.</returns>
    public double[] Scores(string groupName)
    {
        var g = Group(groupName);
        return g.Score?.ToDoubleArray() ?? new double[g.Group.Units];
    }

    /// <summary>Which units of a group are kept.</summary>
    /// <param name="groupName">The group.</param>
    /// <returns>One flag per unit.</returns>
    public bool[] KeptUnits(string groupName) => (bool[])Group(groupName).Kept.Clone();

    private GroupState Group(string name) => _groups.FirstOrDefault(g => g.Group.Name == name)
        ?? throw new KeyNotFoundException($"no pruning group '{name}' (groups: {string.Join(", ", _groups.Select(g => g.Group.Name))})");

    /// <summary>The fraction of units pruned over all prunable groups.</summary>
    public double PrunedFraction
    {
        get
        {
            long total = 0, pruned = 0;
            foreach (var g in _groups.Where(g => g.Prunable))
            {
                total += g.Group.Units;
                pruned += g.Kept.Count(k => !k);
            }
            return total == 0 ? 0 : (double)pruned / total;
        }
    }

    // ------------------------------------------------------------------ importance

    /// <summary>The importance S_new of every group's units from the current LoRA weights and gradients (see the class
    /// summary); null for groups without adapted members. A member whose LoRA has no gradient yet contributes nothing
    /// under the "lora" metric.</summary>
    /// <returns>Group name → [U] float64 (the caller owns the tensors).</returns>
    public Dictionary<string, Tensor> ComputeImportance()
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var g in _groups)
        {
            if (g.Members.Count == 0) continue;
            Tensor? sum = null;
            foreach (var (m, layer, index) in g.Members)
            {
                var ga = layer.LoraA(AdapterName).weight;
                var gb = layer.LoraB(AdapterName).weight;
                var delta = layer.GetDeltaWeight(AdapterName);
                var w0 = layer.BaseWeight.to_type(delta.dtype);
                if (layer.FanInFanOut) w0 = w0.t();
                Tensor elem;
                if (Options.PruneMetric == LoraPruneMetric.Magnitude) elem = (delta + w0).abs();
                else
                {
                    if (ga.grad is not { } gA || gb.grad is not { } gB) continue;
                    var a = ga.to_type(delta.dtype);
                    var b = gb.to_type(delta.dtype);
                    gA = gA.to_type(delta.dtype);
                    gB = gB.to_type(delta.dtype);
                    var ghat = gB.matmul(a) + b.matmul(gA) - gB.matmul(gA);
                    elem = (ghat * (delta + w0)).abs();
                }
                var channel = elem.sum(m.Columns ? 0 : 1).to_type(ScalarType.Float64);
                var unit = zeros(new[] { (long)g.Group.Units }, ScalarType.Float64, channel.device).scatter_add(0, index, channel);
                unit = unit / (unit.norm() + 1e-8);
                sum = sum is null ? unit : sum + unit;
            }
            if (sum is not null) result[g.Group.Name] = sum.MoveToOuterDisposeScope();
        }
        return result;
    }

    /// <summary>Updates the smoothed importance: S ← m·S + (1 − m)·S_new (S starts at 0); nothing changes when any
    /// group's S_new is not finite (the reference checks for NaN; an infinite score is skipped too).</summary>
    /// <returns>Whether the update was applied.</returns>
    public bool UpdateImportance()
    {
        using var scope = NewDisposeScope();
        var fresh = ComputeImportance();
        // One device sync for the whole check.
        if (fresh.Count > 0 && cat(fresh.Values.Select(t => t.isfinite().all().reshape(1)).ToArray(), 0).all().logical_not().item<bool>()) return false;
        double m = Options.SensitivityMomentum;
        foreach (var g in _groups)
        {
            if (!fresh.TryGetValue(g.Group.Name, out var s)) continue;
            var next = g.Score is null ? s * (1 - m) : g.Score * m + s * (1 - m);
            g.Score?.Dispose();
            g.Score = next.DetachFromDisposeScope();
        }
        return true;
    }

    // ------------------------------------------------------------------ pruning

    /// <summary>
    /// The reference's <c>local_prune</c>: in every prunable group whose pruned fraction is below <paramref name="target"/>,
    /// prunes the ⌊U·<paramref name="ratio"/>⌋ units of lowest smoothed importance (already-pruned units first, ties by
    /// index), and writes the masks.
    /// </summary>
    /// <param name="ratio">The fraction to prune now.</param>
    /// <param name="target">The final fraction (groups already there are skipped).</param>
    public void Prune(double ratio, double target)
    {
        foreach (var g in _groups)
        {
            if (!g.Prunable) continue;
            int units = g.Group.Units;
            if ((double)g.Kept.Count(k => !k) / units >= target) continue;
            int need = (int)(units * ratio);
            var score = g.Score?.ToDoubleArray() ?? new double[units];
            var order = Enumerable.Range(0, units).OrderBy(u => g.Kept[u] ? 1 : 0).ThenBy(u => score[u]).ThenBy(u => u).ToArray();
            var kept = Enumerable.Repeat(true, units).ToArray();
            for (int i = 0; i < need; i++) kept[order[i]] = false;
            SetKeptUnits(g, kept);
        }
    }

    /// <summary>Sets which units of a group are kept and writes the masks of its mask-carrying adapter layers.</summary>
    /// <param name="groupName">The group.</param>
    /// <param name="kept">One flag per unit.</param>
    public void SetKeptUnits(string groupName, bool[] kept)
    {
        ArgumentNullException.ThrowIfNull(kept);
        var g = Group(groupName);
        if (kept.Length != g.Group.Units) throw new ArgumentException($"{groupName} has {g.Group.Units} units, got {kept.Length} flags", nameof(kept));
        SetKeptUnits(g, kept);
    }

    private void SetKeptUnits(GroupState g, bool[] kept)
    {
        g.Kept = (bool[])kept.Clone();
        using var scope = NewDisposeScope();
        foreach (var (m, layer, index) in g.Members)
        {
            if (!m.MaskCarrier) continue;
            var unitMask = tensor(kept.Select(k => k ? 1f : 0f).ToArray(), device: index.device);
            layer.SetMask(AdapterName, unitMask.index_select(0, index).to_type(layer.Mask(AdapterName).dtype));
        }
    }

    // ------------------------------------------------------------------ hook

    /// <summary>Updates the importance, then prunes when the schedule says so (t = the 0-based index of the step).</summary>
    /// <param name="context">The training context.</param>
    public void AfterBackward(TrainingContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        Step(context.GlobalStep, context.TotalSteps);
    }

    /// <summary>One pruning step outside a trainer (after the backward pass of step <paramref name="step"/>, before the
    /// optimizer step): importance update, then pruning on schedule.</summary>
    /// <param name="step">The 0-based step index t.</param>
    /// <param name="totalSteps">T.</param>
    public void Step(int step, int totalSteps)
    {
        if (totalSteps <= 0) throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, "must be positive");
        UpdateImportance();
        bool last = step == totalSteps - 1;
        double ratio = last ? Options.Ratio : Options.ScheduledRatio(step, totalSteps);
        if (last || (step % Options.PruneFreq == 0 && ratio > Options.InitRatio))
        {
            if (ratio <= 0) return;
            Prune(ratio, Options.Ratio);
            PruneEvents.Add((step, ratio));
        }
    }

    /// <summary>The smoothed importance and the kept units (for checkpoints; the masks are buffers, which the trainer's
    /// checkpoints do not hold).</summary>
    /// <returns>Named tensors.</returns>
    public IReadOnlyDictionary<string, Tensor>? GetState()
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var g in _groups)
        {
            if (g.Score is { } s) d["score." + g.Group.Name] = s;
            if (g.Kept.Any(k => !k)) d["kept." + g.Group.Name] = tensor(g.Kept.Select(k => k ? (byte)1 : (byte)0).ToArray());
        }
        return d.Count == 0 ? null : d;
    }

    /// <summary>Restores <see cref="GetState"/>'s tensors (and re-writes the masks).</summary>
    /// <param name="state">Saved tensors.</param>
    public void SetState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        foreach (var (k, v) in state)
        {
            if (k.StartsWith("score.", StringComparison.Ordinal))
            {
                var g = Group(k["score.".Length..]);
                g.Score?.Dispose();
                g.Score = v.to_type(ScalarType.Float64).clone().DetachFromDisposeScope();
            }
            else if (k.StartsWith("kept.", StringComparison.Ordinal))
                SetKeptUnits(Group(k["kept.".Length..]), v.to_type(ScalarType.Byte).ToArray<byte>().Select(b => b != 0).ToArray());
        }
    }

    // ------------------------------------------------------------------ after training

    /// <summary>
    /// Merges the adapter into the base and prunes the base physically where the model classes allow it: every linear
    /// of a pruned MLP loses the pruned channels (rows of gate/up/c_fc/intermediate, columns of down/c_proj/output), and
    /// the rows (with bias) of q, k, v and the columns of o of pruned attention heads are zeroed (the attention classes use
    /// one head count for every block, so heads keep their storage). Returns the plain model (the adapted model is
    /// unusable afterwards). Its outputs equal the masked adapted model's.
    /// </summary>
    /// <param name="model">The adapted model.</param>
    /// <param name="adapterName">The LoRAPrune adapter (null: the active one).</param>
    /// <returns>The pruned model.</returns>
    public static PretrainedModel MergeAndPrune(LowRankModel model, string? adapterName = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var adapter = adapterName ?? model.ActiveAdapter;
        if (!model.PeftConfig.TryGetValue(adapter, out var o) || o is not LoraPruneOptions)
            throw new ArgumentException($"adapter '{adapter}' is not a LoRAPrune adapter", nameof(adapterName));
        if (model.ActiveAdapters.Count != 1 || model.ActiveAdapter != adapter)
            throw new InvalidOperationException($"merge-and-prune needs '{adapter}' to be the only active adapter");
        var masks = new Dictionary<string, double[]>(StringComparer.Ordinal);
        foreach (var (path, layer) in model.AdapterLayers())
            if (layer is LoraPruneLayer p && p.HasAdapter(adapter)) masks[path] = p.Mask(adapter).ToDoubleArray();
        var groups = PruneStructure.For(model.Model);
        var plain = model.MergeAndUnload();
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        foreach (var g in groups)
        {
            var carrier = g.Members.FirstOrDefault(m => m.MaskCarrier && masks.ContainsKey(m.Path));
            if (carrier is null) continue;
            var mask = masks[carrier.Path];
            var kept = new bool[g.Units];
            for (int ch = 0; ch < carrier.UnitOfChannel.Length; ch++) if (mask[ch] != 0) kept[carrier.UnitOfChannel[ch]] = true;
            if (kept.All(k => k)) continue;
            foreach (var m in g.Members)
            {
                var channels = Enumerable.Range(0, m.UnitOfChannel.Length).Where(ch => kept[m.UnitOfChannel[ch]]).Select(ch => (long)ch).ToArray();
                var module = plain.get_submodule(m.Path);
                if (g.Kind == PruneGroupKind.Mlp) plain.set_submodule(m.Path, Slice(module, channels, m.Columns));
                else ZeroOutside(module, channels, m.Columns);
            }
        }
        return plain;
    }

    private static (Tensor weight, Tensor? bias, bool conv) WeightOf(nn.Module module) => module switch
    {
        Torch.Modules.Linear l => (l.weight, l.bias, false),
        Conv1D c => (c.weight, c.bias, true),
        _ => throw new NotSupportedException($"cannot prune a {module.name}"),
    };

    private static nn.Module Slice(nn.Module module, long[] channels, bool columns)
    {
        var (w, bias, conv) = WeightOf(module);
        var idx = tensor(channels, device: w.device);
        // Linear layout: rows = outputs. Conv1D stores [in, out].
        int outDim = conv ? 1 : 0, inDim = conv ? 0 : 1;
        var nw = w.index_select(columns ? inDim : outDim, idx);
        var nb = bias is null ? null : columns ? bias.clone() : bias.index_select(0, idx);
        long nIn = columns ? channels.Length : (conv ? w.size(0) : w.size(1));
        long nOut = columns ? (conv ? w.size(1) : w.size(0)) : channels.Length;
        nn.Module result;
        if (conv)
        {
            var c = new Conv1D(nIn, nOut, w.device, w.dtype);
            c.weight.copy_(nw);
            c.bias.copy_(nb!);
            result = c;
        }
        else
        {
            var l = new Torch.Modules.Linear(nIn, nOut, nb is not null, w.device, w.dtype);
            l.weight.copy_(nw);
            if (nb is not null) l.bias!.copy_(nb);
            result = l;
        }
        module.Dispose();
        return result;
    }

    private static void ZeroOutside(nn.Module module, long[] keptChannels, bool columns)
    {
        var (w, bias, conv) = WeightOf(module);
        int channelDim = columns ? (conv ? 0 : 1) : (conv ? 1 : 0);
        var keep = zeros(new[] { w.size(channelDim) }, w.dtype, w.device);
        keep.index_fill_(0, tensor(keptChannels, device: w.device), 1.0);
        var shape = new long[] { 1, 1 };
        shape[channelDim] = w.size(channelDim);
        w.mul_(keep.view(shape));
        if (!columns && bias is not null) bias.mul_(keep);
    }
}
