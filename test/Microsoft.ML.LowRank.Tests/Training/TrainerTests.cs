using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Training;

/// <summary>The training loop: accumulation, determinism, resume, non-finite losses, early stopping, cancellation,
/// progress events, hooks and checkpoint files.</summary>
// Bit-identical determinism needs the process-wide default generator to itself: run alone.
[Collection(SerialCollection.Name)]
public sealed class TrainerTests : IDisposable
{
    private const int Vocab = 17, Dim = 8;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lowrank-trainer-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        Checkpoints.t_beforeFile = null;
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private static TokenBatcher Data(int count = 20, int seed = 1, bool vary = true, int length = 9)
        => new(TrainingData.Affine(count, Vocab, length, seed, varyLength: vary));

    private static Trainer MakeTrainer(TinyLM model, TrainerOptions options) => new(model, model.Loss, options);

    private static double[] Params(nn.Module m) => m.parameters().SelectMany(p => p.ToDoubleArray()).ToArray();

    // ---------------------------------------------------------------- gradient accumulation

    /// <summary>
    /// Convention: a micro-batch loss is a mean over its own terms; with n micro-batches per step each is scaled by 1/n
    /// (<see cref="AccumulationLossWeighting.MeanOfMicroBatches"/>), so the step minimises the mean of the micro-batch
    /// means. That equals one big batch exactly when every micro-batch has as many loss terms as the others (here: 8
    /// equal-length sequences); <see cref="AccumulationLossWeighting.TokenWeighted"/> weights by target counts and equals
    /// the big batch whatever the lengths.
    /// </summary>
    [Theory]
    [InlineData(false, AccumulationLossWeighting.MeanOfMicroBatches, true)]
    [InlineData(true, AccumulationLossWeighting.TokenWeighted, true)]
    [InlineData(true, AccumulationLossWeighting.MeanOfMicroBatches, false)]
    public void FourMicroBatchesOfTwoEqualOneBatchOfEight(bool varyLengths, AccumulationLossWeighting weighting, bool expectEqual)
    {
        using var scope = NewDisposeScope();
        var data = Data(8, seed: 3, vary: varyLengths);
        (double loss, double[] update) Run(int batch, int accumulation)
        {
            using var model = new TinyLM(Vocab, Dim);
            var before = Params(model);
            using var t = MakeTrainer(model, new TrainerOptions
            {
                LearningRate = 1.0, BatchSize = batch, GradientAccumulationSteps = accumulation, MaxEpochs = 1, ShuffleEachEpoch = false,
                MaxGradNorm = null, Schedule = LearningRateSchedule.Constant, LossWeighting = weighting,
                OptimizerFactory = (groups, o) => optim.SGD(groups, o.LearningRate), // the groups carry lr = o.LearningRate
            });
            var r = t.Train(data);
            Assert.Equal(1, r.GlobalStep);
            // With SGD at lr 1 the update is minus the accumulated gradient.
            return (r.StepLosses[0], Params(model).Zip(before, (a, b) => a - b).ToArray());
        }
        var (bigLoss, bigUpdate) = Run(8, 1);
        var (accLoss, accUpdate) = Run(2, 4);
        double norm = Math.Sqrt(bigUpdate.Sum(v => v * v));
        double relDiff = Math.Sqrt(bigUpdate.Zip(accUpdate, (a, b) => (a - b) * (a - b)).Sum()) / norm;
        Assert.True(norm > 1e-3, $"the update is too small to compare ({norm})");
        if (expectEqual)
        {
            Assert.True(Math.Abs(bigLoss - accLoss) < 1e-6, $"loss {bigLoss} vs {accLoss}");
            Assert.True(relDiff < 1e-5, $"the accumulated gradient differs from the big batch's by {relDiff:G3} (relative)");
        }
        else
        {
            Assert.True(relDiff > 1e-2, $"with unequal lengths the mean of micro-batch means should differ from the token mean (relative {relDiff:G3})");
        }
    }

    // ---------------------------------------------------------------- determinism and resume

