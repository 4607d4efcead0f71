using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Pipeline;

namespace Microsoft.ML.LowRank.Tests.Pipeline;

/// <summary>Every evaluator against hand-computed values and naive float64 formulas written here.</summary>
public class MetricsTests
{
    private readonly LowRankContext _ctx = new(seed: 0);

    public sealed class ScoredRow
    {
        [KeyType(3)] public uint Label { get; set; }
        [VectorType(3)] public float[] Score { get; set; } = [];
        [KeyType(3)] public uint PredictedLabel { get; set; }
    }

    private static ScoredRow Row(uint label, params float[] score) =>
        new() { Label = label, Score = score, PredictedLabel = (uint)Array.IndexOf(score, score.Max()) + 1 };

    [Fact]
    public void MulticlassMetricsMatchHandComputedValues()
    {
        // Truth / prediction pairs (keys): (1,1) (1,2) (2,2) (2,2) (3,1) (3,3), plus a row with a missing label (skipped).
        var rows = new[]
        {
            Row(1, 0.7f, 0.2f, 0.1f),
            Row(1, 0.3f, 0.6f, 0.1f),
            Row(2, 0.1f, 0.8f, 0.1f),
            Row(2, 0.25f, 0.5f, 0.25f),
            Row(3, 0.5f, 0.1f, 0.4f),
            Row(3, 0.2f, 0.2f, 0.6f),
            new ScoredRow { Label = 0, Score = [1f, 0f, 0f], PredictedLabel = 1 },
        };
        var m = _ctx.MulticlassClassification.Evaluate(_ctx.Data.LoadFromEnumerable(rows), topKPredictionCount: 2);

        Assert.Equal(6, m.RowCount);
        // Confusion matrix by hand: rows truth, columns prediction.
        double[][] expected = [[1, 1, 0], [0, 2, 0], [1, 0, 1]];
        for (int t = 0; t < 3; t++)
            for (int p = 0; p < 3; p++)
                Assert.Equal(expected[t][p], m.ConfusionMatrix.Counts[t][p]);
        Assert.Equal(1.0, m.ConfusionMatrix.GetCountForClassPair(predictedClassIndex: 0, actualClassIndex: 2));
        // Precision: class 1 predicted twice (1 right), class 2 three times (2 right), class 3 once (right).
        Assert.Equal([1 / 2.0, 2 / 3.0, 1.0], m.ConfusionMatrix.PerClassPrecision);
        Assert.Equal([1 / 2.0, 1.0, 1 / 2.0], m.ConfusionMatrix.PerClassRecall);
        Assert.Equal(4 / 6.0, m.MicroAccuracy, 12);
        Assert.Equal((0.5 + 1.0 + 0.5) / 3, m.MacroAccuracy, 12);

        // Log-loss: −ln of the true class's score (float scores widened to double).
        double[] ll = [-Math.Log(0.7f), -Math.Log(0.3f), -Math.Log(0.8f), -Math.Log(0.5f), -Math.Log(0.4f), -Math.Log(0.6f)];
        Assert.Equal(ll.Average(), m.LogLoss, 12);
        Assert.Equal((ll[0] + ll[1]) / 2, m.PerClassLogLoss[0], 12);
        Assert.Equal((ll[4] + ll[5]) / 2, m.PerClassLogLoss[2], 12);
        // The prior is uniform over 3 classes: L0 = ln 3.
        Assert.Equal((Math.Log(3) - ll.Average()) / Math.Log(3), m.LogLossReduction, 12);
        // Top-2: the true class is among the two highest scores in every row but the fifth (0.4 is second: yes) — all 6.
        Assert.Equal(1.0, m.TopKAccuracy, 12);
        Assert.Contains("Recall", m.ConfusionMatrix.GetFormattedConfusionTable());

        // A zero score is clipped at 1e-15.
        var clipped = _ctx.MulticlassClassification.Evaluate(_ctx.Data.LoadFromEnumerable(new[] { Row(2, 1f, 0f, 0f), Row(1, 1f, 0f, 0f) }));
        Assert.Equal(-Math.Log(1e-15) / 2, clipped.LogLoss, 9);
    }

    public sealed class RegressionRow
    {
        public float Label { get; set; }
        public float Score { get; set; }
    }

