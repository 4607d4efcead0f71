using System.Diagnostics;
using Xunit.Abstractions;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Training;

/// <summary>An end-to-end fine-tune of the tiny Llama fixture on a synthetic task.</summary>
[Collection(SerialCollection.Name)]
public class FineTuneTests(ITestOutputHelper output)
{
    /// <summary>
    /// Eight fixed motifs of 4 distinct tokens (32 distinct tokens in all, drawn once from the vocabulary); an example is
    /// one motif repeated to 16 tokens from a random phase. The first token is the prompt (no loss); every later token
    /// follows from the one before, which the model has to learn. Held-out examples use other motif/phase draws.
    /// </summary>
    internal static List<TokenExample> RepeatingPatterns(int count, int seed, int vocab)
    {
        var tokens = Enumerable.Range(3, vocab - 3).Select(v => (long)v).ToArray();
        new Random(12345).Shuffle(tokens);
        var motifs = tokens.Take(32).Chunk(4).ToArray();
        var rng = new Random(seed);
        var list = new List<TokenExample>();
        for (int i = 0; i < count; i++)
        {
            var motif = motifs[rng.Next(motifs.Length)];
            int phase = rng.Next(4);
            var ids = Enumerable.Range(0, 16).Select(k => motif[(k + phase) % 4]).ToArray();
            list.Add(new TokenExample(ids, promptLength: 1));
        }
        return list;
    }

    [Fact]
    public void TinyLlamaLearnsRepeatingPatterns()
    {
        using var scope = NewDisposeScope();
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32);
        int vocab = (int)model.Config.VocabSize;
        var train = new TokenBatcher(RepeatingPatterns(256, seed: 1, vocab));
        var heldOut = new TokenBatcher(RepeatingPatterns(32, seed: 2, vocab));
        using var trainer = new Trainer(model, new TrainerOptions
        {
            LearningRate = 1e-2, BatchSize = 8, MaxSteps = 60, WarmupSteps = 5, Schedule = LearningRateSchedule.Cosine,
            WeightDecay = 0.01, LoggingSteps = 20, Seed = 3,
        });
        double before = trainer.Evaluate(heldOut);
        var clock = Stopwatch.StartNew();
        var result = trainer.Train(train, heldOut);
        double after = trainer.Evaluate(heldOut);
        output.WriteLine($"held-out loss {before:F4} -> {after:F4} in {clock.Elapsed.TotalSeconds:F1} s; step losses {string.Join(" ", result.StepLosses.Where((_, i) => i % 10 == 0).Select(v => v.ToString("F3")))}");
        Assert.Equal(60, result.GlobalStep);
        Assert.True(after < 0.7 * before, $"held-out loss went from {before:F3} to {after:F3} (needs a 30% drop) in {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(before > 4.0, $"an untrained model should be near ln({vocab}) = {Math.Log(vocab):F2}, got {before:F3}");
    }

    [Fact]
    public void TinyLlamaResumesBitIdentically()
    {
        using var scope = NewDisposeScope();
        var dir = Path.Combine(Path.GetTempPath(), "lowrank-llama-resume-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var probe = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32);
            var train = new TokenBatcher(RepeatingPatterns(40, seed: 4, (int)probe.Config.VocabSize));
            TrainerOptions Options(string? folder) => new()
            {
                LearningRate = 1e-2, BatchSize = 4, GradientAccumulationSteps = 2, MaxSteps = 8, WarmupSteps = 2,
                CheckpointFolder = folder, SaveSteps = 4, Seed = 11,
            };
            IReadOnlyList<double> full;
            using (var model = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32))
            using (var t = new Trainer(model, Options(dir)))
                full = t.Train(train).StepLosses;
            using (var model = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32))
            using (var t = new Trainer(model, Options(null)))
            {
                var resumed = t.Train(train, resumeFromCheckpoint: Path.Combine(dir, Checkpoints.FolderName(4)));
                Assert.Equal(full, resumed.StepLosses);
                // The resumed weights equal the uninterrupted run's final checkpoint.
                var final = Safetensors.Load(Path.Combine(dir, Checkpoints.FolderName(8), Checkpoints.ParametersFileName));
                foreach (var (name, p) in t.TrainableParameters) Assert.Equal(final[name].ToArray<float>(), p.ToArray<float>());
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }
}
