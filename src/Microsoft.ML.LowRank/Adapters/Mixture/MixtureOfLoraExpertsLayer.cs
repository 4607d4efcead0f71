using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.Mixture;

/// <summary>What an adapted module is to a mixture-of-experts adapter.</summary>
internal enum ExpertRole
{
    /// <summary>Experts and a router on this Linear.</summary>
    Linear,
    /// <summary>A plain LoRA (one expert, weight 1): a Linear outside the feed-forward blocks of an FFN-expert adapter.</summary>
    Plain,
    /// <summary>The gate projection of a feed-forward block (FFN experts).</summary>
    FfnGate,
    /// <summary>The up projection of a feed-forward block (GPT-2's c_fc).</summary>
    FfnUp,
    /// <summary>The down projection of a feed-forward block.</summary>
    FfnDown,
}

/// <summary>Which projection of a LLaMA-family or GPT-2 feed-forward block a module is, by name.</summary>
internal static class FeedForwardRoles
{
    public static ExpertRole Of(string modulePath)
    {
        var parts = modulePath.Split('.');
        if (parts.Length < 2 || parts[^2] != "mlp") return ExpertRole.Plain;
        return parts[^1] switch
        {
            "gate_proj" => ExpertRole.FfnGate,
            "up_proj" or "c_fc" => ExpertRole.FfnUp,
            "down_proj" or "c_proj" => ExpertRole.FfnDown,
            _ => ExpertRole.Plain,
        };
    }

    /// <summary>The block's first projection (gate_proj, or c_fc in an ungated GPT-2 block) holds the block's router.</summary>
    public static bool IsHost(string modulePath) => modulePath.EndsWith(".gate_proj", StringComparison.Ordinal) || modulePath.EndsWith(".c_fc", StringComparison.Ordinal);

    public static bool IsFeedForward(ExpertRole role) => role is ExpertRole.FfnGate or ExpertRole.FfnUp or ExpertRole.FfnDown;
}

/// <summary>One adapter's experts in one layer.</summary>
internal sealed class ExpertState
{
    public required MixtureOfLoraExpertsOptions Options { get; init; }
    public required string Path { get; init; }
    public required ExpertRole Role { get; init; }
    public required bool Host { get; init; }
    public required int Experts { get; init; }
    public required int[] Ranks { get; init; }
    public required long[] Offsets { get; init; }
    public required double[] Scalings { get; init; }
    public int Shared { get; init; }
    public int SharedRank { get; init; }
    public double SharedScaling { get; init; }
    public long RoutedRank { get; init; }
    public bool HasLora { get; init; }
    public bool HasAdapterBank { get; init; }
    public bool HasRouter { get; init; }
    public bool OwnsRouter { get; init; }
    public int TopK => Math.Min(Options.TopK, Experts);
    public bool EqualRanks => Ranks.All(r => r == Ranks[0]);
}

/// <summary>
/// A Linear (or GPT-2 Conv1D) with mixture-of-LoRA-experts adapters (<see cref="MixtureOfLoraExpertsOptions"/>). Per
/// adapter, children <c>lora_A.&lt;adapter&gt;</c> (Linear in → Σr_e: the experts' A stacked along the rank axis, shared
/// experts last), <c>lora_B.&lt;adapter&gt;</c> (Σr_e → out), <c>lora_router.&lt;adapter&gt;</c> (<see cref="ExpertRouter"/>),
/// <c>lora_dropout.&lt;adapter&gt;</c>, and for PESC-style adapter experts <c>adapter_down</c> / <c>adapter_up</c>.
/// </summary>
/// <remarks>
/// Expert compute is batched: a sparse decision is grouped by expert with one sort, then each expert runs one pair of
/// matmuls on its rows and the results are added back with <c>index_add</c>; dense gating is two matmuls for all experts
/// (the gate folded into the rank axis). For FFN experts the layer holding the block's router (its first projection)
/// computes the whole block (<see cref="IFeedForwardBlockOverride"/>): the frozen projections run once for all tokens,
/// expert e adds its LoRA deltas on its rows, and because the down projection is affine the block output is
/// <c>down(h₀ + Σ_e w_e·(h_e − h₀)) + Σ_e w_e·δdown_e(h_e)</c> = Σ_e w_e·FFN_e(x) + (1 − Σ_e w_e)·FFN(x) — one base
/// down-projection matmul. Gate weights thus scale each expert's change of the FFN, so tokens without an expert (capacity)
/// keep the base FFN output (MixLoRA's own code passes them through unchanged).
/// </remarks>
public sealed class MixtureOfLoraExpertsLayer : AdapterLayer, IFeedForwardBlockOverride
{
    [ThreadStatic]
    private static int t_blockDepth;

    private readonly Dictionary<string, ExpertState> _states = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ExpertRouter> _sharedRouters = new(StringComparer.Ordinal);

    /// <summary>Wraps a base layer with no adapter yet.</summary>
    /// <param name="baseLayer">A Linear or GPT-2 Conv1D.</param>
    public MixtureOfLoraExpertsLayer(nn.Module baseLayer) : base("MixtureOfLoraExpertsLayer", baseLayer)
    {
        register_module("lora_dropout", new AdapterDict<Dropout>());
        register_module("lora_A", new AdapterDict<Linear>());
        register_module("lora_B", new AdapterDict<Linear>());
        register_module("lora_router", new AdapterDict<ExpertRouter>());
        register_module("adapter_down", new AdapterDict<Linear>());
        register_module("adapter_up", new AdapterDict<Linear>());
    }