    [Fact]
    public void RegressionMetricsMatchNaiveFormulasWithTies()
    {
        double[] y = [1, 2, 2, 3, 5, 4];
        double[] s = [1.5, 1, 3, 3, 4, 3];
        var data = _ctx.Data.LoadFromEnumerable(y.Zip(s).Select(p => new RegressionRow { Label = (float)p.First, Score = (float)p.Second })
            .Append(new RegressionRow { Label = float.NaN, Score = 100 }).ToArray());
        var m = _ctx.Regression.Evaluate(data);
        Assert.Equal(6, m.RowCount);

        // Errors: -0.5, 1, -1, 0, 1, 1.
        Assert.Equal(4.5 / 6, m.MeanAbsoluteError, 12);
        Assert.Equal(4.25 / 6, m.MeanSquaredError, 12);
        Assert.Equal(Math.Sqrt(4.25 / 6), m.RootMeanSquaredError, 12);
        Assert.Equal(m.MeanSquaredError, m.LossFunction, 12);
        // Mean label 17/6; Σ(y − ȳ)² = Σy² − 6ȳ² = 59 − 289/6 = 65/6.
        Assert.Equal(1 - 4.25 / (65.0 / 6), m.RSquared, 12);

        // Pearson from the textbook formula.
        double my = y.Average(), ms = s.Average();
        double cov = y.Zip(s).Sum(p => (p.First - my) * (p.Second - ms));
        double pearson = cov / Math.Sqrt(y.Sum(v => (v - my) * (v - my)) * s.Sum(v => (v - ms) * (v - ms)));
        Assert.Equal(pearson, m.PearsonCorrelation, 12);

        // Spearman by hand: ranks of y = 1, 2.5, 2.5, 4, 6, 5; ranks of s (1.5, 1, 3, 3, 4, 3) = 2, 1, 4, 4, 6, 4.
        double[] ry = [1, 2.5, 2.5, 4, 6, 5], rs = [2, 1, 4, 4, 6, 4];
        double mry = ry.Average(), mrs = rs.Average();
        double spearman = ry.Zip(rs).Sum(p => (p.First - mry) * (p.Second - mrs)) /
            Math.Sqrt(ry.Sum(v => (v - mry) * (v - mry)) * rs.Sum(v => (v - mrs) * (v - mrs)));
        Assert.Equal(spearman, m.SpearmanCorrelation, 12);
        Assert.Equal(0.8009, spearman, 3); // the hand value: 13 / √(17 · 15.5)

        // Constant scores: no correlation is defined.
        var flat = _ctx.Regression.Evaluate(_ctx.Data.LoadFromEnumerable(y.Select(v => new RegressionRow { Label = (float)v, Score = 2 }).ToArray()));
        Assert.True(double.IsNaN(flat.PearsonCorrelation));
    }

    public sealed class TagRow
    {
        public string[] Truth { get; set; } = [];
        public string[] Guess { get; set; } = [];
    }

