using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters;

/// <summary>
/// What <see cref="LowRankModel"/> needs from every module that holds named adapters: an adapter layer
/// (<see cref="AdapterLayer"/>) or a trained copy of a whole module (<see cref="ModulesToSaveWrapper"/>).
/// </summary>
public interface IAdapterModule
{
    /// <summary>The adapters this module holds, in creation order.</summary>
    IReadOnlyList<string> AdapterNames { get; }

    /// <summary>The adapters used by forward (names this module does not hold are skipped).</summary>
    IReadOnlyList<string> ActiveAdapters { get; }

    /// <summary>Sets the adapters used by forward.</summary>
    /// <param name="adapterNames">The names.</param>
    void SetActiveAdapters(IReadOnlyList<string> adapterNames);

    /// <summary>When true, forward is the base module's (merged adapters are unmerged first).</summary>
    bool AdaptersDisabled { get; set; }

    /// <summary>Per-row adapter names for the next forward calls (a mixed-adapter batch), or null.</summary>
    IReadOnlyList<string>? MixedBatchAdapterNames { get; set; }

    /// <summary>Removes an adapter and disposes its weights.</summary>
    /// <param name="adapterName">The adapter.</param>
    void DeleteAdapter(string adapterName);

    /// <summary>The adapter's parameters with their names inside this module (e.g. "lora_A.default.weight").</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>(name, parameter) pairs.</returns>
    IEnumerable<(string name, nn.Parameter parameter)> AdapterParameters(string adapterName);

    /// <summary>The adapter's saved tensors with PEFT's file keys relative to this module (adapter name removed, e.g.
    /// "lora_A.weight"); the tensors alias the module's storage (copying into them loads a checkpoint).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>(key, tensor) pairs; the caller disposes the aliases.</returns>
    IEnumerable<(string key, Tensor value)> AdapterStateDict(string adapterName);
}

/// <summary>
/// Base of every adapter layer: wraps a frozen base layer (a <see cref="Linear"/> or GPT-2's <see cref="Conv1D"/>),
/// registered as the child "base_layer" (so its weight's key becomes <c>...q_proj.base_layer.weight</c>, as in PEFT),
/// and owns any number of named adapters. Handles the active adapter set, disabling, merge/unmerge (computed in
/// float32, or float64 for float64 weights, and cast back; the pre-merge weight of a float16/bfloat16 base is kept so
/// unmerge restores it exactly), deletion, and mixed-adapter batches (each row uses its own adapter; rows named
/// <see cref="BaseAdapterName"/> use none). A method implements <see cref="AdapterOutput"/> (its additive
/// contribution) and <see cref="GetDeltaWeight"/> (its weight delta), or overrides <see cref="ForwardAdapters"/>.
/// </summary>
public abstract class AdapterLayer : nn.Module<Tensor, Tensor>, IAdapterModule
{
    /// <summary>The row name that means "no adapter" in a mixed-adapter batch (PEFT's).</summary>
    public const string BaseAdapterName = "__base__";

    private readonly List<string> _adapters = new();
    private List<string> _active = new();
    private readonly List<string> _merged = new();
    private Tensor? _preMergeWeight;

    /// <summary>Wraps a base layer.</summary>
    /// <param name="name">The layer's type name.</param>
    /// <param name="baseLayer">A <see cref="Linear"/> or <see cref="Conv1D"/>.</param>
    /// <exception cref="NotSupportedException">Another layer type.</exception>
    protected AdapterLayer(string name, nn.Module baseLayer) : base(name)
    {
        ArgumentNullException.ThrowIfNull(baseLayer);
        switch (baseLayer)
        {
            case Linear l:
                InFeatures = l.in_features;
                OutFeatures = l.out_features;
                break;
            case Conv1D c:
                InFeatures = c.in_features;
                OutFeatures = c.out_features;
                break;
            case QLora.QuantizedLinear q:
                InFeatures = q.in_features;
                OutFeatures = q.out_features;
                break;
            default:
                throw new NotSupportedException($"a {baseLayer.name} layer cannot be adapted: supported base layers are Linear, GPT-2's Conv1D and QuantizedLinear (NF4)");
        }
        register_module("base_layer", baseLayer);
    }