    private AdapterDict<Linear> ADict => (AdapterDict<Linear>)get_submodule("lora_A");
    private AdapterDict<Linear> BDict => (AdapterDict<Linear>)get_submodule("lora_B");
    private AdapterDict<ExpertRouter> RouterDict => (AdapterDict<ExpertRouter>)get_submodule("lora_router");
    private AdapterDict<Dropout> DropDict => (AdapterDict<Dropout>)get_submodule("lora_dropout");
    private AdapterDict<Linear> DownDict => (AdapterDict<Linear>)get_submodule("adapter_down");
    private AdapterDict<Linear> UpDict => (AdapterDict<Linear>)get_submodule("adapter_up");

    /// <summary>The routing state shared with the model's other mixture-of-experts layers (set by
    /// <see cref="MixtureOfLoraExperts.UseRouting"/> and the training hook).</summary>
    internal MixtureRuntime? Runtime { get; set; }

    internal ExpertState State(string adapterName) => _states.TryGetValue(adapterName, out var s) ? s
        : throw new KeyNotFoundException($"no mixture-of-experts adapter '{adapterName}' in this layer (adapters: {string.Join(", ", AdapterNames)})");

    internal bool TryGetState(string adapterName, out ExpertState state) => _states.TryGetValue(adapterName, out state!);

    /// <summary>The number of routed experts of an adapter in this layer.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>E.</returns>
    public int NumExperts(string adapterName) => State(adapterName).Experts;

    /// <summary>The ranks of an adapter's routed experts in this layer.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>One rank per expert.</returns>
    public IReadOnlyList<int> ExpertRanks(string adapterName) => State(adapterName).Ranks;

    /// <summary>The scaling of an adapter's routed expert.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="expert">The expert index.</param>
    /// <returns>s_e.</returns>
    public double Scaling(string adapterName, int expert) => State(adapterName).Scalings[expert];

    /// <summary>The stacked A [Σr, in] of an adapter (null when the layer holds none: a router-only block host).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The Linear holding A, or null.</returns>
    public Linear? LoraA(string adapterName) => ADict.TryGetValue(adapterName, out var a) ? a : null;

    /// <summary>The stacked B [out, Σr] of an adapter, or null.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The Linear holding B, or null.</returns>
    public Linear? LoraB(string adapterName) => BDict.TryGetValue(adapterName, out var b) ? b : null;

    /// <summary>The router an adapter uses in this layer (its own, or the model's global router), or null.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The router.</returns>
    public ExpertRouter? Router(string adapterName)
        => RouterDict.TryGetValue(adapterName, out var r) ? r : _sharedRouters.TryGetValue(adapterName, out var s) ? s : null;

    /// <summary>Adds an adapter's experts.</summary>
    internal void AddExperts(string adapterName, MixtureOfLoraExpertsOptions o, string modulePath, ExpertRole role, int experts, AdapterCreationContext context)
    {
        if (HasAdapter(adapterName)) DeleteAdapter(adapterName);
        var w = BaseWeight;
        var device = w.device;
        var meta = device.type == DeviceType.META;
        var dtype = context.AdapterType(w.dtype);
        var routerType = w.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        bool host = FeedForwardRoles.IsFeedForward(role) && FeedForwardRoles.IsHost(modulePath);
        bool adapterExperts = FeedForwardRoles.IsFeedForward(role) && o.FeedForwardExpert == FeedForwardExpertKind.Adapter;
        bool plain = role == ExpertRole.Plain;
        int[] ranks = plain ? new[] { o.R } : o.RanksFor(experts);
        int shared = role == ExpertRole.Linear ? o.NumSharedExperts : 0;
        int sharedRank = o.SharedExpertRank > 0 ? o.SharedExpertRank : o.R;
        var offsets = new long[ranks.Length];
        long total = 0;
        for (int e = 0; e < ranks.Length; e++) { offsets[e] = total; total += ranks[e]; }
        long routed = total;
        total += (long)shared * sharedRank;
        bool hasLora = !adapterExperts;
        bool hasBank = adapterExperts && role == ExpertRole.FfnDown;
        bool hasRouter = role == ExpertRole.Linear ? o.RouterInput != RouterInput.None : host;
        if (FeedForwardRoles.IsFeedForward(role) && adapterExperts && role != ExpertRole.FfnDown) hasLora = false;

        Linear? a = null, b = null, down = null, up = null;
        ExpertRouter? router = null;
        bool ownsRouter = false;
        try
        {
            if (hasLora)
            {
                a = new Linear(InFeatures, total, false, device, dtype);
                b = new Linear(o.ShareLoraB ? ranks[0] : total, OutFeatures, false, device, dtype);
            }
            if (hasBank)
            {
                down = new Linear(OutFeatures, (long)experts * o.AdapterDim, false, device, dtype);
                up = new Linear((long)experts * o.AdapterDim, OutFeatures, false, device, dtype);
            }
            if (hasRouter)
            {
                if (o.RouterScope == RouterScope.Global && o.PendingGlobalRouter is ExpertRouter g)
                {
                    if (g.Experts != experts) throw new ArgumentException($"a global router needs the same expert count everywhere: {g.Experts} and {experts} ({modulePath})");
                    router = g;
                }
                else
                {
                    router = CreateRouter(o, experts, role, routerType, device);
                    ownsRouter = true;
                    if (o.RouterScope == RouterScope.Global) o.PendingGlobalRouter = router;
                }
            }
            if (!meta) Initialize(o, a, b, down, up, ownsRouter ? router : null, ranks, routed, context);
        }
        catch
        {
            a?.Dispose(); b?.Dispose(); down?.Dispose(); up?.Dispose();
            if (ownsRouter) router?.Dispose();
            throw;
        }
        DropDict.Add(adapterName, new Dropout(adapterExperts ? o.AdapterDropout : o.LoraDropout));
        if (a is not null) ADict.Add(adapterName, a);
        if (b is not null) BDict.Add(adapterName, b);
        if (down is not null) DownDict.Add(adapterName, down);
        if (up is not null) UpDict.Add(adapterName, up);
        if (router is not null)
        {
            if (ownsRouter) RouterDict.Add(adapterName, router);
            else _sharedRouters[adapterName] = router;
        }
        _states[adapterName] = new ExpertState
        {
            Options = o,
            Path = modulePath,
            Role = role,
            Host = host,
            Experts = ranks.Length,
            Ranks = ranks,
            Offsets = offsets,
            Scalings = ranks.Select(o.ScalingFor).ToArray(),
            Shared = shared,
            SharedRank = sharedRank,
            SharedScaling = o.ScalingFor(sharedRank),
            RoutedRank = routed,
            HasLora = hasLora,
            HasAdapterBank = hasBank,
            HasRouter = router is not null,
            OwnsRouter = ownsRouter,
        };
        RegisterAdapterName(adapterName);
    }

