using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Speed;

/// <summary>Gradient checkpointing per block and the chunked linear cross-entropy: same loss and gradients as the plain
/// path, and less memory held (measured with the shim's CPU allocator counter).</summary>
[Collection(SerialCollection.Name)]
public class CheckpointAndLossTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("llama", 0.0)]
    [InlineData("llama", 0.2)] // dropout: the recomputation must replay the same masks
    [InlineData("gpt2", 0.2)]
    public void CheckpointedBlocksGiveTheSameLossAndGradients(string fixture, double dropout)
    {
        using var scope = NewDisposeScope();
        using var model = PretrainedModel.Load(Repo.Fixture("models", fixture), dtype: ScalarType.Float64);
        manual_seed(1);
        using var peft = LowRankModel.Create(model, new LoraOptions { R = 4, LoraAlpha = 8, LoraDropout = dropout, TargetModules = ModuleSelector.AllLinear });
        using (no_grad())
            foreach (var (n, p) in peft.named_parameters())
                if (n.Contains("lora_B")) p.normal_(0, 0.05);
        peft.train();
        var ids = randint(0, model.Config.VocabSize, new long[] { 2, 9 }, generator: new Generator(3));
        model.Backbone.GradientCheckpointing = false;
        var plain = SpeedModels.LossAndGrads(peft, ids);
        model.Backbone.GradientCheckpointing = true;
        var ckpt = SpeedModels.LossAndGrads(peft, ids);
        Assert.Equal(plain.loss, ckpt.loss, 12);
        Assert.Equal(plain.grads.Keys.OrderBy(k => k), ckpt.grads.Keys.OrderBy(k => k));
        foreach (var (name, g) in plain.grads) SpeedAssert.Close(g, ckpt.grads[name], 1e-12, 1e-10, name);
        // Block 0's input comes from the frozen embedding (no grad): its adapters must still get gradients.
        Assert.Contains(ckpt.grads.Keys, k => k.Contains(fixture == "gpt2" ? ".h.0." : ".layers.0.") && k.Contains("lora_A"));
    }

    [Fact]
    public void CheckpointingHoldsOnlyBlockInputsBetweenForwardAndBackward()
    {
        using var scope = NewDisposeScope();
        var (model, peft) = SpeedModels.LoraLlama(SpeedModels.LlamaConfig(hidden: 64, layers: 4, inter: 256));
        using var m = model;
        using var p = peft;
        var ids = randint(0, 211, new long[] { 4, 64 }, generator: new Generator(2));
        long Held(bool checkpoint)
        {
            model.Backbone.GradientCheckpointing = checkpoint;
            cpu.track_memory(true);
            try
            {
                long before = cpu.memory_allocated();
                using var inner = NewDisposeScope();
                var loss = peft.forward(new ModelInputs { InputIds = ids, Labels = ids }).Loss!;
                long held = cpu.memory_allocated() - before;
                loss.backward();
                return held;
            }
            finally { cpu.track_memory(false); }
        }
        long plain = Held(false), ckpt = Held(true);
        output.WriteLine($"bytes held after forward: plain {plain:N0}, checkpointed {ckpt:N0}");
        // Checkpointed: per block only its input [4, 64, 64] float32 (64 KiB) plus the head's; plain keeps every activation.
        Assert.True(ckpt < 0.5 * plain, $"checkpointing held {ckpt:N0} bytes, plain {plain:N0}");
    }

    [Fact]
    public void AFailingCheckpointedFunctionRaisesItsMessage()
    {
        using var scope = NewDisposeScope();
        var x = randn(3, 4).requires_grad_(true);
        var e = Assert.Throws<TorchException>(() => torch.utils.checkpoint(_ => throw new InvalidOperationException("boom in block"), new[] { x }));
        Assert.Contains("boom in block", e.Message);
        // A failure during the recomputation in backward surfaces from backward.
        int calls = 0;
        var y = torch.utils.checkpoint(a => ++calls == 1 ? new[] { a[0] * 2 } : throw new InvalidOperationException("boom in recompute"), new[] { x })[0];
        var e2 = Assert.Throws<TorchException>(() => y.sum().backward());
        Assert.Contains("boom in recompute", e2.Message);
    }

    [Fact]
    public void CheckpointOfAPlainFunctionMatchesItsGradient()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(4);
        var x = randn(new long[] { 5, 3 }, ScalarType.Float64, generator: g).requires_grad_(true);
        var w = randn(new long[] { 3, 3 }, ScalarType.Float64, generator: g).requires_grad_(true);
        var y = torch.utils.checkpoint(a => new[] { a[0].matmul(w).tanh(), a[0].sum() }, new[] { x }, new[] { w });
        Assert.Equal(2, y.Length);
        (y[0].square().sum() + y[1] * 3).backward();
        // d/dx [Σ tanh(xw)² + 3 Σx] = (2 tanh·(1 − tanh²)) wᵀ + 3; d/dw = xᵀ (2 tanh (1 − tanh²)).
        using var ng = no_grad();
        var t = x.matmul(w).tanh();
        var gt = t * 2 * (1 - t * t);
        SpeedAssert.Close(gt.matmul(w.t()) + 3, x.grad, 1e-12, 1e-12, "dx");
        SpeedAssert.Close(x.t().matmul(gt), w.grad, 1e-12, 1e-12, "dw");
    }

    [Theory]
    [InlineData(1L, "mean")]
    [InlineData(3L, "mean")]
    [InlineData(0L, "mean")]
    [InlineData(4L, "sum")]
    public void LinearCrossEntropyEqualsTheFullLogitsLoss(long chunk, string reduction)
    {
        using var scope = NewDisposeScope();
        var g = new Generator(5);
        var h = randn(new long[] { 10, 6 }, ScalarType.Float64, generator: g).requires_grad_(true);
        var w = randn(new long[] { 13, 6 }, ScalarType.Float64, generator: g).requires_grad_(true);
        var b = randn(new long[] { 13 }, ScalarType.Float64, generator: g).requires_grad_(true);
        var target = tensor(new long[] { 3, -100, 12, 0, 5, 5, -100, 7, 1, 9 });
        var loss = nn.functional.linear_cross_entropy(h, w, target, b, -100, reduction, chunk);
        loss.backward();
        // Reference: log-softmax written out, mean over the 8 non-ignored rows; gradients (softmax − onehot)/count.
        using var ng = no_grad();
        var logits = h.matmul(w.t()) + b;
        var lse = logits.exp().sum(1).log();
        var valid = target.ne(-100);
        var safe = target.masked_fill(valid.logical_not(), 0);
        var picked = logits.gather(1, safe.unsqueeze(1)).squeeze(1);
        double count = reduction == "mean" ? 8 : 1;
        var expected = ((lse - picked) * valid.to_type(ScalarType.Float64)).sum() / count;
        Assert.Equal(expected.ToDouble(), loss.ToDouble(), 12);
        var gl = (logits - lse.unsqueeze(1)).exp() - one_hot(safe, 13).to_type(ScalarType.Float64);
        gl = gl * valid.to_type(ScalarType.Float64).unsqueeze(1) / count;
        SpeedAssert.Close(gl.matmul(w), h.grad, 1e-12, 1e-10, "dh");
        SpeedAssert.Close(gl.t().matmul(h), w.grad, 1e-12, 1e-10, "dW");
        SpeedAssert.Close(gl.sum(0), b.grad, 1e-12, 1e-10, "db");
    }

    [Fact]
    public void LinearCrossEntropyRejectsOutOfRangeTargets()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<TorchException>(() => nn.functional.linear_cross_entropy(randn(2, 3), randn(4, 3), tensor(new long[] { 1, 4 })));
        Assert.Contains("target values must be in [0, 4)", e.Message);
    }

    [Fact]
    public void ChunkedModelLossMatchesAndHoldsNoLogits()
    {
        using var scope = NewDisposeScope();
        var (model, peft) = SpeedModels.LoraLlama(SpeedModels.LlamaConfig(vocab: 2003, layers: 1));
        using var m = model;
        using var p = peft;
        var ids = randint(0, 2003, new long[] { 4, 96 }, generator: new Generator(6));
        var plain = SpeedModels.LossAndGrads(peft, ids);
        model.ChunkedCrossEntropy = true;
        model.CrossEntropyChunkRows = 50;
        var chunked = SpeedModels.LossAndGrads(peft, ids);
        Assert.Equal(plain.loss, chunked.loss, 5);
        foreach (var (name, g) in plain.grads) SpeedAssert.Close(g, chunked.grads[name], 1e-6, 1e-4, name);
        using (no_grad()) Assert.Null(peft.forward(new ModelInputs { InputIds = ids, Labels = ids }).Logits);

        long Peak(bool chunkedLoss)
        {
            model.ChunkedCrossEntropy = chunkedLoss;
            cpu.track_memory(true);
            try
            {
                using var inner = NewDisposeScope();
                var loss = peft.forward(new ModelInputs { InputIds = ids, Labels = ids }).Loss!;
                loss.backward();
                return cpu.max_memory_allocated();
            }
            finally { cpu.track_memory(false); }
        }
        long full = Peak(false), small = Peak(true);
        output.WriteLine($"peak bytes of a step: full logits {full:N0}, chunked {small:N0} (logits alone: {4 * 96 * 2003 * 4:N0})");
        // The full path holds [4·96, 2003] float32 logits (3.1 MB) and their float32 copy and gradient; chunks hold 50 rows.
        Assert.True(small < full - 4L * 96 * 2003 * 4, $"chunked peak {small:N0} vs full {full:N0}");
    }
}
