using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Pipeline;
using Microsoft.ML.LowRank.Tests.Pipeline;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Speed;

/// <summary>Padding-free packing: a packed batch gives the same token-weighted loss and gradients as running every
/// sequence on its own.</summary>
[Collection(SerialCollection.Name)]
public class PackingTests
{
    private static (PretrainedModel model, LowRankModel peft) Adapted(string fixture)
    {
        var model = PretrainedModel.Load(Repo.Fixture("models", fixture), dtype: ScalarType.Float64);
        manual_seed(4);
        var peft = LowRankModel.Create(model, new LoraOptions { R = 4, LoraAlpha = 8, TargetModules = ModuleSelector.AllLinear });
        using (no_grad())
            foreach (var (n, p) in peft.named_parameters())
                if (n.Contains("lora_B")) p.normal_(0, 0.05);
        return (model, peft);
    }

    private static List<TokenExample> RandomExamples(int vocab, int seed, params int[] lengths)
    {
        var rng = new Random(seed);
        return lengths.Select(n => new TokenExample(Enumerable.Range(0, n).Select(_ => (long)rng.Next(vocab)).ToArray())).ToList();
    }

    private static Dictionary<string, Tensor> Grads(nn.Module m) =>
        m.named_parameters().Where(p => p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter.grad!.clone());

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void PackedBatchEqualsSeparateSequences(string fixture)
    {
        using var scope = NewDisposeScope();
        var (model, peft) = Adapted(fixture);
        using var _m = model;
        using var _p = peft;
        var examples = RandomExamples((int)model.Config.VocabSize, 2, 5, 7, 4, 9);
        var packer = new PackedTokenBatcher(examples, packedLength: 16);
        var batch = packer.GetBatch(new[] { 0, 1, 2, 3 });
        // First fit: 5 + 7 + 4 = 16 tokens in row 0; 9 tokens and 7 padding positions in row 1.
        Assert.Equal(new long[] { 2, 16 }, batch.InputIds.shape);
        Assert.Equal(new long[] { 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3 }, batch.PositionIds!.narrow(0, 0, 1).reshape(-1).ToArray<long>());
        Assert.Equal(new long[] { 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3 }, batch.SequenceIds!.narrow(0, 0, 1).reshape(-1).ToArray<long>());
        Assert.Equal(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0 }, batch.AttentionMask!.narrow(0, 1, 1).reshape(-1).ToArray<long>());
        Assert.Equal(examples.Sum(e => e.InputIds.Count - 1), batch.TargetCount);
        Assert.Equal(examples.Sum(e => e.InputIds.Count), batch.TokenCount);
        var labels0 = batch.Labels!.narrow(0, 0, 1).reshape(-1).ToArray<long>();
        Assert.Equal(-100, labels0[0]); Assert.Equal(-100, labels0[5]); Assert.Equal(-100, labels0[12]); // nothing predicts a sequence's first token
        Assert.Equal(examples[1].InputIds[1], labels0[6]);

        // Packed: the model's own loss (float32 cross-entropy, as HF) and a float64 loss taken from the packed logits at
        // the positions where each example sits (independent of the batcher's labels).
        var slots = new (int row, int offset)[] { (0, 0), (0, 5), (0, 12), (1, 0) };
        double total = examples.Sum(e => e.InputIds.Count - 1);
        peft.zero_grad();
        var outPacked = peft.forward(batch.ToModelInputs());
        double modelLoss = outPacked.Loss!.ToDouble();
        Tensor packed = zeros(new long[0], ScalarType.Float64);
        for (int k = 0; k < examples.Count; k++)
        {
            int n = examples[k].InputIds.Count;
            var logits = outPacked.Logits!.select(0, slots[k].row).narrow(0, slots[k].offset, n - 1);
            var target = tensor(examples[k].InputIds.Skip(1).ToArray(), new long[] { n - 1 });
            packed = packed + nn.functional.cross_entropy(logits, target, reduction: "sum") / total;
        }
        packed.backward();
        var packedGrads = Grads(peft);

