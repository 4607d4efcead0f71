using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Tests.Training;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>A hook made of delegates (observers placed before or after a method's own hook).</summary>
internal sealed class ObserverHook : ITrainingHook
{
    public Action<TrainingContext>? Begin { get; init; }
    public Action<TrainingContext>? Before { get; init; }
    public Action<TrainingContext>? Backward { get; init; }
    public Action<TrainingContext>? After { get; init; }
    public void OnTrainBegin(TrainingContext context) => Begin?.Invoke(context);
    public void BeforeStep(TrainingContext context) => Before?.Invoke(context);
    public void AfterBackward(TrainingContext context) => Backward?.Invoke(context);
    public void AfterOptimizerStep(TrainingContext context) => After?.Invoke(context);
}

/// <summary>Shared set-up of the schedule methods' training tests: the tiny LLaMA fixture, repeating-pattern data, a
/// causal-LM loss, float64 copies of weights.</summary>
internal static class ScheduleTraining
{
    public const string Fixture = "llama";

    public static PretrainedModel LoadModel() => PretrainedModel.Load(Repo.Fixture("models", Fixture), dtype: ScalarType.Float32);

    public static TokenBatcher TrainData(int count = 64, int seed = 1) => new(FineTuneTests.RepeatingPatterns(count, seed, 97));

    public static Func<Batch, Tensor> Loss(LowRankModel m)
        => b => m.forward(new ModelInputs { InputIds = b.InputIds, AttentionMask = b.AttentionMask, Labels = b.Labels }).Loss!;

    public static TrainerOptions Options(int steps, Action<TrainerOptions>? more = null)
    {
        var o = new TrainerOptions
        {
            LearningRate = 1e-2, BatchSize = 8, MaxSteps = steps, WarmupSteps = 1, Schedule = LearningRateSchedule.Linear,
            Seed = 5, LoggingSteps = 100,
        };
        more?.Invoke(o);
        return o;
    }

    public static readonly long[] ProbeIds = { 5, 9, 33, 2, 71, 40, 41, 12 };

    /// <summary>Logits on a fixed probe in evaluation mode (the training mode is restored).</summary>
    public static float[] Probe(LowRankModel m)
    {
        bool was = m.training;
        m.eval();
        try
        {
            using var scope = NewDisposeScope();
            using var ng = no_grad();
            return m.forward(new ModelInputs { InputIds = tensor(ProbeIds, new long[] { 1, ProbeIds.Length }) }).Logits!.ToArray<float>();
        }
        finally { m.train(was); }
    }

    /// <summary>The LoRA layers holding the default adapter, in model order.</summary>
    public static List<(string path, LoraLayer layer)> Layers(LowRankModel m, string adapter = "default")
        => m.AdapterLayers().Where(l => l.layer.HasAdapter(adapter)).Select(l => (l.name, (LoraLayer)l.layer)).ToList();

    /// <summary>W in Linear layout [out, in] as float64, row-major.</summary>
    public static double[] W(LoraLayer l)
    {
        using var scope = NewDisposeScope();
        var w = l.BaseWeight.to_type(ScalarType.Float64);
        return (l.FanInFanOut ? w.t().contiguous() : w).ToDoubleArray();
    }

    /// <summary>s·B·A in float64 with naive loops, [out, in] row-major.</summary>
    public static double[] ScaledProduct(double[] b, double[] a, long outF, long inF, int r, double s)
    {
        var d = new double[outF * inF];
        for (long o = 0; o < outF; o++)
            for (long k = 0; k < inF; k++)
            {
                double t = 0;
                for (int j = 0; j < r; j++) t += b[o * r + j] * a[j * inF + k];
                d[o * inF + k] = s * t;
            }
        return d;
    }

    public static (double[] a, double[] b) Factors(LoraLayer l, string adapter = "default")
        => (l.LoraA(adapter).weight.ToDoubleArray(), l.LoraB(adapter).weight.ToDoubleArray());

    /// <summary>max |expected − actual|.</summary>
    public static double MaxDiff(double[] expected, double[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        double m = 0;
        for (int i = 0; i < expected.Length; i++) m = Math.Max(m, Math.Abs(expected[i] - actual[i]));
        return m;
    }

    public static double MaxAbs(double[] x) => x.Length == 0 ? 0 : x.Max(Math.Abs);
}
