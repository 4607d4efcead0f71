using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.Lora;

/// <summary>
/// A LoRA layer: y = base(x) + Σ_active s·B(A(dropout(x))), with per-adapter children <c>lora_A.&lt;adapter&gt;</c>
/// (Linear in→r, no bias), <c>lora_B.&lt;adapter&gt;</c> (Linear r→out, no bias) and <c>lora_dropout.&lt;adapter&gt;</c>,
/// so the state-dict keys are PEFT's (<c>...q_proj.lora_A.default.weight</c>). The input is cast to the adapter's
/// type before the adapter and the contribution cast back to the base output's type (as PEFT does).
/// </summary>
public sealed class LoraLayer : AdapterLayer, ISharedInputProjection
{
    private readonly Dictionary<string, (int r, double alpha, bool rs, double scaling)> _hp = new(StringComparer.Ordinal);

    /// <summary>Wraps a base layer with no adapter yet.</summary>
    /// <param name="baseLayer">A Linear or GPT-2 Conv1D.</param>
    public LoraLayer(nn.Module baseLayer) : base("LoraLayer", baseLayer)
    {
        register_module("lora_dropout", new AdapterDict<Dropout>());
        register_module("lora_A", new AdapterDict<Linear>());
        register_module("lora_B", new AdapterDict<Linear>());
    }

    private AdapterDict<Linear> ADict => (AdapterDict<Linear>)get_submodule("lora_A");
    private AdapterDict<Linear> BDict => (AdapterDict<Linear>)get_submodule("lora_B");
    private AdapterDict<Dropout> DropDict => (AdapterDict<Dropout>)get_submodule("lora_dropout");

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
    public int Rank(string adapterName) => Hp(adapterName).r;

    /// <summary>α of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>α.</returns>
    public double Alpha(string adapterName) => Hp(adapterName).alpha;

    /// <summary>The scaling s of an adapter (α/r, or α/√r with rsLoRA, unless set by <see cref="SetScaling"/>).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>s.</returns>
    public double Scaling(string adapterName) => Hp(adapterName).scaling;

    /// <summary>Overrides an adapter's scaling (PEFT's set_scale: s = scale·α/r).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="scaling">The new s.</param>
    public void SetScaling(string adapterName, double scaling)
    {
        var h = Hp(adapterName);
        _hp[adapterName] = (h.r, h.alpha, h.rs, scaling);
    }

    /// <summary>The dropout probability of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>p.</returns>
    public double DropoutProbability(string adapterName) => DropDict[adapterName].p;

    private (int r, double alpha, bool rs, double scaling) Hp(string adapterName)
        => _hp.TryGetValue(adapterName, out var h) ? h : throw new KeyNotFoundException($"no LoRA adapter '{adapterName}' in this layer (adapters: {string.Join(", ", AdapterNames)})");

    /// <summary>
    /// Adds (or re-creates) an adapter. Weights live on the base weight's device, in the base type (float32 for a
    /// float16/bfloat16 base with <see cref="AdapterCreationContext.AutocastAdapterDtype"/>). On the meta device only
    /// shapes are created.
    /// </summary>
    /// <param name="adapterName">The adapter name (no dots, not "__base__").</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout probability on the adapter input.</param>
    /// <param name="useRsLora">Scaling α/√r instead of α/r.</param>
    /// <param name="init">Initialisation (PiSSA and OLoRA also rewrite the base weight).</param>
    /// <param name="pissaNiter">PiSSA's randomized-SVD iterations (null: full SVD).</param>
    /// <param name="context">Creation settings.</param>
    public void UpdateLayer(string adapterName, int r, double alpha, double dropout, bool useRsLora, LoraInitialization init, int? pissaNiter, AdapterCreationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (r <= 0) throw new ArgumentOutOfRangeException(nameof(r), r, "the LoRA rank must be positive");
        if (HasAdapter(adapterName)) DeleteAdapter(adapterName);
        var w = BaseWeight;
        var device = w.device;
        var meta = device.type == DeviceType.META;
        var dtype = context.AdapterType(BaseType);
        var a = new Linear(InFeatures, r, false, device, dtype);
        var b = new Linear(r, OutFeatures, false, device, dtype);
        _hp[adapterName] = (r, alpha, useRsLora, LoraOptions.Scaling(r, alpha, useRsLora));
        try
        {
            if (!meta) Initialize(a, b, r, LoraOptions.Scaling(r, alpha, useRsLora), init, pissaNiter, context);
        }
        catch
        {
            a.Dispose();
            b.Dispose();
            _hp.Remove(adapterName);
            throw;
        }
        DropDict.Add(adapterName, new Dropout(dropout));
        ADict.Add(adapterName, a);
        BDict.Add(adapterName, b);
        RegisterAdapterName(adapterName);
    }

