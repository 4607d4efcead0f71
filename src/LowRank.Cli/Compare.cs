using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Training.Comparison;

namespace Microsoft.ML.LowRank.Cli;

public static partial class Program
{
    /// <summary><c>lowrank compare</c>: every method at a matched trainable-parameter budget on one classification task.</summary>
    private static int Compare(string[] args)
    {
        var inv = CultureInfo.InvariantCulture;
        var (model, data, source, fixedSplit) = CompareDefaults(args);
        var methods = Option(args, "--methods") switch
        {
            null => DefaultComparisonMethods(),
            "all" => AllComparisonMethods(),
            var m => m.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
        };
        var seed = int.Parse(Option(args, "--seed") ?? "42", inv);
        var testFraction = double.Parse(Option(args, "--test-fraction") ?? "0.2", inv);
        var (train, test) = fixedSplit ?? SplitRows(data, testFraction, seed);
        // --train-size N: a seeded subset of the training rows (default: all).
        var trainSizeText = Option(args, "--train-size");
        if (trainSizeText is not null)
        {
            var n = int.Parse(trainSizeText, inv);
            if (n < 1) throw new ArgumentException($"--train-size must be positive, got {n}");
            if (n < train.Count) train = Training.DataOrder.Permutation(train.Count, seed, 1).Take(n).Select(i => train[i]).ToList();
        }
        // The adapted modules: every block linear by default for the LoRA-family methods (and the LoRA reference that
        // sets the budget); the mixture presets keep their own placement (attention and/or FFN experts, per paper).
        var targets = Option(args, "--targets") ?? "all-linear";
        var methodSettings = new Dictionary<string, IReadOnlyDictionary<string, string>>();
        if (targets != "default")
        {
            var selector = targets == "all-linear" ? Adapters.ModuleSelector.AllLinear
                : Adapters.ModuleSelector.FromNames(targets.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            var json0 = selector.ToJson()?.ToJsonString() ?? "null";
            foreach (var name in methods.Append("lora").Distinct())
            {
                var probe = new JsonObject();
                var o = AdapterMethods.Create(name);
                o.WriteJson(probe);
                if (o.PeftType != "MOLORA" && probe.ContainsKey("target_modules"))
                    methodSettings[name] = new Dictionary<string, string> { ["target_modules"] = json0 };
            }
        }
        var options = new ComparisonOptions
        {
            ModelFolder = model,
            Methods = methods,
            ReferenceRank = int.Parse(Option(args, "--rank") ?? "8", inv),
            Epochs = int.Parse(Option(args, "--epochs") ?? (fixedSplit is null ? "2" : "1"), inv),
            MaxSteps = int.Parse(Option(args, "--max-steps") ?? "0", inv),
            LearningRate = double.Parse(Option(args, "--lr") ?? (fixedSplit is null ? "1e-3" : "3e-3"), inv),
            BatchSize = int.Parse(Option(args, "--batch-size") ?? "16", inv),
            MaxLength = int.Parse(Option(args, "--max-length") ?? (fixedSplit is null ? "64" : "48"), inv),
            Seed = seed,
            NumLabels = data.Max(r => r.Label) + 1,
            MethodSettings = methodSettings,
        };
        // VeRA trains only scaling vectors (its paper uses a ~10x larger lr); LoRA-Pro's step is a full fine-tuning Adam
        // step of W mapped onto the factors, so it takes a full fine-tuning learning rate (a tenth of LoRA's here).
        options.LearningRates = new Dictionary<string, double> { ["vera"] = 1e-2, ["lorapro"] = options.LearningRate / 10 };
        // Settings given in steps are scaled to this run's length where a paper default would exceed it: Delta-LoRA's
        // start step (500 in the paper's runs) becomes a tenth of the run, else Delta-LoRA would be plain LoRA here.
        if (methods.Contains("deltalora"))
        {
            int runSteps = options.MaxSteps > 0 ? options.MaxSteps : options.Epochs * (int)Math.Ceiling(train.Count / (double)options.BatchSize);
            var own = methodSettings.TryGetValue("deltalora", out var d) ? new Dictionary<string, string>(d) : new Dictionary<string, string>();
            own["delta_lora_start_step"] = Math.Max(0, runSteps / 10).ToString(inv);
            methodSettings["deltalora"] = own;
        }
        var json = args.Contains("--json");
        var rows = MethodComparison.Run(options, train, test, json ? null : Console.WriteLine);
        var output = Option(args, "--output") ?? "compare-output";
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "compare.csv"), ComparisonReport.ToCsv(rows));
        var notes = new[]
        {
            $"base model: {model}; data: {source} ({train.Count} train / {test.Count} test rows); seed {seed}",
            $"budget: LoRA r={options.ReferenceRank} on {(targets == "default" ? "the default target modules" : targets)} (mixture presets keep their own placement); every method's size setting chosen to match its trainable-parameter count",
            $"epochs {options.Epochs}, batch {options.BatchSize}, lr {options.LearningRate} (VeRA 1e-2, LoRA-Pro a tenth), max length {options.MaxLength}; {Environment.ProcessorCount} CPU cores",
        };
        File.WriteAllText(Path.Combine(output, "compare.html"), ComparisonReport.ToHtml(rows, "LoRA-family comparison", notes));
        if (json)
        {
            var arr = new JsonArray();
            foreach (var r in rows)
                arr.Add(new JsonObject
                {
                    ["method"] = r.Method, ["size"] = r.SizeSetting, ["trainable"] = r.TrainableParameters, ["percent_of_base"] = r.PercentOfBase,
                    ["accuracy"] = double.IsNaN(r.Accuracy) ? null : r.Accuracy, ["train_seconds"] = r.TrainTime.TotalSeconds,
                    ["peak_memory_bytes"] = r.PeakMemoryBytes, ["tokens_per_second"] = r.TokensPerSecond, ["error"] = r.Error,
                });
            Console.WriteLine(arr.ToJsonString());
        }
        else
        {
            Console.WriteLine();
            Console.Write(ComparisonReport.ToTable(rows));
            Console.WriteLine($"written: {Path.Combine(output, "compare.csv")}, {Path.Combine(output, "compare.html")}");
        }
        return rows.All(r => r.Error is null) ? 0 : 4;
    }

    /// <summary><c>--methods all</c>: every registered method except aliases of LoRA (rsLoRA is LoRA with another scale).</summary>
    private static string[] AllComparisonMethods()
        => AdapterMethods.Methods.Select(m => m.Name).Where(n => n != "rslora").ToArray();

    /// <summary>The survey's table, which <c>compare</c> runs by default: LoRA and every LoRA-family method, plus the
    /// mixture presets the survey compares (MixLoRA, LoRAMoE, MoLA). <c>--methods all</c> adds the other mixture presets.</summary>
    private static string[] DefaultComparisonMethods()
        => AllComparisonMethods().Where(n => AdapterMethods.Create(n).PeftType != "MOLORA" || n is "mixlora" or "loramoe" or "mola")
            .OrderBy(n => n == "lora" ? 0 : 1).ToArray();

    /// <summary>The model folder (default: the embedded default model) and the data (default: the UCI sentiment sentences
    /// with <see cref="Data.SentimentTask"/>'s stratified split, label 1 = positive).</summary>
    private static (string model, List<LabelledText> rows, string source, (List<LabelledText>, List<LabelledText>)? split) CompareDefaults(string[] args)
    {
        var model = Option(args, "--model") ?? Models.DefaultModel.EnsureCached();
        if (Option(args, "--data") is { } data) return (model, ReadLabelledRows(data), data, null);
        var s = Data.SentimentTask.Load();
        List<LabelledText> Rows(IReadOnlyList<Data.SentimentSentence> x) => x.Select(r => new LabelledText(r.Text, r.Label ? 1 : 0)).ToList();
        var (train, test) = (Rows(s.Train), Rows(s.Test));
        return (model, [.. train, .. test], "UCI sentiment (amazon, imdb, yelp; SentimentTask split)", (train, test));
    }

    /// <summary>Reads labelled rows: JSONL objects with "text" and "label" (or "class"), or TSV text&lt;TAB&gt;label.</summary>
    internal static List<LabelledText> ReadLabelledRows(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"data file not found: {path}", path);
        var rows = new List<LabelledText>();
        int line = 0;
        foreach (var raw in File.ReadLines(path))
        {
            line++;
            if (raw.Trim().Length == 0) continue;
            if (path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || raw.TrimStart().StartsWith('{'))
            {
                var o = JsonNode.Parse(raw) as JsonObject ?? throw new InvalidDataException($"{path}:{line}: not a JSON object");
                var text = (string?)o["text"] ?? throw new InvalidDataException($"{path}:{line}: no \"text\"");
                var label = (o["label"] ?? o["class"]) ?? throw new InvalidDataException($"{path}:{line}: no \"label\"");
                rows.Add(new LabelledText(text, label.GetValue<int>()));
            }
            else
            {
                var tab = raw.LastIndexOf('\t');
                if (tab < 0 || !int.TryParse(raw[(tab + 1)..], NumberStyles.Integer, CultureInfo.InvariantCulture, out var label))
                    throw new InvalidDataException($"{path}:{line}: expected text<TAB>integer label");
                rows.Add(new LabelledText(raw[..tab], label));
            }
        }
        if (rows.Count < 2) throw new InvalidDataException($"{path}: needs at least 2 rows, found {rows.Count}");
        return rows;
    }

    /// <summary>A seeded shuffle, then the last <paramref name="testFraction"/> of rows as the test split.</summary>
    internal static (List<LabelledText> train, List<LabelledText> test) SplitRows(IReadOnlyList<LabelledText> rows, double testFraction, int seed)
    {
        if (testFraction <= 0 || testFraction >= 1) throw new ArgumentException($"--test-fraction must be in (0, 1), got {testFraction}");
        var order = Training.DataOrder.Permutation(rows.Count, seed, 0);
        var nTest = Math.Max(1, (int)Math.Round(rows.Count * testFraction));
        var test = order.Skip(rows.Count - nTest).Select(i => rows[i]).ToList();
        var train = order.Take(rows.Count - nTest).Select(i => rows[i]).ToList();
        return (train, test);
    }
}
