using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Pipeline;
using Microsoft.ML.LowRank.Training;
using Spectre.Console;

namespace Microsoft.ML.LowRank.Cli;

/// <summary>
/// <c>lowrank train &lt;task&gt; &lt;model-folder&gt; --data FILE --output MODEL.zip</c>: fits one of the ML.NET-style task
/// pipelines on a TSV/CSV (with a header) or JSONL file, with a live progress bar (Spectre.Console) and a summary table
/// at the end; the model zip loads with <c>ctx.Model.Load</c>.
/// </summary>
internal static class TrainCommand
{
    internal const string Usage =
        "  train <task> <model-folder> --data <file.tsv|.csv|.jsonl> --output <model.zip> [--test <file> | --test-fraction F]\n" +
        "           [--text-column Text --text2-column Text2 --label-column Label --prompt-column Prompt --response-column Response]\n" +
        "           [--method M --rank R --alpha A --targets T --set k=v] [--epochs N --max-steps N --batch-size N --lr X --max-length N --seed N]\n" +
        "           [--progress auto|live|plain] [--pack (causal-lm: pack each batch's examples into --max-length rows)]\n" +
        "           tasks: text-classification, sentence-similarity, ner, causal-lm; NER tags: a JSON array or space-separated";

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static int Run(string[] args)
    {
        try
        {
            return RunCore(args);
        }
        catch (NotSupportedException e)
        {
            Console.Error.WriteLine($"lowrank: {e.Message}");
            return 1;
        }
    }

    private static string? Option(string[] args, string name) => Program.Option(args, name);

