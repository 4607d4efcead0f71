using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.AdaLora;
using Microsoft.ML.LowRank.Adapters.LoraDrop;
using Microsoft.ML.LowRank.Adapters.LoraPrune;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>AdaLoRA's allocator, LoRA-drop's importance and shared factors, and LoRAPrune's pruner free every tensor
/// they create per step (state that lives across steps is created once).</summary>
[Collection(SerialCollection.Name)]
public class PruneMethodsLeakTests
{
    [Fact]
    public void StepSaveLoadDeleteCyclesLeaveTheLiveCountUnchanged()
    {
        var f = new AdapterFixture("gpt2");
        var dir = Directory.CreateTempSubdirectory("lowrank-prune-leak-").FullName;
        try
        {
            using var ada = LowRankModel.Create(f.LoadModel(), new AdaLoraOptions { InitR = 4, TargetR = 2, TotalStep = 1000, TargetModules = ModuleSelector.AllLinear });
            var allocator = new AdaLoraRankAllocator(ada, "default");
            using var drop = LowRankModel.Create(f.LoadModel(), new LoraDropOptions { R = 2, TargetModules = ModuleSelector.AllLinear, KeptModules = new[] { "transformer.h.0.attn.c_attn" } });
            using var prune = LowRankModel.Create(f.LoadModel(), new LoraPruneOptions { R = 2, PruneFreq = 1 });
            var pruner = new LoraPruner(prune, "default");
            var data = new TokenBatcher(Training.FineTuneTests.RepeatingPatterns(8, seed: 1, 97));
            int step = 0;
            void Cycle()
            {
                using var scope = NewDisposeScope();
                step++;
                foreach (var lm in new[] { ada, drop, prune })
                {
                    lm.train();
                    var loss = lm.forward(f.Inputs()).Loss!;
                    if (ReferenceEquals(lm, ada)) loss = loss + allocator.OrthogonalRegularization() * 0.5;
                    loss.backward();
                }
                allocator.UpdateAndAllocate(step);
                pruner.Step(step + 20, 100); // inside the ramp: prunes every step
                _ = LoraDropProcedure.MeasureImportance(drop, data, batchSize: 4);
                foreach (var lm in new[] { ada, drop, prune })
                {
                    lm.zero_grad();
                    lm.eval();
                    lm.Save(dir);
                    using var again = LowRankModel.Load(f.LoadModel(), dir);
                    _ = f.Logits(again);
                    Directory.Delete(dir, true);
                }
                drop.AddAdapter("tmp", new LoraDropOptions { R = 2, TargetModules = ModuleSelector.AllLinear, KeptModules = Array.Empty<string>() });
                drop.DeleteAdapter("tmp");
                using var merged = LoraPruner.MergeAndPrune(LowRankModel.Create(f.LoadModel(), new LoraPruneOptions { R = 2 }));
            }
            Cycle();
            var before = LiveTensors.Count();
            for (int i = 0; i < 3; i++) Cycle();
            Assert.Equal(before, LiveTensors.Count());
            Assert.True(pruner.PrunedFraction > 0 && allocator.KeptTriplets < allocator.InitialBudget, "the cycles should have pruned");
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }
}
