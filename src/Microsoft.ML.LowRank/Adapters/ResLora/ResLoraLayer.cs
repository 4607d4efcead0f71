using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.ResLora;

/// <summary>
/// A ResLoRA layer: LoRA factors <c>lora_A.&lt;adapter&gt;</c> [r, in] and <c>lora_B.&lt;adapter&gt;</c> [out, r] (scaling
/// s = α/r) with a residual shortcut to the same adapter in the preceding same-name layers of its chain
/// (<see cref="ResLoraStructure"/>), x̃ = dropout(·):
/// <list type="bullet">
/// <item>input shortcut: y_l = base(x_l) + s·B_l·A_l·drop(x_l + x_{l−1}), x_{l−1} = the previous member's input in the
/// same forward pass (x_l for a chain's first member); gradients flow into x_{l−1} too;</item>
/// <item>block shortcut: y_l = base(x_l) + Σ_{k=0..K} s·B_{l−k}·A_{l−k}·drop_{l−k}(x_l), K = min(pre_num, l) (all with
/// pre_num −1);</item>
/// <item>middle shortcut: y_l = base(x_l) + s·B_l·(A_l·drop(x_l) + Σ_{k=1..K} A_{l−k}·drop(x_{l−k})), the A_{l−k}·x̃_{l−k} being
/// those computed by the earlier members in the same pass.</item>
/// </list>
/// The forward always uses these training structures (also in evaluation mode); only a merge replaces them:
/// the block shortcut merges exactly (W_l ← W0 + Σ_k s·B_{l−k}·A_{l−k}); the input and middle shortcuts merge
/// approximately, W_l ← W0 + (1 + α_l)·s·B_l·A_l with α_l from <see cref="ResLoraMergeEstimate"/>, so
/// <see cref="AdapterLayer.CanMergeExactly"/> is false for them and <see cref="AdapterLayer.AllowApproximateMerge"/> must be
/// set to merge. α_l is fixed at merge time so unmerge subtracts exactly what was added.
/// <para>The input and middle shortcuts need the members of a chain to run in order within one forward pass (as a model
/// forward does): a member whose predecessor's value is missing throws. Activation recomputation and mixed-adapter
/// batches are not supported for them. In training mode they record, without gradients, the Frobenius norm of x_l
/// (input shortcut) or of A_l·x̃_l (middle shortcut) into a window of the last <c>norm_window</c> batches, the persistent
/// buffer <c>reslora_norms.&lt;adapter&gt;</c> (saved with the adapter, so a loaded adapter merges like the trained one).</para>
/// </summary>
public sealed class ResLoraLayer : AdapterLayer
{
    private sealed record Hp(int R, double Alpha, double Scaling, ResLoraStructure Structure, int PreNum, ResLoraMergeEstimate Estimate, int Window);

    private readonly Dictionary<string, Hp> _hp = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (ResLoraChain chain, int index)> _links = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _windowPosition = new(StringComparer.Ordinal);
    private readonly Dictionary<string, double> _mergedRatio = new(StringComparer.Ordinal);

    /// <summary>Wraps a base layer with no adapter yet.</summary>
    /// <param name="baseLayer">A Linear or GPT-2 Conv1D.</param>
    public ResLoraLayer(nn.Module baseLayer) : base("ResLoraLayer", baseLayer)
    {
        register_module("lora_dropout", new AdapterDict<Dropout>());
        register_module("lora_A", new AdapterDict<Linear>());
        register_module("lora_B", new AdapterDict<Linear>());
        register_module("reslora_norms", new AdapterBufferDict());
    }

    private AdapterDict<Linear> ADict => (AdapterDict<Linear>)get_submodule("lora_A");
    private AdapterDict<Linear> BDict => (AdapterDict<Linear>)get_submodule("lora_B");
    private AdapterDict<Dropout> DropDict => (AdapterDict<Dropout>)get_submodule("lora_dropout");
    private AdapterBufferDict NormDict => (AdapterBufferDict)get_submodule("reslora_norms");

