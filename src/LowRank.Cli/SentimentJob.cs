using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Pipeline;
using Microsoft.ML.LowRank.Tokenizers;
using Spectre.Console;

namespace Microsoft.ML.LowRank.Cli;

/// <summary>
/// <c>lowrank sentiment</c>, the main job of <c>./run.sh</c>: fetch the UCI sentiment sentences, fine-tune a base model
/// (default: the embedded <see cref="DefaultModel"/>) with an adapter method (default LoRA) through the estimator API,
/// evaluate on the held-out split, and print the accuracy beside the data set's lexicon baseline and the base model
/// without adaptation (zero-shot prompt scoring, and a linear probe on the frozen features); save the model zip and check
/// that the reloaded zip predicts the same.
/// </summary>
internal static class SentimentJob
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public const string Usage =
        "  sentiment [--model <folder>] [--method M --rank R --alpha A --targets T --set k=v] [--epochs N] [--max-steps N] [--lr X]\n" +
        "            [--batch-size N] [--max-length N] [--seed N] [--output <model.zip>] [--progress auto|live|plain] [--json]\n" +
        "                           the main job: fine-tune on the UCI sentiment sentences (fetched from npm) and compare\n" +
        "                           with the AFINN lexicon baseline and the base model without adaptation (default model:\n" +
        "                           the embedded lowrank-tiny-llama-en; default method: LoRA r=8 on every block linear)";

    /// <summary>One labelled sentence as the estimator reads it.</summary>
    public sealed class Row
    {
        /// <summary>The sentence.</summary>
        public string Text { get; set; } = "";

        /// <summary>"positive" or "negative".</summary>
        public string Sentiment { get; set; } = "";

        /// <summary>amazon, imdb or yelp.</summary>
        public string Source { get; set; } = "";
    }

    /// <summary>A prediction row.</summary>
    public sealed class Prediction
    {
        /// <summary>The sentence.</summary>
        public string Text { get; set; } = "";

        /// <summary>The gold label.</summary>
        public string Sentiment { get; set; } = "";

        /// <summary>The source.</summary>
        public string Source { get; set; } = "";

        /// <summary>The predicted label.</summary>
        public string PredictedSentiment { get; set; } = "";

        /// <summary>Class probabilities.</summary>
        public float[] Score { get; set; } = [];
    }

    private static string? Option(string[] args, string name) => Program.Option(args, name);

    public static int Run(string[] args)
    {
        var clock = Stopwatch.StartNew();
        bool json = args.Contains("--json");
        int seed = int.Parse(Option(args, "--seed") ?? "42", Inv);
        var progressMode = Option(args, "--progress") ?? "auto";
        if (progressMode is not ("auto" or "live" or "plain"))
            throw new ArgumentException($"--progress must be auto, live or plain, not '{progressMode}'");
        var console = AnsiConsole.Create(progressMode == "live"
            ? new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out), Ansi = AnsiSupport.Yes, Interactive = InteractionSupport.Yes }
            : new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
        if (!console.Profile.Capabilities.Interactive) console.Profile.Width = Math.Max(console.Profile.Width, 132);
        void Say(string line) { if (!json) Console.WriteLine(line); }

        string folder = Option(args, "--model") ?? DefaultModel.EnsureCached();
        string modelName = Option(args, "--model") is null ? $"{DefaultModel.Name} (embedded)" : folder;
        Say($"base model: {modelName}");
        Say($"data: UCI Sentiment Labelled Sentences (amazon, imdb, yelp; npm sentiment@5.0.2, cached under {LowRankCache.Root})");
        var split = SentimentTask.Load(seed: SentimentTask.DefaultSeed);
        Say($"split: {split.Train.Count} train / {split.Test.Count} test sentences (stratified by source and label, seed {SentimentTask.DefaultSeed})");

        var results = new List<(string Name, SentimentAccuracy Accuracy, string Note)>();
        results.Add(("lexicon baseline (AFINN, score >= 0)", SentimentTask.EvaluateLexicon(split.Test), "the data set's published rule"));
        results.Add(("lexicon, score > 0 (stricter rule)", SentimentTask.EvaluateLexicon(split.Test, zeroIsPositive: false), "no training"));

        var tokenizer = Tokenizer.FromDirectory(folder);
        PretrainedModel? lm = null;
        try { lm = PretrainedModel.Load(folder, ModelTask.CausalLM, dtype: Torch.ScalarType.Float32); }
        catch (Exception e) when (e is NotSupportedException or ArgumentException or InvalidDataException)
        {
            Say($"zero-shot skipped: {folder} has no causal-LM head ({e.Message})");
        }
        if (lm is not null)
        {
            using (lm)
            {
                var zeroShot = SentimentTask.EvaluateZeroShot(lm, tokenizer, split.Test);
                results.Add(("base model, zero-shot (no adaptation)", zeroShot.Accuracy, "\"{text} In short, it was\" + ' good' vs ' poor'"));
            }
        }
        using (var frozen = PretrainedModel.Load(folder, dtype: Torch.ScalarType.Float32))
        {
            var probe = SentimentTask.EvaluateLinearProbe(frozen, tokenizer, split.Train, split.Test);
            results.Add(("base model frozen + linear probe", probe.Test, "logistic head on mean-pooled states"));
        }

        var ctx = new LowRankContext(seed);
        IDataView Data(IReadOnlyList<SentimentSentence> s) => ctx.Data.LoadFromEnumerable(s.Select(x => new Row
        {
            Text = x.Text, Sentiment = x.Label ? "positive" : "negative", Source = x.Source,
        }).ToList());
        var train = Data(split.Train);
        var test = Data(split.Test);

        var method = Option(args, "--method") is null && Option(args, "--targets") is null
            ? Program.MethodFromArgs([.. args, "--targets", "all-linear"])
            : Program.MethodFromArgs(args);
        var options = new TextClassificationTrainer.Options
        {
            ModelFolder = folder,
            Sentence1ColumnName = nameof(Row.Text),
            Method = method,
            MaxEpochs = int.Parse(Option(args, "--epochs") ?? "3", Inv),
            MaxSteps = int.Parse(Option(args, "--max-steps") ?? "0", Inv),
            BatchSize = int.Parse(Option(args, "--batch-size") ?? "16", Inv),
            LearningRate = double.Parse(Option(args, "--lr") ?? "2e-3", Inv),
            MaxSequenceLength = int.Parse(Option(args, "--max-length") ?? "64", Inv),
            Seed = seed,
        };
        var pipeline = ctx.Transforms.Conversion.MapValueToKey("Label", nameof(Row.Sentiment))
            .Append(ctx.MulticlassClassification.Trainers.TextClassification(options))
            .Append(ctx.Transforms.Conversion.MapKeyToValue(nameof(Prediction.PredictedSentiment), "PredictedLabel"));

        bool liveBar = progressMode == "live" || (progressMode == "auto" && console.Profile.Capabilities.Interactive);
        var view = new ProgressView(console, live: !json && liveBar, quiet: json);
        Say($"fine-tuning with {method.PeftType} ({AdapterName(args)}): {options.MaxEpochs} epochs, batch {options.BatchSize}, lr {options.LearningRate.ToString(Inv)}, max length {options.MaxSequenceLength}");
        var fitClock = Stopwatch.StartNew();
        var output = Option(args, "--output") ?? Path.Combine("artifacts", $"sentiment-{AdapterName(args)}.zip");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
        bool identical;
        long trainable, total;
        SentimentAccuracy tuned;
        MulticlassClassificationMetrics metrics;
        double fitSeconds;
        using (var model = view.Run(ctx, () => pipeline.Fit(train)))
        {
            fitSeconds = fitClock.Elapsed.TotalSeconds;
            var scored = model.Transform(test);
            metrics = ctx.MulticlassClassification.Evaluate(scored);
            var predictions = ctx.Data.CreateEnumerable<Prediction>(scored, reuseRowObject: false).ToList();
            tuned = SentimentAccuracy.From(split.Test, predictions.Select(p => p.PredictedSentiment == "positive").ToList());
            var core = model.OfType<LowRankTransformerBase>().First();
            (trainable, total) = core.ParameterCounts;
            ctx.Model.Save(model, train.Schema, output);

            // The zip holds the adapter (PEFT format), the head, the pipeline and the base weights' hash.
            var loaded = ctx.Model.Load(output, out _);
            try
            {
                var again = ctx.Data.CreateEnumerable<Prediction>(loaded.Transform(test), reuseRowObject: false).ToList();
                identical = again.Count == predictions.Count
                    && again.Zip(predictions).All(p => p.First.PredictedSentiment == p.Second.PredictedSentiment && p.First.Score.SequenceEqual(p.Second.Score));
            }
            finally
            {
                (loaded as IDisposable)?.Dispose();
            }
        }
        results.Add(($"fine-tuned: {AdapterName(args)} (estimator API)", tuned,
            string.Create(Inv, $"{trainable:N0} trainable of {total:N0} ({100.0 * trainable / total:F2} %), {fitSeconds:F0} s")));

        if (json)
        {
            var arr = new JsonArray();
            foreach (var (name, acc, note) in results)
            {
                var bySource = new JsonObject();
                foreach (var (s, a) in acc.BySource) bySource[s] = a;
                arr.Add(new JsonObject { ["name"] = name, ["accuracy"] = acc.Overall, ["by_source"] = bySource, ["note"] = note });
            }
            Console.WriteLine(new JsonObject
            {
                ["model"] = modelName, ["results"] = arr, ["log_loss"] = metrics.LogLoss, ["model_zip"] = output,
                ["reloaded_predictions_identical"] = identical, ["wall_seconds"] = clock.Elapsed.TotalSeconds,
            }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        else
        {
            var table = new Table().Title("[bold]UCI sentiment, held-out test split[/]")
                .AddColumn("").AddColumn(new TableColumn("accuracy").RightAligned());
            foreach (var s in UciSentiment.Sources) table.AddColumn(new TableColumn(s).RightAligned());
            table.AddColumn("");
            foreach (var (name, acc, note) in results)
            {
                var cells = new List<string> { Markup.Escape(name), acc.Overall.ToString("F3", Inv) };
                cells.AddRange(UciSentiment.Sources.Select(s => acc.BySource.TryGetValue(s, out var v) ? v.ToString("F3", Inv) : "-"));
                cells.Add(Markup.Escape(note));
                table.AddRow(cells.ToArray());
            }
            console.Write(table);
            Console.WriteLine(string.Create(Inv,
                $"fine-tuned: macro accuracy {metrics.MacroAccuracy:F3}, log-loss {metrics.LogLoss:F3}; model saved to {output}; reloaded zip predicts identically: {(identical ? "yes" : "NO")}"));
            Console.WriteLine(string.Create(Inv, $"wall time {clock.Elapsed.TotalSeconds:F0} s on {Environment.ProcessorCount} cores"));
        }
        return identical ? 0 : 5;
    }

    private static string AdapterName(string[] args) => Option(args, "--method") ?? "lora";
}