    /// <summary>Whether a module can be wrapped by an adapter layer (Linear, Conv1D, or an NF4 <see cref="QLora.QuantizedLinear"/>).</summary>
    /// <param name="module">The module.</param>
    /// <returns>True when supported.</returns>
    public static bool IsSupportedBaseLayer(nn.Module module) => module is Linear or Conv1D or QLora.QuantizedLinear;

    /// <summary>The wrapped base layer.</summary>
    public nn.Module<Tensor, Tensor> BaseLayer => (nn.Module<Tensor, Tensor>)get_submodule("base_layer");

    /// <summary>Input size.</summary>
    public long InFeatures { get; }

    /// <summary>Output size.</summary>
    public long OutFeatures { get; }

    /// <summary>True when the base weight is stored [in, out] (GPT-2's Conv1D; PEFT's <c>fan_in_fan_out</c>).</summary>
    public bool FanInFanOut => BaseLayer is Conv1D;

    /// <summary>The base weight as stored ([out, in] for Linear, [in, out] for Conv1D).</summary>
    public nn.Parameter BaseWeight => BaseLayer.get_parameter("weight");

    /// <summary>The base bias, or null.</summary>
    public nn.Parameter? BaseBias => BaseLayer.named_parameters(false).Where(p => p.name == "bias").Select(p => p.parameter).FirstOrDefault();

    /// <summary>The floating-point type the base layer computes in: its weight's type, or for an NF4
    /// <see cref="QLora.QuantizedLinear"/> (whose <see cref="BaseWeight"/> holds packed 4-bit codes) the type it dequantises to.</summary>
    public ScalarType BaseType => BaseLayer is QLora.QuantizedLinear q ? q.ComputeType : BaseWeight.dtype;

    /// <summary>The type merges are computed in: float64 for a float64 base, else float32.</summary>
    protected ScalarType MergeType => BaseType == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    // ------------------------------------------------------------------ adapters

    /// <inheritdoc/>
    public IReadOnlyList<string> AdapterNames => _adapters;

    /// <summary>Whether this layer holds an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>True when present.</returns>
    public bool HasAdapter(string adapterName) => _adapters.Contains(adapterName);

    /// <summary>Records a new adapter (subclasses call it after creating the weights).</summary>
    /// <param name="adapterName">The adapter.</param>
    protected void RegisterAdapterName(string adapterName)
    {
        if (!_adapters.Contains(adapterName)) _adapters.Add(adapterName);
    }

    /// <inheritdoc/>
    public IReadOnlyList<string> ActiveAdapters => _active;

    /// <inheritdoc/>
    public void SetActiveAdapters(IReadOnlyList<string> adapterNames)
    {
        ArgumentNullException.ThrowIfNull(adapterNames);
        _active = adapterNames.Distinct().ToList();
    }

    /// <inheritdoc/>
    public bool AdaptersDisabled { get; set; }

    /// <inheritdoc/>
    public IReadOnlyList<string>? MixedBatchAdapterNames { get; set; }

    /// <summary>When true and the layer is in training mode, forward is the base layer's alone: the adapters are skipped
    /// and their weights get no gradient. Evaluation mode is unaffected (every active adapter runs). Set by layer-drop
    /// schedules such as CoTo (<see cref="Coto.CotoOptions"/>). Default false.</summary>
    public bool SkipAdaptersInTraining { get; set; }

    /// <summary>The adapters currently merged into the base weight, in merge order.</summary>
    public IReadOnlyList<string> MergedAdapters => _merged;

    /// <summary>True when at least one adapter is merged.</summary>
    public bool Merged => _merged.Count > 0;

    /// <summary>Whether merging reproduces the unmerged forward exactly (up to rounding).</summary>
    public virtual bool CanMergeExactly => true;