    private Hp Get(string adapterName)
        => _hp.TryGetValue(adapterName, out var h) ? h : throw new KeyNotFoundException($"no ResLoRA adapter '{adapterName}' in this layer (adapters: {string.Join(", ", AdapterNames)})");

    private (ResLoraChain chain, int index) LinkOf(string adapterName)
        => _links.TryGetValue(adapterName, out var l) ? l : throw new InvalidOperationException($"ResLoRA adapter '{adapterName}' of this layer is not linked into a chain: add ResLoRA adapters through LowRankModel");

    /// <summary>The down projection A [r, in] of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The Linear.</returns>
    public Linear LoraA(string adapterName) => ADict[adapterName];

    /// <summary>The up projection B [out, r] of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The Linear.</returns>
    public Linear LoraB(string adapterName) => BDict[adapterName];

    /// <summary>The rank of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>r.</returns>
    public int Rank(string adapterName) => Get(adapterName).R;

    /// <summary>The scaling s = α/r of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>s.</returns>
    public double Scaling(string adapterName) => Get(adapterName).Scaling;

    /// <summary>The shortcut structure of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The structure.</returns>
    public ResLoraStructure Structure(string adapterName) => Get(adapterName).Structure;

    /// <summary>This layer's position in the adapter's chain (0 for the first member).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The index.</returns>
    public int ChainIndex(string adapterName) => LinkOf(adapterName).index;

    /// <summary>The adapter's chain members, in model order (this layer included).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The members.</returns>
    public IReadOnlyList<ResLoraLayer> ChainMembers(string adapterName) => LinkOf(adapterName).chain.Members;

    /// <summary>How many tensor handles the adapter's chain cache holds now (0 after a complete forward pass).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The count.</returns>
    public int CachedTensors(string adapterName) => LinkOf(adapterName).chain.CachedTensors;

    /// <summary>Disposes what the chains of this layer's adapters keep from an interrupted forward pass.</summary>
    public void ClearCache()
    {
        foreach (var (chain, _) in _links.Values) chain.Clear();
    }

    /// <summary>The norm window of an adapter (input and middle shortcuts; float32 [norm_window], zeros where nothing was
    /// recorded yet), or null for the block shortcut.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The buffer (owned by the layer), or null.</returns>
    public Tensor? NormWindow(string adapterName) => NormDict.ContainsKey(adapterName) ? NormDict[adapterName] : null;

    /// <summary>The mean of the recorded (non-zero) norms of an adapter's window, 0 when none was recorded.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The mean.</returns>
    public double MeanNorm(string adapterName)
    {
        if (NormWindow(adapterName) is not { } w || w.device.type == DeviceType.META) return 0;
        double sum = 0;
        int n = 0;
        foreach (var v in w.ToDoubleArray())
            if (v > 0) { sum += v; n++; }
        return n == 0 ? 0 : sum / n;
    }

    internal void Link(string adapterName, ResLoraChain chain, int index) => _links[adapterName] = (chain, index);

    /// <summary>
    /// Adds (or re-creates) an adapter: A Kaiming-uniform (a = √5), B zero (so the adapter starts as a no-op whatever the
    /// shortcut), and for the input and middle shortcuts a zero norm window. The caller links it into a chain
    /// (<see cref="ResLoraOptions"/> does).
    /// </summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α (s = α/r).</param>
    /// <param name="dropout">Dropout probability.</param>
    /// <param name="structure">The shortcut.</param>
    /// <param name="preNum">How many predecessors the block / middle shortcuts reach (−1: all).</param>
    /// <param name="estimate">How approximate merges estimate α_l.</param>
    /// <param name="window">Norm window length.</param>
    /// <param name="context">Creation settings.</param>
    public void UpdateLayer(string adapterName, int r, double alpha, double dropout, ResLoraStructure structure, int preNum,
        ResLoraMergeEstimate estimate, int window, AdapterCreationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (r <= 0) throw new ArgumentOutOfRangeException(nameof(r), r, "the ResLoRA rank must be positive");
        if (window <= 0) throw new ArgumentOutOfRangeException(nameof(window), window, "the norm window must be positive");
        if (HasAdapter(adapterName)) DeleteAdapter(adapterName);
        using var scope = NewDisposeScope();
        var w = BaseWeight;
        var device = w.device;
        var meta = device.type == DeviceType.META;
        var dtype = context.AdapterType(w.dtype);
        var a = new Linear(InFeatures, r, false, device, dtype);
        var b = new Linear(r, OutFeatures, false, device, dtype);
        if (!meta)
            using (no_grad())
            {
                nn.init.kaiming_uniform_(a.weight, Math.Sqrt(5), generator: context.Generator);
                b.weight.zero_();
            }
        _hp[adapterName] = new Hp(r, alpha, ResLoraOptions.ScalingOf(r, alpha), structure, preNum, estimate, window);
        DropDict.Add(adapterName, new Dropout(dropout));
        ADict.Add(adapterName, a);
        BDict.Add(adapterName, b);
        if (structure != ResLoraStructure.BlockShortcut)
            NormDict.Add(adapterName, zeros(new[] { (long)window }, ScalarType.Float32, device));
        _windowPosition[adapterName] = 0;
        RegisterAdapterName(adapterName);
    }

