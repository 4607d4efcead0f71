using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Training;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.Mixture;

/// <summary>
/// Mixture-of-LoRA-experts helpers on a <see cref="LowRankModel"/>: the routing context (task ids, instance embeddings,
/// token masks, ...) around forward passes, auxiliary losses for hand-written training loops, instruction embeddings
/// (Octavius), k-means instruction clustering (MoCLE), importing already-trained LoRAs as experts (MOLE, MoA), AdaMix's
/// consistency loss, parameter counting and rank matching to a parameter budget.
/// </summary>
public static class MixtureOfLoraExperts
{
    private sealed class Scope(Action onDispose) : IDisposable
    {
        private Action? _onDispose = onDispose;

        public void Dispose()
        {
            _onDispose?.Invoke();
            _onDispose = null;
        }
    }

    /// <summary>Sets the routing inputs of every forward pass until the scope is disposed (the previous inputs come back).
    /// Needed by routers that read task ids or instance embeddings, by LoRAMoE's and MoA's auxiliary losses, and to mask
    /// padding out of load-balance statistics.</summary>
    /// <param name="model">The adapted model.</param>
    /// <param name="inputs">The inputs (tensors owned by the caller, alive for the scope).</param>
    /// <returns>The scope.</returns>
    public static IDisposable UseRouting(this LowRankModel model, MixtureRoutingInputs inputs)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputs);
        var rt = MixtureRuntime.Of(model);
        var previous = rt.Inputs;
        rt.Inputs = inputs;
        return new Scope(() => rt.Inputs = previous);
    }

    /// <summary>Records router decisions of training-mode forward passes (with gradients enabled) until the scope is
    /// disposed, for <see cref="TakeAuxiliaryLoss"/> in a hand-written training loop (a <see cref="Trainer"/> does this
    /// itself).</summary>
    /// <param name="model">The adapted model.</param>
    /// <returns>The scope.</returns>
    public static IDisposable RecordRouting(this LowRankModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var rt = MixtureRuntime.Of(model);
        rt.RecordingCount++;
        return new Scope(() =>
        {
            rt.RecordingCount = Math.Max(0, rt.RecordingCount - 1);
            foreach (var a in model.AdapterNames) rt.Clear(a);
        });
    }

    /// <summary>The auxiliary loss (coefficients applied) of the router decisions recorded since the last call, which it
    /// consumes; null when the adapter configures no auxiliary loss or nothing was recorded.</summary>
    /// <param name="model">The adapted model (recording: <see cref="RecordRouting"/>).</param>
    /// <param name="adapterName">The adapter (default: the active one).</param>
    /// <returns>A scalar, or null.</returns>
    public static Tensor? TakeAuxiliaryLoss(this LowRankModel model, string? adapterName = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var a = adapterName ?? model.ActiveAdapter;
        var o = Options(model, a);
        var rt = MixtureRuntime.Of(model);
        var records = rt.Take(a);
        try { return MixtureAuxiliaryLosses.Total(o, records, rt.Inputs); }
        finally { foreach (var r in records) r.Dispose(); }
    }

    /// <summary>Router statistics (expert load, router entropy) of the decisions recorded since the last call, which it
    /// consumes; use instead of <see cref="TakeAuxiliaryLoss"/> to inspect routing.</summary>
    /// <param name="model">The adapted model (recording: <see cref="RecordRouting"/>).</param>
    /// <param name="adapterName">The adapter (default: the active one).</param>
    /// <returns>The statistics.</returns>
    public static MixtureRouterStatistics TakeRouterStatistics(this LowRankModel model, string? adapterName = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var a = adapterName ?? model.ActiveAdapter;
        Options(model, a);
        var rt = MixtureRuntime.Of(model);
        var records = rt.Take(a);
        try
        {
            var w = new RouterStatisticsWindow();
            w.Add(records, null);
            return w.Snapshot();
        }
        finally { foreach (var r in records) r.Dispose(); }
    }

    private static MixtureOfLoraExpertsOptions Options(LowRankModel model, string adapterName)
    {
        if (!model.PeftConfig.TryGetValue(adapterName, out var o)) throw new KeyNotFoundException($"no adapter '{adapterName}' (adapters: {string.Join(", ", model.AdapterNames)})");
        return o as MixtureOfLoraExpertsOptions ?? throw new ArgumentException($"adapter '{adapterName}' is {o.PeftType}, not a mixture of LoRA experts");
    }

    /// <summary>A loss function for a <see cref="Trainer"/> on the model: sets the routing context of each batch (its
    /// attention mask as the token mask, plus what <paramref name="routing"/> returns) around the forward pass and
    /// returns the model's loss.</summary>
    /// <param name="model">The adapted model.</param>
    /// <param name="routing">Per-batch routing inputs (task ids, ...), or null.</param>
    /// <returns>The loss function.</returns>
    public static Func<Batch, Tensor> LossFunction(LowRankModel model, Func<Batch, MixtureRoutingInputs?>? routing = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        return batch =>
        {
            var given = routing?.Invoke(batch);
            var inputs = new MixtureRoutingInputs
            {
                TaskIds = given?.TaskIds,
                InstanceFeatures = given?.InstanceFeatures,
                TokenMask = given?.TokenMask ?? batch.AttentionMask,
                TaskTypes = given?.TaskTypes,
                RouterLabels = given?.RouterLabels,
            };
            using var scope = model.UseRouting(inputs);
            return model.forward(batch.ToModelInputs()).Loss ?? throw new TrainingException("the model returned no loss: the batches need labels");
        };
    }

    /// <summary>Octavius's instance feature: the mean of the frozen input token embeddings over the instruction tokens
    /// (<paramref name="instructionMask"/> 1; null: every position, padding included, as the reference does) [batch, hidden].</summary>
    /// <param name="model">The adapted model.</param>
    /// <param name="inputIds">Token ids [batch, seq] (the instruction, or the whole prompt).</param>
    /// <param name="instructionMask">1 for instruction tokens [batch, seq], or null.</param>
    /// <returns>The features (no gradient).</returns>
    public static Tensor InstructionEmbedding(LowRankModel model, Tensor inputIds, Tensor? instructionMask = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputIds);
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var emb = model.Model.Backbone.TokenEmbedding.call(inputIds);
        Tensor mean;
        if (instructionMask is null) mean = emb.mean(1);
        else
        {
            var m = instructionMask.to_type(emb.dtype).unsqueeze(2);
            mean = (emb * m).sum(1) / m.sum(1).clamp_min(1);
        }
        return mean.MoveToOuterDisposeScope();
    }

    /// <summary>Lloyd's k-means on the rows of <paramref name="points"/> [N, d] (MoCLE clusters instruction embeddings):
    /// centroids start at <paramref name="k"/> distinct rows drawn with a seeded generator; an empty cluster keeps its
    /// centroid. Deterministic for a seed.</summary>
    /// <param name="points">The points.</param>
    /// <param name="k">Clusters (at most N).</param>
    /// <param name="iterations">Lloyd iterations (stops early when assignments no longer change).</param>
    /// <param name="seed">Seed of the initial draw.</param>
    /// <returns>Centroids [k, d] and each point's cluster [N] (int64).</returns>
    public static (Tensor centroids, Tensor assignments) KMeans(Tensor points, int k, int iterations = 50, ulong seed = 0)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.dim() != 2) throw new ArgumentException($"points must be [N, d], got [{string.Join(", ", points.shape)}]");
        long n = points.size(0);
        if (k <= 0 || k > n) throw new ArgumentOutOfRangeException(nameof(k), k, $"k must be in [1, N = {n}]");
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var x = points.to_type(ScalarType.Float64);
        using var g = new Generator(seed);
        var first = randperm(n, generator: g).narrow(0, 0, k).to(x.device);
        var c = x.index_select(0, first);
        Tensor? assign = null;
        for (int it = 0; it < Math.Max(1, iterations); it++)
        {
            var next = AssignClusters(x, c);
            if (assign is not null && next.equal(assign)) break;
            assign = next;
            var oh = one_hot(assign, k).to_type(ScalarType.Float64); // [N, k]
            var counts = oh.sum(0);
            var sums = oh.t().matmul(x);
            var nonEmpty = counts.gt(0).unsqueeze(1);
            c = where(nonEmpty, sums / counts.clamp_min(1).unsqueeze(1), c);
        }
        assign ??= AssignClusters(x, c);
        return (c.to_type(points.dtype).MoveToOuterDisposeScope(), assign.MoveToOuterDisposeScope());
    }

    /// <summary>The nearest centroid (squared Euclidean distance, ties to the lower index) of each row [N] (int64).</summary>
    /// <param name="points">Points [N, d].</param>
    /// <param name="centroids">Centroids [k, d].</param>
    /// <returns>Cluster ids.</returns>
    public static Tensor AssignClusters(Tensor points, Tensor centroids)
    {
        ArgumentNullException.ThrowIfNull(points);
        ArgumentNullException.ThrowIfNull(centroids);
        using var scope = NewDisposeScope();
        var x = points.to_type(ScalarType.Float64);
        var c = centroids.to_type(ScalarType.Float64);
        var d = x.square().sum(1, keepdim: true) - x.matmul(c.t()) * 2 + c.square().sum(1).unsqueeze(0);
        return d.argmin(1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Copies already-trained PEFT LoRA adapters into the experts of a mixture-of-experts adapter (MOLE composes frozen
    /// LoRAs; MoA's stage 2 combines per-domain LoRAs): LoRA folder i becomes expert i of every per-Linear layer that
    /// LoRA adapts. A LoRA of rank r_i ≤ the expert's rank r fills the first r_i rows of the expert's A and the first
    /// r_i columns of B, rescaled so the expert's scaling s reproduces the LoRA's s_i (B' = (s_i/s)·B_i); other rows and
    /// columns are zero. Layers a LoRA does not adapt get a zero expert.
    /// </summary>
    /// <param name="model">The adapted model.</param>
    /// <param name="adapterName">The mixture adapter.</param>
    /// <param name="loraFolders">One PEFT LoRA folder per expert.</param>
    public static void ImportLoraExperts(LowRankModel model, string adapterName, IReadOnlyList<string> loraFolders)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(loraFolders);
        Options(model, adapterName);
        var configs = new List<LoraOptions>();
        foreach (var f in loraFolders)
            configs.Add(LowRankAdapterOptions.Load(f) as LoraOptions ?? throw new ArgumentException($"{f} is not a LoRA adapter"));
        var files = loraFolders.Select(f => SafetensorsFile.Open(Path.Combine(f, AdapterFiles.WeightsName))).ToList();
        try
        {
            using var scope = NewDisposeScope();
            using var ng = no_grad();
            bool any = false;
            foreach (var (path, layer) in model.AdapterLayers())
            {
                if (layer is not MixtureOfLoraExpertsLayer moe || !moe.TryGetState(adapterName, out var st) || st.Role != ExpertRole.Linear) continue;
                if (st.Experts != files.Count)
                    throw new ArgumentException($"{path} has {st.Experts} experts but {files.Count} LoRA folders were given");
                var A = moe.LoraA(adapterName)!.weight;
                var B = moe.LoraB(adapterName)!.weight;
                if (st.Options.ShareLoraB) throw new NotSupportedException("LoRAs cannot be imported into experts that share B");
                for (int e = 0; e < files.Count; e++)
                {
                    var keyA = AdapterFiles.KeyPrefix + path + ".lora_A.weight";
                    var keyB = AdapterFiles.KeyPrefix + path + ".lora_B.weight";
                    var Ae = A.narrow(0, st.Offsets[e], st.Ranks[e]);
                    var Be = B.narrow(1, st.Offsets[e], st.Ranks[e]);
                    Ae.zero_();
                    Be.zero_();
                    if (!files[e].Contains(keyA)) continue;
                    var la = files[e].LoadTensor(keyA, A.dtype, A.device);
                    var lb = files[e].LoadTensor(keyB, B.dtype, B.device);
                    int ri = (int)la.size(0);
                    if (ri > st.Ranks[e]) throw new ArgumentException($"{loraFolders[e]}: the LoRA on {path} has rank {ri}, more than the expert's rank {st.Ranks[e]}");
                    if (la.size(1) != A.size(1) || lb.size(0) != B.size(0))
                        throw new ArgumentException($"{loraFolders[e]}: the LoRA on {path} has shapes [{string.Join(", ", la.shape)}] / [{string.Join(", ", lb.shape)}], not this model's");
                    var c = configs[e];
                    var si = LoraOptions.Scaling(c.RankFor(path), c.AlphaFor(path), c.UseRsLora);
                    Ae.narrow(0, 0, ri).copy_(la);
                    Be.narrow(1, 0, ri).copy_(lb * (si / st.Scalings[e]));
                    any = true;
                }
            }
            if (!any) throw new ArgumentException($"none of the LoRAs adapts a module holding per-Linear experts of '{adapterName}'");
        }
        finally
        {
            foreach (var f in files) f.Dispose();
        }
    }

    /// <summary>
    /// AdaMix's training loss: two forward passes in training mode (different random experts), the first pass's task loss
    /// plus c·½(KL(p‖sg(q)) + KL(q‖sg(p))) between their output distributions (sg: stop-gradient), the KL summed over
    /// classes and averaged over the unmasked positions. c = 1 for NLU, 100 for NLG in the AdaMix code.
    /// </summary>
    /// <param name="model">The adapted model (training mode).</param>
    /// <param name="batch">The batch.</param>
    /// <param name="coefficient">c.</param>
    /// <returns>The loss.</returns>
    public static Tensor AdaMixConsistencyLoss(LowRankModel model, Batch batch, double coefficient)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batch);
        var first = model.forward(batch.ToModelInputs());
        var second = model.forward(batch.ToModelInputs());
        var loss = first.Loss ?? throw new TrainingException("the model returned no loss: the batches need labels");
        if (coefficient == 0) return loss;
        var lp = nn.functional.log_softmax(first.Logits!.to_type(ScalarType.Float32), -1);
        var lq = nn.functional.log_softmax(second.Logits!.to_type(ScalarType.Float32), -1);
        var kl1 = (lp.exp() * (lp - lq.detach())).sum(-1);
        var kl2 = (lq.exp() * (lq - lp.detach())).sum(-1);
        var sym = (kl1 + kl2) * 0.5;
        Tensor mean;
        if (batch.AttentionMask is { } m && sym.dim() == 2 && m.shape.SequenceEqual(sym.shape))
        {
            var mf = m.to_type(sym.dtype);
            mean = (sym * mf).sum() / mf.sum().clamp_min(1);
        }
        else mean = sym.mean();
        return loss + mean * coefficient;
    }

    // ------------------------------------------------------------------ parameter accounting

    /// <summary>The trainable parameter count of an adapter on a model configuration (built on the meta device: no
    /// weights, no memory), as <c>lowrank params</c> reports it.</summary>
    /// <param name="config">The model configuration.</param>
    /// <param name="options">The adapter options.</param>
    /// <param name="task">The model task (default: sequence classification for BERT/RoBERTa, causal LM otherwise).</param>
    /// <returns>Trainable parameters.</returns>
    public static long CountTrainableParameters(ModelConfig config, LowRankAdapterOptions options, ModelTask? task = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(options);
        var t = task ?? (config.Family is ModelFamily.Bert or ModelFamily.Roberta ? ModelTask.SequenceClassification : ModelTask.CausalLM);
        using var model = new PretrainedModel(config, t, Device.META);
        using var lm = LowRankModel.Create(model, options);
        return lm.GetNbTrainableParameters().trainable;
    }

    /// <summary>A copy of mixture options with expert rank <paramref name="rank"/> (heterogeneous ranks are scaled in
    /// proportion, at least 1; shared experts with their own rank keep it).</summary>
    /// <param name="options">The options.</param>
    /// <param name="rank">The new rank.</param>
    /// <returns>The copy.</returns>
    public static MixtureOfLoraExpertsOptions WithRank(MixtureOfLoraExpertsOptions options, int rank)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (rank <= 0) throw new ArgumentOutOfRangeException(nameof(rank), rank, "the rank must be positive");
        var c = (MixtureOfLoraExpertsOptions)options.Clone();
        if (c.ExpertRanks is { } ranks)
            c.ExpertRanks = ranks.Select(r => Math.Max(1, (int)Math.Round((double)r * rank / options.R))).ToArray();
        c.R = rank;
        return c;
    }

    /// <summary>The expert rank whose trainable parameter count is closest to a budget (e.g. the count of a plain LoRA to
    /// compare with at matched size). Counts grow with the rank, so this bisects over [1, <paramref name="maxRank"/>].</summary>
    /// <param name="config">The model configuration.</param>
    /// <param name="options">The adapter options (their rank is replaced).</param>
    /// <param name="budget">The target trainable count.</param>
    /// <param name="maxRank">The largest rank tried.</param>
    /// <returns>The rank and its trainable count.</returns>
    public static (int rank, long trainable) MatchRank(ModelConfig config, MixtureOfLoraExpertsOptions options, long budget, int maxRank = 512)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(options);
        if (budget <= 0) throw new ArgumentOutOfRangeException(nameof(budget), budget, "the budget must be positive");
        long Count(int r) => CountTrainableParameters(config, WithRank(options, r));
        int lo = 1, hi = maxRank;
        long clo = Count(lo);
        if (clo >= budget) return (lo, clo);
        long chi = Count(hi);
        if (chi <= budget) return (hi, chi);
        while (hi - lo > 1)
        {
            int mid = (lo + hi) / 2;
            long cm = Count(mid);
            if (cm <= budget) { lo = mid; clo = cm; }
            else { hi = mid; chi = cm; }
        }
        return budget - clo <= chi - budget ? (lo, clo) : (hi, chi);
    }

    /// <summary>Every preset with its expert rank matched to a parameter budget on a model configuration (for comparison
    /// runs at equal size; presets whose count does not depend on the rank, such as PESC, keep their defaults).</summary>
    /// <param name="config">The model configuration.</param>
    /// <param name="budget">The target trainable count (e.g. <see cref="CountTrainableParameters"/> of a LoRA).</param>
    /// <returns>(preset, rank, trainable count, options) per preset, in registry order.</returns>
    public static IReadOnlyList<(MixturePreset preset, int rank, long trainable, MixtureOfLoraExpertsOptions options)> PresetsMatchedTo(ModelConfig config, long budget)
    {
        ArgumentNullException.ThrowIfNull(config);
        var result = new List<(MixturePreset, int, long, MixtureOfLoraExpertsOptions)>();
        foreach (var p in MixtureOfLoraExpertsOptions.Presets)
        {
            var o = p.Create();
            if (o.ExpertPlacement == ExpertPlacement.FeedForward && o.FeedForwardExpert == FeedForwardExpertKind.Adapter)
            {
                result.Add((p, o.R, CountTrainableParameters(config, o), o));
                continue;
            }
            var (r, n) = MatchRank(config, o, budget);
            result.Add((p, r, n, WithRank(o, r)));
        }
        return result;
    }
}
