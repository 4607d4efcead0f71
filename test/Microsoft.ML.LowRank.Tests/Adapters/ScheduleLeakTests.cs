using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Cola;
using Microsoft.ML.LowRank.Adapters.Coto;
using Microsoft.ML.LowRank.Adapters.DeltaLora;
using Microsoft.ML.LowRank.Adapters.PeriodicLora;
using Microsoft.ML.LowRank.Adapters.QLora;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training;
using static Microsoft.ML.LowRank.Torch.torch;
using static Microsoft.ML.LowRank.Tests.Adapters.ScheduleTraining;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>Training, checkpointing and resuming with each schedule method's hook (and QLoRA's on-the-fly
/// dequantisation) frees every native tensor it creates.</summary>
[Collection(SerialCollection.Name)]
public class ScheduleLeakTests
{
    [Fact]
    public void TrainCheckpointResumeCyclesLeaveTheLiveCountUnchanged()
    {
        var dir = Directory.CreateTempSubdirectory("lowrank-sched-leak-").FullName;
        var data = TrainData(32);
        LowRankAdapterOptions[] methods =
        {
            new PeriodicLoraOptions { R = 2, StageSteps = 2, StageLearningRate = StageLearningRate.PerStage },
            new ColaOptions { R = 2, ChainLength = 2 },
            new DeltaLoraOptions { R = 2, StartStep = 0 },
            new CotoOptions { R = 2 },
            new QLoraOptions { R = 2 },
        };
        void Cycle()
        {
            foreach (var m in methods)
            {
                var run = Path.Combine(dir, m.GetType().Name);
                if (Directory.Exists(run)) Directory.Delete(run, true);
                using (var lm = LowRankModel.Create(LoadModel(), m))
                using (var t = new Trainer(lm, Loss(lm), Options(4, o => { o.CheckpointFolder = run; o.SaveSteps = 2; })))
                    t.Train(data);
                using (var lm = LowRankModel.Create(LoadModel(), m))
                using (var t = new Trainer(lm, Loss(lm), Options(4)))
                    t.Train(data, resumeFromCheckpoint: Path.Combine(run, Checkpoints.FolderName(2)));
            }
        }
        try
        {
            Cycle();
            var before = LiveTensors.Count();
            Cycle();
            Assert.Equal(before, LiveTensors.Count());
        }
        finally { Directory.Delete(dir, true); }
    }
}