    // ------------------------------------------------------------------ forward

    /// <summary>s·B·A·drop(x) of this layer's own factors (x in the adapter type).</summary>
    private Tensor Lora(string adapterName, Tensor x)
        => BDict[adapterName].call(ADict[adapterName].call(DropDict[adapterName].call(x))) * Get(adapterName).Scaling;

    /// <summary>How many predecessors member <paramref name="index"/> reaches with pre_num <paramref name="preNum"/>.</summary>
    private static int Reach(int preNum, int index) => preNum < 0 ? index : Math.Min(preNum, index);

    private static InvalidOperationException Missing(ResLoraChain chain, int index, string what, int from)
        => new($"ResLoRA ({chain.ModuleName} chain of adapter '{chain.AdapterName}'): member {index} needs {what} of member {from} " +
               "from the same forward pass; run the whole model, members in order (activation recomputation and mixed-adapter batches are not supported with the input and middle shortcuts)");

    /// <inheritdoc/>
    protected override Tensor AdapterOutput(Tensor x, string adapterName)
    {
        var h = Get(adapterName);
        var (chain, index) = LinkOf(adapterName);
        var dt = ADict[adapterName].weight.dtype;
        Tensor Cast(Tensor t) => t.dtype == dt ? t : t.to_type(dt);
        switch (h.Structure)
        {
            case ResLoraStructure.BlockShortcut:
            {
                var xa = Cast(x);
                var sum = Lora(adapterName, xa);
                for (int k = 1; k <= Reach(h.PreNum, index); k++) sum = sum + chain.Members[index - k].Lora(adapterName, xa);
                return sum;
            }
            case ResLoraStructure.InputShortcut:
            {
                Tensor? taken = null;
                if (index > 0)
                {
                    taken = chain.TakeInput(index - 1) ?? throw Missing(chain, index, "the input", index - 1);
                    if (!SameShape(taken, x))
                    {
                        var shape = taken.shape;
                        taken.Dispose();
                        throw new InvalidOperationException($"ResLoRA ({chain.ModuleName} chain): member {index} got input [{string.Join(", ", x.shape)}] but member {index - 1} saw [{string.Join(", ", shape)}]");
                    }
                }
                try
                {
                    if (training) RecordNorm(adapterName, x);
                    var result = Lora(adapterName, Cast(x) + Cast(taken ?? x));
                    if (!chain.IsLast(index)) chain.PutInput(index, x);
                    return result;
                }
                finally { taken?.Dispose(); }
            }
            default:
            {
                if (index == 0) chain.DropMiddle(int.MaxValue); // whatever an interrupted pass left
                var own = ADict[adapterName].call(DropDict[adapterName].call(Cast(x)));
                var sum = own;
                int reach = Reach(h.PreNum, index);
                for (int k = 1; k <= reach; k++)
                    sum = sum + (chain.Middle(index - k) ?? throw Missing(chain, index, "A·x̃", index - k));
                if (training) RecordNorm(adapterName, own);
                if (chain.IsLast(index) || h.PreNum == 0) chain.DropMiddle(int.MaxValue);
                else chain.PutMiddle(index, own, h.PreNum < 0 ? 0 : index + 1 - h.PreNum);
                return BDict[adapterName].call(sum) * h.Scaling;
            }
        }
    }

