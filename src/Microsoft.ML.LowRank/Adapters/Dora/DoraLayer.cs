using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.Dora;

/// <summary>DoRA's magnitude vector m [out] of one adapter, as its parameter "weight" (PEFT's DoraLinearLayer), so the
/// in-memory key is <c>lora_magnitude_vector.&lt;adapter&gt;.weight</c>.</summary>
public sealed class DoraMagnitude : nn.Module
{
    /// <summary>Creates the module around a parameter.</summary>
    /// <param name="weight">m [out] (owned from now on).</param>
    public DoraMagnitude(nn.Parameter weight) : base("DoraLinearLayer") => register_parameter("weight", weight);

    /// <summary>m [out].</summary>
    public nn.Parameter weight => get_parameter("weight");
}

/// <summary>
/// A DoRA layer (PEFT's LoRA layer with <c>use_dora=True</c>). Per adapter it holds the LoRA factors
/// <c>lora_A.&lt;adapter&gt;</c> [r, in], <c>lora_B.&lt;adapter&gt;</c> [out, r], <c>lora_dropout.&lt;adapter&gt;</c> and the
/// magnitude <c>lora_magnitude_vector.&lt;adapter&gt;.weight</c> [out]; the magnitude is saved under PEFT's file key
/// <c>lora_magnitude_vector</c> (no ".weight", as PEFT writes it).
/// <para>Forward (PEFT's DoraLinearVariant): with V = W0 + s·B·A (Linear layout), n = ‖V‖_row computed in float32
/// (float64 for a float64 base) and DETACHED (DoRA §4.3), k = m / n:
/// y = x·W0ᵀ + b + (k − 1) ⊙ (x̃·W0ᵀ) + k ⊙ s·(x̃·Aᵀ·Bᵀ), where x̃ = dropout(x). Without active dropout (p = 0 or
/// evaluation) x̃ = x and the already computed base output (minus bias) is reused, so y = k ⊙ (x·Vᵀ) + b; with active
/// dropout W0·x̃ is recomputed on the dropped input, as PEFT does. The bias is never scaled.</para>
/// <para>Merge: W ← (m / ‖W0 + ΔW‖_row)[:, None] ⊙ (W0 + ΔW), computed in float64; the pre-merge norm is cached so
/// unmerge computes W0 = W / k − ΔW with the same k (PEFT's merge_safe / unmerge). Only one DoRA adapter can be merged
/// into a layer at a time (sequential DoRA merges are not equal to several active DoRA adapters).</para>
/// <para>Several active adapters: each adds its own term computed from the base output x·W0ᵀ (PEFT instead feeds the
/// running result, including earlier adapters' terms, into the next adapter's term).</para>
/// </summary>
public sealed class DoraLayer : AdapterLayer
{
    private readonly Dictionary<string, (int r, double alpha, bool rs, double scaling)> _hp = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Tensor> _mergeNorms = new(StringComparer.Ordinal);

    /// <summary>The file key of the magnitude (PEFT's, after its ".weight" is dropped).</summary>
    public const string MagnitudeKey = "lora_magnitude_vector";

    /// <summary>Wraps a base layer with no adapter yet.</summary>
    /// <param name="baseLayer">A Linear or GPT-2 Conv1D.</param>
    public DoraLayer(nn.Module baseLayer) : base("DoraLayer", baseLayer)
    {
        register_module("lora_dropout", new AdapterDict<Dropout>());
        register_module("lora_A", new AdapterDict<Linear>());
        register_module("lora_B", new AdapterDict<Linear>());
        register_module(MagnitudeKey, new AdapterDict<DoraMagnitude>());
    }

    private AdapterDict<Linear> ADict => (AdapterDict<Linear>)get_submodule("lora_A");
    private AdapterDict<Linear> BDict => (AdapterDict<Linear>)get_submodule("lora_B");
    private AdapterDict<Dropout> DropDict => (AdapterDict<Dropout>)get_submodule("lora_dropout");
    private AdapterDict<DoraMagnitude> MDict => (AdapterDict<DoraMagnitude>)get_submodule(MagnitudeKey);

    /// <summary>The down projection A [r, in] of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The Linear.</returns>
    public Linear LoraA(string adapterName) => ADict[adapterName];

    /// <summary>The up projection B [out, r] of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The Linear.</returns>
    public Linear LoraB(string adapterName) => BDict[adapterName];

    /// <summary>The magnitude m [out] of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The parameter.</returns>
    public nn.Parameter Magnitude(string adapterName) => MDict[adapterName].weight;

    /// <summary>The dropout module of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The module.</returns>
    public Dropout LoraDropout(string adapterName) => DropDict[adapterName];

