using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Mixture;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Tests.Training;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters.Mixture;

/// <summary>Mixture-of-experts adapters through the <see cref="Trainer"/>: auxiliary losses reach the training loss, router
/// health (expert load histogram, router entropy) comes in progress events, the load-balancing loss evens the expert load,
/// and MixLoRA fine-tunes the tiny LLaMA with the base untouched and a saved adapter that reloads.</summary>
[Collection(SerialCollection.Name)]
public class MixtureTrainingTests(ITestOutputHelper output)
{
    private static DelegateBatchSource FixtureData(AdapterFixture f)
    {
        var inputs = f.Inputs();
        var ids = inputs.InputIds.DetachFromDisposeScope();
        var mask = inputs.AttentionMask!.DetachFromDisposeScope();
        var labels = inputs.Labels!.DetachFromDisposeScope();
        return new DelegateBatchSource((int)ids.size(0), idx =>
        {
            var sel = tensor(idx.Select(i => (long)i).ToArray());
            return new Batch(ids.index_select(0, sel), mask.index_select(0, sel), labels.index_select(0, sel));
        });
    }

    [Fact]
    public void AuxiliaryLossReachesTheTrainingLossAndRouterHealthIsReported()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        var data = FixtureData(f);
        (double loss, Dictionary<string, double> metrics) Run(double coef)
        {
            manual_seed(1);
            using var lm = LowRankModel.Create(f.LoadModel(), MixtureOfLoraExpertsOptions.MixLoRA(numExperts: 4, topK: 2, r: 2, alpha: 4, dropout: 0, auxLossCoef: coef));
            var metrics = new Dictionary<string, double>();
            using var trainer = new Trainer(lm, MixtureOfLoraExperts.LossFunction(lm), new TrainerOptions { BatchSize = 2, MaxSteps = 1, LearningRate = 1e-3, LoggingSteps = 1, Seed = 5 });
            trainer.Progress += (_, e) => { if (e.Metrics is { } m) foreach (var (k, v) in m) metrics[k] = v; };
            var r = trainer.Train(data);
            return (r.StepLosses[0], metrics);
        }
        var (l0, m0) = Run(0);
        var (l1, m1) = Run(10);
        // Same weights, same batch: the difference of the step losses is exactly the reported auxiliary loss (coefficient applied).
        Assert.True(m1.ContainsKey("moe/default/aux_loss"));
        Assert.False(m0.ContainsKey("moe/default/aux_loss"));
        var aux = m1["moe/default/aux_loss"];
        output.WriteLine($"task loss {l0:F6}, with aux {l1:F6}, aux {aux:F6}");
        Assert.True(aux > 0 && double.IsFinite(aux), $"the auxiliary loss should be positive, got {aux}");
        Assert.Equal(l0 + aux, l1, 5);
        // Router health: load fractions over the 4 experts sum to 1, entropy in (0, 1].
        foreach (var m in new[] { m0, m1 })
        {
            var load = Enumerable.Range(0, 4).Select(e => m[$"moe/default/load/{e}"]).ToArray();
            Assert.Equal(1.0, load.Sum(), 9);
            Assert.InRange(m["moe/default/router_entropy"], 1e-6, 1.0);
            Assert.True(m["moe/default/load_cv"] >= 0);
        }
    }

    /// <summary>A frozen Linear with one mixture adapter, trained on y = x·M.</summary>
    private sealed class Toy : nn.Module
    {
        public Toy(MixtureOfLoraExpertsLayer layer) : base(nameof(Toy)) => register_module("layer", layer);
    }

    [Fact]
    public void LoadBalancingLossMeasurablyEvensExpertLoad()
    {
        using var scope = NewDisposeScope();
        const int n = 64, d = 8;
        using var g = new Generator(17);
        var X = (randn(new long[] { n, d }, generator: g) + 2).DetachFromDisposeScope(); // every input shares a bias direction
        var M = (randn(new long[] { d, d }, generator: g) * 0.3).DetachFromDisposeScope();
        var Y = X.matmul(M).DetachFromDisposeScope();
        var source = new DelegateBatchSource(n, idx => new Batch(tensor(idx.Select(i => (long)i).ToArray(), new long[] { idx.Count, 1 })));

        MixtureRouterStatistics Train(double coef)
        {
            var o = new MixtureOfLoraExpertsOptions
            {
                NumExperts = 4, R = 2, LoraAlpha = 2, LoraDropout = 0, Gating = GatingMode.TopK, TopK = 2,
                AuxLosses = coef > 0 ? new[] { new AuxiliaryLoss(AuxiliaryLossKind.MixtralLoadBalance, coef) } : Array.Empty<AuxiliaryLoss>(),
            };
            manual_seed(3);
            var layer = MoeLayers.Make(o, dtype: ScalarType.Float32, inF: d, outF: d, perturb: 0.1);
            using (no_grad())
            {
                // A router whose first choice is expert 0 for every token: row 0 pushed along the inputs' shared direction
                // (the other rows keep their small random values, which break the symmetry once expert 0 is pushed back).
                var w = layer.Router("default")!.Weight;
                w.narrow(0, 0, 1).add_(0.5);
            }
            var runtime = new MixtureRuntime();
            layer.Runtime = runtime;
            using var toy = new Toy(layer);
            Tensor Loss(Batch b)
            {
                var rows = b.InputIds.view(-1);
                return nn.functional.mse_loss(layer.forward(X.index_select(0, rows)), Y.index_select(0, rows));
            }
            using var trainer = new Trainer(toy, Loss, new TrainerOptions { BatchSize = 16, MaxSteps = 120, LearningRate = 0.05, WarmupSteps = 0, Schedule = LearningRateSchedule.Constant, Seed = 2, LoggingSteps = 40 });
            var hook = new MixtureTrainingHook(runtime, "default", o);
            trainer.Hooks.Add(hook);
            var reports = new List<IReadOnlyDictionary<string, double>>();
            trainer.Progress += (_, e) => { if (e.Metrics is { } m) reports.Add(m); };
            trainer.Train(source);
            Assert.NotEmpty(reports);
            Assert.Contains("moe/default/load/0", reports[^1].Keys);
            // Routing of all inputs after training.
            runtime.RecordingCount = 1;
            layer.train();
            layer.forward(X);
            runtime.RecordingCount = 0;
            var records = runtime.Take("default");
            var w2 = new RouterStatisticsWindow();
            w2.Add(records, null);
            foreach (var r in records) r.Dispose();
            return w2.Snapshot();
        }
        var without = Train(0);
        var with = Train(2.0);
        output.WriteLine($"load without balancing: [{string.Join(", ", without.Load.Select(v => v.ToString("F3")))}] cv {without.LoadCv:F3}");
        output.WriteLine($"load with balancing:    [{string.Join(", ", with.Load.Select(v => v.ToString("F3")))}] cv {with.LoadCv:F3}");
        // Top-2 with expert 0 always first: without balancing at most two experts share the load (cv ≥ 1 = [½, ½, 0, 0]).
        Assert.True(without.LoadCv > 0.9, $"the biased router should keep the load on two experts without balancing (cv {without.LoadCv:F3})");
        Assert.True(with.LoadCv < 0.5 * without.LoadCv, $"the load-balancing loss should even the load: cv {with.LoadCv:F3} vs {without.LoadCv:F3}");
        Assert.True(with.Load.Count(v => v > 0.05) >= 3, "at least three experts should carry load with balancing");
    }

    [Fact]
    public void MixLoraFineTunesTinyLlamaWithTheBaseUntouchedAndReloads()
    {
        using var scope = NewDisposeScope();
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32);
        var baseBefore = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        manual_seed(4);
        using var peft = LowRankModel.Create(model, MixtureOfLoraExpertsOptions.MixLoRA(numExperts: 4, topK: 2, r: 4, alpha: 8, dropout: 0, auxLossCoef: 0.01));
        int vocab = (int)model.Config.VocabSize;
        var train = new TokenBatcher(FineTuneTests.RepeatingPatterns(128, seed: 1, vocab));
        var heldOut = new TokenBatcher(FineTuneTests.RepeatingPatterns(32, seed: 2, vocab));
        using var trainer = new Trainer(peft, MixtureOfLoraExperts.LossFunction(peft), new TrainerOptions
        {
            LearningRate = 1e-2, BatchSize = 8, MaxSteps = 40, WarmupSteps = 4, Schedule = LearningRateSchedule.Cosine, Seed = 3, LoggingSteps = 20,
        });
        var entropies = new List<double>();
        trainer.Progress += (_, e) => { if (e.Metrics?.TryGetValue("moe/default/router_entropy", out var h) == true) entropies.Add(h); };
        double before = trainer.Evaluate(heldOut);
        trainer.Train(train);
        double after = trainer.Evaluate(heldOut);
        output.WriteLine($"MixLoRA: held-out loss {before:F4} -> {after:F4}; router entropy per report [{string.Join(", ", entropies.Select(h => h.ToString("F3")))}]");
        Assert.True(after < 0.7 * before, $"held-out loss went from {before:F3} to {after:F3} (needs a 30% drop)");
        Assert.Equal(2, entropies.Count);
        foreach (var (name, p) in peft.named_parameters())
        {
            if (name.Contains("lora_")) continue;
            var key = name.Replace("base_model.model.", "").Replace(".base_layer", "");
            Assert.True(baseBefore[key].equal(p), $"base weight {name} changed");
        }
        var dir = Directory.CreateTempSubdirectory().FullName;
        try
        {
            peft.Save(dir);
            using var fresh = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32);
            using var reloaded = LowRankModel.Load(fresh, dir, isTrainable: true);
            using var evalTrainer = new Trainer(reloaded, MixtureOfLoraExperts.LossFunction(reloaded), new TrainerOptions { BatchSize = 8 });
            Assert.Equal(after, evalTrainer.Evaluate(heldOut), 6);
        }
        finally { Directory.Delete(dir, true); }
    }
}
