using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.Mixture;

/// <summary>The auxiliary losses of the mixture-of-experts family (methods.md §7.1, §9 gotcha 12), each in its reference's
/// form, computed from the router decisions of one forward pass.</summary>
internal static class MixtureAuxiliaryLosses
{
    /// <summary>Σ_kind coef·loss over the configured losses, or null when none is configured.</summary>
    public static Tensor? Total(MixtureOfLoraExpertsOptions o, IReadOnlyList<RouterRecord> records, MixtureRoutingInputs? inputs)
    {
        Tensor? total = null;
        foreach (var kind in Enum.GetValues<AuxiliaryLossKind>())
        {
            var coef = o.Coefficient(kind);
            if (coef == 0 || records.Count == 0) continue;
            var l = Compute(kind, o, records, inputs) * coef;
            total = total is null ? l : total + l;
        }
        return total;
    }

    /// <summary>One auxiliary loss (without its coefficient).</summary>
    public static Tensor Compute(AuxiliaryLossKind kind, MixtureOfLoraExpertsOptions o, IReadOnlyList<RouterRecord> records, MixtureRoutingInputs? inputs)
        => kind switch
        {
            AuxiliaryLossKind.MixtralLoadBalance => ByExperts(records, MixtralLoadBalance),
            AuxiliaryLossKind.SwitchLoadBalance => ByExperts(records, SwitchLoadBalance),
            AuxiliaryLossKind.MolaLoadBalance => Sum(records.GroupBy(r => r.Group).Select(g => g.ToList()), MolaLoadBalance),
            AuxiliaryLossKind.PescLoadBalance => ByExperts(records, PescLoadBalance),
            AuxiliaryLossKind.ZLoss => ZLoss(records),
            AuxiliaryLossKind.LocalizedBalance => Sum(records, r => LocalizedBalance(r, inputs?.TaskTypes ?? throw new InvalidOperationException(
                "LoRAMoE's localized balancing constraint needs the task type (0/1) of every example: set MixtureRoutingInputs.TaskTypes with LowRankModel.UseRouting(...)"), o.LbcDelta)),
            AuxiliaryLossKind.Contrastive => Sum(records, r => Contrastive(r, o.ContrastiveTemperature, o.ContrastiveMaxSamples)),
            AuxiliaryLossKind.GateBalance => Sum(records, GateBalance),
            AuxiliaryLossKind.RouterCrossEntropy => Sum(records, r => RouterCrossEntropy(r, inputs?.RouterLabels ?? throw new InvalidOperationException(
                "MoA's router cross-entropy needs the domain label of every example: set MixtureRoutingInputs.RouterLabels with LowRankModel.UseRouting(...)"))),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown auxiliary loss"),
        };

    private static Tensor Sum<T>(IEnumerable<T> items, Func<T, Tensor> f)
    {
        Tensor? s = null;
        foreach (var i in items)
        {
            var v = f(i);
            s = s is null ? v : s + v;
        }
        return s ?? zeros(Array.Empty<long>());
    }

    /// <summary>Concatenates the records of equal expert count (routers of different sizes, as in MoLA, are summed).</summary>
    private static Tensor ByExperts(IReadOnlyList<RouterRecord> records, Func<IReadOnlyList<RouterRecord>, Tensor> f)
        => Sum(records.GroupBy(r => r.Experts).Select(g => (IReadOnlyList<RouterRecord>)g.ToList()), f);

    private static (Tensor probs, Tensor sel, Tensor mask) Concat(IReadOnlyList<RouterRecord> rs)
    {
        var probs = cat(rs.Select(r => r.Probs).ToArray(), 0);
        var sel = cat(rs.Select(r => r.Selected).ToArray(), 0);
        var mask = cat(rs.Select(r => r.RowMask ?? ones(new[] { r.Probs.size(0) }, r.Probs.dtype, r.Probs.device)).ToArray(), 0);
        return (probs, sel, mask);
    }