    [Fact]
    public void EntityLevelF1FollowsConllevalOnCraftedSequences()
    {
        var rows = new[]
        {
            // Truth: PER(0-1), LOC(3). Guess: PER(0-1) right; LOC at 3 right.
            new TagRow { Truth = ["B-PER", "I-PER", "O", "B-LOC"], Guess = ["B-PER", "I-PER", "O", "B-LOC"] },
            // Truth: PER(0), LOC(2-3). Guess: PER(0-1) wrong boundary; LOC(3) wrong boundary (an I- after O starts a new entity).
            new TagRow { Truth = ["B-PER", "O", "B-LOC", "I-LOC"], Guess = ["B-PER", "I-PER", "O", "I-LOC"] },
            // Truth: ORG(1). Guess: LOC(1) wrong type; extra PER(3).
            new TagRow { Truth = ["O", "B-ORG", "O", "O"], Guess = ["O", "B-LOC", "O", "B-PER"] },
            // Truth: LOC(0), LOC(1) — two adjacent entities (B then B). Guess: one LOC(0-1).
            new TagRow { Truth = ["B-LOC", "B-LOC"], Guess = ["B-LOC", "I-LOC"] },
        };
        var data = _ctx.Data.LoadFromEnumerable(rows);
        var keyed = _ctx.Transforms.Conversion.MapValueToKey([new InputOutputColumnPair("Label", "Truth"), new InputOutputColumnPair("PredictedLabel", "Guess")],
            keyData: _ctx.Data.LoadFromEnumerable(new[] { "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG" }.Select(t => new TagValue { Tag = t }).ToArray()))
            .Fit(data).Transform(data);
        var m = _ctx.MulticlassClassification.EvaluateNamedEntityRecognition(keyed);

        // True entities: PER, LOC | PER, LOC | ORG | LOC, LOC = 7. Predicted: PER, LOC | PER, LOC | LOC, PER | LOC = 7. Correct: 2.
        Assert.Equal(7, m.TrueEntityCount);
        Assert.Equal(7, m.PredictedEntityCount);
        Assert.Equal(2, m.CorrectEntityCount);
        Assert.Equal(2 / 7.0, m.Precision, 12);
        Assert.Equal(2 / 7.0, m.Recall, 12);
        Assert.Equal(2 / 7.0, m.F1Score, 12);
        // Per type. PER: truth 2, predicted 3, correct 1. LOC: truth 4, predicted 4, correct 1. ORG: truth 1, predicted 0.
        Assert.Equal(new EntityTypeMetrics(1 / 3.0, 1 / 2.0, 2 * (1 / 3.0) * (1 / 2.0) / (1 / 3.0 + 1 / 2.0), 2), m.PerEntityType["PER"]);
        Assert.Equal(new EntityTypeMetrics(1 / 4.0, 1 / 4.0, 1 / 4.0, 4), m.PerEntityType["LOC"]);
        Assert.Equal(new EntityTypeMetrics(0, 0, 0, 1), m.PerEntityType["ORG"]);
        // Words: 4 + 4 + 4 + 2 = 14; equal tags: 4 + 2 + 2 + 1 = 9.
        int equal = rows.Sum(r => r.Truth.Zip(r.Guess).Count(p => p.First == p.Second));
        Assert.Equal(equal / 14.0, m.TokenAccuracy, 12);
        Assert.Equal(9, equal);

        // The entity extraction itself.
        Assert.Equal([("PER", 0, 1), ("LOC", 3, 3)], Evaluators.Entities(["B-PER", "I-PER", "O", "I-LOC"]));
        Assert.Equal([("LOC", 0, 0), ("PER", 1, 2)], Evaluators.Entities(["B-LOC", "I-PER", "I-PER"]));
    }

    public sealed class TagValue
    {
        public string Tag { get; set; } = "";
    }

    public sealed class LmRow
    {
        public string Response { get; set; } = "";
        public string Completion { get; set; } = "";
        public float ResponseLogLoss { get; set; }
        public int ResponseTokenCount { get; set; }
    }

    [Fact]
    public void CausalLMMetricsWeightRowsByTokens()
    {
        var rows = new[]
        {
            new LmRow { Response = "cold", Completion = " cold ", ResponseLogLoss = 0.5f, ResponseTokenCount = 2 },
            new LmRow { Response = "small", Completion = "big", ResponseLogLoss = 2.0f, ResponseTokenCount = 3 },
            new LmRow { Response = "down", Completion = "down", ResponseLogLoss = 1.0f, ResponseTokenCount = 1 },
        };
        var m = _ctx.TextGeneration.Evaluate(_ctx.Data.LoadFromEnumerable(rows), completionColumnName: "Completion");
        double expected = (0.5 * 2 + 2.0 * 3 + 1.0 * 1) / 6;
        Assert.Equal(expected, m.LogLoss, 6);
        Assert.Equal(Math.Exp(expected), m.Perplexity, 6);
        Assert.Equal(6, m.TokenCount);
        Assert.Equal(2 / 3.0, m.ExactMatch, 12);
        Assert.True(double.IsNaN(_ctx.TextGeneration.Evaluate(_ctx.Data.LoadFromEnumerable(rows)).ExactMatch));
    }

    [Fact]
    public void EvaluatorsNameBadColumns()
    {
        var data = _ctx.Data.LoadFromEnumerable(new[] { new RegressionRow { Label = 1, Score = 1 } });
        Assert.Contains("'Nope'", Assert.Throws<ArgumentOutOfRangeException>(() => _ctx.Regression.Evaluate(data, labelColumnName: "Nope")).Message);
        Assert.Contains("Schema mismatch for label column 'Label': expected Key<UInt32>", Assert.Throws<ArgumentOutOfRangeException>(() => _ctx.MulticlassClassification.Evaluate(data)).Message);
    }
}
