using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Mixture;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Pipeline;
using Microsoft.ML.LowRank.Tests.Adapters;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Training;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Pipeline;

/// <summary>
/// The five task-conditioned mixture presets (MOELoRA, MoA, MoCLE, Octavius, Polytropon) through the estimators: a task
/// column (String, key or integer) or instance embeddings derived from the model feed the routing context per batch at Fit
/// and per row at prediction. References are computed here, independently of the pipeline: task ids from the column's
/// values in order of first appearance, instance embeddings as the float64 mean of the embedding matrix rows of the
/// instruction tokens, clusters as the nearest centroid in float64, and one forward pass per example with its own routing.
/// </summary>
[Collection(SerialCollection.Name)]
public class TaskRoutingTests
{
    /// <summary>Probability / logit tolerance between a batched (padded) and a per-example float32 forward pass.</summary>
    private const double Tol = 2e-5;

    public sealed class Row
    {
        public string Text { get; set; } = "";
        public string Second { get; set; } = "";
        public string Topic { get; set; } = "";
        public string Task { get; set; } = "";
        public int TaskId { get; set; }
        public float Weight { get; set; }
        public float Similarity { get; set; }
    }

    private static readonly string[] TaskNames = ["chat", "qa", "summary"];

    /// <summary>Topic sentences with a task that does not follow the topic (the first rows are "summary", so the String
    /// mapping's first-appearance order differs from the alphabetical one).</summary>
    private static Row[] Rows(int count, int seed)
    {
        var topics = PipelineFixtures.Topics(count, seed);
        var seconds = PipelineFixtures.Topics(count, seed + 100);
        return [.. topics.Select((r, i) =>
        {
            int t = (i / 3 + 2) % 3;
            return new Row
            {
                Text = r.Text, Second = seconds[i].Text, Topic = r.Topic, Task = TaskNames[t], TaskId = t, Weight = i,
                Similarity = (r.Topic == "sports" ? 0.5f : 0f) + (seconds[i].Topic == "sports" ? 0.5f : 0f),
            };
        })];
    }

    internal static MixtureOfLoraExpertsOptions Preset(string name) => name switch
    {
        "mmoelora" => MixtureOfLoraExpertsOptions.MultiTaskMoELoRA(numTasks: 3, numExperts: 4, totalRank: 8, dropout: 0, taskEmbeddingDim: 8),
        "moa" => MixtureOfLoraExpertsOptions.MoA(numDomains: 3, r: 4, dropout: 0),
        "mocle" => MixtureOfLoraExpertsOptions.MoCLE(numClusters: 4, numExperts: 4, r: 4, dropout: 0),
        "octavius" => MixtureOfLoraExpertsOptions.Octavius(numExperts: 4, topK: 2, r: 4, dropout: 0),
        "poly" => MixtureOfLoraExpertsOptions.Poly(numTasks: 3, numSkills: 4, r: 4),
        "mlore" => MixtureOfLoraExperts.WithRank(MixtureOfLoraExpertsOptions.MLoRE(topK: 3), 2),
        _ => throw new ArgumentException(name),
    };

    // ------------------------------------------------------------------ independent references

    /// <summary>The embedding matrix in float64.</summary>
    private static double[,] EmbeddingMatrix(LowRankModel lm)
    {
        var w = lm.Model.Backbone.TokenEmbedding.weight;
        using var scope = NewDisposeScope();
        var flat = w.detach().to_type(ScalarType.Float64).cpu().contiguous().ToArray<double>();
        int v = (int)w.size(0), d = (int)w.size(1);
        var m = new double[v, d];
        for (int i = 0; i < v; i++)
            for (int j = 0; j < d; j++) m[i, j] = flat[i * d + j];
        return m;
    }

    /// <summary>Mean of the embedding rows of the tokens (float64).</summary>
    private static double[] MeanEmbedding(double[,] e, IReadOnlyList<long> ids)
    {
        int d = e.GetLength(1);
        var s = new double[d];
        foreach (var id in ids)
            for (int j = 0; j < d; j++) s[j] += e[id, j];
        for (int j = 0; j < d; j++) s[j] /= ids.Count;
        return s;
    }

    /// <summary>The nearest centroid (squared Euclidean, float64, ties to the lower index).</summary>
    private static int Nearest(double[] x, float[] centroids, int dim)
    {
        int best = -1;
        double bestD = double.PositiveInfinity;
        for (int c = 0; c < centroids.Length / dim; c++)
        {
            double dd = 0;
            for (int j = 0; j < dim; j++) dd += Math.Pow(x[j] - centroids[c * dim + j], 2);
            if (dd < bestD) { bestD = dd; best = c; }
        }
        return best;
    }

    /// <summary>Ids of values in order of first appearance.</summary>
    private static Dictionary<string, long> FirstAppearance(IEnumerable<string> values)
    {
        var map = new Dictionary<string, long>();
        foreach (var v in values) map.TryAdd(v, map.Count);
        return map;
    }

    /// <summary>The routing of one example, built here: task id and/or instance embedding.</summary>
    private sealed record Route(long? TaskId, double[]? Instance);

    /// <summary>One forward pass of one example with its own routing context; float32 logits (batch dimension removed).</summary>
    private static float[] NaiveLogits(LowRankModel lm, long[] ids, Route route, long[]? labels = null, long[]? typeIds = null) => NaiveRun(lm, ids, route, labels, typeIds).logits;