    private static bool SameShape(Tensor a, Tensor b)
    {
        if (a.dim() != b.dim()) return false;
        for (int d = 0; d < a.dim(); d++) if (a.size(d) != b.size(d)) return false;
        return true;
    }

    /// <summary>Writes ‖t‖_F (float32, no gradient) into the adapter's norm window.</summary>
    private void RecordNorm(string adapterName, Tensor t)
    {
        var window = NormDict[adapterName];
        int pos = _windowPosition[adapterName];
        using (no_grad())
            window.narrow(0, pos, 1).copy_(t.detach().to_type(ScalarType.Float32).norm().unsqueeze(0));
        _windowPosition[adapterName] = (pos + 1) % (int)window.size(0);
    }

    /// <summary>Mixed-adapter batches: the block shortcut only (the others need whole-batch inputs of other layers).</summary>
    /// <param name="rows">The input rows.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The contribution.</returns>
    protected override Tensor MixedBatchDelta(Tensor rows, string adapterName)
    {
        if (Get(adapterName).Structure != ResLoraStructure.BlockShortcut)
            throw new NotSupportedException($"mixed-adapter batches are not supported with ResLoRA's {ResLoraOptions.StructureName(Get(adapterName).Structure)} shortcut (adapter '{adapterName}')");
        return AdapterOutput(rows, adapterName);
    }

    // ------------------------------------------------------------------ merge

    /// <summary>True when every adapter here uses the block shortcut (the only exact merge).</summary>
    public override bool CanMergeExactly => AdapterNames.All(a => Get(a).Structure == ResLoraStructure.BlockShortcut);

    /// <summary>s·B·A of this layer's own factors, Linear layout, in <paramref name="type"/>.</summary>
    private Tensor OwnDelta(string adapterName, ScalarType type)
        => BDict[adapterName].weight.to_type(type).matmul(ADict[adapterName].weight.to_type(type)) * Get(adapterName).Scaling;