    /// <summary>Lets <see cref="Merge"/> fold adapters whose merge is only an approximation (<see cref="CanMergeExactly"/>
    /// false, e.g. ResLoRA's input and middle shortcuts); otherwise merging them throws. Default false.</summary>
    public bool AllowApproximateMerge { get; set; }

    /// <inheritdoc/>
    public void DeleteAdapter(string adapterName)
    {
        if (!_adapters.Contains(adapterName)) return;
        if (_merged.Contains(adapterName)) Unmerge();
        DeleteAdapterCore(adapterName);
        _adapters.Remove(adapterName);
        _active.Remove(adapterName);
    }

    /// <summary>Removes the adapter's modules and disposes its weights.</summary>
    /// <param name="adapterName">The adapter.</param>
    protected abstract void DeleteAdapterCore(string adapterName);

    /// <summary>Removes one adapter's child from a registered <see cref="AdapterDict{T}"/> and disposes it.</summary>
    /// <typeparam name="T">Child type.</typeparam>
    /// <param name="dictName">The dictionary's child name (e.g. "lora_A").</param>
    /// <param name="adapterName">The adapter.</param>
    protected void RemoveFromDict<T>(string dictName, string adapterName) where T : nn.Module
    {
        var dict = (AdapterDict<T>)get_submodule(dictName);
        var replacement = dict.Without(adapterName, out var removed);
        register_module(dictName, replacement);
        removed?.Dispose();
    }

    /// <inheritdoc/>
    /// <remarks>These are the parameters <see cref="LowRankModel"/> makes trainable for an active adapter; a method whose
    /// adapter holds frozen weights (e.g. already-trained experts under a trainable gate) overrides this and keeps them
    /// out while <see cref="AdapterStateDict"/> still saves them.</remarks>
    public virtual IEnumerable<(string name, nn.Parameter parameter)> AdapterParameters(string adapterName)
    {
        foreach (var (n, p) in named_parameters())
            if (BelongsTo(n, adapterName)) yield return (n, p);
    }

    /// <inheritdoc/>
    public virtual IEnumerable<(string key, Tensor value)> AdapterStateDict(string adapterName)
    {
        foreach (var (n, p) in named_parameters())
            if (BelongsTo(n, adapterName)) yield return (StripAdapterName(n, adapterName), p.alias());
        foreach (var (n, b) in named_buffers(include_nonpersistent: false))
            if (BelongsTo(n, adapterName)) yield return (StripAdapterName(n, adapterName), b.alias());
    }

    private static bool BelongsTo(string name, string adapterName)
    {
        var parts = name.Split('.');
        if (parts[0] == "base_layer") return false;
        for (int i = 1; i < parts.Length; i++) if (parts[i] == adapterName) return true;
        return false;
    }

    /// <summary>PEFT's key rule: the adapter-name segment is removed ("lora_A.default.weight" → "lora_A.weight",
    /// "lora_magnitude_vector.default" → "lora_magnitude_vector").</summary>
    /// <param name="name">The in-memory name.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The file key.</returns>
    protected static string StripAdapterName(string name, string adapterName)
        => string.Join('.', name.Split('.').Where((p, i) => i == 0 || p != adapterName));

    // ------------------------------------------------------------------ merge

    /// <summary>The weight delta of an adapter in Linear layout [out, in], in <see cref="MergeType"/>.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The delta (the caller owns it).</returns>
    public abstract Tensor GetDeltaWeight(string adapterName);