    /// <summary>MixLoRA / HF Mixtral: E·Σ_e F_e·P_e with F_e = Σ_t m_t·sel[t,e] / Σ_t m_t (the per-slot fractions summed
    /// over the k slots) and P_e = Σ_t m_t·p[t,e] / Σ_t m_t; 0 when every row is masked.</summary>
    public static Tensor MixtralLoadBalance(IReadOnlyList<RouterRecord> rs)
    {
        var (p, sel, m) = Concat(rs);
        var denom = m.sum().clamp_min(1e-30);
        var f = (sel * m.unsqueeze(1)).sum(0) / denom;
        var pm = (p * m.unsqueeze(1)).sum(0) / denom;
        return (f * pm).sum() * rs[0].Experts;
    }

    /// <summary>Switch Transformer: E·Σ_e f_e·P_e with f_e the (masked) fraction of rows whose top-1 choice is e.</summary>
    public static Tensor SwitchLoadBalance(IReadOnlyList<RouterRecord> rs)
    {
        var (p, _, m) = Concat(rs);
        int E = rs[0].Experts;
        var top1 = MixtureGating.SortDescending(p).indices.narrow(1, 0, 1);
        var oh = MixtureGating.SelectionMask(top1, E, p.dtype);
        var denom = m.sum().clamp_min(1e-30);
        var f = (oh * m.unsqueeze(1)).sum(0) / denom;
        var pm = (p * m.unsqueeze(1)).sum(0) / denom;
        return (f * pm).sum() * E;
    }

    /// <summary>MoLA: the group's routers concatenated, f_e = selections of e / all selections, P_e = mean probability,
    /// E·Σ f·P (no padding mask, as in MoLA).</summary>
    public static Tensor MolaLoadBalance(IReadOnlyList<RouterRecord> rs)
    {
        var p = cat(rs.Select(r => r.Probs).ToArray(), 0);
        var sel = cat(rs.Select(r => r.Selected).ToArray(), 0);
        var counts = sel.sum(0);
        var f = counts / counts.sum().clamp_min(1e-30);
        return (f * p.mean(0)).sum() * rs[0].Experts;
    }

    /// <summary>PESC's copy of an early HF-Mixtral loss: E²·mean_{t,e}(f[t,e]·w̄[t]), f[t,e] = (1/k)·[e ∈ top-k(t)],
    /// w̄[t] = mean of the renormalised top-k weights = 1/k; so it equals E/k for every router (no gradient).</summary>
    public static Tensor PescLoadBalance(IReadOnlyList<RouterRecord> rs)
    {
        var p = cat(rs.Select(r => r.Probs).ToArray(), 0);
        int E = rs[0].Experts, k = rs[0].TopK;
        var (idx, w) = MixtureGating.TopK(p, k, renormalize: true);
        var f = MixtureGating.SelectionMask(idx, E, p.dtype) / k;
        var wbar = w.mean(1, keepdim: true);
        return (f * wbar).mean() * ((double)E * E);
    }

    /// <summary>Router z-loss: masked mean over rows of logsumexp(logits)².</summary>
    public static Tensor ZLoss(IReadOnlyList<RouterRecord> rs)
    {
        var z = cat(rs.Select(r => r.Logits.logsumexp(-1).square()).ToArray(), 0);
        var m = cat(rs.Select(r => r.RowMask ?? ones(new[] { r.Logits.size(0) }, r.Logits.dtype, r.Logits.device)).ToArray(), 0);
        return (z * m).sum() / m.sum().clamp_min(1e-30);
    }

