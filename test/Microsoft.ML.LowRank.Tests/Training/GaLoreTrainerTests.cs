using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Training;

/// <summary>GaLore through the Trainer on a plain pretrained model (no adapter): the loss falls, attention/MLP matrices keep
/// rank-sized Adam state, everything else plain AdamW state.</summary>
[Collection(SerialCollection.Name)]
public class GaLoreTrainerTests(ITestOutputHelper output)
{
    [Fact]
    public void GaLoreFullParameterTrainingOfTinyLlamaLowersTheLossWithRankSizedState()
    {
        using var scope = NewDisposeScope();
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32);
        int vocab = (int)model.Config.VocabSize;
        var train = new TokenBatcher(FineTuneTests.RepeatingPatterns(128, seed: 1, vocab));
        var heldOut = new TokenBatcher(FineTuneTests.RepeatingPatterns(32, seed: 2, vocab));
        var galore = new GaLoreOptions { Rank = 4, UpdateProjGap = 10, Scale = 1.0 };
        using var trainer = new Trainer(model, new TrainerOptions
        {
            LearningRate = 1e-2, BatchSize = 8, MaxSteps = 40, WarmupSteps = 4, Schedule = LearningRateSchedule.Cosine, Seed = 3,
            WeightDecay = 0.01, OptimizerFactory = galore.CreateOptimizerFactory(),
        });
        var opt = Assert.IsType<optim.GaLoreAdamWOptimizer>(trainer.Optimizer);
        double before = trainer.Evaluate(heldOut);
        trainer.Train(train);
        double after = trainer.Evaluate(heldOut);
        output.WriteLine($"GaLore r=4: held-out loss {before:F4} -> {after:F4}");
        Assert.True(after < 0.8 * before, $"held-out loss went from {before:F3} to {after:F3} (needs a 20% drop)");

        int projected = 0;
        foreach (var (name, p) in model.named_parameters())
        {
            var st = opt.state(p);
            if (galore.IsTarget(name, p))
            {
                projected++;
                Assert.True(opt.is_projected(p), name);
                long m = p.size(0), n = p.size(1);
                var expected = m >= n ? new long[] { m, 4 } : new long[] { 4, n };
                Assert.Equal(expected, st.Tensors["projected_exp_avg"].shape);
                Assert.Equal(expected, st.Tensors["projected_exp_avg_sq"].shape);
                Assert.False(st.Tensors.ContainsKey("exp_avg"), name);
            }
            else
            {
                Assert.False(opt.is_projected(p), name);
                Assert.Equal(p.shape, st.Tensors["exp_avg"].shape);
            }
        }
        // q, k, v, o, gate, up, down in 2 layers; embeddings and lm_head stay plain.
        Assert.Equal(14, projected);
        Assert.False(galore.IsTarget("model.embed_tokens.weight", model.get_parameter("model.embed_tokens.weight")));
    }
}
