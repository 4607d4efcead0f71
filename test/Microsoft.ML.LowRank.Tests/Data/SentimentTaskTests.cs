using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Data;

/// <summary>The sentiment task helpers: the stratified split, continuation log-likelihoods, the logistic-regression probe.</summary>
public class SentimentTaskTests
{
    private static List<SentimentSentence> Synthetic(int perGroup) =>
        (from source in new[] { "amazon", "imdb", "yelp" }
         from label in new[] { true, false }
         from i in Enumerable.Range(0, perGroup)
         select new SentimentSentence($"{source} {label} {i}", label, source)).ToList();

    [Fact]
    public void SplitIsStratifiedSeededAndDisjoint()
    {
        var data = Synthetic(500);
        var split = SentimentTask.Split(data);
        Assert.Equal(2400, split.Train.Count);
        Assert.Equal(600, split.Test.Count);
        foreach (var source in new[] { "amazon", "imdb", "yelp" })
            foreach (var label in new[] { true, false })
                Assert.Equal(100, split.Test.Count(s => s.Source == source && s.Label == label));
        Assert.Empty(split.Train.Intersect(split.Test));
        Assert.Equal(data.Count, split.Train.Union(split.Test).Count());
        // Original order kept within each part.
        Assert.Equal(split.Test.OrderBy(s => data.IndexOf(s)), split.Test);
        // Same seed, same split; another seed, another split.
        Assert.Equal(split.Test, SentimentTask.Split(data).Test);
        Assert.NotEqual(split.Test, SentimentTask.Split(data, seed: 7).Test);
        // Rounding: 0.25 of 6 per group = 1.5 -> 2.
        Assert.Equal(12, SentimentTask.Split(Synthetic(6), 0.25).Test.Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => SentimentTask.Split(data, 1.0));
    }

    [Fact]
    public void RealSplitHas2400TrainAnd600BalancedTestSentences()
    {
        var split = SentimentTask.Load();
        Assert.Equal(2400, split.Train.Count);
        Assert.Equal(600, split.Test.Count);
        Assert.Equal(300, split.Test.Count(s => s.Label));
        var lexicon = SentimentTask.EvaluateLexicon(split.Test);
        Assert.Equal(600, lexicon.Count);
        Assert.Equal(3, lexicon.BySource.Count);
        // The test split's lexicon accuracy recomputed directly.
        var scorer = LexiconSentimentScorer.LoadAfinn();
        Assert.Equal(split.Test.Count(s => scorer.PredictPositive(s.Text) == s.Label) / 600.0, lexicon.Overall, 12);
        Assert.Equal(split.Test.Where(s => s.Source == "imdb").Count(s => scorer.PredictPositive(s.Text) == s.Label) / 200.0, lexicon.BySource["imdb"], 12);
    }

    [Fact]
    public void ContinuationLogLikelihoodsMatchUnpaddedSingleSequences()
    {
        using var scope = NewDisposeScope();
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float64);
        var rng = new Random(3);
        var prompts = Enumerable.Range(0, 5).Select(i => Enumerable.Range(0, 2 + 3 * i).Select(_ => (long)rng.Next(3, 97)).ToArray()).ToList();
        long[] continuation = [11, 42, 7];
        var batched = SentimentTask.SequenceLogLikelihoods(model, prompts, continuation, batchSize: 3);
        for (int i = 0; i < prompts.Count; i++)
        {
            // Reference: one unpadded sequence, log-softmax in float64, explicit sum over the continuation positions.
            long[] ids = [.. prompts[i], .. continuation];
            var logits = model.forward(new ModelInputs { InputIds = tensor(ids, new long[] { 1, ids.Length }) }).Logits!.to_type(ScalarType.Float64);
            var rows = logits.select(0, 0).ToArray<double>();
            int v = (int)logits.size(2);
            double expected = 0;
            for (int k = 0; k < continuation.Length; k++)
            {
                int pos = prompts[i].Length + k - 1;
                double max = double.NegativeInfinity, sum = 0;
                for (int j = 0; j < v; j++) max = Math.Max(max, rows[pos * v + j]);
                for (int j = 0; j < v; j++) sum += Math.Exp(rows[pos * v + j] - max);
                expected += rows[pos * v + continuation[k]] - max - Math.Log(sum);
            }
            Assert.Equal(expected, batched[i], 1e-9);
        }
    }

    [Fact]
    public void LogisticFitReachesTheOptimum()
    {
        using var scope = NewDisposeScope();
        var rng = new Random(5);
        int n = 200, d = 4;
        var x = new double[n * d];
        var y = new bool[n];
        for (int i = 0; i < n; i++)
        {
            double z = 0.3;
            for (int j = 0; j < d; j++)
            {
                x[i * d + j] = rng.NextDouble() * 2 - 1;
                z += (j + 1) * x[i * d + j];
            }
            y[i] = z + (rng.NextDouble() - 0.5) > 0;
        }
        const double l2 = 0.5;
        var (w, b) = SentimentTask.FitLogistic(tensor(x, new long[] { n, d }), y, l2);
        // Stationarity of Σ log(1 + exp(-s·z)) + λ/2‖w‖², written out in loops: Σ (σ(z_i) − y_i) x_i + λw = 0, Σ (σ(z_i) − y_i) = 0.
        var grad = new double[d + 1];
        for (int i = 0; i < n; i++)
        {
            double z = b;
            for (int j = 0; j < d; j++) z += w[j] * x[i * d + j];
            double r = 1 / (1 + Math.Exp(-z)) - (y[i] ? 1 : 0);
            for (int j = 0; j < d; j++) grad[j] += r * x[i * d + j];
            grad[d] += r;
        }
        for (int j = 0; j < d; j++) grad[j] += l2 * w[j];
        Assert.All(grad, g => Assert.True(Math.Abs(g) < 1e-8, $"gradient {g}"));
        Assert.True(w[3] > w[2] && w[2] > w[1] && w[1] > w[0] && w[0] > 0, "weights follow the generating direction");
    }
}
