using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.AdaLora;

/// <summary>
/// An AdaLoRA layer (PEFT's SVDLinear): y = base(x) + Σ_active s·(dropout(x)·(A ⊙ E)ᵀ)·Bᵀ with s = α / (r_init + 1e-5),
/// A = Q [r, in], E = Λ [r, 1], B = P [out, r], held as parameters <c>lora_A.&lt;adapter&gt;</c>,
/// <c>lora_E.&lt;adapter&gt;</c>, <c>lora_B.&lt;adapter&gt;</c> (PEFT's ParameterDict keys; saved as <c>lora_A</c>,
/// <c>lora_E</c>, <c>lora_B</c>) and the non-saved buffer <c>ranknum.&lt;adapter&gt;</c> = r_init, which never changes
/// (pruning zeroes entries of E, it does not change the scaling). The layer records which triplets the last allocation
/// kept; the saved tensors then hold only those (PEFT's <c>resize_state_dict_by_rank_pattern</c>).
/// </summary>
public sealed class AdaLoraLayer : AdapterLayer
{
    private readonly Dictionary<string, (int r, int rInit, double alpha, double scaling)> _hp = new(StringComparer.Ordinal);
    private readonly Dictionary<string, bool[]> _kept = new(StringComparer.Ordinal);

    /// <summary>Wraps a base layer with no adapter yet.</summary>
    /// <param name="baseLayer">A Linear or GPT-2 Conv1D.</param>
    public AdaLoraLayer(nn.Module baseLayer) : base("AdaLoraLayer", baseLayer)
    {
        register_module("lora_dropout", new AdapterDict<Dropout>());
        register_module("lora_A", new AdapterTensorDict(AdapterTensorKind.Parameter));
        register_module("lora_E", new AdapterTensorDict(AdapterTensorKind.Parameter));
        register_module("lora_B", new AdapterTensorDict(AdapterTensorKind.Parameter));
        register_module("ranknum", new AdapterTensorDict(AdapterTensorKind.NonPersistentBuffer));
    }

    private AdapterTensorDict Dict(string name) => (AdapterTensorDict)get_submodule(name);
    private AdapterDict<Dropout> DropDict => (AdapterDict<Dropout>)get_submodule("lora_dropout");

    /// <summary>Q = A [r, in] of an adapter (right singular vectors).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The parameter.</returns>
    public nn.Parameter LoraA(string adapterName) => (nn.Parameter)Dict("lora_A")[adapterName];

    /// <summary>Λ = E [r, 1] of an adapter (singular values).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The parameter.</returns>
    public nn.Parameter LoraE(string adapterName) => (nn.Parameter)Dict("lora_E")[adapterName];

    /// <summary>P = B [out, r] of an adapter (left singular vectors).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The parameter.</returns>
    public nn.Parameter LoraB(string adapterName) => (nn.Parameter)Dict("lora_B")[adapterName];

    /// <summary>The current rank (number of triplets held) of an adapter: r_init while training, the kept rank after a
    /// pruned adapter was loaded.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>r.</returns>
    public int Rank(string adapterName) => Hp(adapterName).r;

    /// <summary>PEFT's <c>ranknum</c>: r_init, the rank the scaling divides by (never changed by pruning).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>r_init.</returns>
    public int RankNum(string adapterName) => Hp(adapterName).rInit;

    /// <summary>α of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>α.</returns>
    public double Alpha(string adapterName) => Hp(adapterName).alpha;

    /// <summary>The scaling s = α / (r_init + 1e-5) (r_init in place of α when α ≤ 0), as PEFT computes it.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>s.</returns>
    public double Scaling(string adapterName) => Hp(adapterName).scaling;

    /// <summary>The triplets the last allocation kept (true) for an adapter, or null when none was recorded (all kept).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>One flag per held triplet, or null.</returns>
    public bool[]? KeptTriplets(string adapterName) => _kept.TryGetValue(adapterName, out var k) ? (bool[])k.Clone() : null;

    private (int r, int rInit, double alpha, double scaling) Hp(string adapterName)
        => _hp.TryGetValue(adapterName, out var h) ? h : throw new KeyNotFoundException($"no AdaLoRA adapter '{adapterName}' in this layer (adapters: {string.Join(", ", AdapterNames)})");

    /// <summary>PEFT's scaling: α / (r_init + 1e-5), with r_init in place of α when α ≤ 0.</summary>
    /// <param name="alpha">α.</param>
    /// <param name="rInit">r_init.</param>
    /// <returns>s.</returns>
    public static double ScalingFor(double alpha, int rInit) => (alpha > 0 ? alpha : rInit) / (rInit + 1e-5);