    private void Initialize(Linear a, Linear b, int r, double scaling, LoraInitialization init, int? niter, AdapterCreationContext ctx)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        switch (init)
        {
            case LoraInitialization.Default:
                nn.init.kaiming_uniform_(a.weight, Math.Sqrt(5), generator: ctx.Generator);
                b.weight.zero_();
                break;
            case LoraInitialization.Gaussian:
                a.weight.normal_(0, 1.0 / r, ctx.Generator);
                b.weight.zero_();
                break;
            case LoraInitialization.None:
                if (ctx.Generator is not null)
                {
                    nn.init.kaiming_uniform_(a.weight, Math.Sqrt(5), generator: ctx.Generator);
                    nn.init.kaiming_uniform_(b.weight, Math.Sqrt(5), generator: ctx.Generator);
                }
                break;
            case LoraInitialization.PiSSA:
            case LoraInitialization.OLoRA:
                {
                    if (BaseLayer is QLora.QuantizedLinear)
                        throw new NotSupportedException($"{init} rewrites the base weight, which an NF4-quantised base cannot hold exactly; use the default or gaussian init");
                    var k = Math.Min(InFeatures, OutFeatures);
                    if (r > k) throw new ArgumentException($"{init} needs r <= min(in, out) = {k}, got r = {r}");
                    var ct = MergeType;
                    var weight = BaseWeight.to_type(ct, copy: true);
                    if (FanInFanOut) weight = weight.t();
                    Tensor A, B;
                    if (init == LoraInitialization.PiSSA)
                    {
                        Tensor U, S, Vh;
                        if (niter is { } n) (U, S, Vh) = SvdLowRank(weight, r, n, ctx.Generator);
                        else (U, S, Vh) = linalg.svd(weight);
                        var sr = (S.narrow(0, 0, r) / scaling).sqrt();
                        A = Vh.narrow(0, 0, r) * sr.unsqueeze(1);
                        B = U.narrow(1, 0, r) * sr.unsqueeze(0);
                    }
                    else
                    {
                        var (Q, R) = linalg.qr(weight);
                        B = Q.narrow(1, 0, r).contiguous();
                        A = R.narrow(0, 0, r).contiguous();
                    }
                    a.weight.copy_(A);
                    b.weight.copy_(B);
                    // The residual uses the factors as stored (after any cast), so W_res + s·B·A equals W up to rounding.
                    var residual = weight - B.matmul(A) * scaling;
                    if (a.weight.dtype != ct) residual = weight - b.weight.to_type(ct).matmul(a.weight.to_type(ct)) * scaling;
                    BaseWeight.copy_(FanInFanOut ? residual.t() : residual);
                    break;
                }
            default:
                throw new ArgumentOutOfRangeException(nameof(init), init, "unknown LoRA initialisation");
        }
    }

    /// <summary>
    /// A randomized rank-q SVD (Halko, Martinsson and Tropp): an orthonormal basis of range(M·Ω) refined by
    /// <paramref name="niter"/> subspace iterations, then the SVD of the small projected matrix. Returns U [m, q],
    /// S [q], Vh [q, n].
    /// </summary>
    /// <param name="m">The matrix [m, n].</param>
    /// <param name="q">Rank.</param>
    /// <param name="niter">Subspace iterations.</param>
    /// <param name="generator">Random generator, or null.</param>
    /// <returns>The factors.</returns>
    public static (Tensor U, Tensor S, Tensor Vh) SvdLowRank(Tensor m, int q, int niter, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(m);
        using var scope = NewDisposeScope();
        var omega = randn(new[] { m.size(1), (long)q }, m.dtype, m.device, generator: generator);
        var basis = linalg.qr(m.matmul(omega)).Q;
        var mt = m.t();
        for (int i = 0; i < niter; i++)
        {
            basis = linalg.qr(mt.matmul(basis)).Q;
            basis = linalg.qr(m.matmul(basis)).Q;
        }
        var (ub, s, vh) = linalg.svd(basis.t().matmul(m));
        var u = basis.matmul(ub);
        return (u.MoveToOuterDisposeScope(), s.MoveToOuterDisposeScope(), vh.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Evaluate the first active adapter together with the base layer through the fused native LoRA linear
    /// (<see cref="torch.nn.functional.lora_linear"/>: one autograd node, the dropout mask drawn once and reused in backward,
    /// only the r-wide activation saved for B, and the adapter path in the order of <see cref="ComputeOrder"/>). Further
    /// active adapters add their unfused contribution. False runs base and adapter as separate modules. Same result up to
    /// rounding either way; default true.
    /// </summary>
    public bool UseFusedKernel { get; set; } = true;

    /// <summary>The compute order of the fused path (RunLoRA); default <see cref="LoraComputeOrder.Auto"/>.</summary>
    public LoraComputeOrder ComputeOrder { get; set; } = LoraComputeOrder.Auto;

    private bool CanFuse(string adapterName, out Linear a, out Linear b, out double p)
    {
        a = ADict[adapterName];
        b = BDict[adapterName];
        var drop = DropDict[adapterName];
        p = drop.training ? drop.p : 0;
        return UseFusedKernel && BaseLayer is Linear or Conv1D && a.weight.device.type != DeviceType.META;
    }

    private string? FirstHeld(IReadOnlyList<string> adapterNames)
    {
        for (int i = 0; i < adapterNames.Count; i++) if (HasAdapter(adapterNames[i])) return adapterNames[i];
        return null;
    }

    /// <inheritdoc/>
    protected override Tensor ForwardAdapters(Tensor x, IReadOnlyList<string> adapterNames)
    {
        var first = FirstHeld(adapterNames);
        if (first is null || !CanFuse(first, out var a, out var b, out var p)) return base.ForwardAdapters(x, adapterNames);
        // Several adapters in a type above the base's: PEFT sums them all in that type and rounds once; the fused node
        // would round after the first, so the unfused sum runs instead.
        if (a.weight.dtype != BaseWeight.dtype && adapterNames.Count(n => n != first && HasAdapter(n)) > 0) return base.ForwardAdapters(x, adapterNames);
        var result = nn.functional.lora_linear(x, BaseWeight, BaseBias, a.weight, b.weight, Hp(first).scaling, p, p > 0, null, ComputeOrder, FanInFanOut);
        var resultType = result.dtype;  // PEFT: the sum promotes to the adapter's type and is cast back once, at the end
        for (int i = 0; i < adapterNames.Count; i++)
        {
            var name = adapterNames[i];
            if (name == first || !HasAdapter(name)) continue;
            var d = AdapterOutput(x, name);
            result = result + d;
        }
        return result.dtype == resultType ? result : result.to_type(resultType);
    }

    /// <inheritdoc/>
    public Tensor[]? TryForwardShared(Tensor input, IReadOnlyList<nn.Module<Tensor, Tensor>> group)
    {
        ArgumentNullException.ThrowIfNull(group);
        if (group.Count < 2 || group.Count > 3) return null;
        var projections = new (Tensor weight, Tensor? bias, Tensor lora_A, Tensor lora_B, double scaling)[group.Count];
        for (int i = 0; i < group.Count; i++)
        {
            if (group[i] is not LoraLayer l || l.AdaptersDisabled || (l.SkipAdaptersInTraining && l.training) || l.Merged || l.MixedBatchAdapterNames is not null || l.FanInFanOut != FanInFanOut)
                return null;
            if (l.ActiveAdapters.Count != 1 || !l.HasAdapter(l.ActiveAdapters[0])) return null;
            var name = l.ActiveAdapters[0];
            if (!l.CanFuse(name, out var a, out var b, out var p) || p > 0) return null;
            projections[i] = (l.BaseWeight, l.BaseBias, a.weight, b.weight, l.Hp(name).scaling);
            if (i > 0 && (projections[i].weight.dtype != projections[0].weight.dtype || projections[i].lora_A.dtype != projections[0].lora_A.dtype)) return null;
        }
        if (projections[0].lora_B.dtype != projections[0].lora_A.dtype) return null;
        using var scope = NewDisposeScope();
        var outputs = nn.functional.lora_linear_shared(input, projections, FanInFanOut);
        foreach (var o in outputs) o.MoveToOuterDisposeScope();
        return outputs;
    }

    /// <inheritdoc/>
    protected override Tensor AdapterOutput(Tensor x, string adapterName)
    {
        var a = ADict[adapterName];
        var xa = x.dtype == a.weight.dtype ? x : x.to_type(a.weight.dtype);
        return BDict[adapterName].call(a.call(DropDict[adapterName].call(xa))) * Hp(adapterName).scaling;
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
        RemoveFromDict<Linear>("lora_A", adapterName);
        RemoveFromDict<Linear>("lora_B", adapterName);
        RemoveFromDict<Dropout>("lora_dropout", adapterName);
        _hp.Remove(adapterName);
    }
}