    private static int RunCore(string[] args)
    {
        var positional = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i].StartsWith("--", StringComparison.Ordinal))
            {
                if (args[i] is not ("--json" or "--no-progress" or "--rslora" or "--pack")) i++;
                continue;
            }
            positional.Add(args[i]);
        }
        if (positional.Count < 2) throw new ArgumentException("train needs <task> <model-folder> (tasks: text-classification, sentence-similarity, ner, causal-lm)");
        string task = positional[0], folder = positional[1];
        var dataPath = Option(args, "--data") ?? throw new ArgumentException("train needs --data <file.tsv|.csv|.jsonl>");
        var output = Option(args, "--output") ?? throw new ArgumentException("train needs --output <model.zip>");
        bool json = args.Contains("--json");
        int seed = int.Parse(Option(args, "--seed") ?? "42", Inv);
        var ctx = new LowRankContext(seed);
        var progressMode = Option(args, "--progress") ?? (args.Contains("--no-progress") ? "plain" : "auto");
        if (progressMode is not ("auto" or "live" or "plain"))
            throw new ArgumentException($"--progress must be auto, live or plain, not '{progressMode}'");
        var console = AnsiConsole.Create(progressMode == "live"
            ? new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out), Ansi = AnsiSupport.Yes, Interactive = InteractionSupport.Yes }
            : new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });

        var rows = TableReader.Read(dataPath);
        var testRows = Option(args, "--test") is { } testPath ? TableReader.Read(testPath) : null;
        IDataView train = TaskData.Load(ctx, task, rows, args, dataPath);
        IDataView? test = testRows is null ? null : TaskData.Load(ctx, task, testRows, args, Option(args, "--test")!);
        if (test is null && Option(args, "--test-fraction") is { } tf)
        {
            var split = ctx.Data.TrainTestSplit(train, double.Parse(tf, Inv), seed: seed);
            (train, test) = (split.TrainSet, split.TestSet);
        }

        var method = Program.MethodFromArgs(args);
        void Common(LowRankTrainerOptions o)
        {
            o.ModelFolder = folder;
            o.Method = method;
            o.MaxEpochs = int.Parse(Option(args, "--epochs") ?? "3", Inv);
            o.MaxSteps = int.Parse(Option(args, "--max-steps") ?? "0", Inv);
            o.BatchSize = int.Parse(Option(args, "--batch-size") ?? "16", Inv);
            o.LearningRate = double.Parse(Option(args, "--lr") ?? "2e-4", Inv);
            o.MaxSequenceLength = int.Parse(Option(args, "--max-length") ?? "512", Inv);
            o.Seed = seed;
        }

        ITransformer? model = null;
        var summary = new List<(string Name, string Value)>();
        var clock = Stopwatch.StartNew();
        bool liveBar = progressMode == "live" || (progressMode == "auto" && console.Profile.Capabilities.Interactive);
        var live = new ProgressView(console, live: !json && liveBar, quiet: json);
        try
        {
            switch (task)
            {
                case "text-classification":
                {
                    var o = new TextClassificationTrainer.Options { Sentence1ColumnName = "Text", Sentence2ColumnName = TaskData.HasText2(args) ? "Text2" : null };
                    Common(o);
                    var pipeline = ctx.Transforms.Conversion.MapValueToKey("Label", "LabelText")
                        .Append(ctx.MulticlassClassification.Trainers.TextClassification(o))
                        .Append(ctx.Transforms.Conversion.MapKeyToValue("PredictedLabelText", "PredictedLabel"));
                    var fitted = live.Run(ctx, () => pipeline.Fit(train));
                    model = fitted;
                    Describe(summary, fitted.OfType<LowRankTransformerBase>().FirstOrDefault());
                    if (test is not null)
                    {
                        var m = ctx.MulticlassClassification.Evaluate(fitted.Transform(test));
                        summary.Add(("test accuracy (micro / macro)", string.Create(Inv, $"{m.MicroAccuracy:F4} / {m.MacroAccuracy:F4}")));
                        summary.Add(("test log-loss", m.LogLoss.ToString("F4", Inv)));
                    }
                    break;
                }
                case "sentence-similarity":
                {
                    var o = new SentenceSimilarityTrainer.Options { Sentence1ColumnName = "Text", Sentence2ColumnName = TaskData.HasText2(args) ? "Text2" : null };
                    Common(o);
                    var fitted = live.Run(ctx, () => ctx.Regression.Trainers.SentenceSimilarity(o).Fit(train));
                    model = fitted;
                    Describe(summary, fitted);
                    if (test is not null)
                    {
                        var m = ctx.Regression.Evaluate(fitted.Transform(test));
                        summary.Add(("test R² / RMSE", string.Create(Inv, $"{m.RSquared:F4} / {m.RootMeanSquaredError:F4}")));
                        summary.Add(("test Pearson / Spearman", string.Create(Inv, $"{m.PearsonCorrelation:F4} / {m.SpearmanCorrelation:F4}")));
                    }
                    break;
                }
                case "ner":
                {
                    var o = new NamedEntityRecognitionTrainer.Options { SentenceColumnName = "Text" };
                    Common(o);
                    var pipeline = ctx.Transforms.Conversion.MapValueToKey("Label", "Tags")
                        .Append(ctx.MulticlassClassification.Trainers.NamedEntityRecognition(o));
                    var fitted = live.Run(ctx, () => pipeline.Fit(train));
                    model = fitted;
                    Describe(summary, fitted.LastTransformer);
                    if (test is not null)
                    {
                        var m = ctx.MulticlassClassification.EvaluateNamedEntityRecognition(fitted.Transform(test));
                        summary.Add(("test entity F1 (P / R)", string.Create(Inv, $"{m.F1Score:F4} ({m.Precision:F4} / {m.Recall:F4})")));
                    }
                    break;
                }
                case "causal-lm":
                {
                    var o = new CausalLMTrainer.Options { PackSequences = args.Contains("--pack") };
                    Common(o);
                    var fitted = live.Run(ctx, () => ctx.TextGeneration.Trainers.CausalLM(o).Fit(train));
                    model = fitted;
                    Describe(summary, fitted);
                    if (test is not null)
                    {
                        var m = ctx.TextGeneration.Evaluate(fitted.Transform(test));
                        summary.Add(("test log-loss / perplexity", string.Create(Inv, $"{m.LogLoss:F4} / {m.Perplexity:F3}")));
                    }
                    break;
                }
                default:
                    throw new ArgumentException($"unknown task '{task}' (tasks: text-classification, sentence-similarity, ner, causal-lm)");
            }
            ctx.Model.Save(model, train.Schema, output);
            summary.Add(("model", output));
            summary.Add(("wall time", string.Create(Inv, $"{clock.Elapsed.TotalSeconds:F1} s")));
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }

        if (json)
        {
            var o = new JsonObject();
            foreach (var (name, value) in summary) o[name] = value;
            Console.WriteLine(o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        else
        {
            var table = new Table().Title($"[bold]lowrank train {Markup.Escape(task)}[/]").AddColumn("").AddColumn("");
            table.HideHeaders();
            foreach (var (name, value) in summary) table.AddRow(Markup.Escape(name), Markup.Escape(value));
            console.Write(table);
        }
        return 0;
    }

    private static void Describe(List<(string, string)> summary, LowRankTransformerBase? t)
    {
        if (t is null) return;
        var method = t.Method;
        summary.Add(("base model", t.ModelFolder));
        summary.Add(("method", method.PeftType + (method is Adapters.Lora.LoraOptions l ? string.Create(Inv, $" r={l.R} alpha={l.LoraAlpha}{(l.UseRsLora ? " rslora" : "")}") : "")));
        var (trainable, total) = t.ParameterCounts;
        summary.Add(("trainable parameters", string.Create(Inv, $"{trainable:N0} of {total:N0} ({100.0 * trainable / total:F3}%)")));
        if (t.TrainingResult is { } r)
        {
            summary.Add(("steps", string.Create(Inv, $"{r.GlobalStep} ({r.StopReason})")));
            if (r.StepLosses.Count > 0)
                summary.Add(("training loss (first → last step)", string.Create(Inv, $"{r.StepLosses[0]:F4} → {r.StepLosses[^1]:F4}")));
            if (r.BestEvalLoss is { } best) summary.Add(("best validation loss", best.ToString("F4", Inv)));
            summary.Add(("training time", string.Create(Inv, $"{r.Elapsed.TotalSeconds:F1} s")));
        }
    }
}

