using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.LoraDrop;

/// <summary>
/// The factors of a LoRA shared by several layers (LoRA-drop's shared adapter of one module type): one A [r, in] and
/// one B [out, r], registered as the <c>lora_A.&lt;adapter&gt;</c> / <c>lora_B.&lt;adapter&gt;</c> children of every
/// sharing layer. Disposed when the last layer using them lets go.
/// </summary>
public sealed class SharedLoraFactors
{
    private int _users;

    internal SharedLoraFactors(Linear a, Linear b)
    {
        A = a;
        B = b;
    }

    /// <summary>The shared down projection A [r, in].</summary>
    public Linear A { get; }

    /// <summary>The shared up projection B [out, r].</summary>
    public Linear B { get; }

    /// <summary>How many layers use the factors.</summary>
    public int Users => _users;

    internal void AddUser() => _users++;

    internal void RemoveUser()
    {
        if (--_users > 0) return;
        A.Dispose();
        B.Dispose();
    }
}

/// <summary>
/// A LoRA-drop layer: y = base(x) + Σ_active s·B(A(dropout(x))), s = α/r, where the layer owns its A and B (a kept
/// layer) or uses its module type's <see cref="SharedLoraFactors"/> (a dropped layer). State-dict keys are PEFT LoRA's
/// (<c>lora_A.&lt;adapter&gt;.weight</c>), so the saved file of a sharing layer repeats the shared values under its own
/// keys and loads in PEFT as a plain LoRA. While <see cref="BeginImportance"/> is active the layer accumulates LoRA-drop's
/// importance Σ‖ΔW·x‖² over the tokens it sees.
/// </summary>
public sealed class LoraDropLayer : AdapterLayer
{
    private readonly Dictionary<string, (int r, double alpha, double scaling)> _hp = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SharedLoraFactors> _shared = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Tensor> _importance = new(StringComparer.Ordinal);

    /// <summary>Wraps a base layer with no adapter yet.</summary>
    /// <param name="baseLayer">A Linear or GPT-2 Conv1D.</param>
    public LoraDropLayer(nn.Module baseLayer) : base("LoraDropLayer", baseLayer)
    {
        register_module("lora_dropout", new AdapterDict<Dropout>());
        register_module("lora_A", new AdapterDict<Linear>());
        register_module("lora_B", new AdapterDict<Linear>());
    }

    private AdapterDict<Linear> ADict => (AdapterDict<Linear>)get_submodule("lora_A");
    private AdapterDict<Linear> BDict => (AdapterDict<Linear>)get_submodule("lora_B");
    private AdapterDict<Dropout> DropDict => (AdapterDict<Dropout>)get_submodule("lora_dropout");

    /// <summary>The down projection A [r, in] of an adapter (the shared one for a dropped layer).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The Linear.</returns>
    public Linear LoraA(string adapterName) => ADict[adapterName];

    /// <summary>The up projection B [out, r] of an adapter (the shared one for a dropped layer).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The Linear.</returns>
    public Linear LoraB(string adapterName) => BDict[adapterName];

    /// <summary>Whether this layer uses its module type's shared factors for an adapter (a dropped layer).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>True when shared.</returns>
    public bool IsShared(string adapterName) => _shared.ContainsKey(adapterName);

    /// <summary>The rank of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>r.</returns>
    public int Rank(string adapterName) => Hp(adapterName).r;

    /// <summary>The scaling s = α/r of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>s.</returns>
    public double Scaling(string adapterName) => Hp(adapterName).scaling;

    private (int r, double alpha, double scaling) Hp(string adapterName)
        => _hp.TryGetValue(adapterName, out var h) ? h : throw new KeyNotFoundException($"no LoRA-drop adapter '{adapterName}' in this layer (adapters: {string.Join(", ", AdapterNames)})");

    /// <summary>Creates factors for a layer of this shape: A Kaiming-uniform (a = √5), B zero (PEFT LoRA's default),
    /// on the base weight's device, in the adapter type of <paramref name="context"/>.</summary>
    /// <param name="r">Rank.</param>
    /// <param name="context">Creation settings.</param>
    /// <returns>(A, B).</returns>
    internal (Linear a, Linear b) CreateFactors(int r, AdapterCreationContext context)
    {
        var w = BaseWeight;
        var dtype = context.AdapterType(w.dtype);
        var a = new Linear(InFeatures, r, false, w.device, dtype);
        var b = new Linear(r, OutFeatures, false, w.device, dtype);
        if (w.device.type != DeviceType.META)
        {
            using var scope = NewDisposeScope();
            using var ng = no_grad();
            nn.init.kaiming_uniform_(a.weight, Math.Sqrt(5), generator: context.Generator);
            b.weight.zero_();
        }
        return (a, b);
    }