    /// <summary>
    /// Adds (or re-creates) an adapter with <paramref name="r"/> triplets and the scaling of <paramref name="rInit"/>.
    /// Weights live on the base weight's device, in the adapter type of <paramref name="context"/>; on the meta device
    /// only shapes are created.
    /// </summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="r">The number of triplets held (r_init, or the kept rank when loading a pruned adapter; 0 allowed).</param>
    /// <param name="rInit">r_init (PEFT's ranknum).</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout probability on the adapter input.</param>
    /// <param name="initialize">True: E = 0, A and B ~ N(0, 0.02²); false: A, E, B ~ N(0, 1) (PEFT's
    /// <c>init_lora_weights=False</c>; also what is overwritten when a checkpoint is loaded).</param>
    /// <param name="context">Creation settings.</param>
    public void UpdateLayer(string adapterName, int r, int rInit, double alpha, double dropout, bool initialize, AdapterCreationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (r < 0) throw new ArgumentOutOfRangeException(nameof(r), r, "the AdaLoRA rank must be non-negative");
        if (rInit < r) throw new ArgumentOutOfRangeException(nameof(rInit), rInit, $"r_init must be at least the rank {r}");
        if (HasAdapter(adapterName)) DeleteAdapter(adapterName);
        var w = BaseWeight;
        var device = w.device;
        var dtype = context.AdapterType(w.dtype);
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            var a = empty(new[] { (long)r, InFeatures }, dtype, device);
            var e = empty(new[] { (long)r, 1L }, dtype, device);
            var b = empty(new[] { OutFeatures, (long)r }, dtype, device);
            if (device.type != DeviceType.META)
            {
                if (initialize)
                {
                    e.zero_();
                    a.normal_(0, 0.02, context.Generator);
                    b.normal_(0, 0.02, context.Generator);
                }
                else
                {
                    a.normal_(0, 1, context.Generator);
                    e.normal_(0, 1, context.Generator);
                    b.normal_(0, 1, context.Generator);
                }
            }
            Dict("lora_A").Set(adapterName, a);
            Dict("lora_E").Set(adapterName, e);
            Dict("lora_B").Set(adapterName, b);
            Dict("ranknum").Set(adapterName, full(new[] { 1L }, rInit, dtype, device));
        }
        DropDict.Add(adapterName, new Dropout(dropout));
        _hp[adapterName] = (r, rInit, alpha, ScalingFor(alpha, rInit));
        _kept.Remove(adapterName);
        RegisterAdapterName(adapterName);
    }

    /// <summary>Zeroes E where <paramref name="keep"/> is false and records the flags (what the saved file keeps).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="keep">One flag per held triplet.</param>
    public void ApplyRankMask(string adapterName, bool[] keep)
    {
        ArgumentNullException.ThrowIfNull(keep);
        var e = LoraE(adapterName);
        if (keep.Length != e.size(0))
            throw new ArgumentException($"the rank mask has {keep.Length} flags but the adapter holds {e.size(0)} triplets", nameof(keep));
        if (e.device.type != DeviceType.META)
        {
            using var scope = NewDisposeScope();
            using var ng = no_grad();
            var drop = tensor(keep.Select(k => !k).ToArray(), device: e.device).unsqueeze(1);
            e.masked_fill_(drop, 0.0);
        }
        RecordKept(adapterName, keep);
    }

    /// <summary>Records which triplets are kept without touching E (the allocator masks E itself).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="keep">One flag per held triplet.</param>
    internal void RecordKept(string adapterName, bool[] keep) => _kept[adapterName] = (bool[])keep.Clone();

    /// <inheritdoc/>
    protected override Tensor AdapterOutput(Tensor x, string adapterName)
    {
        var a = LoraA(adapterName);
        var xa = x.dtype == a.dtype ? x : x.to_type(a.dtype);
        var ae = a * LoraE(adapterName);
        return DropDict[adapterName].call(xa).matmul(ae.t()).matmul(LoraB(adapterName).t()) * Hp(adapterName).scaling;
    }

    /// <inheritdoc/>
    public override Tensor GetDeltaWeight(string adapterName)
    {
        using var scope = NewDisposeScope();
        var ct = MergeType;
        var ae = LoraA(adapterName).to_type(ct) * LoraE(adapterName).to_type(ct);
        var delta = LoraB(adapterName).to_type(ct).matmul(ae) * Hp(adapterName).scaling;
        return delta.MoveToOuterDisposeScope();
    }

    /// <summary>The adapter's saved tensors (<c>lora_A</c>, <c>lora_E</c>, <c>lora_B</c>): aliases, or — when the last
    /// allocation dropped triplets of a layer that still holds all of them — copies of the kept rows/columns only.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>(key, tensor) pairs.</returns>
    public override IEnumerable<(string key, Tensor value)> AdapterStateDict(string adapterName)
    {
        if (!_kept.TryGetValue(adapterName, out var keep) || keep.All(k => k) || keep.Length != Rank(adapterName))
        {
            foreach (var kv in base.AdapterStateDict(adapterName)) yield return kv;
            yield break;
        }
        var a = LoraA(adapterName);
        var idx = tensor(Enumerable.Range(0, keep.Length).Where(i => keep[i]).Select(i => (long)i).ToArray(), device: a.device);
        yield return ("lora_A", a.detach().index_select(0, idx));
        yield return ("lora_E", LoraE(adapterName).detach().index_select(0, idx));
        yield return ("lora_B", LoraB(adapterName).detach().index_select(1, idx));
        idx.Dispose();
    }

    /// <inheritdoc/>
    protected override void DeleteAdapterCore(string adapterName)
    {
        foreach (var n in new[] { "lora_A", "lora_E", "lora_B", "ranknum" }) Dict(n).Remove(adapterName);
        RemoveFromDict<Dropout>("lora_dropout", adapterName);
        _hp.Remove(adapterName);
        _kept.Remove(adapterName);
    }
}
