using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.AdaLora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Tests.Training;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>AdaLoRA beyond the shared invariants: the budget schedule and importance masking step by step against an
/// independent float64 re-computation, the final rank pattern and its reload at pruned ranks, the orthogonality
/// regulariser, PEFT config names, total_step checks, and the CLI parameter count (methods.md §8).</summary>
[Collection(SerialCollection.Name)]
public class AdaLoraTests(ITestOutputHelper output)
{
    /// <summary>b(t) of methods.md §3.3 in exact integer arithmetic: ⌊b_T + (b₀ − b_T)·((D − (t − tinit))/D)³⌋, D = T − tfinal − tinit.</summary>
    private static int ExpectedBudget(int t, int T, int tinit, int tfinal, int b0, int bT)
    {
        if (t <= tinit) return b0;
        if (t > T - tfinal) return bT;
        long D = T - tfinal - tinit, u = D - (t - tinit);
        return bT + (int)((b0 - bT) * u * u * u / (D * D * D));
    }

    private static bool ExpectedMaskStep(int t, int T, int tinit, int tfinal, int deltaT)
        => t > tinit && (t > T - tfinal || t % deltaT == 0);

    private static Tensor Loss(LowRankModel m, Batch b) => m.forward(new ModelInputs { InputIds = b.InputIds, AttentionMask = b.AttentionMask, Labels = b.Labels }).Loss!;

    /// <summary>Re-computes PEFT's importance in float64 from the same values the allocator sees (post-step θ, the step's
    /// gradient): Ī ← β₁Ī + (1 − β₁)|θ·g|, Ū ← β₂Ū + (1 − β₂)|I − Ī|, S_i = s(E_i) + mean_j s(A_ij) + mean_j s(B_ji).
    /// Runs before the allocator in AfterOptimizerStep.</summary>
    private sealed class ImportancePredictor(LowRankModel model, double beta1, double beta2, int finalStep) : ITrainingHook
    {
        private readonly Dictionary<string, (double[] ipt, double[] unc)> _ema = new();
        public List<(string path, int r, double[] scores)> Scores { get; } = new();

        public void AfterOptimizerStep(TrainingContext context)
        {
            if (context.Step >= finalStep) return; // PEFT stops updating the scores at T - tfinal
            Scores.Clear();
            foreach (var (path, l) in model.AdapterLayers())
            {
                var layer = (AdaLoraLayer)l;
                double[] Update(string key, nn.Parameter p)
                {
                    var th = p.ToDoubleArray();
                    var g = p.grad!.ToDoubleArray();
                    if (!_ema.TryGetValue(path + key, out var s)) _ema[path + key] = s = (new double[th.Length], new double[th.Length]);
                    var score = new double[th.Length];
                    for (int i = 0; i < th.Length; i++)
                    {
                        double ipt = Math.Abs(th[i] * g[i]);
                        s.ipt[i] = beta1 * s.ipt[i] + (1 - beta1) * ipt;
                        s.unc[i] = beta2 * s.unc[i] + (1 - beta2) * Math.Abs(ipt - s.ipt[i]);
                        score[i] = s.ipt[i] * s.unc[i];
                    }
                    return score;
                }
                int r = layer.Rank("default"), n = (int)layer.InFeatures, m = (int)layer.OutFeatures;
                var sA = Update(".A", layer.LoraA("default"));
                var sE = Update(".E", layer.LoraE("default"));
                var sB = Update(".B", layer.LoraB("default"));
                var S = new double[r];
                for (int j = 0; j < r; j++)
                {
                    double a = 0, b = 0;
                    for (int k = 0; k < n; k++) a += sA[j * n + k];
                    for (int o = 0; o < m; o++) b += sB[o * r + j];
                    S[j] = sE[j] + a / n + b / m;
                }
                Scores.Add((path, r, S));
            }
        }
    }

    private sealed class Recorder(Action<TrainingContext> after) : ITrainingHook
    {
        public void AfterOptimizerStep(TrainingContext context) => after(context);
    }