        // Reference: each sequence alone in a batch of one (no mask, default positions): Σ_e Σ_t −log p / Σ_e (n_e − 1).
        peft.zero_grad();
        Tensor reference = zeros(new long[0], ScalarType.Float64);
        foreach (var e in examples)
        {
            int n = e.InputIds.Count;
            var ids = tensor(e.InputIds.ToArray(), new long[] { 1, n });
            var logits = peft.forward(new ModelInputs { InputIds = ids }).Logits!.select(0, 0).narrow(0, 0, n - 1);
            reference = reference + nn.functional.cross_entropy(logits, ids.select(0, 0).narrow(0, 1, n - 1), reduction: "sum") / total;
        }
        reference.backward();
        Assert.True(reference.ToDouble() > 1, "the reference loss should be a real cross-entropy");
        Assert.Equal(reference.ToDouble(), packed.ToDouble(), 12);
        Assert.True(Math.Abs(modelLoss - reference.ToDouble()) <= 1e-6 * reference.ToDouble(),
            $"model loss {modelLoss} vs float64 reference {reference.ToDouble()} (float32 cross-entropy)");
        int compared = 0;
        foreach (var (name, p) in peft.named_parameters())
            if (p.requires_grad) { SpeedAssert.Close(p.grad!, packedGrads[name], 1e-13, 1e-9, name); compared++; }
        Assert.True(compared > 0);
    }

    [Fact]
    public void SequencesDoNotSeeEachOther()
    {
        // The last example's logits do not change when the examples packed before it in the same row change.
        using var scope = NewDisposeScope();
        var (model, peft) = Adapted("llama");
        using var _m = model;
        using var _p = peft;
        int vocab = (int)model.Config.VocabSize;
        var a = RandomExamples(vocab, 3, 6, 5);
        var b = RandomExamples(vocab, 4, 6, 5);
        b[1] = a[1];
        using var ng = no_grad();
        var la = peft.forward(new PackedTokenBatcher(a, 11).GetBatch(new[] { 0, 1 }).ToModelInputs()).Logits!;
        var lb = peft.forward(new PackedTokenBatcher(b, 11).GetBatch(new[] { 0, 1 }).ToModelInputs()).Logits!;
        Assert.Equal(new long[] { 1, 11, vocab }, la.shape);
        SpeedAssert.Close(la.narrow(1, 6, 5), lb.narrow(1, 6, 5), 1e-12, 1e-10, "second sequence");
        Assert.True((la.narrow(1, 0, 6) - lb.narrow(1, 0, 6)).abs().max().ToDouble() > 1e-3, "the first sequences differ");
    }

    [Fact]
    public void FirstFitFillsEarlierRows()
    {
        using var scope = NewDisposeScope();
        var ex = RandomExamples(50, 5, 6, 7, 3, 2);
        var batch = new PackedTokenBatcher(ex, 10).GetBatch(new[] { 0, 1, 2, 3 });
        // 6 → row 0; 7 does not fit → row 1; 3 fits row 0 (9); 2 fits row 1 (9).
        Assert.Equal(new long[] { 2, 10 }, batch.InputIds.shape);
        Assert.Equal(new long[] { 1, 1, 1, 1, 1, 1, 3, 3, 3, 0 }, batch.SequenceIds!.narrow(0, 0, 1).reshape(-1).ToArray<long>());
        Assert.Equal(new long[] { 2, 2, 2, 2, 2, 2, 2, 4, 4, 0 }, batch.SequenceIds!.narrow(0, 1, 1).reshape(-1).ToArray<long>());
        Assert.Equal(ex.Sum(e => e.InputIds.Count - 1), batch.TargetCount);
    }

    [Fact]
    public void TrainerWithPackingTakesTheSameSteps()
    {
        // Same examples per micro-batch, token-weighted loss: packing changes only the layout, so two SGD steps give the
        // same losses and adapter weights as padded batches (up to the float32 cross-entropy of the model's loss).
        using var scope = NewDisposeScope();
        var examples = RandomExamples(100, 7, 3, 9, 5, 12, 4, 6, 8, 2);
        var runs = new List<(IReadOnlyList<double> losses, Dictionary<string, Tensor> weights, long rows)>();
        foreach (var pack in new[] { false, true })
        {
            var (model, peft) = Adapted("llama");
            using var _m = model;
            using var _p = peft;
            var options = new TrainerOptions
            {
                MaxSteps = 2, BatchSize = 4, LearningRate = 0.5, Schedule = LearningRateSchedule.Constant, MaxGradNorm = null,
                LossWeighting = AccumulationLossWeighting.TokenWeighted, PackSequences = pack, PackedLength = 16, MemoryCheck = false,
                OptimizerFactory = (groups, o) => optim.SGD(groups, o.LearningRate),
            };
            long rows = 0;
            using var trainer = new Trainer(peft, b =>
            {
                rows += b.InputIds.size(0);
                return peft.forward(b.ToModelInputs()).Loss!;
            }, options);
            var result = trainer.Train(new TokenBatcher(examples, maxLength: 16));
            runs.Add((result.StepLosses, peft.named_parameters().Where(p => p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter.detach().clone()), rows));
        }
        Assert.Equal(8, runs[0].rows);            // padded: one row per example
        Assert.True(runs[1].rows < 8, $"packing used {runs[1].rows} rows for 8 examples");
        Assert.Equal(2, runs[1].losses.Count);
        for (int i = 0; i < 2; i++) Assert.True(Math.Abs(runs[0].losses[i] - runs[1].losses[i]) <= 1e-6 * runs[0].losses[i], $"step {i}: {runs[0].losses[i]} vs {runs[1].losses[i]}");
        double moved = 0;
        foreach (var (name, w) in runs[0].weights)
        {
            SpeedAssert.Close(w, runs[1].weights[name], 1e-7, 1e-5, name);
            if (name.Contains("lora_B")) moved = Math.Max(moved, w.abs().max().ToDouble());
        }
        Assert.True(moved > 1e-3, "the adapters trained");
    }

    [Fact]
    public void TrainerRefusesPackingWhereItCannotApply()
    {
        using var scope = NewDisposeScope();
        using var bert = PretrainedModel.Load(Repo.Fixture("models", "bert_cls"), dtype: ScalarType.Float64);
        var examples = RandomExamples(50, 1, 4, 5);
        using (var t = new Trainer(bert, new TrainerOptions { MaxSteps = 1, BatchSize = 2, PackSequences = true, MemoryCheck = false }))
            Assert.Contains("decoder", Assert.Throws<ArgumentException>(() => t.Train(new TokenBatcher(examples))).Message);
        var (model, peft) = Adapted("gpt2");
        using var _m = model;
        using var _p = peft;
        var source = new DelegateBatchSource(2, idx => new TokenBatcher(examples).GetBatch(idx));
        using (var t = new Trainer(peft, b => peft.forward(b.ToModelInputs()).Loss!, new TrainerOptions { MaxSteps = 1, BatchSize = 2, PackSequences = true, MemoryCheck = false }))
            Assert.Contains("TokenBatcher", Assert.Throws<ArgumentException>(() => t.Train(source)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new TrainerOptions { PackedLength = 1 }.Validate());
        var ids = tensor(new long[] { 1, 2, 3 }, new long[] { 1, 3 });
        var e = Assert.Throws<ArgumentException>(() => bert.forward(new ModelInputs { InputIds = ids, SequenceIds = ids }));
        Assert.Contains("decoder", e.Message);
    }

    [Fact]
    public void CausalLMPipelineWithPackingTrainsTheSameAdapter()
    {
        // The pipeline option reaches the trainer, and three steps with packed batches leave the same model as padded
        // ones (same examples per batch, same token-mean loss; up to the float32 cross-entropy's rounding).
        Assert.True(new CausalLMTrainer.Options { PackSequences = true }.ToTrainerOptions(1).PackSequences);
        Assert.False(new CausalLMTrainer.Options().ToTrainerOptions(1).PackSequences);
        var logLoss = new double[2];
        for (int pack = 0; pack < 2; pack++)
        {
            var ctx = new LowRankContext(seed: 5);
            var data = ctx.Data.LoadFromEnumerable(PipelineFixtures.Instructions());
            using var model = ctx.TextGeneration.Trainers.CausalLM(new CausalLMTrainer.Options
            {
                ModelFolder = PipelineFixtures.Model("llama"),
                Method = new LoraOptions { R = 8, LoraAlpha = 16, TargetModules = ModuleSelector.AllLinear },
                BatchSize = 8, MaxSteps = 3, LearningRate = 1e-2, WarmupRatio = 0, MaxSequenceLength = 48, PackSequences = pack == 1,
                Generation = new GenerationOptions { MaxNewTokens = 1 },
            }).Fit(data);
            logLoss[pack] = ctx.TextGeneration.Evaluate(model.Transform(data), completionColumnName: "Completion").LogLoss;
        }
        Assert.True(double.IsFinite(logLoss[0]) && logLoss[0] > 0.1, $"log-loss {logLoss[0]}");
        Assert.True(Math.Abs(logLoss[0] - logLoss[1]) <= 1e-4 * logLoss[0], $"padded {logLoss[0]} vs packed {logLoss[1]}");
    }

    [Fact]
    public void RejectsBadSettings()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new PackedTokenBatcher(new[] { new TokenExample(new long[] { 1, 2 }) }, packedLength: 1));
        Assert.Contains("packed length", e.Message);
        var p = new PackedTokenBatcher(new[] { new TokenExample(new long[] { 1, 2 }) }, packedLength: 4);
        Assert.Throws<ArgumentOutOfRangeException>(() => p.GetBatch(new[] { 3 }));
        using var scope = NewDisposeScope();
        var seq = tensor(new long[] { 1, 1, 2 }, new long[] { 1, 3 });
        var ae = Assert.Throws<ArgumentException>(() => AttentionUtils.AdditiveMask(null, 1, 3, 2, true, ScalarType.Float32, Device.CPU, seq));
        Assert.Contains("KV cache", ae.Message);
    }
}
