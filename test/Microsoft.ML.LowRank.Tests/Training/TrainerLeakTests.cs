using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Training;

/// <summary>Training steps release every tensor handle they create (runs alone: it reads the process-wide count).</summary>
[Collection(SerialCollection.Name)]
public class TrainerLeakTests
{
    private static long Live() => LiveTensors.Count();

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, true)]
    public void FiftyTrainingStepsLeaveTheLiveTensorCountUnchanged(int accumulation, bool clipAndEvaluate)
    {
        var data = new TokenBatcher(TrainingData.Affine(24, 17, 9, 3, varyLength: true));
        var valid = new TokenBatcher(TrainingData.Affine(5, 17, 9, 4));
        using var model = new TinyLM(17, 8, dropout: 0.1);
        using var trainer = new Trainer(model, model.Loss, TrainingData.Options(o =>
        {
            o.MaxSteps = 60;
            o.GradientAccumulationSteps = accumulation;
            o.MaxGradNorm = clipAndEvaluate ? 0.5 : null;
            o.EvaluationSteps = clipAndEvaluate ? 7 : 0;
            o.LossWeighting = AccumulationLossWeighting.TokenWeighted;
        }));
        long at10 = -1, at60 = -1;
        trainer.Progress += (_, e) =>
        {
            if (e.Kind != TrainingProgressKind.Step) return;
            if (e.Step == 10) at10 = Live();
            if (e.Step == 60) at60 = Live();
        };
        var r = trainer.Train(data, clipAndEvaluate ? valid : null);
        Assert.Equal(60, r.GlobalStep);
        Assert.True(at10 > 0);
        Assert.Equal(at10, at60);
    }
}
