using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tokenizers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Training.Comparison;

/// <summary>One labelled text of a classification task.</summary>
/// <param name="Text">The text.</param>
/// <param name="Label">The class index, 0 ≤ label &lt; number of classes.</param>
public sealed record LabelledText(string Text, int Label);

/// <summary>Settings of a method comparison run (<c>lowrank compare</c>).</summary>
public sealed class ComparisonOptions
{
    /// <summary>The base model folder (HF layout with a tokenizer). Required.</summary>
    public string ModelFolder { get; set; } = "";

    /// <summary>The methods to compare, by their <see cref="AdapterMethods"/> names. Default: <c>lora</c> only.</summary>
    public IReadOnlyList<string> Methods { get; set; } = new[] { "lora" };

    /// <summary>The LoRA rank that sets the budget: every other method gets the size setting (rank, expert rank, ...)
    /// whose trainable-parameter count is closest to LoRA's at this rank. Default 8.</summary>
    public int ReferenceRank { get; set; } = 8;

    /// <summary>Settings applied to every method (PEFT config key → value text), e.g. <c>target_modules</c>. Keys a
    /// method's config does not have are skipped for that method.</summary>
    public IReadOnlyDictionary<string, string> CommonSettings { get; set; } = new Dictionary<string, string>();

    /// <summary>Per-method settings (method name → key → value), applied after <see cref="CommonSettings"/>.</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, string>> MethodSettings { get; set; } = new Dictionary<string, IReadOnlyDictionary<string, string>>();

    /// <summary>Learning rate for every method without its own entry in <see cref="LearningRates"/>. Default 1e-3.</summary>
    public double LearningRate { get; set; } = 1e-3;

    /// <summary>Per-method learning rates (method name → rate), for methods whose papers train at other rates (VeRA).</summary>
    public IReadOnlyDictionary<string, double> LearningRates { get; set; } = new Dictionary<string, double>();

    /// <summary>Training epochs. Default 2.</summary>
    public int Epochs { get; set; } = 2;

    /// <summary>Maximum optimizer steps (0: no limit). Default 0.</summary>
    public int MaxSteps { get; set; }

    /// <summary>Batch size. Default 16.</summary>
    public int BatchSize { get; set; } = 16;

    /// <summary>Maximum tokens per text (longer texts are truncated). Default 64.</summary>
    public int MaxLength { get; set; } = 64;

    /// <summary>Seed of initialisation and data order (the same for every method). Default 42.</summary>
    public int Seed { get; set; } = 42;

    /// <summary>Number of classes. Default 2.</summary>
    public int NumLabels { get; set; } = 2;
}

/// <summary>One row of the comparison table.</summary>
/// <param name="Method">The method's name.</param>
/// <param name="SizeSetting">The size setting chosen to match the budget, as <c>key=value</c> (empty when none).</param>
/// <param name="TrainableParameters">Trainable parameters, excluding the task head that every method trains alike.</param>
/// <param name="HeadParameters">Trainable parameters of the task head.</param>
/// <param name="BaseParameters">Parameters of the base model (without adapters).</param>
/// <param name="Accuracy">Accuracy on the held-out split.</param>
/// <param name="TrainTime">Wall-clock training time.</param>
/// <param name="PeakMemoryBytes">Peak resident memory of the process during this method's run (the peak is reset before
/// it), or -1 where the platform does not report it.</param>
/// <param name="TokensPerSecond">Training throughput (real tokens per second).</param>
/// <param name="FinalLoss">Mean training loss of the last 10 steps.</param>
/// <param name="Error">Why the method failed, or null.</param>
public sealed record ComparisonRow(string Method, string SizeSetting, long TrainableParameters, long HeadParameters, long BaseParameters,
    double Accuracy, TimeSpan TrainTime, long PeakMemoryBytes, double TokensPerSecond, double FinalLoss, string? Error)
{
    /// <summary>Trainable (adapter) parameters as a percentage of the base model's.</summary>
    public double PercentOfBase => BaseParameters == 0 ? 0 : 100.0 * TrainableParameters / BaseParameters;
}

/// <summary>
/// Fine-tunes one base model on one classification task with several adapter methods at a matched trainable-parameter
/// budget, as the LoRA survey's comparison table does, and reports metric, size, time, memory and throughput per method.
/// </summary>
public static class MethodComparison
{
    /// <summary>The config keys tried, in order, as a method's size setting when matching the budget.</summary>
    public static IReadOnlyList<string> SizeKeys { get; } = new[] { "r", "init_r", "expert_r", "lora_r", "rank" };

