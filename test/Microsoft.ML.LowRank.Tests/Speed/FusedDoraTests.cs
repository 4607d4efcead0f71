using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Dora;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Tests.Adapters;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch.Modules;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Speed;

/// <summary>The fused DoRA linear against methods.md §3.1 in float64: W' = W0 + s·B·A, n = ‖W'‖_row (detached),
/// k = m/n, y = k ⊙ (x·W'ᵀ) + b (no dropout), with gradients ∂m = Σ dy ⊙ (x·W'ᵀ)/n, ∂B = s·(dy⊙k)ᵀ·(x·Aᵀ),
/// ∂A = s·((dy⊙k)·B)ᵀ·x, ∂x = (dy⊙k)·W'; the norm term contributes no gradient.</summary>
[Collection(SerialCollection.Name)]
public class FusedDoraTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ForwardAndGradientsMatchTheFloat64Formula(bool fifo)
    {
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        const double s = 0.8;
        var x = randn(new long[] { 2, 5, 6 }, ScalarType.Float64, generator: g).requires_grad_(true);
        var w = randn(new long[] { 4, 6 }, ScalarType.Float64, generator: g);
        var b = randn(new long[] { 4 }, ScalarType.Float64, generator: g).requires_grad_(true);
        var a = randn(new long[] { 3, 6 }, ScalarType.Float64, generator: g).requires_grad_(true);
        var bb = randn(new long[] { 4, 3 }, ScalarType.Float64, generator: g).requires_grad_(true);
        var m = (randn(new long[] { 4 }, ScalarType.Float64, generator: g).abs() + 1).requires_grad_(true);
        var y = nn.functional.dora_linear(x, fifo ? w.t().contiguous() : w, b, a, bb, m, s, fan_in_fan_out: fifo);
        var gy = randn(y.shape, ScalarType.Float64, generator: new Generator(4));
        y.backward(gy);

        using var ng = no_grad();
        var wp = w + bb.matmul(a) * s;                       // W'
        var n = wp.square().sum(1).sqrt();                    // row norms, detached
        var k = m / n;
        var x2 = x.reshape(-1, 6);
        var u = x2.matmul(wp.t());
        SpeedAssert.Close((u * k + b).reshape(y.shape), y, 1e-12, 1e-12, "y");
        var g2 = gy.reshape(-1, 4);
        var gk = g2 * k;
        SpeedAssert.Close((g2 * u).sum(0) / n, m.grad, 1e-12, 1e-10, "dm");
        SpeedAssert.Close(g2.sum(0), b.grad, 1e-12, 1e-12, "db");
        SpeedAssert.Close(gk.t().matmul(x2.matmul(a.t())) * s, bb.grad, 1e-12, 1e-10, "dB");
        SpeedAssert.Close((gk.matmul(bb) * s).t().matmul(x2), a.grad, 1e-12, 1e-10, "dA");
        SpeedAssert.Close(gk.matmul(wp).reshape(x.shape), x.grad, 1e-12, 1e-10, "dx");
        SpeedAssert.Close(n, nn.functional.dora_weight_norm(fifo ? w.t().contiguous() : w, a, bb, s, fifo), 1e-12, 1e-12, "norm");
    }

    [Fact]
    public void WithDropoutTheDoraTermSeesTheDroppedInputAsInPeft()
    {
        // y = x·W0ᵀ + b + (k − 1) ⊙ (x̃·W0ᵀ) + k ⊙ s·(x̃·Aᵀ)·Bᵀ: recover the mask from a probe where W0 = 0 and B·A = I.
        using var scope = NewDisposeScope();
        const int d = 6;
        var x = (randn(new long[] { 8, d }, ScalarType.Float64, generator: new Generator(5)).abs() + 0.5).requires_grad_(true);
        var w = zeros(new long[] { d, d }, ScalarType.Float64);
        var a = eye(d, dtype: ScalarType.Float64).requires_grad_(true);
        var bb = eye(d, dtype: ScalarType.Float64).requires_grad_(true);
        var m = ones(new long[] { d }, ScalarType.Float64).requires_grad_(true);
        manual_seed(9);
        var y = nn.functional.dora_linear(x, w, null, a, bb, m, 1.0, dropout_p: 0.5, training: true);
        // n = ‖I‖_row = 1, k = 1: y = x̃ exactly (0 or 2·x per element).
        using (no_grad())
        {
            var kept = y.ne(0);
            SpeedAssert.Close(x * 2 * kept.to_type(ScalarType.Float64), y, 1e-12, 1e-12, "y = dropout(x)");
            Assert.InRange(kept.to_type(ScalarType.Float64).mean().ToDouble(), 0.2, 0.8);
        }
        y.sum().backward();
        using (no_grad())
        {
            // ∂x: only kept elements, times 1/(1 − p) = 2 (the mask of the forward, reused).
            SpeedAssert.Close(y.ne(0).to_type(ScalarType.Float64) * 2, x.grad, 1e-12, 1e-12, "dx through the same mask");
        }
    }

    [Fact]
    public void TrainableBaseWeightIsRejected()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<TorchException>(() => nn.functional.dora_linear(randn(2, 3), randn(4, 3).requires_grad_(true), null, randn(2, 3), randn(4, 2), ones(4), 1));
        Assert.Contains("frozen", e.Message);
        e = Assert.Throws<TorchException>(() => nn.functional.dora_linear(randn(2, 3), randn(4, 3), null, randn(2, 3), randn(4, 2), ones(5), 1));
        Assert.Contains("magnitude", e.Message);
    }

    [Theory]
    [InlineData(false, 0.0)]
    [InlineData(true, 0.0)]
    [InlineData(false, 0.3)]
    [InlineData(true, 0.3)]
    public void DoraLayerUsesTheFusedKernelInTrainingWithTheSameResult(bool conv1d, double pDrop)
    {
        // The layer's default (fused while autograd records) against its composed path, float64, same dropout seed.
        using var scope = NewDisposeScope();
        using var layer = DoraTests.Float64Layer(conv1d, pDrop);
        layer.train();
        var x = randn(new long[] { 2, 4, 7 }, ScalarType.Float64, generator: new Generator(8));
        var gy = randn(new long[] { 2, 4, 5 }, ScalarType.Float64, generator: new Generator(9));
        var results = new List<(Tensor y, Tensor dx, Tensor[] dp)>();
        foreach (var fused in new[] { true, false })
        {
            layer.UseFusedKernel = fused;
            layer.zero_grad();
            var xi = x.clone().requires_grad_(true);
            manual_seed(77);
            var y = layer.forward(xi);
            y.backward(gy);
            results.Add((y.detach(), xi.grad!.clone(), layer.parameters().Where(p => p.requires_grad).Select(p => p.grad!.clone()).ToArray()));
        }
        Assert.True(layer.UseFusedKernel == false && results[0].dp.Length == 3);
        SpeedAssert.Close(results[1].y, results[0].y, 1e-12, 1e-12, "y");
        SpeedAssert.Close(results[1].dx, results[0].dx, 1e-12, 1e-10, "dx");
        for (int i = 0; i < 3; i++) SpeedAssert.Close(results[1].dp[i], results[0].dp[i], 1e-12, 1e-10, $"grad {i}");
    }

    [Fact]
    public void FusedDoraLayerKeepsLessForBackward()
    {
        // Bytes alive after the forward (what autograd saved): fused x, z = x·Aᵀ and u = x·W'ᵀ (float32 here) against
        // the composed path's extra [N, out] tensors (base output and adapter output kept for ∂m).
        using var scope = NewDisposeScope();
        const int n = 256, inF = 64, outF = 96, r = 4;
        var baseLayer = new Linear(inF, outF, false);
        baseLayer.weight.requires_grad = false;
        using var layer = new DoraLayer(baseLayer);
        layer.UpdateLayer("default", r, 8, 0, false, LoraInitialization.Default, new AdapterCreationContext());
        layer.SetActiveAdapters(new[] { "default" });
        var held = new long[2];
        for (int pass = 0; pass < 2; pass++)
        {
            layer.UseFusedKernel = pass == 0;
            var x = randn(new long[] { n, inF }).requires_grad_(true);
            cpu.track_memory(true);
            long before = cpu.memory_allocated();
            var y = layer.forward(x);
            held[pass] = cpu.memory_allocated() - before;
            cpu.track_memory(false);
            y.sum().backward();
            Assert.NotNull(layer.Magnitude("default").grad);
            layer.zero_grad();
        }
        long row = n * 4L;
        // Fused: y, u (both [N, out]), z [N, r] and the small norm vectors; composed: at least one more [N, out].
        Assert.True(held[0] <= row * (2 * outF + r) + 4096, $"fused held {held[0]} bytes");
        Assert.True(held[1] >= held[0] + row * outF, $"composed held {held[1]} bytes vs fused {held[0]}");
    }
}
