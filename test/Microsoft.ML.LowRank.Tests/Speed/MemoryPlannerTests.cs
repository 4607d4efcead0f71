using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Speed;

/// <summary>The memory planner's estimates against what the shim's CPU allocator counter measures for the same step, and
/// its refusal message.</summary>
[Collection(SerialCollection.Name)]
public class MemoryPlannerTests(ITestOutputHelper output)
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        new object[] { "fp32 LoRA, full logits", ScalarType.Float32, PlannedMethod.Lora, false, false, null! },
        new object[] { "bf16 LoRA, chunked CE", ScalarType.BFloat16, PlannedMethod.Lora, true, false, null! },
        new object[] { "bf16 LoRA-FA, chunked CE", ScalarType.BFloat16, PlannedMethod.LoraFA, true, false, null! },
        new object[] { "fp32 LoRA, checkpointing, chunked CE", ScalarType.Float32, PlannedMethod.Lora, true, true, null! },
        new object[] { "bf16 LoRA on q,v only, full logits", ScalarType.BFloat16, PlannedMethod.Lora, false, false, new[] { "q_proj", "v_proj" } },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void EstimatesMatchTheMeasuredStep(string what, ScalarType dtype, PlannedMethod method, bool chunked, bool checkpoint, string[]? targets)
    {
        using var scope = NewDisposeScope();
        const int batch = 2, seq = 64, rank = 4;
        var config = SpeedModels.LlamaConfig(hidden: 64, layers: 2, heads: 4, inter: 160, vocab: 509);
        manual_seed(0);
        using var model = new PretrainedModel(config, ModelTask.CausalLM, dtype: dtype);
        using var peft = LowRankModel.Create(model, new LoraOptions
        {
            R = rank, LoraAlpha = 8, TargetModules = targets is null ? ModuleSelector.AllLinear : ModuleSelector.FromNames(targets),
        });
        model.ChunkedCrossEntropy = chunked;
        model.Backbone.GradientCheckpointing = checkpoint;
        if (method == PlannedMethod.LoraFA)
            foreach (var (n, p) in peft.named_parameters())
                if (n.Contains("lora_A")) p.requires_grad = false;
        var trainable = peft.parameters().Where(p => p.requires_grad).ToList();
        using var opt = optim.AdamW(trainable, lr: 1e-3);
        var ids = randint(0, 509, new long[] { batch, seq }, generator: new Generator(1));
        peft.train();
        void Step(Action? afterForward = null)
        {
            using var inner = NewDisposeScope();
            var loss = peft.forward(new ModelInputs { InputIds = ids, Labels = ids }).Loss!;
            afterForward?.Invoke();
            loss.backward();
            opt.step();
            opt.zero_grad();
        }
        Step(); // optimizer state now exists, as in the plan's resident part
        long held = 0, peak;
        cpu.track_memory(true);
        try
        {
            Step(() => held = cpu.memory_allocated());
            peak = cpu.max_memory_allocated();
        }
        finally { cpu.track_memory(false); }

        var plan = MemoryPlanner.Estimate(new MemoryPlanOptions
        {
            Config = config, Method = method, Rank = rank, TargetModules = targets, BatchSize = batch, SequenceLength = seq,
            BaseType = dtype, GradientCheckpointing = checkpoint, ChunkedCrossEntropy = chunked,
        });
        output.WriteLine($"{what}: held {held:N0} B, estimated {plan.ActivationBytes:N0} B ({(double)plan.ActivationBytes / held:F3}x); " +
                         $"step peak {peak:N0} B, estimated {plan.StepBytes:N0} B ({(double)plan.StepBytes / peak:F3}x)");
        // Tolerances: activations within 5% (the model is op by op; measured 0.99-1.01); the step peak within 20% (the
        // backward's working set is modelled coarsely: it depends on the order the engine frees gradients; measured 0.98-1.12).
        Assert.InRange((double)plan.ActivationBytes / held, 0.95, 1.05);
        Assert.InRange((double)plan.StepBytes / peak, 0.80, 1.20);
        // Trainable parameter count: LoRA r(in+out) per adapted matrix, LoRA-FA r·out.
        Assert.Equal(trainable.Sum(p => p.numel()) * 4, plan.AdapterBytes);
    }

    [Fact]
    public void RefusesARunThatDoesNotFitWithSuggestions()
    {
        // LLaMA-style ~1B config (the GPU benchmark's), bf16, batch 8 × 2048 tokens, against 24 GiB.
        var config = ModelConfig.Parse("""
            {"model_type":"llama","vocab_size":32000,"hidden_size":2048,"intermediate_size":5632,"num_hidden_layers":22,
             "num_attention_heads":32,"num_key_value_heads":4,"rms_norm_eps":1e-5,"tie_word_embeddings":false,"max_position_embeddings":4096}
            """);
        var options = new MemoryPlanOptions { Config = config, Rank = 16, BatchSize = 8, SequenceLength = 2048, BaseType = ScalarType.BFloat16, Device = DeviceType.CUDA, FusedAttention = true };
        var plan = MemoryPlanner.Estimate(options);
        output.WriteLine(plan.Describe());
        // Base weights: ~1.1 B parameters in bfloat16 ≈ 2.05 GiB.
        Assert.InRange(plan.BaseWeightBytes / (double)(1L << 30), 1.9, 2.2);
        long budget = 24L << 30;
        Assert.True(plan.PeakBytes > budget, plan.Describe());
        var e = Assert.Throws<InsufficientMemoryException>(() => MemoryPlanner.EnsureFits(options, budget));
        output.WriteLine(e.Message);
        Assert.Contains("needs an estimated", e.Message);
        Assert.Contains("batch size", e.Message);
        Assert.Contains("gradient checkpointing", e.Message);
        Assert.Contains("QLoRA", e.Message);
        // The suggested smaller batch does fit.
        var suggested = int.Parse(System.Text.RegularExpressions.Regex.Match(e.Message, @"batch size (\d+) with").Groups[1].Value);
        Assert.True(MemoryPlanner.Estimate(new MemoryPlanOptions { Config = config, Rank = 16, BatchSize = suggested, SequenceLength = 2048, BaseType = ScalarType.BFloat16, Device = DeviceType.CUDA, FusedAttention = true }).PeakBytes <= budget);
        // Checkpointing and chunked loss each lower the estimate; QLoRA lowers the weights to ~0.56 byte per linear weight.
        var ck = MemoryPlanner.Estimate(new MemoryPlanOptions { Config = config, Rank = 16, BatchSize = 8, SequenceLength = 2048, BaseType = ScalarType.BFloat16, Device = DeviceType.CUDA, FusedAttention = true, GradientCheckpointing = true });
        Assert.True(ck.ActivationBytes < plan.ActivationBytes / 5);
        var q = MemoryPlanner.Estimate(new MemoryPlanOptions { Config = config, Method = PlannedMethod.QLora, Rank = 16, BatchSize = 8, SequenceLength = 2048, BaseType = ScalarType.BFloat16, Device = DeviceType.CUDA, FusedAttention = true });
        Assert.True(q.BaseWeightBytes < 0.45 * plan.BaseWeightBytes);
        // And a run that fits passes through.
        Assert.Same(typeof(MemoryPlan), MemoryPlanner.EnsureFits(options, plan.PeakBytes + 1).GetType());
        Assert.Throws<ArgumentOutOfRangeException>(() => MemoryPlanner.Estimate(new MemoryPlanOptions { Config = config, BatchSize = 0 }));
    }
}