    [Fact]
    public void SameSeedGivesBitIdenticalLosses()
    {
        using var scope = NewDisposeScope();
        var data = Data();
        double[] Run(int seed)
        {
            using var model = new TinyLM(Vocab, Dim, dropout: 0.2);
            using var t = MakeTrainer(model, TrainingData.Options(o => { o.Seed = seed; o.GradientAccumulationSteps = 2; }));
            return t.Train(data).StepLosses.ToArray();
        }
        var a = Run(5);
        var b = Run(5);
        var c = Run(6);
        Assert.Equal(6, a.Length); // 5 batches per epoch, 3 steps per epoch, 2 epochs
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    private TrainerOptions ResumeOptions(Action<TrainerOptions>? more = null) => TrainingData.Options(o =>
    {
        o.MaxEpochs = 4;
        o.GradientAccumulationSteps = 2;
        o.Schedule = LearningRateSchedule.Cosine;
        o.WeightDecay = 0.01;
        o.MaxGradNorm = 0.5;
        o.CheckpointFolder = _dir;
        o.SaveSteps = 4;
        more?.Invoke(o);
    });

    [Fact]
    public void ResumeReproducesTheUninterruptedLossesExactly()
    {
        using var scope = NewDisposeScope();
        var data = Data();
        var valid = Data(6, seed: 99);
        TrainingResult full;
        using (var model = new TinyLM(Vocab, Dim, dropout: 0.25))
        using (var t = MakeTrainer(model, ResumeOptions(o => o.EvaluationSteps = 3)))
            full = t.Train(data, valid);
        Assert.Equal(12, full.GlobalStep);
        var saved = Checkpoints.List(_dir).Select(c => c.Step).ToArray();
        Assert.Equal(new[] { 4, 8, 12 }, saved);

        foreach (var from in new[] { 4, 8 })
        {
            // A differently initialised model: everything must come from the checkpoint.
            using var model = new TinyLM(Vocab, Dim, dropout: 0.25, seed: 1234);
            using var t = MakeTrainer(model, ResumeOptions(o => { o.EvaluationSteps = 3; o.CheckpointFolder = _dir + "-r" + from; }));
            var resumed = t.Train(data, valid, resumeFromCheckpoint: Path.Combine(_dir, Checkpoints.FolderName(from)));
            Assert.Equal(full.StepLosses, resumed.StepLosses);       // bit-identical, including the restored history
            Assert.Equal(full.LearningRates, resumed.LearningRates);
            Assert.Equal(full.GradNorms, resumed.GradNorms);
            Assert.Equal(full.Evaluations, resumed.Evaluations);
            Directory.Delete(_dir + "-r" + from, true);
        }
    }

    /// <summary>A hook with state: it counts optimizer steps and keeps the count in checkpoints.</summary>
    private sealed class CountingHook : ITrainingHook
    {
        public int Steps;
        public void AfterOptimizerStep(TrainingContext context) => Steps++;
        public IReadOnlyDictionary<string, Tensor>? GetState() => new Dictionary<string, Tensor> { ["steps"] = tensor(new long[] { Steps }) };
        public void SetState(IReadOnlyDictionary<string, Tensor> state) => Steps = (int)state["steps"].ToInt64();
    }

    [Fact]
    public void HookStateTravelsWithTheCheckpoint()
    {
        using var scope = NewDisposeScope();
        var data = Data();
        using (var model = new TinyLM(Vocab, Dim))
        using (var t = MakeTrainer(model, ResumeOptions()))
        {
            var hook = new CountingHook();
            t.Hooks.Add(new LambdaHook());
            t.Hooks.Add(hook);
            t.Train(data);
            Assert.Equal(12, hook.Steps);
        }
        Assert.True(File.Exists(Path.Combine(_dir, "checkpoint-4", Checkpoints.HooksFileName)));
        using (var model = new TinyLM(Vocab, Dim))
        using (var t = MakeTrainer(model, ResumeOptions(o => o.CheckpointFolder = null)))
        {
            var hook = new CountingHook();
            int seenAtBegin = -1;
            t.Hooks.Add(new LambdaHook { Begin = _ => seenAtBegin = hook.Steps });
            t.Hooks.Add(hook);
            t.Train(data, resumeFromCheckpoint: Path.Combine(_dir, "checkpoint-4"));
            Assert.Equal(4, seenAtBegin); // restored before OnTrainBegin
            Assert.Equal(12, hook.Steps);
        }
    }

    [Fact]
    public void CancellationStopsCleanlyLeavesACheckpointAndResumesExactly()
    {
        using var scope = NewDisposeScope();
        var data = Data();
        TrainingResult full;
        using (var model = new TinyLM(Vocab, Dim, dropout: 0.25))
        using (var t = MakeTrainer(model, ResumeOptions(o => { o.CheckpointFolder = null; })))
            full = t.Train(data);

        // Cancel at a step boundary (from a progress handler) and in the middle of an accumulation window (from the loss).
        foreach (var midWindow in new[] { false, true })
        {
            var dir = _dir + (midWindow ? "-mid" : "-edge");
            using var cts = new CancellationTokenSource();
            var events = new List<TrainingProgress>();
            bool ended = false;
            using (var model = new TinyLM(Vocab, Dim, dropout: 0.25))
            {
                int calls = 0;
                using var t = new Trainer(model, b =>
                {
                    if (midWindow && ++calls == 11) cts.Cancel(); // 11th micro-batch: the first of step 7's two
                    return model.Loss(b);
                }, ResumeOptions(o => { o.CheckpointFolder = dir; o.SaveSteps = 0; }));
                t.Progress += (_, e) =>
                {
                    events.Add(e);
                    if (!midWindow && e.Kind == TrainingProgressKind.Step && e.Step == 5) cts.Cancel();
                };
                t.Hooks.Add(new LambdaHook { End = _ => ended = true });
                Assert.Throws<OperationCanceledException>(() => t.Train(data, cancellationToken: cts.Token));
                Assert.True(ended, "hooks see the end of training after a cancellation");
                Assert.Equal(StopReason.Cancelled, t.Result!.StopReason);
                int expectedSteps = midWindow ? 6 : 5;
                Assert.Equal(expectedSteps, t.Result.GlobalStep);
                Assert.Equal(full.StepLosses.Take(expectedSteps), t.Result.StepLosses);
                Assert.Equal(Path.Combine(dir, Checkpoints.FolderName(expectedSteps)), t.Result.LastCheckpoint);
                Assert.Contains(events, e => e.Kind == TrainingProgressKind.Checkpoint && e.CheckpointPath == t.Result.LastCheckpoint);
            }

            // Progress events carry the documented fields.
            var steps = events.Where(e => e.Kind == TrainingProgressKind.Step).ToList();
            Assert.Equal(Enumerable.Range(1, midWindow ? 6 : 5), steps.Select(e => e.Step));
            for (int i = 0; i < steps.Count; i++)
            {
                var e = steps[i];
                Assert.Equal(12, e.TotalSteps);
                Assert.Equal(full.StepLosses[i], e.Loss); // LoggingSteps = 1: the mean of one step
                Assert.Equal(i + 1 < full.LearningRates.Count ? full.LearningRates[i + 1] : 0, e.LearningRate);
                Assert.Equal(full.GradNorms[i], e.GradNorm);
                Assert.True(e.TokensPerSecond > 0);
                Assert.NotNull(e.Eta);
                Assert.True(e.Elapsed > TimeSpan.Zero);
                Assert.True(e.Epoch > 0 && e.Epoch <= 2, $"epoch {e.Epoch}");
            }
            Assert.Equal((1 + 2.0 / 5), steps[3].Epoch, 12); // step 4 = first step of epoch 1, 2 of its 5 batches consumed

            using (var model = new TinyLM(Vocab, Dim, dropout: 0.25, seed: 77))
            using (var t = MakeTrainer(model, ResumeOptions(o => { o.CheckpointFolder = null; })))
            {
                var resumed = t.Train(data, resumeFromCheckpoint: dir);
                Assert.Equal(full.StepLosses, resumed.StepLosses);
            }
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void ACrashWhileWritingACheckpointLeavesTheLastGoodOneIntact()
    {
        using var scope = NewDisposeScope();
        var data = Data();
        TrainingResult full;
        using (var model = new TinyLM(Vocab, Dim))
        using (var t = MakeTrainer(model, ResumeOptions(o => o.CheckpointFolder = null)))
            full = t.Train(data);

        using (var model = new TinyLM(Vocab, Dim))
        using (var t = MakeTrainer(model, ResumeOptions()))
        {
            int optimizerFiles = 0;
            Checkpoints.t_beforeFile = name =>
            {
                if (name == Checkpoints.OptimizerFileName && ++optimizerFiles == 2) throw new IOException("disk full (simulated)");
            };
            var e = Assert.Throws<IOException>(() => t.Train(data));
            Assert.Contains("simulated", e.Message);
            Checkpoints.t_beforeFile = null;
        }
        Assert.Equal(new[] { 4 }, Checkpoints.List(_dir).Select(c => c.Step));
        Assert.Single(Directory.GetDirectories(_dir)); // the temporary folder was removed
        // A leftover from a hard crash (process killed mid-write) is ignored, then cleaned up.
        var stale = Directory.CreateDirectory(Path.Combine(_dir, ".tmp-checkpoint-8-dead"));
        File.WriteAllText(Path.Combine(stale.FullName, Checkpoints.StateFileName), "{ truncated");
        Assert.Equal(Path.Combine(_dir, "checkpoint-4"), Checkpoints.FindLatest(_dir));

        using (var model = new TinyLM(Vocab, Dim, seed: 5))
        using (var t = MakeTrainer(model, ResumeOptions(o => o.KeepLastCheckpoints = 1)))
        {
            var resumed = t.Train(data, resumeFromCheckpoint: _dir);
            Assert.Equal(full.StepLosses, resumed.StepLosses);
        }
        Assert.False(Directory.Exists(stale.FullName));
        Assert.Equal(new[] { 12 }, Checkpoints.List(_dir).Select(c => c.Step)); // rotation kept the last one
        var files = Directory.GetFiles(Path.Combine(_dir, "checkpoint-12")).Select(Path.GetFileName).OrderBy(x => x, StringComparer.Ordinal);
        Assert.Equal(new[] { Checkpoints.OptimizerFileName, Checkpoints.RngFileName, Checkpoints.ParametersFileName, Checkpoints.StateFileName }, files);
    }

    [Fact]
    public void ResumeRefusesAnIncompatibleRun()
    {
        using var scope = NewDisposeScope();
        var data = Data();
        using (var model = new TinyLM(Vocab, Dim))
        using (var t = MakeTrainer(model, ResumeOptions(o => o.MaxEpochs = 1)))
            t.Train(data);
        using (var model = new TinyLM(Vocab, Dim))
        using (var t = MakeTrainer(model, ResumeOptions(o => { o.BatchSize = 5; o.CheckpointFolder = null; })))
        {
            var e = Assert.Throws<InvalidOperationException>(() => t.Train(data, resumeFromCheckpoint: _dir));
            Assert.Contains("batch size", e.Message);
        }
        using (var model = new TinyLM(Vocab, Dim))
        {
            model.get_parameter("embed.weight").requires_grad = false;
            using var t = MakeTrainer(model, ResumeOptions(o => o.CheckpointFolder = null));
            var e = Assert.Throws<InvalidOperationException>(() => t.Train(data, resumeFromCheckpoint: _dir));
            Assert.Contains("embed.weight", e.Message);
        }
        using (var model = new TinyLM(Vocab, Dim))
        using (var t = MakeTrainer(model, ResumeOptions(o => o.CheckpointFolder = null)))
            Assert.Throws<FileNotFoundException>(() => t.Train(data, resumeFromCheckpoint: _dir + "-nothing"));
    }

    // ---------------------------------------------------------------- non-finite losses

    private static Func<Batch, Tensor> PoisonedLoss(TinyLM model, int poisonedCall, double value = double.NaN)
    {
        int calls = 0;
        return b =>
        {
            var loss = model.Loss(b);
            return ++calls == poisonedCall ? loss * value : loss;
        };
    }

    [Fact]
    public void NonFiniteLossThrowsNamingTheStep()
    {
        using var scope = NewDisposeScope();
        using var model = new TinyLM(Vocab, Dim);
        // Accumulation 2 over 5 batches per epoch: steps take micro-batches {1,2} {3,4} {5} {6,7}, so call 7 belongs to step 4.
        using var t = new Trainer(model, PoisonedLoss(model, 7), TrainingData.Options(o => o.GradientAccumulationSteps = 2));
        var e = Assert.Throws<TrainingException>(() => t.Train(Data()));
        Assert.Equal(4, e.Step);
        Assert.Equal(1, e.Epoch);
        Assert.Contains("step 4", e.Message);
        Assert.Contains("NaN", e.Message);
        Assert.Contains(nameof(TrainerOptions.SkipNonFiniteSteps), e.Message);
        Assert.Equal(3, t.Result!.GlobalStep);
        Assert.Equal(StopReason.Failed, t.Result.StopReason);
        Assert.All(Params(model), v => Assert.True(double.IsFinite(v)));
    }

    [Fact]
    public void NonFiniteLossStepsCanBeSkipped()
    {
        using var scope = NewDisposeScope();
        using var model = new TinyLM(Vocab, Dim);
        using var t = new Trainer(model, PoisonedLoss(model, 5, double.PositiveInfinity), TrainingData.Options(o => o.SkipNonFiniteSteps = true));
        var skipped = new List<TrainingProgress>();
        t.Progress += (_, e) => { if (e.Kind == TrainingProgressKind.SkippedStep) skipped.Add(e); };
        var r = t.Train(Data());
        Assert.Equal(9, r.GlobalStep); // 10 batches, one skipped
        var s = Assert.Single(r.SkippedSteps);
        Assert.Equal(5, s.Step);
        Assert.Contains("Infinity", s.Reason);
        Assert.Single(skipped);
        Assert.All(r.StepLosses, v => Assert.True(double.IsFinite(v)));
        Assert.All(Params(model), v => Assert.True(double.IsFinite(v)));
    }

    // ---------------------------------------------------------------- early stopping

    [Fact]
    public void EarlyStoppingStopsAtTheExpectedStep()
    {
        using var scope = NewDisposeScope();
        using var model = new TinyLM(Vocab, Dim);
        // Scripted validation losses: improvements at evaluations 1, 2 and 4; 5 and 6 fail to beat 3.0 by more than 0.1.
        var script = new Queue<double>(new[] { 5.0, 4.0, 4.5, 3.0, 2.95, 3.2, 1.0, 1.0 });
        double current = 0;
        using var t = new Trainer(model, b =>
        {
            if (model.training) return model.Loss(b);
            return scalar_tensor(current, ScalarType.Float64);
        }, TrainingData.Options(o => { o.MaxEpochs = 10; o.EvaluationSteps = 2; o.EarlyStoppingPatience = 2; o.EarlyStoppingMinDelta = 0.1; }));
        t.Progress += (_, e) => { if (e.Kind == TrainingProgressKind.Step && e.Step % 2 == 1) current = script.Dequeue(); };
        var r = t.Train(Data(), Data(4, seed: 8)); // one validation batch of 4: its mean is the scripted value exactly
        Assert.Equal(StopReason.EarlyStopping, r.StopReason);
        Assert.Equal(12, r.GlobalStep); // evaluations at steps 2, 4, ..., 12; the 6th is the second without improvement
        Assert.Equal(new[] { 5.0, 4.0, 4.5, 3.0, 2.95, 3.2 }, r.Evaluations.Select(e => e.Loss));
        Assert.Equal(3.0, r.BestEvalLoss);
        Assert.Equal(8, r.BestStep);
    }

    [Fact]
    public void EvaluationRunsAtEpochEndsInEvalModeWithoutTouchingTheWeights()
    {
        using var scope = NewDisposeScope();
        using var model = new TinyLM(Vocab, Dim, dropout: 0.5);
        var valid = Data(7, seed: 4);
        using var t = MakeTrainer(model, TrainingData.Options(o => o.MaxEpochs = 2));
        var r = t.Train(Data(), valid);
        Assert.Equal(new[] { 5, 10 }, r.Evaluations.Select(e => e.Step));
        Assert.Equal(new[] { 1.0, 2.0 }, r.Evaluations.Select(e => e.Epoch));
        var before = Params(model);
        double a = t.Evaluate(valid), b = t.Evaluate(valid);
        Assert.Equal(a, b); // eval mode: no dropout
        Assert.Equal(r.Evaluations[^1].Loss, a);
        Assert.Equal(before, Params(model));
        Assert.True(model.training);
        // Example-weighted mean of per-batch means: batches of 4 and 3.
        using var ng = no_grad();
        model.eval();
        double l1 = model.Loss(valid.GetBatch(new[] { 0, 1, 2, 3 })).ToDouble(), l2 = model.Loss(valid.GetBatch(new[] { 4, 5, 6 })).ToDouble();
        model.train();
        Assert.Equal((4 * l1 + 3 * l2) / 7, a, 12);
    }

    // ---------------------------------------------------------------- hooks, options, errors

    [Fact]
    public void HooksRunInTheDocumentedOrder()
    {
        using var scope = NewDisposeScope();
        using var model = new TinyLM(Vocab, Dim);
        var log = new List<string>();
        using var t = MakeTrainer(model, TrainingData.Options(o => { o.MaxEpochs = 1; o.GradientAccumulationSteps = 3; }));
        bool sawGrad = false, gradAfterStep = false;
        t.Hooks.Add(new LambdaHook
        {
            Begin = c => log.Add("begin"),
            Before = c => log.Add($"before {c.Step}"),
            AfterBwd = c => { log.Add($"backward {c.Step}"); sawGrad = model.get_parameter("lm_head.weight").grad is not null; Assert.NotNull(c.Loss); },
            AfterOptimizer = c => { log.Add($"optimizer {c.Step}"); gradAfterStep = model.get_parameter("lm_head.weight").grad is not null; Assert.NotNull(c.GradNorm); },
            EpochEnd = c => log.Add($"epoch {c.Epoch}"),
            End = c => log.Add($"end {c.GlobalStep}"),
        });
        t.Train(Data());
        Assert.Equal(new[] { "begin", "before 1", "backward 1", "optimizer 1", "before 2", "backward 2", "optimizer 2", "epoch 0", "end 2" }, log);
        Assert.True(sawGrad);
        Assert.True(gradAfterStep);
        Assert.Null(model.get_parameter("lm_head.weight").grad);
    }

    [Fact]
    public void AHookCanStopTraining()
    {
        using var scope = NewDisposeScope();
        using var model = new TinyLM(Vocab, Dim);
        using var t = MakeTrainer(model, TrainingData.Options());
        t.Hooks.Add(new LambdaHook { AfterOptimizer = c => { if (c.Step == 3) c.RequestStop("enough"); } });
        var r = t.Train(Data());
        Assert.Equal(StopReason.HookRequested, r.StopReason);
        Assert.Equal(3, r.GlobalStep);
    }

    [Fact]
    public void FrozenParametersStayBitIdentical()
    {
        using var scope = NewDisposeScope();
        using var model = new TinyLM(Vocab, Dim);
        var frozen = model.get_parameter("embed.weight");
        frozen.requires_grad = false;
        var before = frozen.ToArray<float>();
        var headBefore = model.get_parameter("lm_head.weight").ToArray<float>();
        using var t = MakeTrainer(model, TrainingData.Options(o => o.WeightDecay = 0.1));
        Assert.DoesNotContain(t.TrainableParameters, p => p.Name == "embed.weight");
        t.Train(Data());
        Assert.Equal(before, frozen.ToArray<float>());
        Assert.NotEqual(headBefore, model.get_parameter("lm_head.weight").ToArray<float>());
    }

    [Fact]
    public void BadSetupsFailWithClearMessages()
    {
        using var scope = NewDisposeScope();
        using var model = new TinyLM(Vocab, Dim);
        var e1 = Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(model, model.Loss, new TrainerOptions { BatchSize = 0 }));
        Assert.Contains("BatchSize", e1.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new Trainer(model, model.Loss, new TrainerOptions { WarmupRatio = 2 }));
        model.requires_grad_(false);
        var e2 = Assert.Throws<ArgumentException>(() => new Trainer(model, model.Loss));
        Assert.Contains("requires_grad", e2.Message);
        model.requires_grad_(true);
        using var t = new Trainer(model, b => model.Logits(b.InputIds), TrainingData.Options());
        var e3 = Assert.Throws<TrainingException>(() => t.Train(Data()));
        Assert.Contains("scalar", e3.Message);
        Assert.Throws<InvalidOperationException>(() => t.Train(Data()));
        using var t2 = new Trainer(model, model.Loss, TrainingData.Options(o => o.DropLastBatch = true));
        Assert.Throws<ArgumentException>(() => t2.Train(Data(3)));
    }

    [Fact]
    public void MaxStepsCyclesTheDataAndSetsTheScheduleLength()
    {
        using var scope = NewDisposeScope();
        using var model = new TinyLM(Vocab, Dim);
        using var t = MakeTrainer(model, TrainingData.Options(o => { o.MaxSteps = 13; o.MaxEpochs = 1; o.WarmupSteps = 0; o.WarmupRatio = 0.25; }));
        var r = t.Train(Data());
        Assert.Equal(13, r.GlobalStep);
        Assert.Equal(13, r.TotalSteps);
        // ceil(0.25 * 13) = 4 warmup steps: 0, 1/4, 2/4, 3/4 of the peak, then linear decay.
        Assert.Equal(new[] { 0.0, 0.25e-2, 0.5e-2, 0.75e-2, 1e-2 }, r.LearningRates.Take(5).Select(v => Math.Round(v, 15)));
        Assert.True(r.StepLosses.Skip(8).Average() < r.StepLosses.Take(3).Average(), "the loss went down");
    }
}