/// <summary>Renders training progress from the context's log: a live Spectre.Console bar on a terminal, plain lines
/// (about ten per run) otherwise.</summary>
internal sealed class ProgressView(IAnsiConsole console, bool live, bool quiet)
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public T Run<T>(LowRankContext ctx, Func<T> fit)
    {
        if (quiet) return fit();
        if (!live)
        {
            int lastDecile = -1;
            void Plain(object? sender, LoggingEventArgs e)
            {
                if (e.Progress is { Kind: TrainingProgressKind.Step } p)
                {
                    int decile = p.TotalSteps == 0 ? 10 : p.Step * 10 / p.TotalSteps;
                    if (decile != lastDecile || p.Step == p.TotalSteps)
                    {
                        lastDecile = decile;
                        Console.WriteLine(Line(p));
                    }
                }
                else if (e.Kind >= ChannelMessageKind.Info && e.Progress is null)
                {
                    Console.WriteLine(e.RawMessage);
                }
            }
            ctx.Log += Plain;
            try { return fit(); }
            finally { ctx.Log -= Plain; }
        }
        T result = default!;
        console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn { Width = 16 }, new PercentageColumn(), new RemainingTimeColumn())
            .Start(progress =>
            {
                var bar = progress.AddTask("loading", maxValue: 1);
                void Update(object? sender, LoggingEventArgs e)
                {
                    if (e.Progress is { Kind: TrainingProgressKind.Step } p)
                    {
                        bar.MaxValue = Math.Max(1, p.TotalSteps);
                        bar.Value = p.Step;
                        bar.Description = Markup.Escape(ShortLine(p));
                    }
                    else if (e.Progress is { Kind: TrainingProgressKind.Evaluation } v)
                    {
                        progress.AddTask(Markup.Escape(string.Create(Inv, $"validation loss {v.EvalLoss:F4} at step {v.Step}")), maxValue: 1).Value = 1;
                    }
                    else if (e.Kind == ChannelMessageKind.Warning)
                    {
                        bar.Description = "[yellow]" + Markup.Escape(e.RawMessage) + "[/]";
                    }
                }
                ctx.Log += Update;
                try { result = fit(); }
                finally { ctx.Log -= Update; }
                bar.Value = bar.MaxValue;
            });
        return result;
    }

    /// <summary>The bar's text (the bar shows the fraction and the remaining time).</summary>
    internal static string ShortLine(TrainingProgress p) => string.Create(Inv,
        $"step {p.Step}/{p.TotalSteps} loss {p.Loss:F4} lr {p.LearningRate:E1} {p.TokensPerSecond:F0} tok/s");

    internal static string Line(TrainingProgress p) => string.Create(Inv,
        $"step {p.Step}/{p.TotalSteps}  epoch {p.Epoch:F2}  loss {p.Loss:F4}  lr {p.LearningRate:E2}  {p.TokensPerSecond:F0} tok/s  ETA {(p.Eta is { } eta ? eta.ToString(@"mm\:ss", Inv) : "--:--")}");
}