    private ExpertRouter CreateRouter(MixtureOfLoraExpertsOptions o, int experts, ExpertRole role, ScalarType dtype, Device device)
    {
        switch (o.RouterInput)
        {
            case RouterInput.Task when o.TaskEmbeddingDim == 0:
                return ExpertRouter.TaskTable(o.NumTasks, experts, dtype, device);
            case RouterInput.Task:
                return new ExpertRouter(o.TaskEmbeddingDim, experts, false, o.NumTasks + 1, dtype, device);
            case RouterInput.Instance:
                return new ExpertRouter(o.InstanceDim > 0 ? o.InstanceDim : InFeatures, experts, o.Gating == GatingMode.NoisyTopK, 0, dtype, device);
            case RouterInput.ExpertOutputs:
                return new ExpertRouter((long)experts * OutFeatures, experts, false, 0, dtype, device);
            default:
                return new ExpertRouter(InFeatures, experts, o.Gating == GatingMode.NoisyTopK, 0, dtype, device);
        }
    }

    private void Initialize(MixtureOfLoraExpertsOptions o, Linear? a, Linear? b, Linear? down, Linear? up, ExpertRouter? router, int[] ranks, long routed, AdapterCreationContext ctx)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var g = ctx.Generator;
        if (a is not null && b is not null)
        {
            if (ctx.Initialize)
            {
                switch (o.ExpertInit)
                {
                    case ExpertInitialization.Kaiming:
                        nn.init.kaiming_uniform_(a.weight, Math.Sqrt(5), generator: g);
                        break;
                    case ExpertInitialization.KaimingStacked:
                        {
                            // libtorch's fan_in of a stacked [E, in, r] tensor is in·r; kaiming_uniform(a=√5) gives bound 1/√fan_in.
                            long offset = 0;
                            foreach (var r in ranks)
                            {
                                var bound = 1.0 / Math.Sqrt((double)InFeatures * r);
                                a.weight.narrow(0, offset, r).uniform_(-bound, bound, g);
                                offset += r;
                            }
                            if (a.weight.size(0) > routed)
                            {
                                var rest = a.weight.narrow(0, routed, a.weight.size(0) - routed);
                                var bound = 1.0 / Math.Sqrt((double)InFeatures * Math.Max(1, o.SharedExpertRank > 0 ? o.SharedExpertRank : o.R));
                                rest.uniform_(-bound, bound, g);
                            }
                            break;
                        }
                    case ExpertInitialization.Gaussian:
                        a.weight.normal_(0, o.ExpertInitStd, g);
                        break;
                }
            }
            else nn.init.kaiming_uniform_(a.weight, Math.Sqrt(5), generator: g);
            b.weight.zero_();
        }
        if (down is not null && up is not null)
        {
            nn.init.kaiming_uniform_(down.weight, Math.Sqrt(5), generator: g);
            up.weight.zero_();
        }
        if (router is not null)
        {
            foreach (var (name, p) in router.named_parameters())
            {
                if (name == "task_embedding") { p.normal_(0, 1, g); continue; }
                if (name == "noise_weight") { p.zero_(); continue; }
                switch (o.RouterInit)
                {
                    case RouterInitialization.KaimingUniform:
                        nn.init.kaiming_uniform_(p, Math.Sqrt(5), generator: g);
                        break;
                    case RouterInitialization.Normal:
                        p.normal_(0, o.RouterInitScale, g);
                        break;
                    case RouterInitialization.Uniform:
                        p.uniform_(-o.RouterInitScale, o.RouterInitScale, g);
                        break;
                    case RouterInitialization.Zeros:
                        p.zero_();
                        break;
                }
            }
        }
    }

    /// <inheritdoc/>
    public override IEnumerable<(string name, nn.Parameter parameter)> AdapterParameters(string adapterName)
    {
        bool frozen = _states.TryGetValue(adapterName, out var s) && s.Options.FreezeExperts;
        foreach (var (n, p) in base.AdapterParameters(adapterName))
        {
            if (frozen && !n.StartsWith("lora_router.", StringComparison.Ordinal)) continue;
            yield return (n, p);
        }
    }

    /// <inheritdoc/>
    public override bool CanMergeExactly => _states.Values.All(s => s.Role == ExpertRole.Plain || (s.Role == ExpertRole.Linear && s.Options.IsMergeable));

    /// <inheritdoc/>
    protected override void DeleteAdapterCore(string adapterName)
    {
        RemoveFromDict<Linear>("lora_A", adapterName);
        RemoveFromDict<Linear>("lora_B", adapterName);
        RemoveFromDict<ExpertRouter>("lora_router", adapterName);
        RemoveFromDict<Dropout>("lora_dropout", adapterName);
        RemoveFromDict<Linear>("adapter_down", adapterName);
        RemoveFromDict<Linear>("adapter_up", adapterName);
        _sharedRouters.Remove(adapterName);
        _states.Remove(adapterName);
    }

    // ------------------------------------------------------------------ merge

    /// <inheritdoc/>
    public override Tensor GetDeltaWeight(string adapterName)
    {
        var st = State(adapterName);
        using var scope = NewDisposeScope();
        var ct = MergeType;
        var A = LoraA(adapterName)!.weight.to_type(ct);
        var B = LoraB(adapterName)!.weight.to_type(ct);
        Tensor delta;
        if (st.Role == ExpertRole.Plain) delta = B.matmul(A) * st.Scalings[0];
        else if (st.Role == ExpertRole.Linear && st.Options.IsMergeable)
        {
            var (Am, Bm) = EvaluationFactors(adapterName, st, A, B);
            delta = Bm.matmul(Am) * st.Scalings[0];
        }
        else throw new InvalidOperationException($"adapter '{adapterName}' ({st.Options.Preset}) routes inputs to experts and has no single weight delta");
        return delta.MoveToOuterDisposeScope();
    }

    /// <summary>The single-LoRA factors a parameter-space adapter uses at evaluation: AdaMix averages, MoSA's full adapter,
    /// or a one-task Polytropon mixture.</summary>
    private (Tensor A, Tensor B) EvaluationFactors(string adapterName, ExpertState st, Tensor A, Tensor B)
    {
        int E = st.Experts, r = st.Ranks[0];
        long inF = A.size(1), outF = B.size(0);
        var o = st.Options;
        if (o.Gating == GatingMode.Stochastic)
        {
            if (o.StochasticEval == StochasticEvaluation.Sum) return (A, B);
            var am = A.view(E, r, inF).mean(0);
            var bm = o.ShareLoraB ? B : B.view(outF, E, r).mean(1);
            return (am, bm);
        }
        // A one-task Polytropon router: the evaluation weights of task 0.
        var w = MixtureGating.RelaxedBernoulli(Router(adapterName)!.Weight.narrow(0, 0, 1).to_type(A.dtype), training: false).squeeze(0);
        var aw = w.to_type(A.dtype).matmul(A.view(E, r * inF)).view(r, inF);
        var bw = w.to_type(A.dtype).matmul(B.view(outF, E, r).permute(1, 0, 2).reshape(E, outF * r)).view(outF, r);
        return (aw, bw);
    }

    // ------------------------------------------------------------------ forward (per-Linear)

    /// <inheritdoc/>
    protected override Tensor ForwardAdapters(Tensor x, IReadOnlyList<string> adapterNames)
    {
        var result = BaseLayer.call(x);
        var resultType = result.dtype;  // PEFT: the sum promotes to the adapter's type and is cast back once, at the end
        foreach (var a in adapterNames)
        {
            if (!_states.TryGetValue(a, out var st)) continue;
            if (FeedForwardRoles.IsFeedForward(st.Role))
            {
                // FFN experts act through their block (computed by the block's first projection); reaching a projection on
                // its own means the block has no such host for this adapter.
                if (t_blockDepth == 0)
                    throw new InvalidOperationException($"adapter '{a}' has FFN experts on {st.Path}, which only work through their feed-forward block: " +
                        "target the block's first projection too (gate_proj, or c_fc for GPT-2), which holds the block's router");
                continue;
            }
            var d = Delta(x, a, st);
            result = result + d;
        }
        return result.dtype == resultType ? result : result.to_type(resultType);
    }

    /// <inheritdoc/>
    protected override Tensor AdapterOutput(Tensor x, string adapterName)
    {
        var st = State(adapterName);
        if (FeedForwardRoles.IsFeedForward(st.Role)) throw new NotSupportedException("FFN experts act on their whole feed-forward block, not on one projection");
        return Delta(x, adapterName, st);
    }

    /// <inheritdoc/>
    protected override Tensor MixedBatchDelta(Tensor rows, string adapterName)
    {
        var st = State(adapterName);
        if (st.Role != ExpertRole.Plain && (FeedForwardRoles.IsFeedForward(st.Role) || st.Options.RouterInput is not RouterInput.Token and not RouterInput.ExpertOutputs and not RouterInput.None))
            throw new NotSupportedException($"mixed-adapter batches are not supported for mixture-of-experts adapters that route on the routing context or span feed-forward blocks ('{adapterName}')");
        return Delta(rows, adapterName, st);
    }

    /// <summary>This layer's own output (base plus its per-Linear adapters), as a feed-forward block sees it.</summary>
    internal Tensor ForwardOwn(Tensor x) => Merged ? BaseLayer.call(x) : ForwardAdapters(x, ActiveAdapters);

    /// <summary>The additive contribution of one per-Linear adapter.</summary>
    private Tensor Delta(Tensor x, string a, ExpertState st)
    {
        var shape = x.shape;
        long inF = shape[^1];
        long rows = x.numel() / inF;
        long batch = x.dim() >= 2 ? shape[0] : 1;
        long seq = rows / Math.Max(1, batch);
        var A = ADict[a].weight;
        var B = BDict[a].weight;
        var dt = A.dtype;
        var xf = x.reshape(-1, inF);
        var xa = xf.dtype == dt ? xf : xf.to_type(dt);
        var xd = DropDict[a].call(xa);
        Tensor y;
        if (st.Role == ExpertRole.Plain) y = xd.matmul(A.t()).matmul(B.t()) * st.Scalings[0];
        else if (st.Options.MixSpace == MixingSpace.Parameter) y = ParameterSpace(a, st, xf, xd, A, B, batch, seq);
        else if (st.Options.RouterInput == RouterInput.ExpertOutputs) y = ExpertOutputRouted(a, st, xd, A, B, x.dim() == 3 ? shape[1] : seq);
        else
        {
            var decision = Route(a, st, xf, batch, seq);
            var tokens = ToTokens(decision, seq);
            bool contrastive = Recording(st) && st.Options.Coefficient(AuxiliaryLossKind.Contrastive) > 0;
            List<(Tensor outputs, Tensor experts, Tensor rows)>? outs = contrastive ? new() : null;
            y = OutputSpace(st, xd, A, B, tokens, outs);
            if (Recording(st)) RecordDecision(a, st, decision, batch, seq, outs);
        }
        if (st.Shared > 0)
        {
            long sr = (long)st.Shared * st.SharedRank;
            var As = A.narrow(0, st.RoutedRank, sr);
            var Bs = B.narrow(1, st.RoutedRank, sr);
            y = y + xd.matmul(As.t()).matmul(Bs.t()) * st.SharedScaling;
        }
        var outShape = shape.ToArray();
        outShape[^1] = OutFeatures;
        return y.view(outShape);
    }

    private bool Recording(ExpertState st) => Runtime is { Recording: true } && training && is_grad_enabled() && st.HasRouter
        && (st.OwnsRouter || st.Options.RouterScope == RouterScope.Layer);

    /// <summary>Expands a row-level decision (one per sequence) to the sequence's tokens.</summary>
    private static (Tensor? index, Tensor? weight, Tensor? dense) ToTokens(RoutingDecision d, long seq)
    {
        if (!d.RowLevel || seq == 1) return (d.Index, d.Weight, d.Dense);
        return (d.Index?.repeat_interleave(seq, 0), d.Weight?.repeat_interleave(seq, 0), d.Dense?.repeat_interleave(seq, 0));
    }

    /// <summary>Σ_e g_e·s_e·B_e·A_e·x for the rows of xd: two matmuls when dense, one matmul pair per expert otherwise.</summary>
    private Tensor OutputSpace(ExpertState st, Tensor xd, Tensor A, Tensor B, (Tensor? index, Tensor? weight, Tensor? dense) d,
        List<(Tensor outputs, Tensor experts, Tensor rows)>? outs)
    {
        long n = xd.size(0);
        var dt = A.dtype;
        int E = st.Experts;
        if (d.dense is { } dense)
        {
            var Ar = A.narrow(0, 0, st.RoutedRank);
            var h = xd.matmul(Ar.t());
            var scal = tensor(st.Scalings, device: dense.device).to_type(dense.dtype);
            var g = (dense * scal).to_type(dt);
            if (st.Options.ShareLoraB)
                return (h.view(n, E, st.Ranks[0]) * g.unsqueeze(2)).sum(1).matmul(B.t());
            var gr = st.EqualRanks ? g.repeat_interleave(st.Ranks[0], 1)
                : g.repeat_interleave(tensor(st.Ranks.Select(r => (long)r).ToArray(), device: g.device), 1);
            return (h * gr).matmul(B.narrow(1, 0, st.RoutedRank).t());
        }
        var y = zeros(new[] { n, OutFeatures }, dt, xd.device);
        foreach (var (e, rows, w) in MixtureGating.GroupByExpert(d.index!, d.weight!, E))
        {
            var Ae = A.narrow(0, st.Offsets[e], st.Ranks[e]);
            var Be = st.Options.ShareLoraB ? B : B.narrow(1, st.Offsets[e], st.Ranks[e]);
            var ye = xd.index_select(0, rows).matmul(Ae.t()).matmul(Be.t()) * st.Scalings[e];
            outs?.Add((ye, full(new[] { rows.size(0) }, e, ScalarType.Int64, rows.device), rows));
            y = y.index_add(0, rows, ye * w.to_type(dt).unsqueeze(1));
        }
        return y;
    }

    /// <summary>MOLE: the gate reads the layer-normalised concatenation of every expert's output.</summary>
    private Tensor ExpertOutputRouted(string a, ExpertState st, Tensor xd, Tensor A, Tensor B, long seq)
    {
        long n = xd.size(0);
        int E = st.Experts;
        var h = xd.matmul(A.narrow(0, 0, st.RoutedRank).t());
        var outs = new Tensor[E];
        for (int e = 0; e < E; e++)
        {
            var Be = st.Options.ShareLoraB ? B : B.narrow(1, st.Offsets[e], st.Ranks[e]);
            outs[e] = h.narrow(1, st.Offsets[e], st.Ranks[e]).matmul(Be.t()) * st.Scalings[e];
        }
        var o = stack(outs, 1); // [N, E, out]
        var router = Router(a)!;
        var feats = o.reshape(n, E * OutFeatures).to_type(router.Weight.dtype);
        feats = nn.functional.layer_norm(feats, new[] { (long)E * OutFeatures });
        var logits = router.Logits(feats);
        var decision = Gate(router, st, logits, feats, rowLevel: false);
        var g = decision.GatesDense().to_type(o.dtype);
        if (Recording(st)) RecordDecision(a, st, decision, n / Math.Max(1, seq), seq, null);
        return (o * g.unsqueeze(2)).sum(1);
    }

    /// <summary>Parameter-space mixing: stochastic (AdaMix, MoSA) or per-example weights (Polytropon).</summary>
    private Tensor ParameterSpace(string a, ExpertState st, Tensor xf, Tensor xd, Tensor A, Tensor B, long batch, long seq)
    {
        var o = st.Options;
        int E = st.Experts, r = st.Ranks[0];
        long inF = A.size(1), outF = B.size(0);
        double s = st.Scalings[0];
        if (o.Gating == GatingMode.Stochastic)
        {
            if (training)
            {
                var picks = randint(0, E, new long[] { 2 }, ScalarType.Int64).ToArray<long>();
                if (o.StochasticEval == StochasticEvaluation.Sum)
                {
                    var e = picks[0];
                    var Ae = A.narrow(0, e * r, r);
                    var Be = o.ShareLoraB ? B : B.narrow(1, e * r, r);
                    return xd.matmul(Ae.t()).matmul(Be.t()) * (s * E);
                }
                var Aa = A.narrow(0, picks[0] * r, r);
                var Bb = o.ShareLoraB ? B : B.narrow(1, picks[1] * r, r);
                return xd.matmul(Aa.t()).matmul(Bb.t()) * s;
            }
            var (Am, Bm) = EvaluationFactors(a, st, A, B);
            return xd.matmul(Am.t()).matmul(Bm.t()) * s;
        }
        var decision = Route(a, st, xf, batch, seq);
        var w = decision.Dense!.to_type(A.dtype); // [batch, E]
        var Ab = w.matmul(A.view(E, r * inF)).view(batch, r, inF);
        var Bb2 = w.matmul(B.view(outF, E, r).permute(1, 0, 2).reshape(E, outF * r)).view(batch, outF, r);
        var hb = xd.view(batch, seq, inF).bmm(Ab.transpose(1, 2));
        var y = hb.bmm(Bb2.transpose(1, 2)) * s;
        if (Recording(st)) RecordDecision(a, st, decision, batch, seq, null);
        return y.reshape(batch * seq, outF);
    }

    // ------------------------------------------------------------------ routing

    /// <summary>The router's decision for the rows of this forward pass.</summary>
    private RoutingDecision Route(string a, ExpertState st, Tensor xf, long batch, long seq)
    {
        var o = st.Options;
        var router = Router(a) ?? throw new InvalidOperationException($"adapter '{a}' has no router in this layer");
        var rt = router.Weight.dtype;
        var inputs = Runtime?.Inputs;
        Tensor feats;
        Tensor logits;
        bool rowLevel;
        switch (o.RouterInput)
        {
            case RouterInput.Token:
                feats = Jitter(o, xf.to_type(rt));
                logits = router.Logits(feats);
                rowLevel = false;
                break;
            case RouterInput.Sequence:
                {
                    var h = xf.to_type(rt).view(batch, seq, xf.size(1));
                    if (inputs?.TokenMask is { } m && m.dim() == 2 && m.size(0) == batch && m.size(1) == seq)
                    {
                        var mm = m.to_type(rt).unsqueeze(2);
                        feats = (h * mm).sum(1) / mm.sum(1).clamp_min(1);
                    }
                    else feats = h.mean(1);
                    feats = Jitter(o, feats);
                    logits = router.Logits(feats);
                    rowLevel = true;
                    break;
                }
            case RouterInput.Instance:
                {
                    var f = inputs?.InstanceFeatures ?? throw new InvalidOperationException(
                        $"adapter '{a}' routes on instance embeddings: set MixtureRoutingInputs.InstanceFeatures with LowRankModel.UseRouting(...) around the forward pass");
                    var d = router.Weight.size(1);
                    if (f.dim() != 2 || f.size(0) != batch || f.size(1) != d)
                        throw new ArgumentException($"InstanceFeatures must be [batch = {batch}, {d}], got [{string.Join(", ", f.shape)}]");
                    feats = Jitter(o, f.to_type(rt));
                    logits = router.Logits(feats);
                    rowLevel = true;
                    break;
                }
            case RouterInput.Task:
                {
                    var ids = inputs?.TaskIds ?? throw new InvalidOperationException(
                        $"adapter '{a}' routes on task ids: set MixtureRoutingInputs.TaskIds with LowRankModel.UseRouting(...) around the forward pass");
                    if (ids.dim() != 1 || ids.size(0) != batch)
                        throw new ArgumentException($"TaskIds must be [batch = {batch}], got [{string.Join(", ", ids.shape)}]");
                    if (ids.dtype != ScalarType.Int64) ids = ids.to_type(ScalarType.Int64);
                    if (ids.numel() > 0 && (ids.min().ToInt64() < 0 || ids.max().ToInt64() >= o.NumTasks))
                        throw new ArgumentException($"task ids must be in [0, {o.NumTasks}), got [{ids.min().ToInt64()}, {ids.max().ToInt64()}]");
                    feats = ids;
                    logits = router.TaskLogits(ids);
                    rowLevel = true;
                    break;
                }
            default:
                throw new InvalidOperationException($"router input '{o.RouterInput}' is not routed here");
        }
        return Gate(router, st, logits, feats, rowLevel, batch, seq);
    }

    private Tensor Jitter(MixtureOfLoraExpertsOptions o, Tensor h)
    {
        if (!training || o.JitterNoise <= 0) return h;
        return h * rand(h.shape, h.dtype, h.device).mul(2 * o.JitterNoise).add(1 - o.JitterNoise);
    }

    /// <summary>Gating from logits [M, E] (router type).</summary>
    private RoutingDecision Gate(ExpertRouter router, ExpertState st, Tensor logits, Tensor feats, bool rowLevel, long batch = 0, long seq = 0)
    {
        var o = st.Options;
        int E = st.Experts;
        int k = st.TopK;
        if (o.Gating == GatingMode.NoisyTopK && training)
        {
            var sigma = router.Noise(feats);
            logits = logits + randn(logits.shape, logits.dtype, logits.device) * sigma;
        }
        var probs = o.Gating == GatingMode.RelaxedBernoulli ? logits.sigmoid() : nn.functional.softmax(logits / o.RouterTemperature, -1);
        var d = new RoutingDecision { Logits = logits, Probs = probs, Selected = probs, Experts = E, RowLevel = rowLevel };
        switch (o.Gating)
        {
            case GatingMode.Dense:
                d.Dense = probs;
                d.Selected = ones_like(probs);
                break;
            case GatingMode.RelaxedBernoulli:
                d.Dense = MixtureGating.RelaxedBernoulli(logits, training);
                d.Selected = ones_like(probs);
                break;
            case GatingMode.TopK:
            case GatingMode.NoisyTopK:
            case GatingMode.Switch:
                {
                    var kk = o.Gating == GatingMode.Switch ? 1 : k;
                    var (idx, w) = MixtureGating.TopK(probs, kk, o.Gating != GatingMode.Switch && o.Renormalize);
                    d.Index = idx;
                    d.Weight = w;
                    break;
                }
            case GatingMode.TopP:
                {
                    var (idx, w) = MixtureGating.TopP(probs, o.TopP, o.Renormalize);
                    d.Index = idx;
                    d.Weight = w;
                    break;
                }
            default:
                throw new InvalidOperationException($"gating '{o.Gating}' has no router decision");
        }
        if (d.Index is not null)
        {
            d.Selected = MixtureGating.SelectionMask(d.Index, E, probs.dtype);
            if (o.ExpertCapacity > 0 || o.CapacityFactor > 0)
            {
                // Per sequence (token routing only, validated) or over the decision's rows.
                long m = d.Index.size(0);
                long cap = o.ExpertCapacity > 0 ? o.ExpertCapacity : (long)Math.Ceiling(o.CapacityFactor * m * d.Index.size(1) / E);
                (d.Index, d.Weight) = MixtureGating.ApplyCapacity(d.Index, d.Weight!, E, cap, batch, seq, perSequence: o.ExpertCapacity > 0);
            }
            if (training && o.ExpertDropout > 0) d.Weight = nn.functional.dropout(d.Weight!, o.ExpertDropout, true);
        }
        else if (training && o.ExpertDropout > 0 && o.Gating == GatingMode.Dense) d.Dense = nn.functional.dropout(d.Dense!, o.ExpertDropout, true);
        return d;
    }

    private void RecordDecision(string a, ExpertState st, RoutingDecision d, long batch, long seq, List<(Tensor outputs, Tensor experts, Tensor rows)>? outs)
    {
        var rt = Runtime!;
        Tensor? rowMask = null;
        if (!d.RowLevel && rt.Inputs?.TokenMask is { } m && m.numel() == d.Logits.size(0))
            rowMask = m.reshape(-1).to_type(d.Probs.dtype);
        Tensor? o = null, oe = null, orows = null;
        if (outs is { Count: > 0 })
        {
            o = cat(outs.Select(t => t.outputs).ToArray(), 0);
            oe = cat(outs.Select(t => t.experts).ToArray(), 0);
            orows = cat(outs.Select(t => t.rows).ToArray(), 0);
        }
        static Tensor Keep(Tensor t) => t.alias().DetachFromDisposeScope();
        var dot = st.Path.LastIndexOf('.');
        rt.Add(a, new RouterRecord
        {
            Path = st.Path,
            Group = dot > 0 ? st.Path[..dot] : st.Path,
            Experts = st.Experts,
            TopK = st.TopK,
            RowLevel = d.RowLevel,
            Batch = batch,
            Seq = seq,
            Logits = Keep(d.Logits),
            Probs = Keep(d.Probs),
            Selected = Keep(d.Selected),
            Dispatched = Keep(d.DispatchedDense()),
            Gates = Keep(d.GatesDense()),
            RowMask = rowMask is null ? null : Keep(rowMask),
            Outputs = o is null ? null : Keep(o),
            OutputExperts = oe is null ? null : Keep(oe),
            OutputRows = orows is null ? null : Keep(orows),
        });
    }

    // ------------------------------------------------------------------ feed-forward block

    /// <inheritdoc/>
    public Tensor? ForwardBlock(IFeedForwardBlock block, Tensor x)
    {
        ArgumentNullException.ThrowIfNull(block);
        ArgumentNullException.ThrowIfNull(x);
        if (AdaptersDisabled || Merged) return null;
        var ffn = ActiveAdapters.Where(a => _states.TryGetValue(a, out var s) && s.Host).ToList();
        if (ffn.Count == 0) return null;
        if (MixedBatchAdapterNames is not null)
            throw new NotSupportedException("mixed-adapter batches are not supported for adapters whose experts span feed-forward blocks");
        using var scope = NewDisposeScope();
        t_blockDepth++;
        try { return ForwardBlockCore(block, x, ffn).MoveToOuterDisposeScope(); }
        finally { t_blockDepth--; }
    }

    private Tensor ForwardBlockCore(IFeedForwardBlock block, Tensor x, List<string> ffn)
    {
        var gateM = block.GateProjectionName is { } gn ? block.Projection(gn) : null;
        var upM = block.Projection(block.UpProjectionName);
        var downM = block.Projection(block.DownProjectionName);
        static Tensor Own(nn.Module<Tensor, Tensor> m, Tensor input) => m is MixtureOfLoraExpertsLayer l ? l.ForwardOwn(input) : m.call(input);
        var shape = x.shape;
        long d = shape[^1];
        long n = x.numel() / d;
        long batch = x.dim() >= 2 ? shape[0] : 1;
        long seq = n / Math.Max(1, batch);
        var xf = x.reshape(n, d);
        var g0 = gateM is null ? null : Own(gateM, xf);
        var u0 = Own(upM, xf);
        var h0 = block.Activate(g0, u0);
        var H = h0;
        Tensor? extra = null;
        var adapterBanks = new List<(string a, RoutingDecision dec)>();
        foreach (var a in ffn)
        {
            var st = _states[a];
            var dec = Route(a, st, xf, batch, seq);
            if (Recording(st)) RecordDecision(a, st, dec, batch, seq, null);
            if (st.Options.FeedForwardExpert == FeedForwardExpertKind.Adapter) { adapterBanks.Add((a, dec)); continue; }
            var (idx, w, dense) = ToTokens(dec, seq);
            if (dense is not null)
            {
                idx = arange(st.Experts, ScalarType.Int64, x.device).unsqueeze(0).expand(n, st.Experts).contiguous();
                w = dense;
            }
            var gateL = gateM as MixtureOfLoraExpertsLayer;
            var upL = upM as MixtureOfLoraExpertsLayer;
            var downL = downM as MixtureOfLoraExpertsLayer;
            ExpertState? gs = null, us = null, ds = null;
            if (gateL is not null && gateL.TryGetState(a, out var g1) && g1.HasLora) gs = g1;
            if (upL is not null && upL.TryGetState(a, out var u1) && u1.HasLora) us = u1;
            if (downL is not null && downL.TryGetState(a, out var d1) && d1.HasLora) ds = d1;
            foreach (var (e, rows, we) in MixtureGating.GroupByExpert(idx!, w!, st.Experts))
            {
                var xe = xf.index_select(0, rows);
                var ge = g0?.index_select(0, rows);
                if (gs is not null) ge = ge! + gateL!.ExpertDelta(a, gs, e, xe, ge!.dtype);
                var ue = u0.index_select(0, rows);
                if (us is not null) ue = ue + upL!.ExpertDelta(a, us, e, xe, ue.dtype);
                var he = block.Activate(ge, ue);
                var wc = we.to_type(he.dtype).unsqueeze(1);
                H = H.index_add(0, rows, (he - h0.index_select(0, rows)) * wc);
                if (ds is not null)
                {
                    var de = downL!.ExpertDelta(a, ds, e, he, he.dtype) * wc;
                    extra = (extra ?? zeros(new[] { n, downL.OutFeatures }, he.dtype, he.device)).index_add(0, rows, de);
                }
            }
        }
        var y = Own(downM, H);
        if (extra is not null) y = y + extra.to_type(y.dtype);
        foreach (var (a, dec) in adapterBanks)
        {
            if (downM is not MixtureOfLoraExpertsLayer downL || !downL.TryGetState(a, out var ds) || !ds.HasAdapterBank)
                throw new InvalidOperationException($"adapter '{a}' has adapter experts but the block's down projection holds none: target the down projection too");
            var st = _states[a];
            var (idx, w, dense) = ToTokens(dec, seq);
            if (dense is not null)
            {
                idx = arange(st.Experts, ScalarType.Int64, x.device).unsqueeze(0).expand(n, st.Experts).contiguous();
                w = dense;
            }
            var add = zeros(y.shape, y.dtype, y.device);
            foreach (var (e, rows, we) in MixtureGating.GroupByExpert(idx!, w!, st.Experts))
            {
                var ye = y.index_select(0, rows);
                add = add.index_add(0, rows, downL.AdapterExpert(a, ds, e, ye) * we.to_type(y.dtype).unsqueeze(1));
            }
            y = y + add;
        }
        var outShape = shape.ToArray();
        outShape[^1] = y.size(1);
        return y.view(outShape);
    }

    /// <summary>δ_e(x) = s_e·B_e·A_e·dropout(x) of one expert of this layer, in the given type.</summary>
    internal Tensor ExpertDelta(string a, ExpertState st, int e, Tensor x, ScalarType outType)
    {
        var A = ADict[a].weight;
        var B = BDict[a].weight;
        var xa = x.dtype == A.dtype ? x : x.to_type(A.dtype);
        var Ae = A.narrow(0, st.Offsets[e], st.Ranks[e]);
        var Be = st.Options.ShareLoraB ? B : B.narrow(1, st.Offsets[e], st.Ranks[e]);
        var y = DropDict[a].call(xa).matmul(Ae.t()).matmul(Be.t()) * st.Scalings[e];
        return y.dtype == outType ? y : y.to_type(outType);
    }

    /// <summary>PESC's adapter expert on the FFN output h: σ·Up_e(GELU(Down_e(dropout(h)))).</summary>
    internal Tensor AdapterExpert(string a, ExpertState st, int e, Tensor h)
    {
        var Dn = DownDict[a].weight;
        var Up = UpDict[a].weight;
        int ad = st.Options.AdapterDim;
        var ha = h.dtype == Dn.dtype ? h : h.to_type(Dn.dtype);
        var z = nn.functional.gelu(DropDict[a].call(ha).matmul(Dn.narrow(0, (long)e * ad, ad).t()));
        var y = z.matmul(Up.narrow(1, (long)e * ad, ad).t()) * st.Options.AdapterScaling;
        return y.dtype == h.dtype ? y : y.to_type(h.dtype);
    }
}