    /// <summary>Adds (or re-creates) an adapter with its own factors (<paramref name="shared"/> null) or with shared ones.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout probability on the adapter input.</param>
    /// <param name="shared">The module type's shared factors, or null for a kept layer.</param>
    /// <param name="context">Creation settings.</param>
    public void UpdateLayer(string adapterName, int r, double alpha, double dropout, SharedLoraFactors? shared, AdapterCreationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (r <= 0) throw new ArgumentOutOfRangeException(nameof(r), r, "the LoRA rank must be positive");
        if (HasAdapter(adapterName)) DeleteAdapter(adapterName);
        Linear a, b;
        if (shared is null) (a, b) = CreateFactors(r, context);
        else
        {
            if (shared.A.in_features != InFeatures || shared.B.out_features != OutFeatures || shared.A.out_features != r)
                throw new ArgumentException($"the shared LoRA factors are [{shared.B.out_features} x {shared.A.out_features}] x [{shared.A.out_features} x {shared.A.in_features}] but this layer needs rank {r} on {InFeatures} -> {OutFeatures}");
            (a, b) = (shared.A, shared.B);
            shared.AddUser();
            _shared[adapterName] = shared;
        }
        _hp[adapterName] = (r, alpha, alpha / r);
        DropDict.Add(adapterName, new Dropout(dropout));
        ADict.Add(adapterName, a);
        BDict.Add(adapterName, b);
        RegisterAdapterName(adapterName);
    }

    // ------------------------------------------------------------------ importance

    /// <summary>Starts accumulating g = Σ‖s·B·A·x‖² (float64) over the rows this layer sees for an adapter, resetting it.</summary>
    /// <param name="adapterName">The adapter.</param>
    public void BeginImportance(string adapterName)
    {
        Hp(adapterName);
        EndImportance(adapterName);
        _importance[adapterName] = zeros(new[] { 1L }, ScalarType.Float64, BaseWeight.device).DetachFromDisposeScope();
    }

    /// <summary>Per-row weights for the next forward calls (e.g. the attention mask [batch, seq], so padding tokens do
    /// not count), applied when their shape equals the leading dimensions of the layer output; null: every row counts.</summary>
    public Tensor? ImportanceRowWeights { get; set; }

    /// <summary>The accumulated importance of an adapter (0 when not measuring).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>g.</returns>
    public double Importance(string adapterName) => _importance.TryGetValue(adapterName, out var t) ? t.ToDouble() : 0;

    /// <summary>Stops accumulating for an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    public void EndImportance(string adapterName)
    {
        if (_importance.Remove(adapterName, out var t)) t.Dispose();
    }

    // ------------------------------------------------------------------ forward / merge

    /// <inheritdoc/>
    protected override Tensor AdapterOutput(Tensor x, string adapterName)
    {
        var a = ADict[adapterName];
        var xa = x.dtype == a.weight.dtype ? x : x.to_type(a.weight.dtype);
        var delta = BDict[adapterName].call(a.call(DropDict[adapterName].call(xa))) * Hp(adapterName).scaling;
        if (_importance.TryGetValue(adapterName, out var acc))
        {
            using var scope = NewDisposeScope();
            using var ng = no_grad();
            var perRow = delta.detach().to_type(ScalarType.Float64).square().sum(-1);
            if (ImportanceRowWeights is { } w && w.shape.SequenceEqual(perRow.shape)) perRow = perRow * w.to_type(ScalarType.Float64);
            acc.add_(perRow.sum().reshape(1));
        }
        return delta;
    }

    /// <inheritdoc/>
    public override Tensor GetDeltaWeight(string adapterName)
    {
        using var scope = NewDisposeScope();
        var ct = MergeType;
        var delta = BDict[adapterName].weight.to_type(ct).matmul(ADict[adapterName].weight.to_type(ct)) * Hp(adapterName).scaling;
        return delta.MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    protected override void DeleteAdapterCore(string adapterName)
    {
        if (_shared.Remove(adapterName, out var shared))
        {
            // Unregister without disposing: other layers may still use the factors.
            register_module("lora_A", ADict.Without(adapterName, out _));
            register_module("lora_B", BDict.Without(adapterName, out _));
            shared.RemoveUser();
        }
        else
        {
            RemoveFromDict<Linear>("lora_A", adapterName);
            RemoveFromDict<Linear>("lora_B", adapterName);
        }
        RemoveFromDict<Dropout>("lora_dropout", adapterName);
        _hp.Remove(adapterName);
        EndImportance(adapterName);
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var t in _importance.Values) t.Dispose();
            _importance.Clear();
        }
        base.Dispose(disposing);
    }
}