/// <summary>Reads a TSV/CSV file with a header (RFC 4180 quoting) or a JSON Lines file into rows of named string values
/// (JSON arrays are kept as arrays, for NER tags).</summary>
internal static class TableReader
{
    public static List<Dictionary<string, JsonNode?>> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"data file not found: {path}", path);
        var rows = new List<Dictionary<string, JsonNode?>>();
        if (path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            int line = 0;
            foreach (var raw in File.ReadLines(path))
            {
                line++;
                if (string.IsNullOrWhiteSpace(raw)) continue;
                JsonObject o;
                try { o = JsonNode.Parse(raw) as JsonObject ?? throw new InvalidDataException($"{path}:{line}: not a JSON object"); }
                catch (JsonException e) { throw new InvalidDataException($"{path}:{line}: invalid JSON: {e.Message}", e); }
                rows.Add(o.ToDictionary(kv => kv.Key, kv => kv.Value?.DeepClone(), StringComparer.OrdinalIgnoreCase));
            }
            return rows;
        }
        char separator = path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase) ? ',' : '\t';
        var records = Records(File.ReadAllText(path), separator, path).ToList();
        if (records.Count == 0) throw new InvalidDataException($"{path}: empty file (a header row is needed)");
        var header = records[0];
        for (int r = 1; r < records.Count; r++)
        {
            var rec = records[r];
            if (rec.Count == 1 && rec[0].Length == 0) continue;
            var row = new Dictionary<string, JsonNode?>(StringComparer.OrdinalIgnoreCase);
            for (int c = 0; c < header.Count; c++) row[header[c]] = c < rec.Count ? JsonValue.Create(rec[c]) : null;
            rows.Add(row);
        }
        return rows;
    }

    private static IEnumerable<List<string>> Records(string text, char separator, string path)
    {
        var fields = new List<string>();
        var field = new StringBuilder();
        bool quoted = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '"')
                {
                    if (i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                    else quoted = false;
                }
                else field.Append(c);
                continue;
            }
            if (c == '"' && field.Length == 0) quoted = true;
            else if (c == separator) { fields.Add(field.ToString()); field.Clear(); }
            else if (c == '\n' || c == '\r')
            {
                if (c == '\r' && i + 1 < text.Length && text[i + 1] == '\n') i++;
                fields.Add(field.ToString());
                field.Clear();
                yield return fields;
                fields = new List<string>();
            }
            else field.Append(c);
        }
        if (quoted) throw new InvalidDataException($"{path}: a quoted field is not closed");
        if (field.Length > 0 || fields.Count > 0)
        {
            fields.Add(field.ToString());
            yield return fields;
        }
    }
}

/// <summary>Turns the rows of a file into the data view of a task, by column names given on the command line.</summary>
internal static class TaskData
{
    public sealed class TextRow
    {
        public string Text { get; set; } = "";
        public string Text2 { get; set; } = "";
        public string LabelText { get; set; } = "";
    }

    public sealed class ValueRow
    {
        public string Text { get; set; } = "";
        public string Text2 { get; set; } = "";
        public float Label { get; set; }
    }

    public sealed class TagRow
    {
        public string Text { get; set; } = "";
        public string[] Tags { get; set; } = [];
    }

    public sealed class PromptRow
    {
        public string Prompt { get; set; } = "";
        public string Response { get; set; } = "";
    }

    public static bool HasText2(string[] args) => Array.IndexOf(args, "--text2-column") >= 0;

    private static string? Option(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static string Text(Dictionary<string, JsonNode?> row, string column, string path, int index) =>
        row.TryGetValue(column, out var v)
            ? v is JsonValue jv && jv.TryGetValue<string>(out var s) ? s : v?.ToJsonString() ?? ""
            : throw new InvalidDataException($"{path}: row {index + 1} has no column '{column}' (columns: {string.Join(", ", row.Keys)})");

    public static IDataView Load(LowRankContext ctx, string task, List<Dictionary<string, JsonNode?>> rows, string[] args, string path)
    {
        string text = Option(args, "--text-column") ?? (task == "ner" ? "Sentence" : "Text");
        string text2 = Option(args, "--text2-column") ?? "Text2";
        string label = Option(args, "--label-column") ?? (task == "ner" ? "Tags" : "Label");
        switch (task)
        {
            case "text-classification":
                return ctx.Data.LoadFromEnumerable(rows.Select((r, i) => new TextRow
                {
                    Text = Text(r, text, path, i), Text2 = HasText2(args) ? Text(r, text2, path, i) : "", LabelText = Text(r, label, path, i),
                }).ToArray());
            case "sentence-similarity":
                return ctx.Data.LoadFromEnumerable(rows.Select((r, i) =>
                {
                    var s = Text(r, label, path, i);
                    if (!float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var y))
                        throw new InvalidDataException($"{path}: row {i + 1}: label '{s}' in column '{label}' is not a number");
                    return new ValueRow { Text = Text(r, text, path, i), Text2 = HasText2(args) ? Text(r, text2, path, i) : "", Label = y };
                }).ToArray());
            case "ner":
                return ctx.Data.LoadFromEnumerable(rows.Select((r, i) =>
                {
                    string[] tags = r.TryGetValue(label, out var t) && t is JsonArray a
                        ? [.. a.Select(x => (string?)x ?? "O")]
                        : Text(r, label, path, i).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                    return new TagRow { Text = Text(r, text, path, i), Tags = tags };
                }).ToArray());
            case "causal-lm":
                return ctx.Data.LoadFromEnumerable(rows.Select((r, i) => new PromptRow
                {
                    Prompt = Text(r, Option(args, "--prompt-column") ?? "Prompt", path, i),
                    Response = Text(r, Option(args, "--response-column") ?? "Response", path, i),
                }).ToArray());
            default:
                throw new ArgumentException($"unknown task '{task}' (tasks: text-classification, sentence-similarity, ner, causal-lm)");
        }
    }
}
