using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>Adapter operations free every native tensor they create.</summary>
[Collection(SerialCollection.Name)]
public class AdapterLeakTests
{
    private static long Live() => LiveTensors.Count();

    [Fact]
    public void TrainMergeMixedSaveLoadCyclesLeaveTheLiveCountUnchanged()
    {
        var f = new AdapterFixture("bert_cls");
        var dir = Directory.CreateTempSubdirectory("lowrank-leak-").FullName;
        try
        {
            using var lm = LowRankModel.Create(f.LoadModel(), new LoraOptions { R = 4, TargetModules = ModuleSelector.AllLinear, LoraDropout = 0.1 });
            lm.AddAdapter("b", new LoraOptions { R = 2, InitLoraWeights = LoraInitialization.PiSSA });
            void Cycle()
            {
                using var scope = NewDisposeScope();
                lm.train();
                var loss = lm.forward(f.Inputs()).Loss!;
                loss.backward();
                using (no_grad())
                    foreach (var p in lm.parameters())
                        if (p.requires_grad) { p.sub_(p.grad! * 0.01); p.grad = null; }
                lm.eval();
                lm.Merge();
                _ = f.Logits(lm);
                lm.Unmerge();
                using (lm.DisableAdapter()) _ = f.Logits(lm);
                _ = f.Logits(lm, new[] { "b", "default" });
                lm.Save(dir);
                _ = lm.GetBaseStateDict();
                _ = lm.CountParameters();
                using var again = LowRankModel.Load(f.LoadModel(), dir);
                _ = f.Logits(again);
                lm.AddWeightedAdapter(new[] { "default" }, new[] { 0.5 }, "w", LoraCombination.Svd);
                lm.DeleteAdapter("w");
            }
            Cycle();
            var before = Live();
            for (int i = 0; i < 3; i++) Cycle();
            Assert.Equal(before, Live());
        }
        finally { Directory.Delete(dir, true); }
    }
}