    /// <summary>
    /// Folds adapters into the base weight (default: the active ones held here not yet merged). Computed in float32
    /// (float64 for float64 weights) and cast back to the base type.
    /// </summary>
    /// <param name="adapterNames">Adapters to merge, or null for the active ones.</param>
    /// <param name="safeMerge">Check the merged weight for NaN/Inf before writing it (throws and leaves the weight as it was).</param>
    public void Merge(IEnumerable<string>? adapterNames = null, bool safeMerge = false)
    {
        var names = (adapterNames ?? _active).Where(n => _adapters.Contains(n) && !_merged.Contains(n)).Distinct().ToList();
        if (names.Count == 0) return;
        if (BaseLayer is QLora.QuantizedLinear)
            throw new InvalidOperationException("merging into a 4-bit NF4 base weight would re-quantise it (lossy), so it is not done: call QLoraOptions.DequantizeBase on the model first (the merge is then exact over the dequantised weights)");
        if (!CanMergeExactly && !AllowApproximateMerge) throw new InvalidOperationException($"{name} adapters cannot be merged exactly (set AllowApproximateMerge to merge them approximately)");
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var w = BaseWeight;
        if (w.device.type == DeviceType.META) throw new InvalidOperationException("cannot merge on the meta device");
        var acc = MergeWeights(w.to_type(MergeType, copy: true), names);
        if (safeMerge && !acc.isfinite().all().item<bool>())
            throw new InvalidOperationException($"merging adapter(s) {string.Join(", ", names)} gives NaN or Inf weights; nothing was merged");
        if (_merged.Count == 0 && w.dtype != ScalarType.Float32 && w.dtype != ScalarType.Float64)
            _preMergeWeight = w.clone().DetachFromDisposeScope();
        w.copy_(acc);
        _merged.AddRange(names);
    }

    /// <summary>Takes every merged adapter back out of the base weight (restoring the exact pre-merge weight of a
    /// float16/bfloat16 base; subtracting in float32/float64 otherwise).</summary>
    public void Unmerge()
    {
        if (_merged.Count == 0) return;
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var w = BaseWeight;
        if (_preMergeWeight is not null)
        {
            w.copy_(_preMergeWeight);
            _preMergeWeight.Dispose();
            _preMergeWeight = null;
        }
        else
        {
            w.copy_(UnmergeWeights(w.to_type(MergeType, copy: true), _merged));
        }
        _merged.Clear();
    }