    [Fact]
    public void TrainingFollowsTheCubicBudgetMasksTheLowestImportanceEndsAtTheTargetAndReloadsAtPrunedRanks()
    {
        using var scope = NewDisposeScope();
        const int T = 60, tinit = 5, tfinal = 10, deltaT = 3, rInit = 6, rTarget = 2;
        manual_seed(5);
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32);
        var options = new AdaLoraOptions { InitR = rInit, TargetR = rTarget, LoraAlpha = 32, TInit = tinit, TFinal = tfinal, DeltaT = deltaT, TargetModules = ModuleSelector.AllLinear };
        using var peft = LowRankModel.Create(model, options);
        int matrices = peft.AdapterLayers().Count();
        int b0 = rInit * matrices, bT = rTarget * matrices;
        int vocab = (int)model.Config.VocabSize;
        var train = new TokenBatcher(FineTuneTests.RepeatingPatterns(256, seed: 1, vocab));
        var heldOut = new TokenBatcher(FineTuneTests.RepeatingPatterns(32, seed: 2, vocab));
        using var trainer = new Trainer(peft, b => Loss(peft, b), new TrainerOptions { LearningRate = 2e-2, BatchSize = 8, MaxSteps = T, WarmupSteps = 3, Seed = 3 });
        var allocator = trainer.Hooks.OfType<AdaLoraRankAllocator>().Single();
        Assert.Equal(b0, allocator.InitialBudget);
        Assert.Equal(bT, allocator.TargetBudget);

        var predictor = new ImportancePredictor(peft, 0.85, 0.85, T - tfinal);
        trainer.Hooks.Insert(0, predictor); // sees exactly what the allocator sees, before it
        int keptBefore = b0, maskSteps = 0;
        var cfg = (AdaLoraOptions)peft.PeftConfig["default"];
        trainer.Hooks.Add(new Recorder(ctx =>
        {
            int t = ctx.Step;
            int expected = ExpectedBudget(t, T, tinit, tfinal, b0, bT);
            bool mask = ExpectedMaskStep(t, T, tinit, tfinal, deltaT);
            if (t <= T - tfinal) Assert.Equal(expected, allocator.LastBudget);
            int kept = allocator.KeptTriplets;
            int nonzeroE = peft.AdapterLayers().Sum(l => ((AdaLoraLayer)l.layer).LoraE("default").ToDoubleArray().Count(v => v != 0));
            if (mask)
            {
                maskSteps++;
                Assert.True(kept == expected, $"step {t}: {kept} triplets kept, the budget is {expected}");
                Assert.True(nonzeroE == expected, $"step {t}: {nonzeroE} non-zero singular values after masking to {expected}");
                if (t <= T - tfinal)
                {
                    Assert.Equal(t, allocator.LastMaskStep);
                    // The masked triplets are exactly the (b0 - budget) lowest of the independently computed scores.
                    var all = predictor.Scores.SelectMany(s => s.scores).OrderBy(v => v).ToArray();
                    double threshold = all[b0 - expected - 1];
                    foreach (var (path, r, scores) in predictor.Scores)
                    {
                        var flags = cfg.RankPattern[path + ".lora_E"];
                        for (int j = 0; j < r; j++)
                            Assert.True(flags[j] == scores[j] > threshold, $"step {t}: {path} triplet {j} (score {scores[j]:E4}, threshold {threshold:E4}) kept={flags[j]}");
                    }
                }
            }
            else Assert.Equal(keptBefore, kept);
            keptBefore = kept;
        }));

        double before = trainer.Evaluate(heldOut);
        var result = trainer.Train(train);
        double after = trainer.Evaluate(heldOut);
        output.WriteLine($"AdaLoRA r {rInit}->{rTarget} on {matrices} matrices: held-out loss {before:F4} -> {after:F4}; {maskSteps} maskings; budget {b0} -> {allocator.KeptTriplets}");
        Assert.Equal(T, result.GlobalStep);
        // Every deltaT-th step of the decrease, then every step from T - tfinal on.
        Assert.Equal(Enumerable.Range(1, T).Count(t => ExpectedMaskStep(t, T, tinit, tfinal, deltaT)), maskSteps);
        Assert.Equal(T, cfg.TotalStep);
        Assert.Equal(bT, allocator.KeptTriplets);
        Assert.Equal(bT, cfg.RankPattern.Values.Sum(v => v.Count(k => k)));
        Assert.Equal(matrices, cfg.RankPattern.Count);
        Assert.True(after < 0.8 * before, $"held-out loss went from {before:F3} to {after:F3}");

