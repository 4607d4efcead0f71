using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Tests.Cli;
using Microsoft.ML.LowRank.Tests.Helpers;
using Xunit.Abstractions;

namespace Microsoft.ML.LowRank.Tests.Pipeline;

/// <summary><c>lowrank train</c>: progress, the summary table, and a model zip that the library loads.</summary>
[Collection(SerialCollection.Name)]
public class CliTrainTests(ITestOutputHelper output)
{
    public sealed class CliRow
    {
        public string Text { get; set; } = "";
        public string Text2 { get; set; } = "";
        public string LabelText { get; set; } = "";
    }

    [Fact]
    public void TrainsATextClassifierFromTsvAndPrintsProgressAndASummary()
    {
        var dir = Directory.CreateTempSubdirectory("lowrank-cli-train-").FullName;
        try
        {
            static string Tsv(IEnumerable<PipelineFixtures.TopicRow> rows) =>
                "Label\tText\n" + string.Join("\n", rows.Select(r => $"{r.Topic}\t\"{r.Text}\""));
            File.WriteAllText(Path.Combine(dir, "train.tsv"), Tsv(PipelineFixtures.Topics(96, 1)));
            File.WriteAllText(Path.Combine(dir, "test.tsv"), Tsv(PipelineFixtures.Topics(30, 2)));
            var zip = Path.Combine(dir, "topics.zip");
            var (code, stdout, stderr) = CliTests.Run("train", "text-classification", PipelineFixtures.Model("bert_cls"),
                "--data", Path.Combine(dir, "train.tsv"), "--test", Path.Combine(dir, "test.tsv"), "--output", zip,
                "--targets", "all-linear", "--rank", "8", "--alpha", "16", "--epochs", "8", "--batch-size", "16", "--lr", "1e-2", "--seed", "1");
            output.WriteLine(stdout + stderr);
            Assert.Equal(0, code);
            Assert.Contains("step 48/48", stdout);            // plain progress lines when the output is not a terminal
            Assert.Contains("tok/s", stdout);
            Assert.Contains("test accuracy (micro / macro)", stdout);
            Assert.Contains("trainable parameters", stdout);
            Assert.Contains("training loss (first → last step)", stdout);
            var accuracy = double.Parse(stdout.Split("test accuracy (micro / macro)")[1].Split('│', '|').Select(s => s.Trim()).First(s => s.Length > 0).Split('/')[0],
                System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(accuracy >= 0.7, $"accuracy {accuracy} (chance 1/3)");

            // The zip is a pipeline the library loads: text in, topic names out.
            var ctx = new LowRankContext(seed: 0);
            using var model = (IDisposable)ctx.Model.Load(zip, out var schema);
            Assert.Equal(["Text", "Text2", "LabelText"], schema.Select(c => c.Name).ToArray());
            var test = ctx.Data.LoadFromEnumerable(PipelineFixtures.Topics(6, 3).Select(r => new CliRow { Text = r.Text, LabelText = r.Topic }).ToArray());
            var predicted = ((ITransformer)model).Transform(test).GetColumn<string>("PredictedLabelText").ToArray();
            Assert.All(predicted, p => Assert.Contains(p, new[] { "sports", "politics", "tech" }));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void TrainsNerFromJsonLinesAsJsonAndReportsBadInput()
    {
        var dir = Directory.CreateTempSubdirectory("lowrank-cli-ner-").FullName;
        try
        {
            var lines = PipelineFixtures.Ner(16, 5).Select(r => new JsonObject
            {
                ["Sentence"] = r.Sentence,
                ["Tags"] = new JsonArray(r.Tags.Select(t => (JsonNode)t).ToArray()),
            }.ToJsonString());
            var data = Path.Combine(dir, "ner.jsonl");
            File.WriteAllLines(data, lines);
            var zip = Path.Combine(dir, "ner.zip");
            var (code, stdout, stderr) = CliTests.Run("train", "ner", PipelineFixtures.Model("bert_token_cls"), "--data", data, "--output", zip,
                "--max-steps", "2", "--batch-size", "8", "--json");
            Assert.True(code == 0, stderr);
            var summary = JsonNode.Parse(stdout)!;
            Assert.Equal(zip, (string)summary["model"]!);
            Assert.StartsWith("2 (", (string)summary["steps"]!);
            Assert.True(File.Exists(zip));

            (code, _, stderr) = CliTests.Run("train", "poetry", PipelineFixtures.Model("bert_cls"), "--data", data, "--output", zip);
            Assert.Equal(1, code);
            Assert.Contains("unknown task 'poetry'", stderr);

            // The live bar (forced on, as on a terminal): ANSI output with the bar, the step text and 100%.
            (code, stdout, stderr) = CliTests.Run("train", "ner", PipelineFixtures.Model("bert_token_cls"), "--data", data, "--output", zip,
                "--max-steps", "3", "--batch-size", "8", "--progress", "live");
            Assert.True(code == 0, stderr);
            Assert.Contains("\u001b[", stdout);
            Assert.Contains("step 3/3", stdout);
            Assert.Contains("100%", stdout);
            Assert.Contains("━", stdout);
            Assert.Contains("training loss (first → last step)", stdout);
            (code, _, stderr) = CliTests.Run("train", "ner", PipelineFixtures.Model("bert_token_cls"), "--data", data, "--output", zip, "--text-column", "Nope");
            Assert.Equal(1, code);
            Assert.Contains("no column 'Nope'", stderr);
            (code, _, stderr) = CliTests.Run("train", "causal-lm", PipelineFixtures.Model("bert_cls"), "--data", data, "--output", zip, "--prompt-column", "Sentence", "--response-column", "Sentence");
            Assert.Equal(1, code);
            Assert.Contains("encoder", stderr);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