    /// <summary>‖W0 + s·B·A‖_F with this layer's unmerged base weight (merged adapters taken back out), float64.</summary>
    private double Frobenius(string adapterName)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var w = BaseWeight.to_type(ScalarType.Float64);
        if (FanInFanOut) w = w.t();
        foreach (var m in MergedAdapters) w = w - GetDeltaWeight(m).to_type(ScalarType.Float64);
        return (w + OwnDelta(adapterName, ScalarType.Float64)).norm().ToDouble();
    }

    /// <summary>
    /// The ratio α_l an approximate merge of the adapter would use now (input shortcut: 1 + α_l multiplies s·B·A, with
    /// α_l = 1 for a chain's first member; middle shortcut: α_l = 0 for the first member; block shortcut: 0, unused), from
    /// the norm windows or the weight norms (<see cref="ResLoraMergeEstimate"/>).
    /// </summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>α_l.</returns>
    public double MergeRatio(string adapterName)
    {
        var h = Get(adapterName);
        var (chain, index) = LinkOf(adapterName);
        static double Ratio(double num, double den) => num == 0 || den == 0 ? 1 : num / den;
        switch (h.Structure)
        {
            case ResLoraStructure.InputShortcut when h.Estimate == ResLoraMergeEstimate.WeightNorm:
                return index < 2 ? 1 : Ratio(chain.Members[index - 2].Frobenius(adapterName), chain.Members[index - 1].Frobenius(adapterName));
            case ResLoraStructure.InputShortcut:
                return index == 0 ? 1 : Ratio(chain.Members[index - 1].MeanNorm(adapterName), MeanNorm(adapterName));
            case ResLoraStructure.MiddleShortcut:
            {
                double mine = MeanNorm(adapterName), alpha = 0;
                for (int k = 1; k <= Reach(h.PreNum, index); k++) alpha += Ratio(chain.Members[index - k].MeanNorm(adapterName), mine);
                return alpha;
            }
            default:
                return 0;
        }
    }

    /// <summary>The weight delta, Linear layout, in the merge type: Σ_{k=0..K} s·B_{l−k}·A_{l−k} (block shortcut, exact), or
    /// (1 + α_l)·s·B_l·A_l (input and middle shortcuts, approximate; α_l as fixed by the merge when merged, else
    /// <see cref="MergeRatio"/>).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The delta (the caller owns it).</returns>
    public override Tensor GetDeltaWeight(string adapterName)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var h = Get(adapterName);
        var ct = MergeType;
        Tensor delta;
        if (h.Structure == ResLoraStructure.BlockShortcut)
        {
            var (chain, index) = LinkOf(adapterName);
            delta = OwnDelta(adapterName, ct);
            for (int k = 1; k <= Reach(h.PreNum, index); k++) delta = delta + chain.Members[index - k].OwnDelta(adapterName, ct);
        }
        else
        {
            var alpha = MergedAdapters.Contains(adapterName) && _mergedRatio.TryGetValue(adapterName, out var fixedAlpha) ? fixedAlpha : MergeRatio(adapterName);
            delta = OwnDelta(adapterName, ct) * (1 + alpha);
        }
        return delta.MoveToOuterDisposeScope();
    }

    /// <summary>Fixes α_l of the merged adapters (so unmerge subtracts the same delta), then adds the deltas.</summary>
    /// <param name="weight">The weight as stored, in the merge type.</param>
    /// <param name="adapterNames">The adapters to merge.</param>
    /// <returns>The merged weight.</returns>
    protected override Tensor MergeWeights(Tensor weight, IReadOnlyList<string> adapterNames)
    {
        ArgumentNullException.ThrowIfNull(adapterNames);
        foreach (var a in adapterNames) _mergedRatio[a] = MergeRatio(a);
        try
        {
            var result = weight;
            foreach (var a in adapterNames)
            {
                // GetDeltaWeight reads the fixed ratio only for merged adapters; use it explicitly here.
                var h = Get(a);
                var delta = h.Structure == ResLoraStructure.BlockShortcut ? GetDeltaWeight(a).to_type(MergeType) : OwnDelta(a, MergeType) * (1 + _mergedRatio[a]);
                result = result + (FanInFanOut ? delta.t() : delta);
            }
            return result;
        }
        catch
        {
            foreach (var a in adapterNames) _mergedRatio.Remove(a);
            throw;
        }
    }

    /// <summary>Subtracts the merged deltas (with the α_l fixed at merge time) and forgets the ratios.</summary>
    /// <param name="weight">The merged weight as stored, in the merge type.</param>
    /// <param name="mergedAdapters">The merged adapters.</param>
    /// <returns>The unmerged weight.</returns>
    protected override Tensor UnmergeWeights(Tensor weight, IReadOnlyList<string> mergedAdapters)
    {
        var result = base.UnmergeWeights(weight, mergedAdapters);
        _mergedRatio.Clear();
        return result;
    }

    /// <summary>The α_l fixed when the adapter was merged, or null when it is not merged.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>α_l or null.</returns>
    public double? MergedRatio(string adapterName)
        => MergedAdapters.Contains(adapterName) && _mergedRatio.TryGetValue(adapterName, out var a) ? a : null;

    // ------------------------------------------------------------------ state

    /// <inheritdoc/>
    protected override void DeleteAdapterCore(string adapterName)
    {
        if (_links.Remove(adapterName, out var link)) link.chain.Clear();
        RemoveFromDict<Linear>("lora_A", adapterName);
        RemoveFromDict<Linear>("lora_B", adapterName);
        RemoveFromDict<Dropout>("lora_dropout", adapterName);
        NormDict.Remove(adapterName);
        _hp.Remove(adapterName);
        _windowPosition.Remove(adapterName);
        _mergedRatio.Remove(adapterName);
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) ClearCache();
        base.Dispose(disposing);
    }
}
