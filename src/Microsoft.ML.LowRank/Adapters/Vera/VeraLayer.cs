using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.Vera;

/// <summary>
/// A VeRA layer (PEFT's <c>vera.Linear</c>): y = base(x) + Σ_active λ_b ⊙ ((λ_d ⊙ (dropout(x)·A_sᵀ))·B_sᵀ), where
/// A_s = A[:, :in] and B_s = B[:out, :] are slices of the adapter's shared frozen projections (held by the model, see
/// <see cref="VeraOptions"/>) and the trainable vectors are <c>vera_lambda_d.&lt;adapter&gt;</c> [r] and
/// <c>vera_lambda_b.&lt;adapter&gt;</c> [out] (PEFT's names; file keys <c>vera_lambda_d</c> / <c>vera_lambda_b</c>).
/// There is no α scaling. Merge: W0 ← W0 + diag(λ_b)·B_s·diag(λ_d)·A_s (exact).
/// </summary>
public sealed class VeraLayer : AdapterLayer
{
    private readonly Dictionary<string, (Tensor a, Tensor b, int r)> _proj = new(StringComparer.Ordinal);

    /// <summary>Wraps a base layer with no adapter yet.</summary>
    /// <param name="baseLayer">A Linear or GPT-2 Conv1D.</param>
    public VeraLayer(nn.Module baseLayer) : base("VeraLayer", baseLayer)
    {
        register_module("vera_dropout", new AdapterDict<Dropout>());
        register_module("vera_lambda_b", new AdapterParameterDict());
        register_module("vera_lambda_d", new AdapterParameterDict());
    }

    private AdapterDict<Dropout> DropDict => (AdapterDict<Dropout>)get_submodule("vera_dropout");
    private AdapterParameterDict LambdaBDict => (AdapterParameterDict)get_submodule("vera_lambda_b");
    private AdapterParameterDict LambdaDDict => (AdapterParameterDict)get_submodule("vera_lambda_d");

    /// <summary>λ_b [out] of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The parameter.</returns>
    public nn.Parameter LambdaB(string adapterName) => LambdaBDict[adapterName];

    /// <summary>λ_d [r] of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The parameter.</returns>
    public nn.Parameter LambdaD(string adapterName) => LambdaDDict[adapterName];

    /// <summary>The shared projections of an adapter (the full A [r, max_in] and B [max_out, r], not sliced; owned by the model).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>(A, B).</returns>
    public (Tensor A, Tensor B) SharedProjections(string adapterName)
        => _proj.TryGetValue(adapterName, out var p) ? (p.a, p.b) : throw new KeyNotFoundException($"no VeRA adapter '{adapterName}' in this layer (adapters: {string.Join(", ", AdapterNames)})");

    /// <summary>The rank of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>r.</returns>
    public int Rank(string adapterName) => _proj.TryGetValue(adapterName, out var p) ? p.r : throw new KeyNotFoundException($"no VeRA adapter '{adapterName}'");

    /// <summary>
    /// Adds (or re-creates) an adapter over the shared projections <paramref name="sharedA"/> [r, ≥in] and
    /// <paramref name="sharedB"/> [≥out, r]: λ_d = <paramref name="dInitial"/>, λ_b = 0 (<paramref name="initWeights"/>),
    /// or λ_b = 1, λ_d ~ N(0, 1) (PEFT's init_weights=false). The vectors take the projections' type and device.
    /// </summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="sharedA">The shared A (not owned).</param>
    /// <param name="sharedB">The shared B (not owned).</param>
    /// <param name="r">Rank.</param>
    /// <param name="dropout">Dropout probability on the adapter input.</param>
    /// <param name="initWeights">The no-op initialisation.</param>
    /// <param name="dInitial">Initial λ_d.</param>
    /// <param name="context">Creation settings (generator).</param>
    public void UpdateLayer(string adapterName, Tensor sharedA, Tensor sharedB, int r, double dropout, bool initWeights, double dInitial, AdapterCreationContext context)
    {
        ArgumentNullException.ThrowIfNull(sharedA);
        ArgumentNullException.ThrowIfNull(sharedB);
        ArgumentNullException.ThrowIfNull(context);
        if (r <= 0) throw new ArgumentOutOfRangeException(nameof(r), r, "the VeRA rank must be positive");
        if (sharedA.dim() != 2 || sharedA.size(0) != r || sharedA.size(1) < InFeatures)
            throw new ArgumentException($"vera_A is [{string.Join(", ", sharedA.shape)}] but [{r}, >= {InFeatures}] is required for this layer");
        if (sharedB.dim() != 2 || sharedB.size(1) != r || sharedB.size(0) < OutFeatures)
            throw new ArgumentException($"vera_B is [{string.Join(", ", sharedB.shape)}] but [>= {OutFeatures}, {r}] is required for this layer");
        if (HasAdapter(adapterName)) DeleteAdapter(adapterName);
        using var scope = NewDisposeScope();
        var dtype = sharedA.dtype;
        var device = sharedA.device;
        var meta = device.type == DeviceType.META;
        Tensor lb, ld;
        if (meta)
        {
            lb = empty(new[] { OutFeatures }, dtype, device);
            ld = empty(new[] { (long)r }, dtype, device);
        }
        else if (initWeights)
        {
            lb = zeros(new[] { OutFeatures }, dtype, device);
            ld = full(new[] { (long)r }, dInitial, dtype, device);
        }
        else
        {
            lb = ones(new[] { OutFeatures }, dtype, device);
            ld = randn(new[] { (long)r }, dtype, device, generator: context.Generator);
        }
        DropDict.Add(adapterName, new Dropout(dropout));
        LambdaBDict.Add(adapterName, new nn.Parameter(lb));
        LambdaDDict.Add(adapterName, new nn.Parameter(ld));
        _proj[adapterName] = (sharedA, sharedB, r);
        RegisterAdapterName(adapterName);
    }

    /// <summary>A_s = A[:, :in] and B_s = B[:out, :] (views).</summary>
    private (Tensor a, Tensor b) Slices(string adapterName)
    {
        var (a, b) = SharedProjections(adapterName);
        return (a.narrow(1, 0, InFeatures), b.narrow(0, 0, OutFeatures));
    }

    /// <inheritdoc/>
    protected override Tensor AdapterOutput(Tensor x, string adapterName)
    {
        var ld = LambdaD(adapterName);
        var xa = x.dtype == ld.dtype ? x : x.to_type(ld.dtype);
        var (a, b) = Slices(adapterName);
        var h = nn.functional.linear(DropDict[adapterName].call(xa), a) * ld;
        return nn.functional.linear(h, b) * LambdaB(adapterName);
    }

    /// <inheritdoc/>
    public override Tensor GetDeltaWeight(string adapterName)
    {
        using var scope = NewDisposeScope();
        var ct = MergeType;
        var (a, b) = Slices(adapterName);
        var left = b.to_type(ct) * LambdaB(adapterName).to_type(ct).unsqueeze(1);
        var right = a.to_type(ct) * LambdaD(adapterName).to_type(ct).unsqueeze(1);
        return left.matmul(right).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    protected override void DeleteAdapterCore(string adapterName)
    {
        RemoveFromDict<Dropout>("vera_dropout", adapterName);
        LambdaBDict.Remove(adapterName);
        LambdaDDict.Remove(adapterName);
        _proj.Remove(adapterName);
    }
}
