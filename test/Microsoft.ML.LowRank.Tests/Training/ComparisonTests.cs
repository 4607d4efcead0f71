using System.Globalization;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Cli;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training.Comparison;

namespace Microsoft.ML.LowRank.Tests.Training;

[Collection(SerialCollection.Name)]
public class ComparisonTests
{
    // llama fixture: hidden 32, 4 heads of 8, 4 kv heads, 2 layers; LoRA on q_proj (32→32) and v_proj (32→32):
    // r·(32+32) per matrix, 2 matrices per layer, 2 layers = 256·r.
    private static long LlamaLoraCount(int r) => 2L * 2 * r * (32 + 32);

    [Fact]
    public void BudgetMatchingFindsTheClosestSizeSetting()
    {
        var config = ModelConfig.FromFile(Repo.Fixture("models", "llama"));
        var lora = AdapterMethods.Create("lora");
        var (_, key, value, count) = MethodComparison.MatchBudget(lora, config, ModelTask.SequenceClassification, LlamaLoraCount(8));
        Assert.Equal("r", key);
        Assert.Equal(8, value);
        Assert.Equal(LlamaLoraCount(8), count);
        // Between r=5 (1280) and r=6 (1536): 1400 is closer to 1280.
        (_, _, value, count) = MethodComparison.MatchBudget(lora, config, ModelTask.SequenceClassification, 1400);
        Assert.Equal(5, value);
        Assert.Equal(1280, count);
        // Exactly halfway (1408) goes to the smaller setting.
        (_, _, value, _) = MethodComparison.MatchBudget(lora, config, ModelTask.SequenceClassification, 1408);
        Assert.Equal(5, value);
        var (adapter, head, total) = MethodComparison.CountParameters(config, ModelTask.SequenceClassification, AdapterMethods.WithSettings(lora, new Dictionary<string, string> { ["r"] = "3" }));
        Assert.Equal(LlamaLoraCount(3), adapter);
        Assert.Equal(32L * config.NumLabels, head); // score head, no bias
        Assert.True(total > adapter);
    }

    [Fact]
    public void CompareRunsMethodsAtMatchedBudgetAndWritesReports()
    {
        var dir = Directory.CreateTempSubdirectory().FullName;
        foreach (var f in new[] { "config.json", "model.safetensors" })
            File.Copy(Path.Combine(Repo.Fixture("models", "llama"), f), Path.Combine(dir, f));
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), CliTests.WordLevelTokenizerJson());
        // Toy task: label 1 iff the text contains the token t7.
        var rng = new Random(3);
        var lines = new List<string>();
        for (int i = 0; i < 240; i++)
        {
            var toks = Enumerable.Range(0, 6).Select(_ => "t" + rng.Next(10, 60)).ToList();
            var label = i % 2;
            if (label == 1) toks[rng.Next(toks.Count)] = "t7";
            lines.Add(string.Join(' ', toks) + "\t" + label.ToString(CultureInfo.InvariantCulture));
        }
        var data = Path.Combine(dir, "data.tsv");
        File.WriteAllLines(data, lines);
        var output = Path.Combine(dir, "out");
        var (code, stdout, stderr) = CliTests.Run("compare", "--model", dir, "--data", data, "--methods", "lora,rslora", "--rank", "4",
            "--epochs", "4", "--lr", "1e-2", "--batch-size", "16", "--targets", "default", "--output", output);
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains("| lora ", stdout);
        var csv = File.ReadAllLines(Path.Combine(output, "compare.csv"));
        Assert.Equal(3, csv.Length);
        var lora = csv[1].Split(',');
        var rs = csv[2].Split(',');
        Assert.Equal("r=4", lora[1]);
        Assert.Equal(LlamaLoraCount(4).ToString(CultureInfo.InvariantCulture), lora[2]);
        Assert.Equal(lora[2], rs[2]); // matched budget
        var accuracy = double.Parse(lora[6], CultureInfo.InvariantCulture);
        Assert.True(accuracy >= 0.75, $"LoRA accuracy {accuracy} on a separable toy task");
        Assert.True(double.Parse(lora[9], CultureInfo.InvariantCulture) > 0); // tokens/s
        var html = File.ReadAllText(Path.Combine(output, "compare.html"));
        Assert.Contains("<svg", html);
        Assert.Contains("rslora", html);
    }

    [Fact]
    public void ReportsRenderEveryRow()
    {
        var rows = new[]
        {
            new ComparisonRow("lora", "r=8", 1000, 64, 100000, 0.9, TimeSpan.FromSeconds(2), 1048576 * 3, 500, 0.3, null),
            new ComparisonRow("x,y", "", 0, 0, 100000, double.NaN, TimeSpan.Zero, -1, 0, double.NaN, "failed \"badly\""),
        };
        var table = ComparisonReport.ToTable(rows);
        Assert.Contains("| lora ", table);
        Assert.Contains("1.000", table); // 1000 / 100000 = 1 %
        var csv = ComparisonReport.ToCsv(rows).Split('\n');
        Assert.StartsWith("\"x,y\",", csv[2]);
        Assert.EndsWith("\"failed \"\"badly\"\"\"", csv[2]);
        Assert.Equal(1.0, rows[0].PercentOfBase, 12);
    }
}