    /// <summary>The rank of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>r.</returns>
    public int Rank(string adapterName) => Hp(adapterName).r;

    /// <summary>The scaling s of an adapter (α/r, or α/√r with rsLoRA).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>s.</returns>
    public double Scaling(string adapterName) => Hp(adapterName).scaling;

    private (int r, double alpha, bool rs, double scaling) Hp(string adapterName)
        => _hp.TryGetValue(adapterName, out var h) ? h : throw new KeyNotFoundException($"no DoRA adapter '{adapterName}' in this layer (adapters: {string.Join(", ", AdapterNames)})");

    /// <summary>
    /// Adds (or re-creates) an adapter: A and B as LoRA's initialisation says, then m = ‖W0 + s·B·A‖_row (= ‖W0‖_row for
    /// the default B = 0) computed in float32 (float64 for a float64 base). Weights live on the base weight's device in
    /// the adapter type of <paramref name="context"/>; on the meta device only shapes are created.
    /// </summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout probability on the adapter input.</param>
    /// <param name="useRsLora">Scaling α/√r instead of α/r.</param>
    /// <param name="init">Default, Gaussian or None.</param>
    /// <param name="context">Creation settings.</param>
    public void UpdateLayer(string adapterName, int r, double alpha, double dropout, bool useRsLora, LoraInitialization init, AdapterCreationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (r <= 0) throw new ArgumentOutOfRangeException(nameof(r), r, "the DoRA rank must be positive");
        if (init is not (LoraInitialization.Default or LoraInitialization.Gaussian or LoraInitialization.None))
            throw new NotSupportedException($"DoRA does not support the {init} initialisation");
        if (HasAdapter(adapterName)) DeleteAdapter(adapterName);
        using var scope = NewDisposeScope();
        var w = BaseWeight;
        var device = w.device;
        var meta = device.type == DeviceType.META;
        var dtype = context.AdapterType(w.dtype);
        var scaling = LoraOptions.Scaling(r, alpha, useRsLora);
        var a = new Linear(InFeatures, r, false, device, dtype);
        var b = new Linear(r, OutFeatures, false, device, dtype);
        DoraMagnitude m;
        try
        {
            using var ng = no_grad();
            switch (init)
            {
                case LoraInitialization.Default:
                    if (!meta) nn.init.kaiming_uniform_(a.weight, Math.Sqrt(5), generator: context.Generator);
                    if (!meta) b.weight.zero_();
                    break;
                case LoraInitialization.Gaussian:
                    if (!meta) a.weight.normal_(0, 1.0 / r, context.Generator);
                    if (!meta) b.weight.zero_();
                    break;
                case LoraInitialization.None:
                    if (!meta && context.Generator is not null)
                    {
                        nn.init.kaiming_uniform_(a.weight, Math.Sqrt(5), generator: context.Generator);
                        nn.init.kaiming_uniform_(b.weight, Math.Sqrt(5), generator: context.Generator);
                    }
                    break;
            }
            var mag = meta ? empty(new[] { OutFeatures }, dtype, device) : RowNorm(a.weight, b.weight, scaling).to_type(dtype);
            m = new DoraMagnitude(new nn.Parameter(mag));
        }
        catch
        {
            a.Dispose();
            b.Dispose();
            throw;
        }
        _hp[adapterName] = (r, alpha, useRsLora, scaling);
        DropDict.Add(adapterName, new Dropout(dropout));
        ADict.Add(adapterName, a);
        BDict.Add(adapterName, b);
        MDict.Add(adapterName, m);
        RegisterAdapterName(adapterName);
    }

    /// <summary>The type norms are computed in: float64 for a float64 base, else float32.</summary>
    private ScalarType NormType => BaseWeight.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    /// <summary>W0 in Linear layout [out, in] (a view for Conv1D).</summary>
    private Tensor LinearLayoutWeight(Tensor w) => FanInFanOut ? w.t() : w;

