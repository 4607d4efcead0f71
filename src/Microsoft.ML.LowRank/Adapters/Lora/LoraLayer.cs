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
public sealed class LoraLayer : AdapterLayer
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
