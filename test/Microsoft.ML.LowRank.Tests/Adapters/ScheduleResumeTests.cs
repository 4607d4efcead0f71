using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Cola;
using Microsoft.ML.LowRank.Adapters.Coto;
using Microsoft.ML.LowRank.Adapters.DeltaLora;
using Microsoft.ML.LowRank.Adapters.PeriodicLora;
using Microsoft.ML.LowRank.Adapters.QLora;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;
using static Microsoft.ML.LowRank.Tests.Adapters.ScheduleTraining;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>For each method: a run resumed from a mid-run checkpoint (into a differently initialised model, with the
/// original base weights) reproduces the uninterrupted run's losses and learning rates bit for bit and ends with the same
/// model; and the trained model saved (adapter, plus the base weights for the methods that change them) reloads onto a
/// fresh base with bit-identical outputs.</summary>
[Collection(SerialCollection.Name)]
public class ScheduleResumeTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lowrank-sched-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
        GC.SuppressFinalize(this);
    }

    private static LowRankAdapterOptions Method(string name) => name switch
    {
        "plora" => new PeriodicLoraOptions { R = 4, LoraAlpha = 8, StageSteps = 3, TargetModules = ModuleSelector.AllLinear },
        "plora_momentum" => new PeriodicLoraOptions { R = 4, LoraAlpha = 8, StageSteps = 2, UnloadRatio = 0.3, StageLearningRate = StageLearningRate.PerStage },
        "cola" => new ColaOptions { R = 4, LoraAlpha = 8, ChainLength = 3, StageLearningRate = StageLearningRate.PerStage, TargetModules = ModuleSelector.AllLinear },
        "deltalora" => new DeltaLoraOptions { R = 4, LoraAlpha = 8, StartStep = 1, TargetModules = ModuleSelector.AllLinear },
        "coto" => new CotoOptions { R = 4, LoraAlpha = 8, InitialProbability = 0.2, TargetModules = ModuleSelector.AllLinear },
        "qlora" => new QLoraOptions { R = 4, LoraAlpha = 8 },
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [InlineData("plora", true)]
    [InlineData("plora_momentum", true)]
    [InlineData("cola", true)]
    [InlineData("deltalora", true)]
    [InlineData("coto", false)]
    [InlineData("qlora", false)]
    public void ResumeIsExactAndTheSavedModelReloads(string method, bool changesBase)
    {
        using var scope = NewDisposeScope();
        var data = TrainData();
        var run = Path.Combine(_dir, method);
        TrainerOptions Opts(string folder) => Options(10, o => { o.CheckpointFolder = folder; o.SaveSteps = 4; o.Schedule = LearningRateSchedule.Cosine; o.WarmupSteps = 2; o.WeightDecay = 0.01; });

        manual_seed(3);
        using var lm = LowRankModel.Create(LoadModel(), Method(method));
        TrainingResult full;
        using (var t = new Trainer(lm, Loss(lm), Opts(run))) full = t.Train(data);
        var trained = Probe(lm);
        output.WriteLine($"{method}: losses {string.Join(" ", full.StepLosses.Select(v => v.ToString("F4")))}");
        Assert.True(full.StepLosses[^1] < full.StepLosses[0]);

        // Inference: save, reload onto a fresh base (carrying the base weights where the method changed them).
        var adapterDir = Path.Combine(_dir, method + "-adapter");
        lm.Save(adapterDir);
        var fresh = LoadModel();
        if (changesBase)
        {
            var original = LoadModel();
            Assert.Contains(lm.GetBaseStateDict(), kv => !kv.Value.equal(original.state_dict()[kv.Key])); // the base really changed
            original.Dispose();
            fresh.load_state_dict(lm.GetBaseStateDict());
        }
        using (var loaded = LowRankModel.Load(fresh, adapterDir))
        {
            Assert.Equal(Method(method).GetType(), loaded.PeftConfig["default"].GetType());
            AdapterInvariants.AssertIdentical(trained, Probe(loaded), $"{method} reloaded");
        }

        // Resume from step 4 into a model whose adapter starts elsewhere and whose base is the original one.
        manual_seed(99);
        using var lm2 = LowRankModel.Create(LoadModel(), Method(method));
        TrainingResult resumed;
        using (var t = new Trainer(lm2, Loss(lm2), Opts(run + "-resumed")))
            resumed = t.Train(data, resumeFromCheckpoint: Path.Combine(run, Checkpoints.FolderName(4)));
        Assert.Equal(full.StepLosses, resumed.StepLosses);
        Assert.Equal(full.LearningRates, resumed.LearningRates);
        AdapterInvariants.AssertIdentical(trained, Probe(lm2), $"{method} resumed model");
    }
}
