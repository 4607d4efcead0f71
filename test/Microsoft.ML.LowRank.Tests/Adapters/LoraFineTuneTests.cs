using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Tests.Training;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>LoRA through the trainer: held-out loss drops, only adapter weights move, and the saved adapter reloads.</summary>
[Collection(SerialCollection.Name)]
public class LoraFineTuneTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)] // LoRA+ (B matrices at 16x the learning rate)
    public void LoraOnTinyLlamaLowersHeldOutLossAndLeavesTheBaseUntouched(bool loraPlus)
    {
        using var scope = NewDisposeScope();
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32);
        var baseBefore = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        using var peft = LowRankModel.Create(model, new LoraOptions { R = 8, LoraAlpha = 16, TargetModules = ModuleSelector.AllLinear });
        int vocab = (int)model.Config.VocabSize;
        var train = new TokenBatcher(FineTuneTests.RepeatingPatterns(256, seed: 1, vocab));
        var heldOut = new TokenBatcher(FineTuneTests.RepeatingPatterns(32, seed: 2, vocab));
        Tensor Loss(Batch b) => peft.forward(new ModelInputs { InputIds = b.InputIds, AttentionMask = b.AttentionMask, Labels = b.Labels }).Loss!;
        using var trainer = new Trainer(peft, Loss, new TrainerOptions
        {
            LearningRate = 1e-2, BatchSize = 8, MaxSteps = 60, WarmupSteps = 5, Schedule = LearningRateSchedule.Cosine, Seed = 3,
            LoraPlusRatio = loraPlus ? 16 : null,
        });
        double before = trainer.Evaluate(heldOut);
        trainer.Train(train, heldOut);
        double after = trainer.Evaluate(heldOut);
        output.WriteLine($"LoRA{(loraPlus ? "+" : "")}: held-out loss {before:F4} -> {after:F4}");
        Assert.True(after < 0.7 * before, $"held-out loss went from {before:F3} to {after:F3} (needs a 30% drop)");

        // Only adapter weights changed: every base weight is bit-identical.
        foreach (var (name, p) in peft.named_parameters())
        {
            if (name.Contains("lora_")) continue;
            var key = name.Replace("base_model.model.", "").Replace(".base_layer", "");
            Assert.True(baseBefore.ContainsKey(key), $"unexpected non-adapter parameter {name}");
            Assert.True(baseBefore[key].equal(p), $"base weight {name} changed");
        }

        // The saved adapter reloads onto a fresh base and gives the trained model's loss exactly.
        var dir = Directory.CreateTempSubdirectory().FullName;
        peft.Save(dir);
        using var fresh = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32);
        using var reloaded = LowRankModel.Load(fresh, dir, isTrainable: true);
        using var evalTrainer = new Trainer(reloaded, b => reloaded.forward(new ModelInputs { InputIds = b.InputIds, AttentionMask = b.AttentionMask, Labels = b.Labels }).Loss!, new TrainerOptions { BatchSize = 8 });
        Assert.Equal(after, evalTrainer.Evaluate(heldOut), 6);
    }
}
