using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters;

/// <summary>How <see cref="LowRankModel.AddWeightedAdapter"/> combines LoRA adapters (PEFT's combination types).</summary>
public enum LoraCombination
{
    /// <summary>"cat": A = [A₁; A₂; …], B = [w₁s₁B₁, w₂s₂B₂, …], rank Σrᵢ, scaling 1: exactly ΔW = Σ wᵢ·ΔWᵢ.</summary>
    Cat,
    /// <summary>"linear": A = Σ √(wᵢsᵢ)·Aᵢ, B = Σ √(wᵢsᵢ)·Bᵢ (equal ranks, non-negative weights), scaling 1. Not equal to
    /// Σ wᵢ·ΔWᵢ in general (cross terms), as in PEFT.</summary>
    Linear,
    /// <summary>"svd": the rank-max(rᵢ) truncated SVD of Σ wᵢ·ΔWᵢ, B = U·S, A = Vᵀ, scaling 1.</summary>
    Svd,
}

public sealed partial class LowRankModel
{
    /// <summary>
    /// Adds a LoRA adapter that combines existing ones with weights (PEFT's add_weighted_adapter), on every layer that
    /// holds at least one of them (missing ones count as zero). The new adapter has α = r (scaling 1, rsLoRA off) and
    /// is not activated. Modules-to-save: where the sources have copies, the new copy is original + Σ wᵢ·(copyᵢ −
    /// original) (PEFT refuses when more than one source has a copy of the same module; this is our extension).
    /// </summary>
    /// <param name="adapters">Source adapter names.</param>
    /// <param name="weights">One weight per source.</param>
    /// <param name="adapterName">The new adapter's name.</param>
    /// <param name="combination">How to combine (PEFT's default is SVD).</param>
    public void AddWeightedAdapter(IReadOnlyList<string> adapters, IReadOnlyList<double> weights, string adapterName, LoraCombination combination = LoraCombination.Svd)
    {
        CheckUsable();
        ArgumentNullException.ThrowIfNull(adapters);
        ArgumentNullException.ThrowIfNull(weights);
        CheckAdapterName(adapterName);
        if (_configs.ContainsKey(adapterName)) throw new ArgumentException($"an adapter named '{adapterName}' already exists", nameof(adapterName));
        if (adapters.Count == 0 || adapters.Count != weights.Count) throw new ArgumentException($"give one weight per adapter ({adapters.Count} adapters, {weights.Count} weights)");
        if (adapters.Distinct().Count() != adapters.Count) throw new ArgumentException("an adapter is listed twice", nameof(adapters));
        var sources = new List<LoraOptions>();
        foreach (var a in adapters)
        {
            if (!_configs.TryGetValue(a, out var o)) throw new KeyNotFoundException($"no adapter '{a}' (adapters: {string.Join(", ", _adapterOrder)})");
            sources.Add(o as LoraOptions ?? throw new NotSupportedException($"only LoRA adapters can be combined; '{a}' is {o.PeftType}"));
        }
        if (combination == LoraCombination.Linear)
        {
            if (sources.Select(s => s.R).Distinct().Count() > 1) throw new ArgumentException("the linear combination needs adapters of equal rank r");
            if (weights.Any(w => w < 0)) throw new ArgumentException("the linear combination needs non-negative weights (it takes √(w·s))");
        }
        int globalRank = combination switch
        {
            LoraCombination.Cat => sources.Sum(s => s.R),
            LoraCombination.Linear => sources[0].R,
            _ => sources.Max(s => s.R),
        };
        var rankPattern = new Dictionary<string, int>(StringComparer.Ordinal);
        var created = new List<LoraLayer>();
        var copies = new List<ModulesToSaveWrapper>();
        try
        {
            foreach (var (path, layer) in AdapterLayers().ToList())
            {
                if (layer is not LoraLayer lora) continue;
                var present = adapters.Select((a, i) => (a, w: weights[i])).Where(x => lora.HasAdapter(x.a)).ToList();
                if (present.Count == 0) continue;
                var (A, B, r) = Combine(lora, present, combination, globalRank);
                using var scope = NewDisposeScope();
                lora.UpdateLayer(adapterName, r, r, lora.DropoutProbability(present[0].a), false, LoraInitialization.Default, null,
                    new AdapterCreationContext { Initialize = false, AutocastAdapterDtype = lora.LoraA(present[0].a).weight.dtype != lora.BaseWeight.dtype });
                created.Add(lora);
                using (no_grad())
                {
                    lora.LoraA(adapterName).weight.copy_(A);
                    lora.LoraB(adapterName).weight.copy_(B);
                }
                A.Dispose();
                B.Dispose();
                if (r != globalRank) rankPattern[path] = r;
            }
            foreach (var (_, m) in AdapterModules().ToList())
            {
                if (m is not ModulesToSaveWrapper w) continue;
                var present = adapters.Select((a, i) => (a, w: weights[i])).Where(x => w.AdapterNames.Contains(x.a)).ToList();
                if (present.Count == 0) continue;
                w.AddAdapter(adapterName);
                copies.Add(w);
                using var scope = NewDisposeScope();
                using var ng = no_grad();
                var orig = w.OriginalModule.named_parameters().ToDictionary(p => p.name, p => p.parameter);
                var srcs = present.Select(x => (x.w, ps: w.Copy(x.a).named_parameters().ToDictionary(p => p.name, p => p.parameter))).ToList();
                foreach (var (n, p) in w.Copy(adapterName).named_parameters())
                {
                    if (p.device.type == DeviceType.META) continue;
                    var acc = orig[n].to_type(ScalarType.Float64, copy: true);
                    foreach (var (wt, ps) in srcs) acc = acc + (ps[n].to_type(ScalarType.Float64) - orig[n].to_type(ScalarType.Float64)) * wt;
                    p.copy_(acc);
                }
            }
        }
        catch
        {
            foreach (var l in created) l.DeleteAdapter(adapterName);
            foreach (var w in copies) w.DeleteAdapter(adapterName);
            throw;
        }
        if (created.Count == 0) throw new InvalidOperationException("none of the adapters is held by any layer");
        var cfg = (LoraOptions)sources[0].Clone();
        cfg.R = globalRank;
        cfg.LoraAlpha = globalRank;
        cfg.UseRsLora = false;
        cfg.RankPattern = rankPattern;
        cfg.AlphaPattern = rankPattern.ToDictionary(kv => kv.Key, kv => (double)kv.Value);
        cfg.InitLoraWeights = LoraInitialization.Default;
        cfg.PissaNiter = null;
        cfg.InferenceMode = false;
        cfg.TargetModules = UnionTargets(sources.Select(s => s.TargetModules!).ToList());
        var saves = sources.SelectMany(s => s.ModulesToSave ?? Array.Empty<string>()).Distinct().ToList();
        cfg.ModulesToSave = saves.Count > 0 ? saves : null;
        _configs[adapterName] = cfg;
        _adapterOrder.Add(adapterName);
        ApplyActive();
    }