[Collection(SerialCollection.Name)]
public class TrainerMemoryCheckTests
{
    [Fact]
    public void TrainerRefusesBeforeTheFirstStepWhenThePlanExceedsTheBudget()
    {
        using var scope = NewDisposeScope();
        var (model, peft) = SpeedModels.LoraLlama(SpeedModels.LlamaConfig());
        using var m = model;
        using var p = peft;
        var data = new TokenBatcher(Enumerable.Range(0, 16).Select(i => new TokenExample(Enumerable.Range(0, 48).Select(j => (long)((i * 7 + j * 3) % 211)).ToArray(), 0)).ToList());
        Tensor Loss(Batch b) => peft.forward(new ModelInputs { InputIds = b.InputIds, Labels = b.Labels }).Loss!;
        var before = peft.named_parameters().Where(x => x.parameter.requires_grad).Select(x => x.parameter.clone()).ToList();
        using var trainer = new Trainer(peft, Loss, new TrainerOptions { BatchSize = 8, MaxSteps = 2, MemoryBudgetBytes = 64 * 1024 });
        var e = Assert.Throws<InsufficientMemoryException>(() => trainer.Train(data));
        Assert.Contains("batch 8 × 48 tokens", e.Message);
        Assert.Contains("Try:", e.Message);
        // Nothing trained.
        var after = peft.named_parameters().Where(x => x.parameter.requires_grad).Select(x => x.parameter).ToList();
        for (int i = 0; i < before.Count; i++) Assert.True(before[i].equal(after[i]));

        // With enough memory the same run goes ahead and records its plan.
        using var ok = new Trainer(peft, Loss, new TrainerOptions { BatchSize = 8, MaxSteps = 1, MemoryBudgetBytes = 1L << 34 });
        ok.Train(data);
        Assert.NotNull(ok.MemoryPlan);
        Assert.True(ok.MemoryPlan!.ActivationBytes > 0);
    }
}