    /// <summary>‖W0 + s·B·A‖_row in <see cref="NormType"/>, outside autograd.</summary>
    private Tensor RowNorm(Tensor a, Tensor b, double scaling)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var ct = NormType;
        var v = LinearLayoutWeight(BaseWeight.to_type(ct)) + b.to_type(ct).matmul(a.to_type(ct)) * scaling;
        return v.norm(2, new long[] { 1 }).MoveToOuterDisposeScope();
    }

    /// <summary>The detached row norm n = ‖W0 + s·B·A‖_row of an adapter, in float32 (float64 for a float64 base) —
    /// what forward divides the magnitude by.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>n [out] (the caller owns it).</returns>
    public Tensor WeightNorm(string adapterName) => RowNorm(ADict[adapterName].weight, BDict[adapterName].weight, Hp(adapterName).scaling);

    // ------------------------------------------------------------------ forward

    /// <summary>The DoRA term of one adapter: (k − 1) ⊙ (x̃·W0ᵀ) + k ⊙ s·(x̃·Aᵀ·Bᵀ), in the adapter type.</summary>
    /// <param name="x">The layer input.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="baseWithoutBias">x·W0ᵀ (no bias), reused when dropout is inactive, or null to compute it.</param>
    private Tensor DoraTerm(Tensor x, string adapterName, Tensor? baseWithoutBias)
    {
        var a = ADict[adapterName];
        var dt = a.weight.dtype;
        var xa = x.dtype == dt ? x : x.to_type(dt);
        var drop = DropDict[adapterName];
        bool dropping = drop.training && drop.p > 0;
        Tensor xd, basePart;
        if (dropping || baseWithoutBias is null)
        {
            xd = dropping ? drop.call(xa) : xa;
            var w = BaseWeight.dtype == dt ? BaseWeight : BaseWeight.to_type(dt);
            basePart = FanInFanOut ? xd.matmul(w) : nn.functional.linear(xd, w);
        }
        else
        {
            xd = xa;
            basePart = baseWithoutBias.dtype == dt ? baseWithoutBias : baseWithoutBias.to_type(dt);
        }
        var lora = BDict[adapterName].call(a.call(xd));
        var n = WeightNorm(adapterName);
        var k = Magnitude(adapterName) / (n.dtype == dt ? n : n.to_type(dt));
        return (k - 1) * basePart + lora * (k * Hp(adapterName).scaling);
    }

    /// <summary>
    /// Evaluate a single active adapter through the fused native DoRA linear (<see cref="torch.nn.functional.dora_linear"/>:
    /// one autograd node, the row norm computed without forming the out×in W0 + s·B·A, only x, z = x̃·Aᵀ, the dropout mask
    /// and one [N, out] float32 tensor saved for backward). Used while autograd records (a training step: the node's gains
    /// are in what backward keeps and recomputes), exactly one adapter of this layer is active, the base is a frozen
    /// Linear or Conv1D (not an NF4 QuantizedLinear) and the weights are not on the meta device; otherwise, or when false,
    /// the composed path runs. Same formula (see the class summary) up to rounding: the fused norm is summed from
    /// ‖W0_i‖² + 2s⟨W0_i·Aᵀ, B_i⟩ + s²‖(B·A)_i‖², so at init k = m/n is 1 only to float32 rounding — under no_grad
    /// (evaluation, generation) the composed path keeps the init output bit-identical to the base. Default true.
    /// </summary>
    public bool UseFusedKernel { get; set; } = true;

    /// <inheritdoc/>
    protected override Tensor ForwardAdapters(Tensor x, IReadOnlyList<string> adapterNames)
    {
        if (UseFusedKernel && BaseLayer is Linear or Conv1D && !BaseWeight.requires_grad && BaseWeight.device.type != DeviceType.META && is_grad_enabled())
        {
            string? only = null;
            int held = 0;
            for (int i = 0; i < adapterNames.Count; i++)
                if (HasAdapter(adapterNames[i])) { only = adapterNames[i]; held++; }
            if (held == 1)
            {
                var drop = DropDict[only!];
                double p = drop.training ? drop.p : 0;
                return nn.functional.dora_linear(x, BaseWeight, BaseBias, ADict[only!].weight, BDict[only!].weight, Magnitude(only!), Hp(only!).scaling,
                    p, p > 0, null, FanInFanOut);
            }
        }
        var result = BaseLayer.call(x);
        var resultType = result.dtype;  // PEFT: the sum promotes to the adapter's type and is cast back once, at the end
        Tensor? baseWithoutBias = null;
        foreach (var a in adapterNames)
        {
            if (!HasAdapter(a)) continue;
            baseWithoutBias ??= BaseBias is { } bias ? result - bias : result;
            var d = DoraTerm(x, a, baseWithoutBias);
            result = result + d;
        }
        return result.dtype == resultType ? result : result.to_type(resultType);
    }

    /// <summary>The DoRA term of one adapter alone (W0·x̃ recomputed): what it adds to the base output.</summary>
    /// <param name="x">The layer input.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The term, in the adapter type.</returns>
    protected override Tensor AdapterOutput(Tensor x, string adapterName) => DoraTerm(x, adapterName, null);

    /// <summary>Not used by DoRA's forward (which is not additive in a fixed delta); returns the weight change a merge of
    /// this adapter alone would make to the current base weight: k ⊙ (W + ΔW) − W, Linear layout [out, in], in the merge
    /// type.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The change (the caller owns it).</returns>
    public override Tensor GetDeltaWeight(string adapterName)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var w = LinearLayoutWeight(BaseWeight.to_type(ScalarType.Float64));
        var (merged, _) = MergedLinearWeight(w, adapterName);
        return (merged - w).to_type(MergeType).MoveToOuterDisposeScope();
    }

    /// <summary>k ⊙ (W + ΔW) and the norm n = ‖W + ΔW‖_row, in float64 (W in Linear layout, float64).</summary>
    private (Tensor merged, Tensor norm) MergedLinearWeight(Tensor w, string adapterName)
    {
        var f64 = ScalarType.Float64;
        var v = w + BDict[adapterName].weight.to_type(f64).matmul(ADict[adapterName].weight.to_type(f64)) * Hp(adapterName).scaling;
        var n = v.norm(2, new long[] { 1 });
        var k = Magnitude(adapterName).detach().to_type(f64) / n;
        return (v * k.unsqueeze(1), n);
    }

    /// <summary>DoRA merge (one adapter): W ← k ⊙ (W + ΔW) with k = m / ‖W + ΔW‖_row, in float64; the norm is cached for
    /// <see cref="UnmergeWeights"/>.</summary>
    /// <param name="weight">The weight as stored, in the merge type.</param>
    /// <param name="adapterNames">The adapters to merge (one).</param>
    /// <returns>The merged weight.</returns>
    protected override Tensor MergeWeights(Tensor weight, IReadOnlyList<string> adapterNames)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(adapterNames);
        if (adapterNames.Count > 1 || Merged)
            throw new NotSupportedException($"DoRA merges one adapter per layer at a time (asked to merge {string.Join(", ", MergedAdapters.Concat(adapterNames))}); unmerge first");
        ClearMergeNorms();
        var name = adapterNames[0];
        var w = LinearLayoutWeight(weight.to_type(ScalarType.Float64));
        var (merged, n) = MergedLinearWeight(w, name);
        _mergeNorms[name] = n.DetachFromDisposeScope();
        return LinearLayoutWeight(merged).to_type(weight.dtype);
    }

    /// <summary>DoRA unmerge: W0 = W / k − ΔW with the cached pre-merge norm (k = m / n), in float64.</summary>
    /// <param name="weight">The merged weight as stored, in the merge type.</param>
    /// <param name="mergedAdapters">The merged adapter (one).</param>
    /// <returns>The restored weight.</returns>
    protected override Tensor UnmergeWeights(Tensor weight, IReadOnlyList<string> mergedAdapters)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(mergedAdapters);
        var f64 = ScalarType.Float64;
        var w = LinearLayoutWeight(weight.to_type(f64));
        foreach (var name in mergedAdapters.Reverse())
        {
            if (!_mergeNorms.TryGetValue(name, out var n)) throw new InvalidOperationException($"no cached DoRA norm for merged adapter '{name}'");
            var k = Magnitude(name).detach().to_type(f64) / n;
            var delta = BDict[name].weight.to_type(f64).matmul(ADict[name].weight.to_type(f64)) * Hp(name).scaling;
            w = w / k.unsqueeze(1) - delta;
        }
        ClearMergeNorms();
        return LinearLayoutWeight(w).to_type(weight.dtype);
    }

    private void ClearMergeNorms()
    {
        foreach (var t in _mergeNorms.Values) t.Dispose();
        _mergeNorms.Clear();
    }

    /// <summary>The pre-merge norm cached for a merged adapter, or null.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>n [out] in float64 (owned by the layer), or null when not merged.</returns>
    public Tensor? CachedMergeNorm(string adapterName) => _mergeNorms.TryGetValue(adapterName, out var n) ? n : null;

    // ------------------------------------------------------------------ state

    /// <summary>PEFT's file keys: <c>lora_A.weight</c>, <c>lora_B.weight</c> and <c>lora_magnitude_vector</c>.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>(key, alias) pairs.</returns>
    public override IEnumerable<(string key, Tensor value)> AdapterStateDict(string adapterName)
    {
        foreach (var (k, v) in base.AdapterStateDict(adapterName))
            yield return (k == MagnitudeKey + ".weight" ? MagnitudeKey : k, v);
    }

    /// <inheritdoc/>
    protected override void DeleteAdapterCore(string adapterName)
    {
        RemoveFromDict<Linear>("lora_A", adapterName);
        RemoveFromDict<Linear>("lora_B", adapterName);
        RemoveFromDict<Dropout>("lora_dropout", adapterName);
        RemoveFromDict<DoraMagnitude>(MagnitudeKey, adapterName);
        _hp.Remove(adapterName);
        if (_mergeNorms.Remove(adapterName, out var n)) n.Dispose();
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) ClearMergeNorms();
        base.Dispose(disposing);
    }
}