    private static ModuleSelector UnionTargets(List<ModuleSelector> targets)
    {
        if (targets.All(t => t.IsList)) return ModuleSelector.FromNames(targets.SelectMany(t => t.Names!));
        if (targets.Any(t => t.IsAllLinear)) return ModuleSelector.AllLinear;
        return ModuleSelector.FromRegex(string.Join("|", targets.Select(t => t.IsList ? "(.*\\.)?(" + string.Join("|", t.Names!.Select(System.Text.RegularExpressions.Regex.Escape)) + ")" : "(" + t.Pattern + ")")));
    }

    private static (Tensor A, Tensor B, int r) Combine(LoraLayer lora, List<(string a, double w)> present, LoraCombination combination, int globalRank)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var ct = lora.BaseWeight.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        Tensor A, B;
        int r;
        switch (combination)
        {
            case LoraCombination.Cat:
                A = cat(present.Select(p => lora.LoraA(p.a).weight.to_type(ct)).ToList(), 0);
                B = cat(present.Select(p => lora.LoraB(p.a).weight.to_type(ct) * (p.w * lora.Scaling(p.a))).ToList(), 1);
                r = (int)A.size(0);
                break;
            case LoraCombination.Linear:
                r = lora.Rank(present[0].a);
                if (present.Any(p => lora.Rank(p.a) != r)) throw new ArgumentException("the linear combination needs adapters of equal rank in every layer");
                A = zeros(new[] { (long)r, lora.InFeatures }, ct, lora.BaseWeight.device);
                B = zeros(new[] { lora.OutFeatures, (long)r }, ct, lora.BaseWeight.device);
                foreach (var (a, w) in present)
                {
                    var f = Math.Sqrt(w * lora.Scaling(a));
                    A = A + lora.LoraA(a).weight.to_type(ct) * f;
                    B = B + lora.LoraB(a).weight.to_type(ct) * f;
                }
                break;
            default:
                {
                    Tensor? delta = null;
                    foreach (var (a, w) in present)
                    {
                        var d = lora.GetDeltaWeight(a).to_type(ct) * w;
                        delta = delta is null ? d : delta + d;
                    }
                    r = (int)Math.Min(globalRank, Math.Min(lora.InFeatures, lora.OutFeatures));
                    var (U, S, Vh) = linalg.svd(delta!);
                    B = U.narrow(1, 0, r) * S.narrow(0, 0, r).unsqueeze(0);
                    A = Vh.narrow(0, 0, r);
                    break;
                }
        }
        return (A.contiguous().MoveToOuterDisposeScope(), B.contiguous().MoveToOuterDisposeScope(), r);
    }
}
