using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.LoraDrop;

/// <summary>What <see cref="LoraDropProcedure.Run"/> produced.</summary>
public sealed class LoraDropResult
{
    /// <summary>The stage-2 model: the base with a fresh LoRA-drop adapter (kept layers own their LoRA, the others
    /// share one per module type), ready to be trained on the full data.</summary>
    public required LowRankModel Model { get; init; }

    /// <summary>The stage-1 importance g_i = Σ‖ΔW_i·x_i‖² of every adapted module (not normalised).</summary>
    public required IReadOnlyDictionary<string, double> Importance { get; init; }

    /// <summary>The modules that keep their own LoRA.</summary>
    public required IReadOnlyList<string> KeptModules { get; init; }

    /// <summary>The training examples stage 1 used.</summary>
    public required IReadOnlyList<int> SampleIndices { get; init; }

    /// <summary>Stage 1's training result.</summary>
    public required TrainingResult Stage1 { get; init; }
}

/// <summary>
/// LoRA-drop's two stages (arXiv 2402.07721): (1) train a LoRA on every targeted layer with a (stratified) sample D_s of
/// the training set; measure each layer's importance g_i = Σ_{x ∈ D_s} ‖ΔW_i·x_i‖² (x_i: the layer's input for each
/// non-padding token, ΔW_i = (α/r)·B_i·A_i, dropout off); (2) within each module type normalise I_i = g_i / Σ_j g_j,
/// keep the smallest set of layers whose importance sums to at least the threshold, and start again from the base model
/// with a LoRA of their own for the kept layers and one shared LoRA for the rest of the type.
/// </summary>
public static class LoraDropProcedure
{
    /// <summary>A stratified sample of ⌈fraction·n⌉ example indices (at least 1): each stratum contributes in proportion
    /// to its size (largest remainders get the leftover places), examples drawn without replacement; null strata: a plain
    /// random sample. Sorted.</summary>
    /// <param name="count">Number of examples n.</param>
    /// <param name="fraction">Sample fraction in (0, 1].</param>
    /// <param name="strata">The stratum (e.g. the label) of each example, or null.</param>
    /// <param name="seed">Random seed.</param>
    /// <returns>The indices.</returns>
    public static int[] StratifiedSample(int count, double fraction, IReadOnlyList<int>? strata = null, int seed = 0)
    {
        if (count <= 0) throw new ArgumentOutOfRangeException(nameof(count), count, "there must be at least one example");
        if (!(fraction > 0 && fraction <= 1)) throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "the sample fraction must be in (0, 1]");
        if (strata is not null && strata.Count != count) throw new ArgumentException($"{strata.Count} strata for {count} examples", nameof(strata));
        int want = Math.Max(1, (int)Math.Ceiling(fraction * count));
        var rng = new Random(seed);
        var groups = Enumerable.Range(0, count).GroupBy(i => strata?[i] ?? 0).OrderBy(g => g.Key).Select(g => g.ToArray()).ToList();
        var quotas = groups.Select(g => (double)want * g.Length / count).ToArray();
        var take = quotas.Select(q => (int)Math.Floor(q)).ToArray();
        int left = want - take.Sum();
        foreach (var i in Enumerable.Range(0, groups.Count).OrderByDescending(i => quotas[i] - take[i]).ThenBy(i => i).Take(left)) take[i]++;
        var result = new List<int>();
        for (int g = 0; g < groups.Count; g++)
        {
            var members = groups[g];
            rng.Shuffle(members);
            result.AddRange(members.Take(Math.Min(take[g], members.Length)));
        }
        result.Sort();
        return result.ToArray();
    }

    /// <summary>
    /// Measures g_i = Σ‖ΔW_i·x_i‖² for every LoRA-drop layer of an adapter over a data set, in evaluation mode under
    /// no_grad: batches in natural order, padding tokens (attention mask 0) excluded.
    /// </summary>
    /// <param name="model">The adapted model (stage 1).</param>
    /// <param name="data">The data (e.g. the stage-1 sample).</param>
    /// <param name="batchSize">Batch size.</param>
    /// <param name="adapterName">The adapter (null: the active one).</param>
    /// <returns>Module name → g_i.</returns>
    public static Dictionary<string, double> MeasureImportance(LowRankModel model, IBatchSource data, int batchSize = 16, string? adapterName = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "must be positive");
        var adapter = adapterName ?? model.ActiveAdapter;
        var layers = model.AdapterLayers().Where(l => l.layer is LoraDropLayer d && d.HasAdapter(adapter)).Select(l => (l.name, layer: (LoraDropLayer)l.layer)).ToList();
        if (layers.Count == 0) throw new ArgumentException($"the model has no LoRA-drop layer holding adapter '{adapter}'", nameof(model));
        if (!model.ActiveAdapters.Contains(adapter)) throw new ArgumentException($"adapter '{adapter}' is not active", nameof(adapterName));
        var device = layers[0].layer.BaseWeight.device;
        bool wasTraining = model.training;
        model.eval();
        try
        {
            foreach (var (_, l) in layers) l.BeginImportance(adapter);
            foreach (var batch in DataOrder.Batches(data, batchSize))
            {
                using var scope = NewDisposeScope();
                using var ng = no_grad();
                var b = batch.To(device);
                var weights = b.AttentionMask;
                foreach (var (_, l) in layers) l.ImportanceRowWeights = weights;
                var inputs = b.ToModelInputs();
                model.forward(new ModelInputs { InputIds = inputs.InputIds, AttentionMask = inputs.AttentionMask, TokenTypeIds = inputs.TokenTypeIds });
                batch.Dispose();
            }
            return layers.ToDictionary(l => l.name, l => l.layer.Importance(adapter), StringComparer.Ordinal);
        }
        finally
        {
            foreach (var (_, l) in layers)
            {
                l.ImportanceRowWeights = null;
                l.EndImportance(adapter);
            }
            model.train(wasTraining);
        }
    }

    /// <summary>
    /// LoRA-drop's selection, per module type (<see cref="LoraDropOptions.ModuleType"/>): I_i = g_i / Σ_j g_j, layers
    /// sorted by I descending (ties: module name), the shortest prefix whose cumulative I reaches the threshold is kept
    /// (comparison with a 1e-12 slack for rounding). A type whose importances are all zero keeps its first layer.
    /// </summary>
    /// <param name="importance">Module name → g_i.</param>
    /// <param name="threshold">T in (0, 1].</param>
    /// <returns>The kept module names, in name order.</returns>
    public static List<string> SelectKeptModules(IReadOnlyDictionary<string, double> importance, double threshold)
    {
        ArgumentNullException.ThrowIfNull(importance);
        if (!(threshold > 0 && threshold <= 1)) throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "must be in (0, 1]");
        var kept = new List<string>();
        foreach (var type in importance.GroupBy(kv => LoraDropOptions.ModuleType(kv.Key)))
        {
            var items = type.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal).ToList();
            if (items.Any(kv => !(kv.Value >= 0) || double.IsInfinity(kv.Value)))
                throw new ArgumentException($"importances must be finite and non-negative ({type.Key})", nameof(importance));
            double total = items.Sum(kv => kv.Value);
            if (total == 0) { kept.Add(items[0].Key); continue; }
            double cum = 0;
            foreach (var (name, g) in items)
            {
                kept.Add(name);
                cum += g / total;
                if (cum >= threshold - 1e-12) break;
            }
        }
        kept.Sort(StringComparer.Ordinal);
        return kept;
    }

    /// <summary>
    /// Runs stage 1 and prepares stage 2: samples ⌈α·n⌉ training examples (stratified by <paramref name="strata"/>),
    /// injects a LoRA-drop adapter in which every targeted layer owns its LoRA, trains it on the sample, measures the
    /// importance on the sample, selects the kept layers, removes the stage-1 adapter (the base weights are untouched) and
    /// injects the stage-2 adapter with <see cref="LoraDropOptions.KeptModules"/> set.
    /// </summary>
    /// <param name="model">The base model (owned by the returned model afterwards).</param>
    /// <param name="options">The method's options (<see cref="LoraDropOptions.KeptModules"/> is ignored).</param>
    /// <param name="train">The full training data.</param>
    /// <param name="stage1">Trainer options for stage 1 (e.g. a few steps).</param>
    /// <param name="loss">The loss of a batch given the adapted model (null: the model's own loss from the labels).</param>
    /// <param name="strata">Stratum of each training example (e.g. its label), or null.</param>
    /// <param name="adapterName">The adapter's name.</param>
    /// <returns>The stage-2 model and what stage 1 found.</returns>
    public static LoraDropResult Run(PretrainedModel model, LoraDropOptions options, IBatchSource train, TrainerOptions stage1,
        Func<LowRankModel, Func<Batch, Tensor>>? loss = null, IReadOnlyList<int>? strata = null, string adapterName = "default")
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(stage1);
        var first = (LoraDropOptions)options.Clone();
        first.KeptModules = null;
        first.Validate();
        var sample = StratifiedSample(train.Count, first.SampleRatio, strata, stage1.Seed);
        var subset = new DelegateBatchSource(sample.Length, idx => train.GetBatch(idx.Select(i => sample[i]).ToArray()));
        Dictionary<string, double> importance;
        TrainingResult result;
        var lm = LowRankModel.Create(model, first, adapterName);
        try
        {
            var lossFn = loss?.Invoke(lm) ?? (b => lm.forward(b.ToModelInputs()).Loss
                ?? throw new TrainingException("the model returned no loss: the batches need labels"));
            using (var trainer = new Trainer(lm, lossFn, stage1)) result = trainer.Train(subset);
            importance = MeasureImportance(lm, subset, stage1.BatchSize, adapterName);
        }
        catch
        {
            lm.Unload();
            throw;
        }
        var kept = SelectKeptModules(importance, first.Threshold);
        var plain = lm.Unload();
        var second = (LoraDropOptions)options.Clone();
        second.KeptModules = kept;
        return new LoraDropResult
        {
            Model = LowRankModel.Create(plain, second, adapterName),
            Importance = importance,
            KeptModules = kept,
            SampleIndices = sample,
            Stage1 = result,
        };
    }
}