    private static (float[] logits, double? loss) NaiveRun(LowRankModel lm, long[] ids, Route route, long[]? labels = null, long[]? typeIds = null)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var inputs = new MixtureRoutingInputs
        {
            TaskIds = route.TaskId is { } t ? tensor(new[] { t }) : null,
            InstanceFeatures = route.Instance is { } f ? tensor(f.Select(x => (float)x).ToArray(), new long[] { 1, f.Length }) : null,
        };
        using var r = lm.UseRouting(inputs);
        var output = lm.forward(new ModelInputs
        {
            InputIds = tensor(ids, new long[] { 1, ids.Length }),
            AttentionMask = ones(new long[] { 1, ids.Length }, ScalarType.Int64),
            Labels = labels is null ? null : tensor(labels, new long[] { 1, labels.Length }),
            TokenTypeIds = typeIds is null ? null : tensor(typeIds, new long[] { 1, typeIds.Length }),
        });
        return (output.Logits!.to_type(ScalarType.Float32).contiguous().ToArray<float>(), output.Loss?.ToDouble());
    }

    private static double[] Softmax(float[] z)
    {
        double max = z.Max();
        var e = z.Select(v => Math.Exp(v - max)).ToArray();
        double s = e.Sum();
        return [.. e.Select(v => v / s)];
    }

    private static double MaxAbsDiff(IReadOnlyList<double> a, IReadOnlyList<float> b)
    {
        Assert.Equal(a.Count, b.Count);
        double worst = 0;
        for (int i = 0; i < a.Count; i++) worst = Math.Max(worst, Math.Abs(a[i] - b[i]));
        return worst;
    }

    private static TextClassificationTrainer.Options Classifier(string fixture, MixtureOfLoraExpertsOptions method) => new()
    {
        ModelFolder = PipelineFixtures.Model(fixture), Sentence1ColumnName = "Text", Method = method, Seed = 9,
        BatchSize = 8, MaxEpochs = 1, LearningRate = 5e-2, WarmupRatio = 0,
    };

    // ------------------------------------------------------------------ the five presets

    /// <summary>
    /// For each preset, through the text-classification estimator on llama_cls: (1) the validation loss Fit reports (eval
    /// mode, routed batches of validation rows) equals the mean cross-entropy of one forward pass per row with the row's own
    /// routing built here; (2) after perturbing the adapter so routing matters, Transform's per-row probabilities equal the
    /// same naive computation, and a wrong routing (the next task, another row's embedding) differs by far more than the
    /// tolerance; (3) one padded batch of rows with mixed tasks, routed by the pipeline's batch code, gives the per-row
    /// probabilities. MLoRE (a sequence-pooled router that reads no per-row input) checks that batches pass their padding
    /// mask to every mixture, not only the task-conditioned ones.
    /// </summary>
    [Theory]
    [InlineData("mmoelora")]
    [InlineData("moa")]
    [InlineData("mocle")]
    [InlineData("octavius")]
    [InlineData("poly")]
    [InlineData("mlore")]
    public void PresetFitsAndPredictsWithItsRoutingAndMixedBatchesEqualPerExampleRouting(string preset)
    {
        var ctx = new LowRankContext(seed: 31);
        var trainRows = Rows(24, 1);
        var validRows = Rows(12, 2);
        var testRows = Rows(9, 3);
        var keys = ctx.Transforms.Conversion.MapValueToKey("Label", "Topic").Fit(ctx.Data.LoadFromEnumerable(trainRows));
        var train = keys.Transform(ctx.Data.LoadFromEnumerable(trainRows));
        var valid = keys.Transform(ctx.Data.LoadFromEnumerable(validRows));
        var options = Classifier("llama_cls", Preset(preset));
        bool taskColumn = preset is "mmoelora" or "moa" or "poly";
        if (taskColumn) options.TaskColumnName = "Task";
        options.ValidationSet = valid;
        using var model = ctx.MulticlassClassification.Trainers.TextClassification(options).Fit(train);
        var lm = model.AdaptedModel;
        var runtime = model.Runtime;
        var routing = runtime.Routing!;
        Assert.Equal(taskColumn ? "Task" : null, model.TaskColumnName);

        // Routing built here, independently of the pipeline.
        var taskOf = FirstAppearance(trainRows.Select(r => r.Task));
        Assert.Equal(taskOf.Keys.ToArray(), model.TaskValues?.ToArray() ?? (taskColumn ? null : taskOf.Keys.ToArray()));
        var emb = EmbeddingMatrix(lm);
        long[] Ids(Row r) => runtime.Encode(r.Text).Ids;
        Route RouteOf(Row r, bool wrong = false)
        {
            var ids = Ids(r);
            switch (preset)
            {
                case "mmoelora":
                case "poly":
                    return new Route((taskOf[r.Task] + (wrong ? 1 : 0)) % 3, null);
                case "mocle":
                    return new Route((Nearest(MeanEmbedding(emb, ids), routing.Centroids!, routing.CentroidDim) + (wrong ? 1 : 0)) % 4, null);
                case "octavius":
                    return new Route(null, MeanEmbedding(emb, wrong ? Ids(testRows[(Array.IndexOf(testRows, r) + 1) % testRows.Length]) : ids));
                default:
                    return new Route(null, null); // MoA predicts the domain itself; MLoRE reads nothing per row
            }
        }

        if (preset == "mocle")
        {
            // k-means at Fit: min(num_tasks = 4, rows) centroids, a fixed point of Lloyd's iteration on the training rows'
            // mean token embeddings (each centroid is the mean of the rows nearest to it), and more than one cluster in use.
            Assert.Equal(TaskIdSource.Clusters, routing.TaskIds);
            int d = routing.CentroidDim;
            Assert.Equal(4 * d, routing.Centroids!.Length);
            var points = trainRows.Select(r => MeanEmbedding(emb, Ids(r))).ToList();
            var assigned = points.Select(p => Nearest(p, routing.Centroids, d)).ToList();
            Assert.True(assigned.Distinct().Count() > 1, "the rows fall in more than one cluster");
            foreach (var c in assigned.Distinct())
            {
                var members = points.Where((_, i) => assigned[i] == c).ToList();
                for (int j = 0; j < d; j++)
                    Assert.True(Math.Abs(members.Average(p => p[j]) - routing.Centroids[c * d + j]) <= 1e-5, $"centroid {c}[{j}]");
            }
        }

        // (1) The validation loss Fit reported with the final weights (one epoch, evaluated at its end).
        var classOf = FirstAppearance(trainRows.Select(r => r.Topic));
        double naive = validRows.Average(r => -Math.Log(Softmax(NaiveLogits(lm, Ids(r), RouteOf(r)))[classOf[r.Topic]]));
        var reported = model.TrainingResult!.Evaluations[^1].Loss;
        Assert.True(Math.Abs(reported - naive) <= 1e-5 * Math.Max(1, naive), $"{preset}: validation loss {reported} vs per-row {naive}");

        // (2) Transform after a perturbation that makes the experts and routers matter.
        AdapterInvariants.Perturb(lm, seed: 3, std: 0.2);
        var scores = model.Transform(ctx.Data.LoadFromEnumerable(testRows)).GetColumn<float[]>("Score").ToList();
        double worstWrong = 0;
        for (int i = 0; i < testRows.Length; i++)
        {
            var expected = Softmax(NaiveLogits(lm, Ids(testRows[i]), RouteOf(testRows[i])));
            Assert.True(MaxAbsDiff(expected, scores[i]) <= Tol, $"{preset}: row {i} Transform vs per-row routing: {MaxAbsDiff(expected, scores[i]):E2}");
            if (preset is not ("moa" or "mlore")) worstWrong = Math.Max(worstWrong, MaxAbsDiff(Softmax(NaiveLogits(lm, Ids(testRows[i]), RouteOf(testRows[i], wrong: true))), scores[i]));
        }
        if (preset is not ("moa" or "mlore")) Assert.True(worstWrong > 100 * Tol, $"{preset}: a wrong routing changes the output by only {worstWrong:E2}");

        // (3) One padded batch of rows with mixed tasks through the pipeline's batch routing.
        var examples = testRows.Select(r => new LabeledExample(runtime.Encode(r.Text))).ToList();
        var source = new ExampleBatchSource(examples, TargetKind.Class, runtime.PadId, runtime.UsesTokenTypes);
        using var batch = source.GetBatch(Enumerable.Range(0, testRows.Length).ToArray());
        Assert.True(batch.AttentionMask!.sum().ToInt64() < batch.AttentionMask.numel(), "the batch has padding");
        var batchTasks = testRows.Select(r => RouteOf(r).TaskId ?? 0).ToArray();
        Assert.True(preset is "moa" or "octavius" or "mlore" || batchTasks.Distinct().Count() > 1, "mixed task ids in the batch");
        float[] BatchProbabilities(bool tokenMask)
        {
            using var scope = NewDisposeScope();
            using var ng = no_grad();
            var inputs = routing.BatchInputs(lm, batch.InputIds, tokenMask ? batch.AttentionMask : null, batchTasks, batchTasks,
                examples.Select(e => e.Text.Ids.Length).ToArray(), null);
            using var r = lm.UseRouting(inputs);
            var logits = lm.forward(batch.ToModelInputs()).Logits!;
            return nn.functional.softmax(logits.to_type(ScalarType.Float64), -1).to_type(ScalarType.Float32).contiguous().ToArray<float>();
        }
        var batched = BatchProbabilities(tokenMask: true);
        int k = scores[0].Length;
        for (int i = 0; i < testRows.Length; i++)
        {
            var row = batched.AsSpan(i * k, k).ToArray();
            Assert.True(MaxAbsDiff(scores[i].Select(v => (double)v).ToArray(), row) <= Tol, $"{preset}: row {i} batched vs per-row: {MaxAbsDiff(scores[i].Select(v => (double)v).ToArray(), row):E2}");
        }
        if (preset is "moa" or "mlore")
        {
            // A sequence router pools over real tokens only: without the token mask the batch pools padding too.
            var unmasked = BatchProbabilities(tokenMask: false);
            double worst = 0;
            for (int i = 0; i < unmasked.Length; i++) worst = Math.Max(worst, Math.Abs(unmasked[i] - batched[i]));
            Assert.True(worst > 100 * Tol, $"padding in the sequence pooling changes the output by only {worst:E2}");
        }
    }

    /// <summary>
    /// MoA's router is supervised by the domain labels from the task column at Fit: with the whole data set in one batch
    /// (so the order of the shuffled examples does not matter: every term is a mean over examples), the first step's loss
    /// equals the task loss plus the router cross-entropy against the domains mapped here, computed on a model initialised
    /// the same way. Shifted domain labels give a clearly different loss.
    /// </summary>
    [Fact]
    public void MoaRouterLearnsFromTheDomainColumn()
    {
        var ctx = new LowRankContext(seed: 32);
        var rows = Rows(12, 4);
        var data = ctx.Transforms.Conversion.MapValueToKey("Label", "Topic").Fit(ctx.Data.LoadFromEnumerable(rows)).Transform(ctx.Data.LoadFromEnumerable(rows));
        var method = Preset("moa");
        var options = Classifier("llama_cls", method);
        options.TaskColumnName = "Task";
        options.BatchSize = rows.Length;
        options.MaxEpochs = 0;
        options.MaxSteps = 1;
        using var model = ctx.MulticlassClassification.Trainers.TextClassification(options).Fit(data);
        double reported = model.TrainingResult!.StepLosses[0];
        var runtime = model.Runtime;

        // The same initialisation as Fit: the seed, then the base model with a 3-class head, then the adapter.
        manual_seed(options.Seed!.Value);
        var folder = PipelineFixtures.Model("llama_cls");
        var init = method.Clone();
        init.BaseModelNameOrPath = folder;
        using var lm = LowRankModel.Create(PretrainedModel.Load(folder, ModelTask.SequenceClassification, runtime.Device, ScalarType.Float32, 3), init);
        lm.train();
        var encoded = rows.Select(r => runtime.Encode(r.Text).Ids).ToList();
        int width = encoded.Max(e => e.Length);
        var ids = new long[rows.Length * width];
        var mask = new long[rows.Length * width];
        Array.Fill(ids, runtime.PadId);
        for (int i = 0; i < rows.Length; i++)
        {
            Array.Copy(encoded[i], 0, ids, i * width, encoded[i].Length);
            Array.Fill(mask, 1L, i * width, encoded[i].Length);
        }
        var classOf = FirstAppearance(rows.Select(r => r.Topic));
        var domainOf = FirstAppearance(rows.Select(r => r.Task));
        double Loss(int shift)
        {
            using var scope = NewDisposeScope();
            using var record = lm.RecordRouting();
            var tokenMask = tensor(mask, new long[] { rows.Length, width });
            using var routing = lm.UseRouting(new MixtureRoutingInputs
            {
                TokenMask = tokenMask,
                RouterLabels = tensor(rows.Select(r => (domainOf[r.Task] + shift) % 3).ToArray()),
            });
            var output = lm.forward(new ModelInputs
            {
                InputIds = tensor(ids, new long[] { rows.Length, width }), AttentionMask = tokenMask,
                Labels = tensor(rows.Select(r => classOf[r.Topic]).ToArray()),
            });
            var aux = lm.TakeAuxiliaryLoss() ?? throw new InvalidOperationException("MoA has a router cross-entropy");
            return output.Loss!.ToDouble() + aux.ToDouble();
        }
        double expected = Loss(0);
        Assert.True(Math.Abs(reported - expected) <= 1e-5 * Math.Max(1, expected), $"first step loss {reported} vs task loss + router CE {expected}");
        Assert.True(Math.Abs(reported - Loss(1)) > 1e-3, "shifted domain labels change the router cross-entropy");
    }

    public sealed class PairOnly
    {
        public string Text { get; set; } = "";
        public string Second { get; set; } = "";
    }

    private static string TempZip() => Path.Combine(Path.GetTempPath(), $"lowrank-routing-{Guid.NewGuid():N}.zip");

    private static System.Text.Json.Nodes.JsonNode TaskJson(string zip)
    {
        using var archive = System.IO.Compression.ZipFile.OpenRead(zip);
        var entry = archive.Entries.Single(e => e.FullName.EndsWith("lowrank.json", StringComparison.Ordinal));
        return System.Text.Json.Nodes.JsonNode.Parse(new StreamReader(entry.Open()).ReadToEnd())!;
    }

    /// <summary>Pair classification on BERT (segment ids) with an Int32 task column: Transform equals one forward pass per
    /// pair with its own task id, a wrong task id changes it, and after Save/Load (the zip records the column) the
    /// predictions are bit-identical; data without the task column fails naming it.</summary>
    [Fact]
    public void PairClassificationRoutesOnAnIntegerTaskColumnAndRoundTripsThroughTheZip()
    {
        var ctx = new LowRankContext(seed: 33);
        var trainRows = Rows(24, 5);
        var testRows = Rows(9, 6);
        var keys = ctx.Transforms.Conversion.MapValueToKey("Label", "Topic").Fit(ctx.Data.LoadFromEnumerable(trainRows));
        var options = Classifier("bert_cls", Preset("mmoelora"));
        options.Sentence2ColumnName = "Second";
        options.TaskColumnName = "TaskId";
        var zip = TempZip();
        try
        {
            float[][] before;
            using (var model = ctx.MulticlassClassification.Trainers.TextClassification(options).Fit(keys.Transform(ctx.Data.LoadFromEnumerable(trainRows))))
            {
                var lm = model.AdaptedModel;
                AdapterInvariants.Perturb(lm, seed: 4, std: 0.2);
                before = [.. model.Transform(ctx.Data.LoadFromEnumerable(testRows)).GetColumn<float[]>("Score")];
                double worstWrong = 0;
                for (int i = 0; i < testRows.Length; i++)
                {
                    var e = model.Runtime.Encode(testRows[i].Text, testRows[i].Second);
                    Assert.Contains(1L, e.TypeIds); // the second sentence is segment 1
                    var expected = Softmax(NaiveLogits(lm, e.Ids, new Route(testRows[i].TaskId, null), typeIds: e.TypeIds));
                    Assert.True(MaxAbsDiff(expected, before[i]) <= Tol, $"row {i}: {MaxAbsDiff(expected, before[i]):E2}");
                    var wrong = Softmax(NaiveLogits(lm, e.Ids, new Route((testRows[i].TaskId + 1) % 3, null), typeIds: e.TypeIds));
                    worstWrong = Math.Max(worstWrong, MaxAbsDiff(wrong, before[i]));
                }
                Assert.True(worstWrong > 100 * Tol, $"a wrong task changes the output by only {worstWrong:E2}");
                ctx.Model.Save(model, null, zip);
            }
            var routing = TaskJson(zip)["routing"]!;
            Assert.Equal("TaskId", (string?)routing["task_column"]);
            Assert.Equal("Integer", (string?)routing["task_column_kind"]);
            Assert.Equal(3, routing["limit"]!.GetValue<int>());
            using var loaded = Assert.IsType<TextClassificationTransformer>(ctx.Model.Load(zip, out _));
            Assert.Equal("TaskId", loaded.TaskColumnName);
            var after = loaded.Transform(ctx.Data.LoadFromEnumerable(testRows)).GetColumn<float[]>("Score").ToList();
            for (int i = 0; i < before.Length; i++) AdapterInvariants.AssertIdentical(before[i], after[i], $"row {i} after Load");
            var without = ctx.Data.LoadFromEnumerable(testRows.Select(r => new PairOnly { Text = r.Text, Second = r.Second }));
            var missing = Assert.Throws<ArgumentOutOfRangeException>(() => loaded.Transform(without));
            Assert.Contains("task column 'TaskId'", missing.Message);
        }
        finally
        {
            File.Delete(zip);
        }
    }

    /// <summary>Sentence similarity (regression) with Polytropon routed on a key task column (task id = key − 1, read here
    /// from the keyed data): Transform's score equals one forward pass per pair with its own task id.</summary>
    [Fact]
    public void SentenceSimilarityRoutesOnAKeyTaskColumn()
    {
        var ctx = new LowRankContext(seed: 34);
        var trainRows = Rows(24, 7);
        var testRows = Rows(9, 8);
        var keys = ctx.Transforms.Conversion.MapValueToKey("TaskKey", "Task").Fit(ctx.Data.LoadFromEnumerable(trainRows));
        using var model = ctx.Regression.Trainers.SentenceSimilarity(new SentenceSimilarityTrainer.Options
        {
            ModelFolder = PipelineFixtures.Model("llama_cls"), LabelColumnName = "Similarity", Sentence1ColumnName = "Text", Sentence2ColumnName = "Second",
            Method = Preset("poly"), TaskColumnName = "TaskKey", Seed = 9, BatchSize = 8, MaxEpochs = 1, LearningRate = 5e-2, WarmupRatio = 0,
        }).Fit(keys.Transform(ctx.Data.LoadFromEnumerable(trainRows)));
        Assert.Equal("TaskKey", model.TaskColumnName);
        Assert.Null(model.TaskValues);
        var lm = model.AdaptedModel;
        AdapterInvariants.Perturb(lm, seed: 5, std: 0.2);
        var test = keys.Transform(ctx.Data.LoadFromEnumerable(testRows));
        var taskKeys = test.GetColumn<uint>("TaskKey").ToList();
        var scores = model.Transform(test).GetColumn<float>("Score").ToList();
        double worstWrong = 0;
        for (int i = 0; i < testRows.Length; i++)
        {
            var e = model.Runtime.Encode(testRows[i].Text, testRows[i].Second);
            float expected = NaiveLogits(lm, e.Ids, new Route(taskKeys[i] - 1L, null))[0];
            Assert.True(Math.Abs(expected - scores[i]) <= Tol * Math.Max(1, Math.Abs(expected)), $"row {i}: {expected} vs {scores[i]}");
            worstWrong = Math.Max(worstWrong, Math.Abs(NaiveLogits(lm, e.Ids, new Route(taskKeys[i] % 3, null))[0] - scores[i]));
        }
        Assert.True(worstWrong > 100 * Tol, $"a wrong task changes the score by only {worstWrong:E2}");
    }

    /// <summary>NER on BERT with Octavius' gate on the instance embedding derived from the model (mean frozen token
    /// embedding of the whole encoded sentence): the validation loss Fit reports (one batch: total token cross-entropy over
    /// labelled tokens) equals the per-sentence computation, and Transform's tags are the per-sentence argmax.</summary>
    [Fact]
    public void NamedEntityRecognitionRoutesOnTheDerivedInstanceEmbedding()
    {
        var ctx = new LowRankContext(seed: 35);
        var trainRows = PipelineFixtures.Ner(24, 9);
        var validRows = PipelineFixtures.Ner(10, 10);
        var keys = ctx.Transforms.Conversion.MapValueToKey("Label", "Tags").Fit(ctx.Data.LoadFromEnumerable(trainRows));
        using var model = ctx.MulticlassClassification.Trainers.NamedEntityRecognition(new NamedEntityRecognitionTrainer.Options
        {
            ModelFolder = PipelineFixtures.Model("bert_token_cls"), Method = Preset("octavius"), Seed = 9, BatchSize = 12, MaxEpochs = 1,
            LearningRate = 5e-2, WarmupRatio = 0, ValidationSet = keys.Transform(ctx.Data.LoadFromEnumerable(validRows)),
        }).Fit(keys.Transform(ctx.Data.LoadFromEnumerable(trainRows)));
        Assert.Null(model.TaskColumnName);
        var lm = model.AdaptedModel;
        var emb = EmbeddingMatrix(lm);
        var tagOf = FirstAppearance(trainRows.SelectMany(r => r.Tags));
        double sum = 0;
        long count = 0;
        foreach (var row in validRows)
        {
            var words = row.Sentence.Split(' ');
            var aligned = WordAlignment.Encode(model.Runtime, words);
            var ids = aligned.Text.Ids;
            var p = NaiveLogits(lm, ids, new Route(null, MeanEmbedding(emb, ids)));
            int k = p.Length / ids.Length;
            for (int w = 0; w < words.Length; w++)
            {
                int t = aligned.FirstToken[w];
                if (t < 0) continue;
                var probs = Softmax(p.AsSpan(t * k, k).ToArray());
                sum -= Math.Log(probs[tagOf[row.Tags[w]]]);
                count++;
            }
        }
        double reported = model.TrainingResult!.Evaluations[^1].Loss;
        Assert.True(Math.Abs(reported - sum / count) <= 1e-5 * Math.Max(1, sum / count), $"validation loss {reported} vs per-sentence {sum / count}");

        AdapterInvariants.Perturb(lm, seed: 6, std: 0.2);
        var predicted = model.Transform(keys.Transform(ctx.Data.LoadFromEnumerable(validRows))).GetColumn<uint[]>("PredictedLabel").ToList();
        for (int i = 0; i < validRows.Length; i++)
        {
            var words = validRows[i].Sentence.Split(' ');
            var aligned = WordAlignment.Encode(model.Runtime, words);
            var p = NaiveLogits(lm, aligned.Text.Ids, new Route(null, MeanEmbedding(emb, aligned.Text.Ids)));
            int k = p.Length / aligned.Text.Ids.Length;
            var expected = words.Select((_, w) => (uint)TextClassificationTransformer.ArgMax(p.AsSpan(aligned.FirstToken[w] * k, k)) + 1).ToArray();
            Assert.Equal(expected, predicted[i]);
        }
    }

    public sealed class PromptRow
    {
        public string Prompt { get; set; } = "";
        public string Response { get; set; } = "";
        public string Task { get; set; } = "";
    }

    private static PromptRow[] Prompts() => [.. PipelineFixtures.Instructions().Select((r, i) => new PromptRow { Prompt = r.Prompt, Response = r.Response, Task = TaskNames[(i / 2) % 3] })];

    /// <summary>Causal LM with Octavius: the gate reads the mean frozen embedding of the prompt tokens only (the
    /// instruction). Each row's response log-loss equals a teacher-forced forward pass with that instance embedding (and
    /// differs from one gated on the whole prompt + response); each completion equals greedy generation with the same gate
    /// held for every new token; Save/Load keeps both.</summary>
    [Fact]
    public void CausalLMGatesOnThePromptEmbeddingForScoringAndGeneration()
    {
        var ctx = new LowRankContext(seed: 36);
        var rows = Prompts();
        var data = ctx.Data.LoadFromEnumerable(rows);
        var zip = TempZip();
        try
        {
            float[] losses;
            string[] completions;
            using (var model = ctx.TextGeneration.Trainers.CausalLM(new CausalLMTrainer.Options
            {
                ModelFolder = PipelineFixtures.Model("llama"), Method = Preset("octavius"), Seed = 9, BatchSize = 8, MaxEpochs = 1,
                LearningRate = 5e-2, WarmupRatio = 0, Generation = new GenerationOptions { MaxNewTokens = 4 },
            }).Fit(data))
            {
                var lm = model.AdaptedModel;
                AdapterInvariants.Perturb(lm, seed: 7, std: 0.2);
                var emb = EmbeddingMatrix(lm);
                var scored = model.Transform(data);
                losses = [.. scored.GetColumn<float>(CausalLMTransformer.LogLossColumnName)];
                completions = [.. scored.GetColumn<string>("Completion")];
                double worstWhole = 0;
                for (int i = 0; i < rows.Length; i++)
                {
                    var (ids, promptLength) = CausalLMTransformer.EncodeExample(model.Runtime, rows[i].Prompt, rows[i].Response);
                    var labels = ids.Select((t, j) => j < promptLength ? -100L : t).ToArray();
                    var instruction = MeanEmbedding(emb, ids[..promptLength]);
                    double expected = NaiveRun(lm, ids, new Route(null, instruction), labels).loss!.Value;
                    Assert.True(Math.Abs(expected - losses[i]) <= Tol * Math.Max(1, expected), $"row {i}: log-loss {losses[i]} vs {expected}");
                    worstWhole = Math.Max(worstWhole, Math.Abs(NaiveRun(lm, ids, new Route(null, MeanEmbedding(emb, ids)), labels).loss!.Value - losses[i]));

                    // Greedy generation with the prompt's gate, decoded as the transformer does.
                    var promptIds = ids[..promptLength];
                    List<long[]> generated;
                    using (var scope = NewDisposeScope())
                    using (lm.UseRouting(new MixtureRoutingInputs { InstanceFeatures = tensor(instruction.Select(x => (float)x).ToArray(), new long[] { 1, instruction.Length }) }))
                        generated = TextGenerator.Generate(lm.Model, [promptIds], new GenerationOptions { MaxNewTokens = 4 });
                    var tokens = generated[0].AsEnumerable();
                    if (generated[0].Length > 0 && lm.Model.Config.EosTokenIds.Contains(generated[0][^1])) tokens = generated[0][..^1];
                    Assert.Equal(model.Runtime.Tokenizer.Decode(tokens.Select(t => (int)t)).Trim(), completions[i]);
                }
                Assert.True(worstWhole > 100 * Tol, $"gating on the whole sequence changes the log-loss by only {worstWhole:E2}");
                Assert.Contains(completions, c => c.Length > 0);
                ctx.Model.Save(model, data.Schema, zip);
            }
            Assert.Equal("Derived", (string?)TaskJson(zip)["routing"]!["instance"]);
            using var loaded = Assert.IsType<CausalLMTransformer>(ctx.Model.Load(zip, out _));
            var again = loaded.Transform(data);
            AdapterInvariants.AssertIdentical(losses, again.GetColumn<float>(CausalLMTransformer.LogLossColumnName).ToArray(), "log-loss after Load");
            Assert.Equal(completions, again.GetColumn<string>("Completion").ToArray());
        }
        finally
        {
            File.Delete(zip);
        }
    }

    /// <summary>Causal LM with MOELoRA routed on a String task column: log-loss and completions per row follow the row's
    /// own task; the public <c>Generate(prompt)</c>, which has no task, fails naming the column.</summary>
    [Fact]
    public void CausalLMRoutesOnAStringTaskColumn()
    {
        var ctx = new LowRankContext(seed: 37);
        var rows = Prompts();
        var data = ctx.Data.LoadFromEnumerable(rows);
        using var model = ctx.TextGeneration.Trainers.CausalLM(new CausalLMTrainer.Options
        {
            ModelFolder = PipelineFixtures.Model("llama"), Method = Preset("mmoelora"), TaskColumnName = "Task", Seed = 9, BatchSize = 8, MaxEpochs = 1,
            LearningRate = 5e-2, WarmupRatio = 0, Generation = new GenerationOptions { MaxNewTokens = 3 },
        }).Fit(data);
        var taskOf = FirstAppearance(rows.Select(r => r.Task));
        Assert.Equal(taskOf.Keys.ToArray(), model.TaskValues!.ToArray());
        var lm = model.AdaptedModel;
        AdapterInvariants.Perturb(lm, seed: 8, std: 0.2);
        var scored = model.Transform(data);
        var losses = scored.GetColumn<float>(CausalLMTransformer.LogLossColumnName).ToArray();
        var completions = scored.GetColumn<string>("Completion").ToArray();
        double worstWrong = 0;
        for (int i = 0; i < rows.Length; i++)
        {
            var (ids, promptLength) = CausalLMTransformer.EncodeExample(model.Runtime, rows[i].Prompt, rows[i].Response);
            var labels = ids.Select((t, j) => j < promptLength ? -100L : t).ToArray();
            long task = taskOf[rows[i].Task];
            double expected = NaiveRun(lm, ids, new Route(task, null), labels).loss!.Value;
            Assert.True(Math.Abs(expected - losses[i]) <= Tol * Math.Max(1, expected), $"row {i}: log-loss {losses[i]} vs {expected}");
            worstWrong = Math.Max(worstWrong, Math.Abs(NaiveRun(lm, ids, new Route((task + 1) % 3, null), labels).loss!.Value - losses[i]));
            List<long[]> generated;
            using (var scope = NewDisposeScope())
            using (lm.UseRouting(new MixtureRoutingInputs { TaskIds = tensor(new[] { task }) }))
                generated = TextGenerator.Generate(lm.Model, [ids[..promptLength]], new GenerationOptions { MaxNewTokens = 3 });
            var tokens = generated[0].AsEnumerable();
            if (generated[0].Length > 0 && lm.Model.Config.EosTokenIds.Contains(generated[0][^1])) tokens = generated[0][..^1];
            Assert.Equal(model.Runtime.Tokenizer.Decode(tokens.Select(t => (int)t)).Trim(), completions[i]);
        }
        Assert.True(worstWrong > 100 * Tol, $"a wrong task changes the log-loss by only {worstWrong:E2}");
        var e = Assert.Throws<InvalidOperationException>(() => model.Generate("opposite of hot"));
        Assert.Contains("task column 'Task'", e.Message);
    }

    public sealed class VectorRow
    {
        public string Text { get; set; } = "";
        public string Topic { get; set; } = "";

        [VectorType(32)]
        public float[] Embedding { get; set; } = [];
    }

    /// <summary>Octavius with an explicit instance column (InstanceColumnName): the gate reads each row's vector, at Fit
    /// (validation loss) and in Transform; another row's vector changes the output.</summary>
    [Fact]
    public void OctaviusReadsAnExplicitInstanceColumn()
    {
        var ctx = new LowRankContext(seed: 38);
        var rng = new Random(4);
        VectorRow[] Make(int n, int seed) => [.. PipelineFixtures.Topics(n, seed).Select(r => new VectorRow
        {
            Text = r.Text, Topic = r.Topic, Embedding = [.. Enumerable.Range(0, 32).Select(_ => (float)(rng.NextDouble() * 2 - 1))],
        })];
        var trainRows = Make(24, 11);
        var validRows = Make(12, 12);
        var keys = ctx.Transforms.Conversion.MapValueToKey("Label", "Topic").Fit(ctx.Data.LoadFromEnumerable(trainRows));
        var options = Classifier("llama_cls", Preset("octavius"));
        options.InstanceColumnName = "Embedding";
        options.ValidationSet = keys.Transform(ctx.Data.LoadFromEnumerable(validRows));
        using var model = ctx.MulticlassClassification.Trainers.TextClassification(options).Fit(keys.Transform(ctx.Data.LoadFromEnumerable(trainRows)));
        var lm = model.AdaptedModel;
        var classOf = FirstAppearance(trainRows.Select(r => r.Topic));
        Route Of(VectorRow r) => new(null, [.. r.Embedding.Select(x => (double)x)]);
        double naive = validRows.Average(r => -Math.Log(Softmax(NaiveLogits(lm, model.Runtime.Encode(r.Text).Ids, Of(r)))[classOf[r.Topic]]));
        double reported = model.TrainingResult!.Evaluations[^1].Loss;
        Assert.True(Math.Abs(reported - naive) <= 1e-5 * Math.Max(1, naive), $"validation loss {reported} vs per-row {naive}");
        AdapterInvariants.Perturb(lm, seed: 9, std: 0.2);
        var scores = model.Transform(ctx.Data.LoadFromEnumerable(validRows)).GetColumn<float[]>("Score").ToList();
        double worstWrong = 0;
        for (int i = 0; i < validRows.Length; i++)
        {
            var ids = model.Runtime.Encode(validRows[i].Text).Ids;
            Assert.True(MaxAbsDiff(Softmax(NaiveLogits(lm, ids, Of(validRows[i]))), scores[i]) <= Tol, $"row {i}");
            worstWrong = Math.Max(worstWrong, MaxAbsDiff(Softmax(NaiveLogits(lm, ids, Of(validRows[(i + 1) % validRows.Length]))), scores[i]));
        }
        Assert.True(worstWrong > 100 * Tol, $"another row's embedding changes the output by only {worstWrong:E2}");
    }

    /// <summary>Bad routing inputs fail at Fit with an exception naming the column (or the option), before or while reading
    /// the data; a task value the training data did not have fails at prediction naming the column and the value; MoCLE
    /// without a task column and a one-task Polytropon need none; LoRAMoE's balancing constraint reads 0/1 task types.</summary>
    [Fact]
    public void RoutingErrorsNameTheColumnOrTheOption()
    {
        var ctx = new LowRankContext(seed: 39);
        var rows = Rows(12, 13);
        var keys = ctx.Transforms.Conversion.MapValueToKey("Label", "Topic").Fit(ctx.Data.LoadFromEnumerable(rows));
        IDataView Data(IEnumerable<Row> r) => keys.Transform(ctx.Data.LoadFromEnumerable(r));
        TextClassificationTransformer Fit(MixtureOfLoraExpertsOptions method, string? task, IDataView data, IDataView? validation = null)
        {
            var o = Classifier("llama_cls", method);
            o.TaskColumnName = task;
            o.MaxEpochs = 0;
            o.MaxSteps = 1;
            o.ValidationSet = validation;
            return ctx.MulticlassClassification.Trainers.TextClassification(o).Fit(data);
        }
        var data = Data(rows);

        // Missing column, wrong type: ML.NET's wording, from the schema check.
        var e1 = Assert.Throws<ArgumentOutOfRangeException>(() => Fit(Preset("mmoelora"), "Nope", data));
        Assert.Contains("Could not find task column 'Nope'", e1.Message);
        var e2 = Assert.Throws<ArgumentOutOfRangeException>(() => Fit(Preset("mmoelora"), "Weight", data));
        Assert.Contains("Schema mismatch for task column 'Weight'", e2.Message);
        Assert.Contains("Single", e2.Message);

        // No column for a method that needs one: the option is named.
        var e3 = Assert.Throws<ArgumentException>(() => Fit(Preset("mmoelora"), null, data));
        Assert.Equal("TaskColumnName", e3.ParamName);
        Assert.Contains("num_tasks = 3", e3.Message);
        var e4 = Assert.Throws<ArgumentException>(() => Fit(Preset("moa"), null, data));
        Assert.Equal("TaskColumnName", e4.ParamName);
        Assert.Contains("domain", e4.Message);
        var lbc = MixtureOfLoraExpertsOptions.LoRAMoE(numExperts: 4, r: 2, dropout: 0, lbcWeight: 0.1, lbcDelta: 0.1);
        Assert.Equal("TaskColumnName", Assert.Throws<ArgumentException>(() => Fit(lbc, null, data)).ParamName);

        // Ids beyond the configured number of tasks (integer, String, MoA's experts, LoRAMoE's two types).
        var beyond = rows.Select((r, i) => new Row { Text = r.Text, Topic = r.Topic, Task = r.Task, TaskId = i == 7 ? 3 : r.TaskId }).ToArray();
        var e5 = Assert.Throws<InvalidOperationException>(() => Fit(Preset("mmoelora"), "TaskId", Data(beyond)));
        Assert.Contains("task column 'TaskId' has the value 3 at row 7", e5.Message);
        Assert.Contains("num_tasks = 3", e5.Message);
        var e6 = Assert.Throws<InvalidOperationException>(() => Fit(MixtureOfLoraExpertsOptions.Poly(r: 4), "Task", data));
        Assert.Contains("task column 'Task'", e6.Message);
        Assert.Contains("num_tasks = 1", e6.Message);
        var e7 = Assert.Throws<InvalidOperationException>(() => Fit(MixtureOfLoraExpertsOptions.MoA(numDomains: 2, r: 4, dropout: 0), "TaskId", data));
        Assert.Contains("task column 'TaskId'", e7.Message);
        Assert.Contains("num_experts = 2", e7.Message);
        var e8 = Assert.Throws<InvalidOperationException>(() => Fit(lbc, "TaskId", data));
        Assert.Contains("two task types", e8.Message);
        using (var ok = Fit(lbc, "TaskId", Data(rows.Select(r => new Row { Text = r.Text, Topic = r.Topic, TaskId = r.TaskId % 2 }))))
            Assert.Equal("TaskId", ok.TaskColumnName);

        // A missing key (a value the key mapping did not have).
        var taskKeys = ctx.Transforms.Conversion.MapValueToKey("TaskKey", "Task").Fit(ctx.Data.LoadFromEnumerable(rows.Where(r => r.Task != "qa")));
        var keyed = taskKeys.Transform(data);
        var e9 = Assert.Throws<InvalidOperationException>(() => Fit(Preset("mmoelora"), "TaskKey", keyed));
        Assert.Contains("task column 'TaskKey' has a missing key (0)", e9.Message);

        // A validation row with a task the training data did not have.
        var unseen = Data(rows.Take(4).Select(r => new Row { Text = r.Text, Topic = r.Topic, Task = "translate" }));
        var e10 = Assert.Throws<InvalidOperationException>(() => Fit(Preset("mmoelora"), "Task", data, unseen));
        Assert.Contains("task column 'Task' has the value 'translate'", e10.Message);

        // Without a task column: one-task Polytropon routes every row as task 0; MoCLE clusters. Both predict without one.
        using (var one = Fit(MixtureOfLoraExpertsOptions.Poly(r: 4), null, data))
            Assert.Equal(TaskIdSource.SingleTask, one.Runtime.Routing!.TaskIds);
        using var mocle = Fit(Preset("mocle"), null, data);
        Assert.Null(mocle.TaskColumnName);
        Assert.Equal(rows.Length, mocle.Transform(data).GetColumn<float[]>("Score").Count());

        // At prediction: an unseen String task value.
        using var model = Fit(Preset("mmoelora"), "Task", data);
        var other = model.Transform(Data(rows.Take(2).Select(r => new Row { Text = r.Text, Topic = r.Topic, Task = "translate" })));
        var e11 = Assert.Throws<InvalidOperationException>(() => other.GetColumn<float[]>("Score").ToList());
        Assert.Contains("task column 'Task' has the value 'translate'", e11.Message);
        Assert.Contains("'summary'", e11.Message);

        // An instance column of the wrong size for Octavius' gate (hidden size 32).
        var vectors = ctx.Data.LoadFromEnumerable(rows.Select(r => new SmallVectorRow { Text = r.Text, Topic = r.Topic, Embedding = [1, 2, 3] }));
        var o12 = Classifier("llama_cls", Preset("octavius"));
        o12.InstanceColumnName = "Embedding";
        o12.MaxEpochs = 0;
        o12.MaxSteps = 1;
        var e12 = Assert.Throws<InvalidOperationException>(() => ctx.MulticlassClassification.Trainers.TextClassification(o12).Fit(keys.Transform(vectors)));
        Assert.Contains("instance column 'Embedding' has a vector of 3 values", e12.Message);
        Assert.Contains("32", e12.Message);

        // Packed causal-LM rows hold several examples: per-example routing refuses them.
        var packed = new CausalLMTrainer.Options { ModelFolder = PipelineFixtures.Model("llama"), Method = Preset("octavius"), PackSequences = true, MaxSteps = 1 };
        var e13 = Assert.Throws<ArgumentException>(() => ctx.TextGeneration.Trainers.CausalLM(packed).Fit(ctx.Data.LoadFromEnumerable(Prompts())));
        Assert.Equal("PackSequences", e13.ParamName);
    }

    public sealed class SmallVectorRow
    {
        public string Text { get; set; } = "";
        public string Topic { get; set; } = "";

        [VectorType(3)]
        public float[] Embedding { get; set; } = [];
    }

    /// <summary>The zip records a String task column's id mapping (first appearance in the training data) and MoCLE's
    /// k-means centroids: after Load, predictions are bit-identical, also for prediction data whose tasks appear in another
    /// order (so the ids come from the saved mapping, not from the new data).</summary>
    [Theory]
    [InlineData("mmoelora")]
    [InlineData("mocle")]
    public void StringTaskMappingAndClustersRoundTripThroughTheZip(string preset)
    {
        var ctx = new LowRankContext(seed: 40);
        var trainRows = Rows(24, 14);
        var testRows = Rows(9, 15).Reverse().ToArray(); // tasks in another order than at Fit
        var options = Classifier("llama_cls", Preset(preset));
        if (preset == "mmoelora") options.TaskColumnName = "Task";
        var pipeline = ctx.Transforms.Conversion.MapValueToKey("Label", "Topic").Append(ctx.MulticlassClassification.Trainers.TextClassification(options));
        var train = ctx.Data.LoadFromEnumerable(trainRows);
        var test = ctx.Data.LoadFromEnumerable(testRows);
        var zip = TempZip();
        try
        {
            float[][] before;
            float[]? centroids = null;
            using (var model = pipeline.Fit(train))
            {
                AdapterInvariants.Perturb(model.LastTransformer.AdaptedModel, seed: 10, std: 0.2);
                before = [.. model.Transform(test).GetColumn<float[]>("Score")];
                centroids = model.LastTransformer.Runtime.Routing!.Centroids;
                ctx.Model.Save(model, train.Schema, zip);
            }
            var routing = TaskJson(zip)["routing"]!;
            if (preset == "mmoelora")
            {
                Assert.Equal("Text", (string?)routing["task_column_kind"]);
                Assert.Equal(FirstAppearance(trainRows.Select(r => r.Task)).Keys.ToArray(), routing["task_values"]!.AsArray().Select(v => (string)v!).ToArray());
                Assert.Equal(["summary", "chat", "qa"], routing["task_values"]!.AsArray().Select(v => (string)v!).ToArray());
            }
            else
            {
                Assert.Equal("Clusters", (string?)routing["task_ids"]);
                Assert.Equal(centroids, routing["centroids"]!["values"]!.AsArray().Select(v => v!.GetValue<float>()).ToArray());
            }
            var loaded = ctx.Model.Load(zip, out _);
            try
            {
                var after = loaded.Transform(test).GetColumn<float[]>("Score").ToList();
                for (int i = 0; i < before.Length; i++) AdapterInvariants.AssertIdentical(before[i], after[i], $"{preset}: row {i} after Load");
            }
            finally
            {
                (loaded as IDisposable)?.Dispose();
            }
        }
        finally
        {
            File.Delete(zip);
        }
    }
}
