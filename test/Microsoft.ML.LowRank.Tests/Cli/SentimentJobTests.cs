using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Pipeline;
using Microsoft.ML.LowRank.Tests.Helpers;

namespace Microsoft.ML.LowRank.Tests.Cli;

/// <summary>The main job (<c>lowrank sentiment</c>, what <c>./run.sh</c> runs), shortened to a few steps.</summary>
[Collection(SerialCollection.Name)] // redirects Console
public class SentimentJobTests
{
    private sealed class Row
    {
        public string Text { get; set; } = "";
        public string Sentiment { get; set; } = "";
        public string Source { get; set; } = "";
    }

    private sealed class Prediction
    {
        public string PredictedSentiment { get; set; } = "";
    }

    [Fact]
    public void MainJobReportsBaselinesAndTheSavedModelsAccuracy()
    {
        var dir = Directory.CreateTempSubdirectory("lowrank-sentiment-");
        try
        {
            var zip = Path.Combine(dir.FullName, "m.zip");
            var (code, output, error) = CliTests.Run("sentiment", "--max-steps", "6", "--batch-size", "8", "--lr", "3e-3", "--rank", "4",
                "--output", zip, "--json");
            Assert.True(code == 0, $"exit {code}: {error}\n{output}");
            var report = JsonNode.Parse(output)!.AsObject();
            var results = report["results"]!.AsArray().Select(r => r!.AsObject()).ToList();
            Assert.Equal(5, results.Count);
            Assert.True((bool)report["reloaded_predictions_identical"]!);

            // The lexicon rows are the scorer's accuracy on the same split, computed here directly.
            var split = SentimentTask.Load();
            Assert.Equal(SentimentTask.EvaluateLexicon(split.Test).Overall, (double)results[0]["accuracy"]!, 12);
            Assert.Equal(SentimentTask.EvaluateLexicon(split.Test, zeroIsPositive: false).Overall, (double)results[1]["accuracy"]!, 12);
            Assert.StartsWith("base model, zero-shot", (string)results[2]["name"]!);
            Assert.StartsWith("base model frozen + linear probe", (string)results[3]["name"]!);

            // The fine-tuned row equals the accuracy of the saved zip's predictions, counted here independently of the job.
            var ctx = new LowRankContext(1);
            var test = ctx.Data.LoadFromEnumerable(split.Test.Select(s => new Row { Text = s.Text, Sentiment = s.Label ? "positive" : "negative", Source = s.Source }).ToList());
            var loaded = ctx.Model.Load(zip, out _);
            try
            {
                var predicted = ctx.Data.CreateEnumerable<Prediction>(loaded.Transform(test), reuseRowObject: false).Select(p => p.PredictedSentiment).ToList();
                Assert.Equal(split.Test.Count, predicted.Count);
                Assert.All(predicted, p => Assert.Contains(p, new[] { "positive", "negative" }));
                double correct = predicted.Zip(split.Test).Count(x => (x.First == "positive") == x.Second.Label);
                Assert.Equal(correct / split.Test.Count, (double)results[4]["accuracy"]!, 12);
                var bySource = results[4]["by_source"]!.AsObject();
                foreach (var source in UciSentiment.Sources)
                {
                    var idx = Enumerable.Range(0, split.Test.Count).Where(i => split.Test[i].Source == source).ToList();
                    Assert.Equal(idx.Count(i => (predicted[i] == "positive") == split.Test[i].Label) / (double)idx.Count, (double)bySource[source]!, 12);
                }
            }
            finally
            {
                (loaded as IDisposable)?.Dispose();
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void MainJobNamesAMissingModelFolder()
    {
        var (code, _, error) = CliTests.Run("sentiment", "--model", "/nonexistent/model-folder", "--max-steps", "1");
        Assert.Equal(1, code);
        Assert.Contains("/nonexistent/model-folder", error);
    }
}

/// <summary><c>lowrank compare</c> with no --model/--data: the embedded default model on the UCI sentiment split.</summary>
[Collection(SerialCollection.Name)] // redirects Console
public class CompareDefaultsTests
{
    [Fact]
    public void CompareDefaultsToTheEmbeddedModelAndUciSentimentAtLorasAllLinearBudget()
    {
        var dir = Directory.CreateTempSubdirectory("lowrank-compare-");
        try
        {
            var (code, output, error) = CliTests.Run("compare", "--methods", "lora,dora", "--max-steps", "2", "--train-size", "64", "--json", "--output", dir.FullName);
            Assert.True(code == 0, $"exit {code}: {error}\n{output}");
            var rows = JsonNode.Parse(output)!.AsArray().Select(r => r!.AsObject()).ToList();
            Assert.Equal(new[] { "lora", "dora" }, rows.Select(r => (string)r["method"]!));
            // The default model: hidden 256, MLP 688, 4 blocks; LoRA r=8 on q,k,v,o (256→256) and gate,up (256→688), down (688→256).
            long perBlock = 4 * 8 * (256 + 256) + 3 * 8 * (256 + 688);
            Assert.Equal(4 * perBlock, (long)rows[0]["trainable"]!);
            // DoRA at the matched budget: r·(in+out) + out per module, at the r whose count is closest to LoRA's.
            long DoraCount(int r) => 4 * (4 * (r * (256 + 256) + 256) + 2 * (r * (256 + 688) + 688) + (r * (688 + 256) + 256));
            var dora = (long)rows[1]["trainable"]!;
            Assert.Equal("r=7", (string)rows[1]["size"]!);
            Assert.Equal(DoraCount(7), dora);
            Assert.True(Math.Abs(DoraCount(7) - 4 * perBlock) < Math.Abs(DoraCount(8) - 4 * perBlock));
            Assert.True(Math.Abs(DoraCount(7) - 4 * perBlock) < Math.Abs(DoraCount(6) - 4 * perBlock));
            foreach (var r in rows) Assert.InRange((double)r["accuracy"]!, 0.0, 1.0);
            Assert.Equal(3, File.ReadAllLines(Path.Combine(dir.FullName, "compare.csv")).Length);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