    /// <summary>LoRAMoE's localized balancing constraint for one router: Q[b,e] = Σ_s gates[b,s,e] (padding included, as in
    /// LoRAMoE), I[b,e] = 1+δ when (e &lt; E/2) equals (type_b == 1) else 1−δ, CV²(Q∘I) = var(unbiased)/(mean²+1e-10).</summary>
    public static Tensor LocalizedBalance(RouterRecord r, Tensor taskTypes, double delta)
    {
        int E = r.Experts;
        var g = r.Gates;
        Tensor q = r.RowLevel ? g : g.view(r.Batch, r.Seq, E).sum(1);
        var b = q.size(0);
        if (taskTypes.numel() != b) throw new ArgumentException($"TaskTypes must hold one type per example: {taskTypes.numel()} for a batch of {b}");
        var firstHalf = arange(E, ScalarType.Int64, g.device).lt(E / 2).unsqueeze(0).expand(b, E);
        var typeOne = taskTypes.reshape(b, 1).to(g.device).eq(1).expand(b, E);
        var match = firstHalf.eq(typeOne);
        var weight = where(match, 1 + delta, 1 - delta, g.dtype);
        var v = (q * weight).reshape(-1);
        if (v.numel() <= 1) return zeros(Array.Empty<long>(), g.dtype, g.device);
        return v.var() / (v.mean().square() + 1e-10);
    }

    /// <summary>MoELoRA's contrastive loss for one router (supervised InfoNCE): the first <paramref name="maxSamples"/>
    /// selected (row, expert) outputs in row order, L2-normalised; for an anchor a with positives P(a) (other samples of
    /// the same expert), −(1/|P(a)|)·Σ_{p∈P(a)} log(exp(s_ap/τ) / Σ_{n≠a} exp(s_an/τ)), averaged over anchors that have a
    /// positive; 0 when none has.</summary>
    public static Tensor Contrastive(RouterRecord r, double temperature, int maxSamples)
    {
        if (r.Outputs is null || r.OutputExperts is null || r.OutputRows is null || r.Outputs.size(0) < 2)
            return zeros(Array.Empty<long>(), r.Logits.dtype, r.Logits.device);
        var order = r.OutputRows.argsort(0, descending: false, stable: true);
        long n = Math.Min(maxSamples, r.Outputs.size(0));
        var sel = order.narrow(0, 0, n);
        var o = r.Outputs.index_select(0, sel).to_type(r.Logits.dtype);
        var e = r.OutputExperts.index_select(0, sel);
        var z = o / o.norm(2, new long[] { 1 }, keepdim: true).clamp_min(1e-12);
        var sim = z.matmul(z.t()) / temperature;
        var eye = torch.eye(n, n, ScalarType.Bool, sim.device);
        var logits = sim.masked_fill(eye, double.NegativeInfinity);
        var logProb = logits - logits.logsumexp(1, keepdim: true);
        var pos = e.unsqueeze(0).eq(e.unsqueeze(1)).logical_and(eye.logical_not()).to_type(sim.dtype);
        var npos = pos.sum(1);
        var has = npos.gt(0).to_type(sim.dtype);
        var perAnchor = -(logProb.masked_fill(pos.eq(0), 0) * pos).sum(1) / npos.clamp_min(1);
        return (perAnchor * has).sum() / has.sum().clamp_min(1);
    }

    /// <summary>MOLE's gate balance for one router: −Σ_e log(q_e + 1e-9), q_e = masked mean gate weight of expert e.</summary>
    public static Tensor GateBalance(RouterRecord r)
    {
        var m = r.RowMask ?? ones(new[] { r.Gates.size(0) }, r.Gates.dtype, r.Gates.device);
        var q = (r.Gates * m.unsqueeze(1)).sum(0) / m.sum().clamp_min(1e-30);
        return -(q + 1e-9).log().sum();
    }

    /// <summary>MoA's router supervision for one sequence-level router: mean cross-entropy of logits [B, E] against the
    /// domain labels [B].</summary>
    public static Tensor RouterCrossEntropy(RouterRecord r, Tensor labels)
    {
        if (!r.RowLevel) throw new InvalidOperationException("the router cross-entropy needs a sequence-level router");
        return nn.functional.cross_entropy(r.Logits, labels.to(r.Logits.device).to_type(ScalarType.Int64));
    }
}