        // Save: the config lists the rank pattern, the file holds only the kept triplets, the reload has the pruned ranks
        // (scaling still alpha / r_init) and gives identical outputs.
        var f = new AdapterFixture("llama");
        peft.eval();
        var expectedLogits = f.Logits(peft);
        var dir = Directory.CreateTempSubdirectory("lowrank-adalora-").FullName;
        try
        {
            peft.Save(dir);
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, AdapterFiles.ConfigName)))!.AsObject();
            Assert.Equal("ADALORA", json["peft_type"]!.GetValue<string>());
            var rp = json["rank_pattern"]!.AsObject();
            Assert.Equal(matrices, rp.Count);
            var tensors = Safetensors.Load(Path.Combine(dir, AdapterFiles.WeightsName));
            foreach (var (path, l) in peft.AdapterLayers())
            {
                var flags = rp[path + ".lora_E"]!.AsArray().Select(v => v!.GetValue<bool>()).ToArray();
                Assert.Equal(rInit, flags.Length);
                int k = flags.Count(v => v);
                var prefix = AdapterFiles.KeyPrefix + path + ".";
                Assert.Equal(new[] { (long)k, l.InFeatures }, tensors[prefix + "lora_A"].shape);
                Assert.Equal(new[] { (long)k, 1L }, tensors[prefix + "lora_E"].shape);
                Assert.Equal(new[] { l.OutFeatures, (long)k }, tensors[prefix + "lora_B"].shape);
                Assert.DoesNotContain(tensors.Keys, key => key.Contains("ranknum"));
            }
            using var fresh = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32);
            using var reloaded = LowRankModel.Load(fresh, dir);
            reloaded.eval();
            foreach (var (path, l) in reloaded.AdapterLayers())
            {
                var layer = (AdaLoraLayer)l;
                Assert.Equal(cfg.RankPattern[path + ".lora_E"].Count(v => v), layer.Rank("default"));
                Assert.Equal(rInit, layer.RankNum("default"));
            }
            Assert.Equal(bT, reloaded.AdapterLayers().Sum(l => ((AdaLoraLayer)l.layer).Rank("default")));
            Assert.Contains("holds pruned ranks", Assert.Throws<NotSupportedException>(() => new AdaLoraRankAllocator(reloaded, "default")).Message);
            // The dropped triplets are exact zeros in the trained model; without them the float32 matmuls sum fewer terms,
            // so outputs agree to rounding (measured max relative difference ~1e-6), not bit for bit.
            AdapterInvariants.AssertClose(expectedLogits.Select(v => (double)v).ToList(), f.Logits(reloaded).Select(v => (double)v).ToList(), 1e-5, "AdaLoRA reloaded at pruned ranks");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void OrthogonalRegulariserMatchesFloat64AndIsAddedToTheTrainingLoss()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("gpt2");
        using var peft = LowRankModel.Create(f.LoadModel(), new AdaLoraOptions { InitR = 5, TargetR = 3, TargetModules = ModuleSelector.AllLinear });
        AdapterInvariants.Perturb(peft, seed: 3, std: 0.2);
        var allocator = new AdaLoraRankAllocator(peft, "default");
        var reg = allocator.OrthogonalRegularization();
        reg.backward();

        // float64: R = mean over matrices of ||A Aᵀ - I||_F and ||Bᵀ B - I||_F; dR/dA = 2 (M - I) A / (||M - I|| · count).
        var layers = peft.AdapterLayers().Select(l => (AdaLoraLayer)l.layer).ToList();
        int count = 2 * layers.Count;
        double sum = 0;
        foreach (var layer in layers)
        {
            int r = layer.Rank("default"), n = (int)layer.InFeatures, m = (int)layer.OutFeatures;
            var A = layer.LoraA("default").ToDoubleArray();
            var B = layer.LoraB("default").ToDoubleArray();
            // rows of A (r x n) and columns of B (m x r) are the vectors whose Gram matrices should be I.
            var MA = new double[r * r];
            var MB = new double[r * r];
            for (int i = 0; i < r; i++)
                for (int j = 0; j < r; j++)
                {
                    for (int k = 0; k < n; k++) MA[i * r + j] += A[i * n + k] * A[j * n + k];
                    for (int o = 0; o < m; o++) MB[i * r + j] += B[o * r + i] * B[o * r + j];
                }
            double na = 0, nb = 0;
            for (int i = 0; i < r; i++)
                for (int j = 0; j < r; j++)
                {
                    MA[i * r + j] -= i == j ? 1 : 0;
                    MB[i * r + j] -= i == j ? 1 : 0;
                    na += MA[i * r + j] * MA[i * r + j];
                    nb += MB[i * r + j] * MB[i * r + j];
                }
            na = Math.Sqrt(na);
            nb = Math.Sqrt(nb);
            sum += na + nb;
            var dA = new double[r * n];
            for (int i = 0; i < r; i++)
                for (int k = 0; k < n; k++)
                {
                    double t = 0;
                    for (int j = 0; j < r; j++) t += MA[i * r + j] * A[j * n + k];
                    dA[i * n + k] = 2 * t / (na * count);
                }
            var dB = new double[m * r];
            for (int o = 0; o < m; o++)
                for (int j = 0; j < r; j++)
                {
                    double t = 0;
                    for (int i = 0; i < r; i++) t += B[o * r + i] * MB[i * r + j];
                    dB[o * r + j] = 2 * t / (nb * count);
                }
            AdapterInvariants.AssertClose(dA, layer.LoraA("default").grad!.ToDoubleArray(), 1e-5, "dR/dA");
            AdapterInvariants.AssertClose(dB, layer.LoraB("default").grad!.ToDoubleArray(), 1e-5, "dR/dB");
        }
        Assert.Equal(sum / count, reg.ToDouble(), 5);
        Assert.True(reg.ToDouble() > 1, "the perturbed factors are far from orthogonal");

        // The trainer's step loss is the task loss plus orth_reg_weight · R (one batch holding every example, no shuffle).
        peft.zero_grad();
        var data = new TokenBatcher(FineTuneTests.RepeatingPatterns(8, seed: 4, 97));
        double expected;
        peft.train();
        using (no_grad())
        {
            using var b = data.GetBatch(Enumerable.Range(0, 8).ToArray());
            expected = Loss(peft, b).ToDouble() + 0.5 * allocator.OrthogonalRegularization().ToDouble();
        }
        using var trainer = new Trainer(peft, b => Loss(peft, b), new TrainerOptions { LearningRate = 1e-3, BatchSize = 8, MaxSteps = 1, ShuffleEachEpoch = false });
        var res = trainer.Train(data);
        Assert.Equal(expected, res.StepLosses[0], 5);
    }

    [Fact]
    public void AllocatorStateRoundTripsForResume()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama");
        using var a = LowRankModel.Create(f.LoadModel(), new AdaLoraOptions { InitR = 4, TargetR = 2, TotalStep = 10, TFinal = 2 });
        AdapterInvariants.Perturb(a, seed: 2);
        a.forward(f.Inputs()).Loss!.backward();
        var alloc = new AdaLoraRankAllocator(a, "default");
        Assert.NotNull(alloc.UpdateAndAllocate(4));
        var state = alloc.GetState()!;
        using var b = LowRankModel.Create(f.LoadModel(), new AdaLoraOptions { InitR = 4, TargetR = 2, TotalStep = 10, TFinal = 2 });
        AdapterInvariants.Perturb(b, seed: 3); // every E non-zero
        var restored = new AdaLoraRankAllocator(b, "default");
        restored.SetState(state);
        Assert.Equal(alloc.KeptTriplets, restored.KeptTriplets);
        var pa = ((AdaLoraOptions)a.PeftConfig["default"]).RankPattern;
        var pb = ((AdaLoraOptions)b.PeftConfig["default"]).RankPattern;
        Assert.Equal(pa.Keys.Order(), pb.Keys.Order());
        foreach (var (k, v) in pa) Assert.Equal(v, pb[k]);
        foreach (var m in alloc.ModuleNames) Assert.Equal(alloc.TripletScores(m).ToDoubleArray(), restored.TripletScores(m).ToDoubleArray());
        // In the final phase the restored pattern is what gets re-applied.
        restored.UpdateAndAllocate(9);
        Assert.Equal(alloc.KeptTriplets, b.AdapterLayers().Sum(l => ((AdaLoraLayer)l.layer).LoraE("default").ToDoubleArray().Count(v => v != 0)));
    }

    [Fact]
    public void TotalStepMustBeExactAndTheScheduleMustHaveABudgetingPhase()
    {
        using var scope = NewDisposeScope();
        var data = new TokenBatcher(FineTuneTests.RepeatingPatterns(16, seed: 4, 97));
        using (var peft = LowRankModel.Create(new AdapterFixture("llama").LoadModel(), new AdaLoraOptions { InitR = 4, TargetR = 2, TotalStep = 7 }))
        {
            using var trainer = new Trainer(peft, b => Loss(peft, b), new TrainerOptions { BatchSize = 8, MaxSteps = 5 });
            var e = Assert.Throws<InvalidOperationException>(() => trainer.Train(data));
            Assert.Contains("total_step is 7 but the trainer runs 5", e.Message);
        }
        using (var peft = LowRankModel.Create(new AdapterFixture("llama").LoadModel(), new AdaLoraOptions { InitR = 4, TargetR = 2, TInit = 3, TFinal = 2 }))
        {
            using var trainer = new Trainer(peft, b => Loss(peft, b), new TrainerOptions { BatchSize = 8, MaxSteps = 5 });
            var e = Assert.Throws<ArgumentException>(() => trainer.Train(data));
            Assert.Contains("no budgeting phase", e.Message);
        }
        var bad = Assert.Throws<ArgumentException>(() => LowRankModel.Create(new AdapterFixture("llama").LoadModel(), new AdaLoraOptions { InitR = 4, TargetR = 6 }));
        Assert.Contains("target_r (6) must not exceed init_r (4)", bad.Message);
    }

    [Fact]
    public void PeftConfigNamesRoundTripAndSelectAdaLora()
    {
        const string peftJson = """
        {"peft_type": "ADALORA", "task_type": "CAUSAL_LM", "r": 8, "init_r": 12, "target_r": 4, "tinit": 200, "tfinal": 500,
         "deltaT": 10, "beta1": 0.85, "beta2": 0.9, "orth_reg_weight": 0.1, "total_step": 3000, "lora_alpha": 32,
         "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"], "rank_pattern": null, "init_lora_weights": true,
         "fan_in_fan_out": false, "bias": "none", "inference_mode": true}
        """;
        var o = Assert.IsType<AdaLoraOptions>(LowRankAdapterOptions.FromJson(peftJson));
        Assert.Equal((12, 4, 200, 500, 10, 0.85, 0.9, 0.1, 3000, 32.0, 0.05), (o.InitR, o.TargetR, o.TInit, o.TFinal, o.DeltaT, o.Beta1, o.Beta2, o.OrthRegWeight, o.TotalStep!.Value, o.LoraAlpha, o.LoraDropout));
        var again = Assert.IsType<AdaLoraOptions>(LowRankAdapterOptions.FromJson(o.ToJson()));
        Assert.Equal(o.ToJson(), again.ToJson());
        // Defaults are PEFT's.
        var d = new AdaLoraOptions();
        Assert.Equal((12, 8, 0, 0, 1, 0.85, 0.85, 0.5, (int?)null), (d.InitR, d.TargetR, d.TInit, d.TFinal, d.DeltaT, d.Beta1, d.Beta2, d.OrthRegWeight, d.TotalStep));
        // The schedule helper follows the cubic formula.
        for (int t = 0; t <= 3000; t += 7)
            Assert.Equal(ExpectedBudget(t, 3000, 200, 500, 12 * 48, 4 * 48), o.BudgetSchedule(t, 3000, 12 * 48, 4 * 48).budget);
    }

    /// <summary>§8: AdaLoRA trains Σ r_init·(in + out + 1) per adapted matrix (PEFT's default targets), plus the
    /// classification head PEFT saves for sequence classification.</summary>
    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("bert_cls")]
    public void ParamsCountFollowsTheFormula(string fixture)
    {
        var c = ModelConfig.FromFile(Repo.Fixture("models", fixture));
        long r = 6, h = c.HiddenSize;
        var matrices = PruneTestUtil.DefaultTargetShapes(c);
        long expected = c.NumHiddenLayers * matrices.Sum(s => r * (s.@in + s.@out + 1)) + PruneTestUtil.HeadParameters(c);
        var (code, outp, err) = Cli.CliTests.Run("params", Repo.Fixture("models", fixture), "--method", "adalora", "--set", "init_r=6", "--set", "target_r=2", "--json");
        Assert.True(code == 0, err);
        Assert.Equal(expected, JsonNode.Parse(outp)!["trainable"]!.GetValue<long>());
        Assert.True(h > 0);
    }
}