    /// <summary>Counts the trainable adapter parameters (the task head excluded) of a method on a config, on the meta device.</summary>
    /// <param name="config">The model config.</param>
    /// <param name="task">The model task.</param>
    /// <param name="options">The method's options.</param>
    /// <returns>(adapter parameters, head parameters, base parameters).</returns>
    public static (long adapter, long head, long total) CountParameters(ModelConfig config, ModelTask task, LowRankAdapterOptions options)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(options);
        using var model = new PretrainedModel(config, task, Device.META);
        long total = 0;
        foreach (var (_, p) in model.named_parameters()) total += p.numel();
        using var peft = LowRankModel.Create(model, options.Clone());
        long adapter = 0, head = 0;
        foreach (var (n, p) in peft.named_parameters())
        {
            if (!p.requires_grad) continue;
            if (IsHead(n)) head += p.numel(); else adapter += p.numel();
        }
        return (adapter, head, total);
    }

    private static bool IsHead(string name)
        => name.Contains(".score.", StringComparison.Ordinal) || name.Contains(".classifier.", StringComparison.Ordinal)
           || name.StartsWith("score.", StringComparison.Ordinal) || name.StartsWith("classifier.", StringComparison.Ordinal);

    /// <summary>
    /// Chooses the value of the method's size setting (the first of <see cref="SizeKeys"/> its config has) whose
    /// adapter-parameter count is closest to <paramref name="budget"/> (the count grows with the setting, so a bisection
    /// over 1..<paramref name="maxValue"/> finds it; ties go to the smaller value).
    /// </summary>
    /// <param name="options">The method's options (not modified).</param>
    /// <param name="config">The model config.</param>
    /// <param name="task">The model task.</param>
    /// <param name="budget">The target count.</param>
    /// <param name="maxValue">The largest value tried. Default 1024.</param>
    /// <returns>The matched options, the key and value chosen (null key when the method has no size setting) and the count.</returns>
    public static (LowRankAdapterOptions options, string? key, int value, long count) MatchBudget(LowRankAdapterOptions options, ModelConfig config,
        ModelTask task, long budget, int maxValue = 1024)
    {
        ArgumentNullException.ThrowIfNull(options);
        var probe = new JsonObject();
        options.WriteJson(probe);
        var key = SizeKeys.FirstOrDefault(k => probe[k] is JsonValue v && v.TryGetValue<int>(out _));
        if (key is null) return (options, null, 0, CountParameters(config, task, options).adapter);
        var cache = new Dictionary<int, (LowRankAdapterOptions o, long c)>();
        (LowRankAdapterOptions o, long c)? Eval(int v)
        {
            if (cache.TryGetValue(v, out var hit)) return hit;
            try
            {
                var o = AdapterMethods.WithSettings(options, new[] { new KeyValuePair<string, string>(key, v.ToString(CultureInfo.InvariantCulture)) });
                var r = (o, CountParameters(config, task, o).adapter);
                cache[v] = r;
                return r;
            }
            catch (ArgumentException) { return null; }
        }
        int lo = 1, hi = maxValue;
        while (hi > lo && Eval(hi) is null) hi = Math.Max(lo, hi / 2);
        while (lo < hi)
        {
            var mid = lo + (hi - lo) / 2;
            var e = Eval(mid);
            if (e is null || e.Value.c < budget) lo = mid + 1; else hi = mid;
        }
        var best = lo;
        if (lo > 1 && Eval(lo - 1) is { } below && Eval(lo) is { } at && Math.Abs(below.c - budget) <= Math.Abs(at.c - budget)) best = lo - 1;
        var chosen = Eval(best) ?? throw new ArgumentException($"no valid value of '{key}' for {options.PeftType}");
        return (chosen.o, key, best, chosen.c);
    }

    /// <summary>Runs the comparison.</summary>
    /// <param name="options">The settings.</param>
    /// <param name="train">Training examples.</param>
    /// <param name="test">Held-out examples.</param>
    /// <param name="log">Receives a line per event (null: silent).</param>
    /// <param name="cancellationToken">Stops between steps.</param>
    /// <returns>One row per method, in the order given.</returns>
    public static IReadOnlyList<ComparisonRow> Run(ComparisonOptions options, IReadOnlyList<LabelledText> train, IReadOnlyList<LabelledText> test,
        Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(test);
        if (train.Count == 0 || test.Count == 0) throw new ArgumentException("the comparison needs training and test examples");
        foreach (var e in train.Concat(test))
            if (e.Label < 0 || e.Label >= options.NumLabels)
                throw new ArgumentException($"label {e.Label} is outside 0..{options.NumLabels - 1} (text: \"{Shorten(e.Text)}\")");
        var config = ModelConfig.FromFile(options.ModelFolder);
        config.NumLabels = options.NumLabels;
        var tokenizer = Tokenizer.FromDirectory(options.ModelFolder);
        var pad = config.PadTokenId ?? config.EosTokenIds.FirstOrDefault();
        var trainSet = Encode(tokenizer, train, options.MaxLength);
        var testSet = Encode(tokenizer, test, options.MaxLength);
        var lora = AdapterMethods.Create("lora");
        lora = Configure(lora, "lora", options);
        lora = AdapterMethods.WithSettings(lora, new Dictionary<string, string> { ["r"] = options.ReferenceRank.ToString(CultureInfo.InvariantCulture), ["lora_alpha"] = (2 * options.ReferenceRank).ToString(CultureInfo.InvariantCulture) });
        var budget = CountParameters(config, ModelTask.SequenceClassification, lora).adapter;
        log?.Invoke($"budget: {budget:N0} trainable adapter parameters (LoRA r={options.ReferenceRank})");
        var rows = new List<ComparisonRow>();
        foreach (var name in options.Methods)
        {
            cancellationToken.ThrowIfCancellationRequested();
            rows.Add(RunOne(name, options, config, budget, trainSet, testSet, pad, log, cancellationToken));
        }
        return rows;
    }

    private static LowRankAdapterOptions Configure(LowRankAdapterOptions o, string name, ComparisonOptions options)
    {
        var probe = new JsonObject();
        o.WriteJson(probe);
        var settings = options.CommonSettings.Where(kv => probe.ContainsKey(kv.Key)).ToList();
        if (options.MethodSettings.TryGetValue(name, out var own)) settings.AddRange(own);
        return settings.Count == 0 ? o : AdapterMethods.WithSettings(o, settings);
    }

    private static ComparisonRow RunOne(string name, ComparisonOptions options, ModelConfig config, long budget,
        List<(long[] ids, int label)> trainSet, List<(long[] ids, int label)> testSet, long pad, Action<string>? log, CancellationToken ct)
    {
        string size = "";
        long adapterCount = 0, headCount = 0, baseCount = 0;
        try
        {
            var method = Configure(AdapterMethods.Create(name), name, options);
            var (matched, key, value, count) = MatchBudget(method, config, ModelTask.SequenceClassification, budget);
            size = key is null ? "" : $"{key}={value}";
            (adapterCount, headCount, baseCount) = CountParameters(config, ModelTask.SequenceClassification, matched);
            log?.Invoke($"{name}: {size} → {adapterCount:N0} adapter parameters");
            // cached CPU blocks of the previous method would stay resident and count in this method's peak
            cpu.empty_cache();
            PeakMemory.Reset();
            manual_seed(options.Seed);
            using var model = PretrainedModel.Load(options.ModelFolder, ModelTask.SequenceClassification, dtype: ScalarType.Float32, numLabels: options.NumLabels);
            using var peft = LowRankModel.Create(model, matched, context: new AdapterCreationContext());
            var lr = options.LearningRates.TryGetValue(name, out var own) ? own : options.LearningRate;
            var trainerOptions = new TrainerOptions
            {
                LearningRate = lr,
                MaxEpochs = options.Epochs,
                MaxSteps = options.MaxSteps,
                BatchSize = options.BatchSize,
                Seed = options.Seed,
                WarmupRatio = 0.06,
                LoggingSteps = 10,
            };
            var source = new DelegateBatchSource(trainSet.Count, idx => MakeBatch(trainSet, idx, pad));
            long tokens = 0;
            using var trainer = new Trainer(peft, b =>
            {
                tokens += b.TokenCount;
                return peft.forward(b.ToModelInputs()).Loss ?? throw new TrainingException("the model returned no loss");
            }, trainerOptions);
            var watch = Stopwatch.StartNew();
            var result = trainer.Train(source, cancellationToken: ct);
            watch.Stop();
            var accuracy = Accuracy(peft, testSet, pad, options.BatchSize);
            var losses = result.StepLosses;
            var final = losses.Count == 0 ? double.NaN : losses.Skip(Math.Max(0, losses.Count - 10)).Average();
            var row = new ComparisonRow(name, size, adapterCount, headCount, baseCount, accuracy, watch.Elapsed, PeakMemory.Read(),
                tokens / Math.Max(1e-9, watch.Elapsed.TotalSeconds), final, null);
            log?.Invoke(string.Create(CultureInfo.InvariantCulture, $"{name}: accuracy {accuracy:F4}, {watch.Elapsed.TotalSeconds:F1} s, {row.TokensPerSecond:F0} tok/s"));
            return row;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            log?.Invoke($"{name}: failed: {e.Message}");
            return new ComparisonRow(name, size, adapterCount, headCount, baseCount, double.NaN, TimeSpan.Zero, -1, 0, double.NaN, e.Message);
        }
    }

    /// <summary>Accuracy of a sequence-classification model on encoded examples (argmax of the logits).</summary>
    /// <param name="model">The model (any module whose forward takes <see cref="ModelInputs"/>).</param>
    /// <param name="examples">Token ids and labels.</param>
    /// <param name="pad">The padding token id.</param>
    /// <param name="batchSize">Rows per forward pass.</param>
    /// <returns>The fraction of correct predictions.</returns>
    public static double Accuracy(LowRankModel model, IReadOnlyList<(long[] ids, int label)> examples, long pad, int batchSize)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(examples);
        var wasTraining = model.training;
        model.eval();
        int correct = 0;
        try
        {
            using var ng = no_grad();
            var all = Enumerable.Range(0, examples.Count).ToArray();
            for (int s = 0; s < all.Length; s += batchSize)
            {
                using var scope = NewDisposeScope();
                var idx = all.AsSpan(s, Math.Min(batchSize, all.Length - s)).ToArray();
                using var batch = MakeBatch(examples, idx, pad);
                var logits = model.forward(new ModelInputs { InputIds = batch.InputIds, AttentionMask = batch.AttentionMask }).Logits;
                var pred = (logits ?? throw new InvalidOperationException("the model returned no logits")).argmax(-1).ToArray<long>();
                for (int i = 0; i < idx.Length; i++) if (pred[i] == examples[idx[i]].label) correct++;
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return (double)correct / examples.Count;
    }

    internal static List<(long[] ids, int label)> Encode(Tokenizer tokenizer, IReadOnlyList<LabelledText> rows, int maxLength)
    {
        var list = new List<(long[] ids, int label)>(rows.Count);
        foreach (var r in rows)
        {
            var ids = tokenizer.EncodeToIds(r.Text);
            var n = Math.Min(ids.Count, maxLength);
            if (n == 0) throw new ArgumentException($"a text encodes to no tokens: \"{Shorten(r.Text)}\"");
            var arr = new long[n];
            for (int i = 0; i < n; i++) arr[i] = ids[i];
            list.Add((arr, r.Label));
        }
        return list;
    }

    internal static Batch MakeBatch(IReadOnlyList<(long[] ids, int label)> rows, IReadOnlyList<int> indices, long pad)
    {
        var len = 0;
        foreach (var i in indices) len = Math.Max(len, rows[i].ids.Length);
        var ids = new long[indices.Count * len];
        var mask = new long[indices.Count * len];
        var labels = new long[indices.Count];
        for (int b = 0; b < indices.Count; b++)
        {
            var (seq, label) = rows[indices[b]];
            for (int t = 0; t < len; t++)
            {
                ids[b * len + t] = t < seq.Length ? seq[t] : pad;
                mask[b * len + t] = t < seq.Length ? 1 : 0;
            }
            labels[b] = label;
        }
        var shape = new long[] { indices.Count, len };
        return new Batch(tensor(ids).reshape(shape), tensor(mask).reshape(shape), tensor(labels));
    }

    private static string Shorten(string s) => s.Length <= 60 ? s : s[..57] + "...";
}

/// <summary>The process's peak resident memory (Linux: VmHWM of /proc/self/status, reset through /proc/self/clear_refs).</summary>
public static class PeakMemory
{
    /// <summary>Resets the peak to the current resident size (no effect where unsupported).</summary>
    public static void Reset()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>The peak resident bytes since the last <see cref="Reset"/>, or -1 where unknown.</summary>
    /// <returns>Bytes.</returns>
    public static long Read()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return -1;
    }
}