    /// <summary>The base weight with <paramref name="adapterNames"/> folded in (default: + each adapter's
    /// <see cref="GetDeltaWeight"/>, transposed for Conv1D). Methods whose merge is not additive (DoRA) or needs
    /// bookkeeping (ResLoRA's merge ratios) override it together with <see cref="UnmergeWeights"/>.</summary>
    /// <param name="weight">The weight as stored, in <see cref="MergeType"/> (a copy the method may consume).</param>
    /// <param name="adapterNames">The adapters to fold in, in order.</param>
    /// <returns>The merged weight, as stored, in <see cref="MergeType"/>.</returns>
    protected virtual Tensor MergeWeights(Tensor weight, IReadOnlyList<string> adapterNames)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(adapterNames);
        foreach (var n in adapterNames)
        {
            var delta = GetDeltaWeight(n).to_type(MergeType);
            weight = weight + (FanInFanOut ? delta.t() : delta);
        }
        return weight;
    }

    /// <summary>The weight with the merged adapters taken back out (default: − each delta, last merged first).</summary>
    /// <param name="weight">The merged weight as stored, in <see cref="MergeType"/> (a copy).</param>
    /// <param name="mergedAdapters">The merged adapters in merge order.</param>
    /// <returns>The unmerged weight, as stored, in <see cref="MergeType"/>.</returns>
    protected virtual Tensor UnmergeWeights(Tensor weight, IReadOnlyList<string> mergedAdapters)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(mergedAdapters);
        for (int i = mergedAdapters.Count - 1; i >= 0; i--)
        {
            var delta = GetDeltaWeight(mergedAdapters[i]).to_type(MergeType);
            weight = weight - (FanInFanOut ? delta.t() : delta);
        }
        return weight;
    }

    /// <summary>Forgets merge bookkeeping after the merged weight has become the new base (merge-and-unload).</summary>
    internal void ForgetMerges()
    {
        _merged.Clear();
        _preMergeWeight?.Dispose();
        _preMergeWeight = null;
    }

    // ------------------------------------------------------------------ forward

    /// <summary>The adapter's additive contribution for input <paramref name="x"/> (same shape as the base output).</summary>
    /// <param name="x">The layer input.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The contribution (in the adapter's type; the caller casts).</returns>
    protected abstract Tensor AdapterOutput(Tensor x, string adapterName);

    /// <summary>base(x) plus the contributions of <paramref name="adapterNames"/> (those held here). Methods whose adapter
    /// is not additive on the base output override this.</summary>
    /// <param name="x">The input.</param>
    /// <param name="adapterNames">The adapters to apply.</param>
    /// <returns>The output.</returns>
    protected virtual Tensor ForwardAdapters(Tensor x, IReadOnlyList<string> adapterNames)
    {
        var result = BaseLayer.call(x);
        var resultType = result.dtype;  // PEFT: the sum promotes to the adapter's type and is cast back once, at the end
        foreach (var a in adapterNames)
        {
            if (!_adapters.Contains(a)) continue;
            var d = AdapterOutput(x, a);
            result = result + d;
        }
        return result.dtype == resultType ? result : result.to_type(resultType);
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input) => forward(input, MixedBatchAdapterNames);

    /// <summary>The output; with <paramref name="rowAdapterNames"/> each batch row (dimension 0) uses its own adapter
    /// (<see cref="BaseAdapterName"/>: none).</summary>
    /// <param name="input">Input [batch, ..., in].</param>
    /// <param name="rowAdapterNames">One adapter name per row, or null for the active adapters.</param>
    /// <returns>The output.</returns>
    public Tensor forward(Tensor input, IReadOnlyList<string>? rowAdapterNames)
    {
        ArgumentNullException.ThrowIfNull(input);
        using var scope = NewDisposeScope();
        Tensor result;
        if (AdaptersDisabled)
        {
            if (Merged) Unmerge();
            result = BaseLayer.call(input);
        }
        else if (SkipAdaptersInTraining && training && !Merged)
            result = BaseLayer.call(input);
        else if (rowAdapterNames is not null)
            result = MixedBatchForward(input, rowAdapterNames);
        else if (Merged)
            result = BaseLayer.call(input);
        else
            result = ForwardAdapters(input, _active);
        return result.MoveToOuterDisposeScope();
    }

    private Tensor MixedBatchForward(Tensor x, IReadOnlyList<string> rows)
    {
        if (x.dim() < 2 || x.size(0) != rows.Count)
            throw new ArgumentException($"a mixed-adapter batch needs one adapter name per row: {rows.Count} names for input [{string.Join(", ", x.shape)}]");
        if (Merged) throw new InvalidOperationException("mixed-adapter batches cannot run while adapters are merged; unmerge first");
        var result = BaseLayer.call(x);
        foreach (var adapter in rows.Distinct())
        {
            if (adapter == BaseAdapterName || !_adapters.Contains(adapter)) continue;
            var idx = RowIndex(rows, adapter, x.device);
            var d = MixedBatchDelta(x.index_select(0, idx), adapter);
            result = result.index_add(0, idx, d.dtype == result.dtype ? d : d.to_type(result.dtype));
        }
        return result;
    }

    /// <summary>What one adapter adds to the base output of the rows that use it in a mixed-adapter batch (default:
    /// <see cref="AdapterOutput"/>; methods that override <see cref="ForwardAdapters"/> override this too).</summary>
    /// <param name="rows">The input rows using the adapter.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The contribution for those rows.</returns>
    protected virtual Tensor MixedBatchDelta(Tensor rows, string adapterName) => AdapterOutput(rows, adapterName);

    /// <summary>The int64 indices of the rows using an adapter.</summary>
    /// <param name="rows">Per-row names.</param>
    /// <param name="adapter">The adapter.</param>
    /// <param name="device">Device of the index.</param>
    /// <returns>The index tensor.</returns>
    internal static Tensor RowIndex(IReadOnlyList<string> rows, string adapter, Device device)
    {
        var list = new List<long>();
        for (int i = 0; i < rows.Count; i++) if (rows[i] == adapter) list.Add(i);
        return tensor(list.ToArray(), device: device);
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _preMergeWeight?.Dispose();
            _preMergeWeight = null;
        }
        base.Dispose(disposing);
    }
}
