using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Speed;

/// <summary>
/// The fused LoRA linear (one autograd node, hand-written backward) against the float64 formula
/// y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ with the analytic gradients dx = gy·W + s·(gy·B)·A, dW = gyᵀ·x, db = Σ gy,
/// dA = s·(gy·B)ᵀ·x, dB = s·gyᵀ·(x·Aᵀ), written here with plain matmuls; and against the unfused layer.
/// </summary>
[Collection(SerialCollection.Name)]
public class FusedLoraTests
{
    private sealed record Case(Tensor X, Tensor W, Tensor B0, Tensor A, Tensor B, double S);

    private static Case MakeCase(ScalarType dt, long rows = 5, long inF = 6, long outF = 4, long r = 3, bool fifo = false, int seed = 1)
    {
        var g = new Generator((ulong)seed);
        var x = randn(new[] { 2, rows, inF }, dt, generator: g);
        var w = randn(fifo ? new[] { inF, outF } : new[] { outF, inF }, dt, generator: g);
        var b = randn(new[] { outF }, dt, generator: g);
        var a = randn(new[] { r, inF }, dt, generator: g);
        var bb = randn(new[] { outF, r }, dt, generator: g);
        return new Case(x, w, b, a, bb, 0.7);
    }

    private static (Tensor y, Tensor dx, Tensor dW, Tensor db, Tensor dA, Tensor dB) Reference(Case c, Tensor gy, bool fifo = false)
    {
        var x = c.X.to_type(ScalarType.Float64).reshape(-1, c.A.size(1));
        var w = c.W.to_type(ScalarType.Float64);
        if (fifo) w = w.t();
        var a = c.A.to_type(ScalarType.Float64);
        var b = c.B.to_type(ScalarType.Float64);
        var g = gy.to_type(ScalarType.Float64).reshape(-1, c.B.size(0));
        var z = x.matmul(a.t());
        var y = x.matmul(w.t()) + c.B0.to_type(ScalarType.Float64) + z.matmul(b.t()) * c.S;
        var gb = g.matmul(b) * c.S;
        var dx = g.matmul(w) + gb.matmul(a);
        var dW = g.t().matmul(x);
        return (y.reshape(gy.shape), dx.reshape(c.X.shape), fifo ? dW.t() : dW, g.sum(0), gb.t().matmul(x), g.t().matmul(z) * c.S);
    }

    [Theory]
    [InlineData(LoraComputeOrder.Sequential, false)]
    [InlineData(LoraComputeOrder.Merged, false)]
    [InlineData(LoraComputeOrder.Auto, false)]
    [InlineData(LoraComputeOrder.Sequential, true)]
    [InlineData(LoraComputeOrder.Merged, true)]
    public void ForwardAndEveryGradientMatchTheFloat64Formula(LoraComputeOrder order, bool fifo)
    {
        using var scope = NewDisposeScope();
        var c = MakeCase(ScalarType.Float64, fifo: fifo);
        foreach (var t in new[] { c.X, c.W, c.B0, c.A, c.B }) t.requires_grad = true;
        var y = nn.functional.lora_linear(c.X, c.W, c.B0, c.A, c.B, c.S, order: order, fan_in_fan_out: fifo);
        var gy = randn(y.shape, ScalarType.Float64, generator: new Generator(9));
        y.backward(gy);
        var r = Reference(c, gy, fifo);
        SpeedAssert.Close(r.y, y, 1e-12, 1e-12, "y");
        SpeedAssert.Close(r.dx, c.X.grad, 1e-12, 1e-12, "dx");
        SpeedAssert.Close(r.dW, c.W.grad, 1e-12, 1e-12, "dW");
        SpeedAssert.Close(r.db, c.B0.grad, 1e-12, 1e-12, "db");
        SpeedAssert.Close(r.dA, c.A.grad, 1e-12, 1e-12, "dA");
        SpeedAssert.Close(r.dB, c.B.grad, 1e-12, 1e-12, "dB");
    }

    [Theory]
    [InlineData(LoraComputeOrder.Sequential)]
    [InlineData(LoraComputeOrder.Merged)]
    public void NumericGradientsAgree(LoraComputeOrder order)
    {
        using var scope = NewDisposeScope();
        var c = MakeCase(ScalarType.Float64, rows: 2, inF: 3, outF: 2, r: 2);
        GradCheck.Assert(t => nn.functional.lora_linear(t[0], c.W, t[1], t[2], t[3], c.S, order: order),
            new[] { c.X.requires_grad_(true), c.B0.requires_grad_(true), c.A.requires_grad_(true), c.B.requires_grad_(true) });
    }

    [Fact]
    public void WithoutBiasAndWithFrozenBaseOnlyAdapterAndInputGradientsAreProduced()
    {
        using var scope = NewDisposeScope();
        var c = MakeCase(ScalarType.Float64);
        c.X.requires_grad = true;
        c.A.requires_grad = true;
        c.B.requires_grad = true;
        var y = nn.functional.lora_linear(c.X, c.W, null, c.A, c.B, c.S);
        var gy = randn(y.shape, ScalarType.Float64, generator: new Generator(4));
        y.backward(gy);
        var r = Reference(c, gy);
        SpeedAssert.Close(r.y - c.B0, y, 1e-12, 1e-12, "y without bias");
        SpeedAssert.Close(r.dx, c.X.grad, 1e-12, 1e-12, "dx");
        SpeedAssert.Close(r.dA, c.A.grad, 1e-12, 1e-12, "dA");
        SpeedAssert.Close(r.dB, c.B.grad, 1e-12, 1e-12, "dB");
        Assert.Null(c.W.grad);
    }

    [Fact]
    public void LoraFaTrainsOnlyBAndRejectsATrainable()
    {
        using var scope = NewDisposeScope();
        var c = MakeCase(ScalarType.Float64);
        c.X.requires_grad = true;
        c.B.requires_grad = true;
        var y = nn.functional.lora_fa_linear(c.X, c.W, c.B0, c.A, c.B, c.S);
        var gy = randn(y.shape, ScalarType.Float64, generator: new Generator(5));
        y.backward(gy);
        var r = Reference(c, gy);
        SpeedAssert.Close(r.y, y, 1e-12, 1e-12, "y");
        SpeedAssert.Close(r.dx, c.X.grad, 1e-12, 1e-12, "dx");
        SpeedAssert.Close(r.dB, c.B.grad, 1e-12, 1e-12, "dB");
        Assert.Null(c.A.grad);
        c.A.requires_grad = true;
        var e = Assert.Throws<ArgumentException>(() => nn.functional.lora_fa_linear(c.X, c.W, c.B0, c.A, c.B, c.S));
        Assert.Contains("lora_A", e.Message);
    }

    [Fact]
    public void SharedInputProjectionsMatchTheFormulaPerProjection()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(11);
        var x = randn(new long[] { 3, 4, 6 }, ScalarType.Float64, generator: g).requires_grad_(true);
        var cases = new List<Case>();
        long[] outs = { 5, 3, 4 };
        long[] ranks = { 2, 3, 1 };
        for (int i = 0; i < 3; i++)
        {
            var w = randn(new[] { outs[i], 6L }, ScalarType.Float64, generator: g).requires_grad_(i == 1);
            var b = randn(new[] { outs[i] }, ScalarType.Float64, generator: g).requires_grad_(true);
            var a = randn(new[] { ranks[i], 6L }, ScalarType.Float64, generator: g).requires_grad_(true);
            var bb = randn(new[] { outs[i], ranks[i] }, ScalarType.Float64, generator: g).requires_grad_(true);
            cases.Add(new Case(x, w, b, a, bb, 0.5 + i));
        }
        var ys = nn.functional.lora_linear_shared(x, cases.Select(c => (c.W, (Tensor?)(c.B0), c.A, c.B, c.S)).ToList());
        var gys = ys.Select((y, i) => randn(y.shape, ScalarType.Float64, generator: new Generator((ulong)(20 + i)))).ToArray();
        var loss = ys[0].mul(gys[0]).sum() + ys[1].mul(gys[1]).sum() + ys[2].mul(gys[2]).sum();
        loss.backward();
        Tensor dxExpected = zeros(x.shape, ScalarType.Float64);
        for (int i = 0; i < 3; i++)
        {
            var r = Reference(cases[i], gys[i]);
            SpeedAssert.Close(r.y, ys[i], 1e-12, 1e-12, $"y{i}");
            SpeedAssert.Close(r.db, cases[i].B0.grad, 1e-12, 1e-12, $"db{i}");
            SpeedAssert.Close(r.dA, cases[i].A.grad, 1e-12, 1e-12, $"dA{i}");
            SpeedAssert.Close(r.dB, cases[i].B.grad, 1e-12, 1e-12, $"dB{i}");
            if (i == 1) SpeedAssert.Close(r.dW, cases[i].W.grad, 1e-12, 1e-12, "dW1");
            else Assert.Null(cases[i].W.grad);
            dxExpected = dxExpected + r.dx;
        }
        SpeedAssert.Close(dxExpected, x.grad, 1e-12, 1e-12, "dx (sum over the projections)");
    }

    [Fact]
    public void ComputeOrderFollowsTheDocumentedCostModel()
    {
        // forward: sequential N·r·(in+out); merged out·in·r + 8·out·in + N·in·r (B trains). ∂x: N·r·in vs out·in·r + 8·out·in.
        static (LoraComputeOrder, LoraComputeOrder) Expected(long n, long i, long o, long r)
        {
            double fs = (double)n * r * (i + o), fm = (double)o * i * r + 8.0 * o * i + (double)n * i * r;
            double bs = (double)n * r * i, bm = (double)o * i * r + 8.0 * o * i;
            return (fm < fs ? LoraComputeOrder.Merged : LoraComputeOrder.Sequential, bm < bs ? LoraComputeOrder.Merged : LoraComputeOrder.Sequential);
        }
        foreach (var (n, i, o, r) in new[] { (2048L, 768L, 768L, 16L), (64L, 768L, 768L, 16L), (2048L, 768L, 2048L, 16L), (4096L, 2048L, 768L, 8L), (1000L, 1000L, 1000L, 64L) })
            Assert.Equal(Expected(n, i, o, r), nn.functional.lora_compute_order(n, i, o, r));
        Assert.Equal((LoraComputeOrder.Merged, LoraComputeOrder.Merged), nn.functional.lora_compute_order(2048, 768, 768, 16));
        Assert.Equal((LoraComputeOrder.Sequential, LoraComputeOrder.Sequential), nn.functional.lora_compute_order(64, 768, 768, 16));
        Assert.Equal((LoraComputeOrder.Sequential, LoraComputeOrder.Sequential), nn.functional.lora_compute_order(2048, 768, 768, 16, exact: false));
        Assert.Equal((LoraComputeOrder.Sequential, LoraComputeOrder.Sequential), nn.functional.lora_compute_order(2048, 768, 768, 16, LoraComputeOrder.Sequential));
        Assert.Equal((LoraComputeOrder.Merged, LoraComputeOrder.Merged), nn.functional.lora_compute_order(8, 768, 768, 16, LoraComputeOrder.Merged));
    }

    [Fact]
    public void DropoutMaskIsDrawnOnceAndReusedInBackward()
    {
        // The fused layer draws the mask from the default generator in the unfused Dropout's element order, so with the
        // same seed both paths must agree in output and in every gradient (a second draw in backward would change ∂A, ∂x).
        using var scope = NewDisposeScope();
        manual_seed(5);
        var baseLinear = nn.Linear(8, 6, true);
        using var layer = new LoraLayer(baseLinear);
        layer.UpdateLayer("default", 4, 8, 0.4, false, LoraInitialization.Default, null, new AdapterCreationContext());
        layer.SetActiveAdapters(new[] { "default" });
        using (no_grad()) layer.LoraB("default").weight.normal_(0, 0.5);
        baseLinear.weight.requires_grad = false;
        baseLinear.bias!.requires_grad = false;
        layer.train();
        var x = randn(new long[] { 3, 5, 8 }, generator: new Generator(2)).requires_grad_(true);
        var gy = randn(new long[] { 3, 5, 6 }, generator: new Generator(3));
        Tensor[] Run(bool fused)
        {
            layer.UseFusedKernel = fused;
            x.grad = null;
            foreach (var p in layer.parameters()) p.grad = null;
            manual_seed(77);
            var y = layer.call(x);
            y.backward(gy);
            return new[] { y, x.grad!, layer.LoraA("default").weight.grad!, layer.LoraB("default").weight.grad! };
        }
        var unfused = Run(false);
        var fused = Run(true);
        string[] what = { "y", "dx", "dA", "dB" };
        for (int i = 0; i < 4; i++) SpeedAssert.Close(unfused[i], fused[i], 1e-5, 1e-5, what[i] + " with dropout");
        // And the mask did act: without dropout the output differs.
        layer.eval();
        using (no_grad()) Assert.True((layer.call(x) - fused[0]).abs().max().ToDouble() > 1e-3);
    }

    [Fact]
    public void Bfloat16BaseWithFloat32AdapterMatchesTheUnfusedLayer()
    {
        using var scope = NewDisposeScope();
        manual_seed(6);
        var baseLinear = nn.Linear(16, 12, true, dtype: ScalarType.BFloat16);
        using var layer = new LoraLayer(baseLinear);
        layer.UpdateLayer("default", 4, 8, 0, false, LoraInitialization.Default, null, new AdapterCreationContext { AutocastAdapterDtype = true });
        layer.SetActiveAdapters(new[] { "default" });
        Assert.Equal(ScalarType.Float32, layer.LoraA("default").weight.dtype);
        using (no_grad()) layer.LoraB("default").weight.normal_(0, 0.5);
        baseLinear.weight.requires_grad = false;
        baseLinear.bias!.requires_grad = false;
        var x = randn(new long[] { 4, 16 }, ScalarType.BFloat16, generator: new Generator(8)).requires_grad_(true);
        var gy = randn(new long[] { 4, 12 }, ScalarType.BFloat16, generator: new Generator(9));
        Tensor[] Run(bool fused)
        {
            layer.UseFusedKernel = fused;
            x.grad = null;
            foreach (var p in layer.parameters()) p.grad = null;
            var y = layer.call(x);
            y.backward(gy);
            return new[] { y, x.grad!, layer.LoraA("default").weight.grad!, layer.LoraB("default").weight.grad! };
        }
        var unfused = Run(false);
        var fused = Run(true);
        Assert.Equal(ScalarType.BFloat16, fused[0].dtype);
        Assert.Equal(ScalarType.Float32, fused[2].dtype);
        string[] what = { "y", "dx", "dA", "dB" };
        for (int i = 0; i < 4; i++) SpeedAssert.Close(unfused[i], fused[i], 2e-2, 2e-2, what[i] + " (bf16 base, fp32 adapter)");
        // both round the float32 sum once (PEFT's promotion): the outputs agree element for element, up to the rare
        // last-bit difference of a fused multiply-add
        double same = unfused[0].to_type(ScalarType.Float32).eq(fused[0].to_type(ScalarType.Float32)).to_type(ScalarType.Float64).mean().ToDouble();
        Assert.True(same >= 0.95, $"{same:P1} of the bf16 outputs are bit-identical");
    }

    [Fact]
    public void Bfloat16BaseRoundsTheFloat32SumOnceAsPeftDoes()
    {
        // PEFT (bf16 base, fp32 adapter): result + lora_B(lora_A(x.float()))·s promotes to float32, then casts back once.
        // The fused node adds the float32 adapter product into the bf16 base output with one rounding; the reference here
        // is that formula composed from separate ops. A second rounding (casting the product to bf16 before the add)
        // disagrees on many elements.
        using var scope = NewDisposeScope();
        var g = new Generator(21);
        var w = (randn(new long[] { 48, 32 }, generator: g) * 0.2).to_type(ScalarType.BFloat16);
        var a = randn(new long[] { 8, 32 }, generator: g) * 0.3;
        var b = randn(new long[] { 48, 8 }, generator: g) * 0.3;
        var x = randn(new long[] { 64, 32 }, generator: g).to_type(ScalarType.BFloat16);
        const double s = 2.0;
        var y = nn.functional.lora_linear(x, w, null, a, b, s);
        var basePart = nn.functional.linear(x, w);
        var adapter = x.to_type(ScalarType.Float32).matmul(a.t()).matmul(b.t());
        var once = (basePart.to_type(ScalarType.Float32) + adapter * s).to_type(ScalarType.BFloat16);
        var twice = basePart + (adapter * s).to_type(ScalarType.BFloat16);
        double Equal(Tensor u) => u.to_type(ScalarType.Float32).eq(y.to_type(ScalarType.Float32)).to_type(ScalarType.Float64).mean().ToDouble();
        Assert.True(Equal(once) >= 0.99, $"{Equal(once):P2} of the elements equal the single-rounding formula");
        Assert.True(Equal(twice) < 0.95, $"{Equal(twice):P2} equal the double-rounding formula (the test would not tell them apart)");
        SpeedAssert.Close(once, y, 0, 1.0 / 128, "y within one bf16 rounding of the formula");
    }

    [Fact]
    public void TwoFloat32AdaptersOnABfloat16BaseAreSummedThenRoundedOnce()
    {
        using var scope = NewDisposeScope();
        manual_seed(16);
        var baseLinear = nn.Linear(32, 24, false, dtype: ScalarType.BFloat16);
        baseLinear.weight.requires_grad = false;
        using var layer = new LoraLayer(baseLinear);
        foreach (var name in new[] { "one", "two" })
        {
            layer.UpdateLayer(name, 4, 8, 0, false, LoraInitialization.Default, null, new AdapterCreationContext { AutocastAdapterDtype = true });
            using (no_grad()) layer.LoraB(name).weight.normal_(0, 0.5);
        }
        layer.SetActiveAdapters(new[] { "one", "two" });
        var x = randn(new long[] { 64, 32 }, ScalarType.BFloat16, generator: new Generator(17));
        var y = layer.call(x);
        var xf = x.to_type(ScalarType.Float32);
        var sum = nn.functional.linear(x, baseLinear.weight).to_type(ScalarType.Float32);
        foreach (var name in new[] { "one", "two" })
            sum = sum + xf.matmul(layer.LoraA(name).weight.t()).matmul(layer.LoraB(name).weight.t()) * 2.0;
        var once = sum.to_type(ScalarType.BFloat16);
        double same = once.to_type(ScalarType.Float32).eq(y.to_type(ScalarType.Float32)).to_type(ScalarType.Float64).mean().ToDouble();
        Assert.True(same >= 0.95, $"{same:P1} of the outputs equal base + both adapters summed in float32 and rounded once");
    }

    [Fact]
    public void ShapeMismatchesAreReportedByName()
    {
        using var scope = NewDisposeScope();
        var c = MakeCase(ScalarType.Float32);
        var e = Assert.Throws<TorchException>(() => nn.functional.lora_linear(c.X, c.W, c.B0, c.A.narrow(1, 0, 5), c.B, 1));
        Assert.Contains("in_features", e.Message);
        e = Assert.Throws<TorchException>(() => nn.functional.lora_linear(c.X, c.W, c.B0, c.A, c.B.narrow(1, 0, 2), 1));
        Assert.Contains("rank", e.Message);
        e = Assert.Throws<TorchException>(() => nn.functional.lora_linear(c.X.narrow(2, 0, 5), c.W, c.B0, c.A, c.B, 1));
        Assert.Contains("input's last dimension", e.Message);
        e = Assert.Throws<TorchException>(() => nn.functional.lora_linear(c.X, c.W, c.B0, c.A, c.B, 1, dropout_p: 1.5));
        Assert.Contains("dropout", e.Message);
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void WholeModelLossAndAdapterGradientsEqualTheUnfusedPath(string fixture)
    {
        using var scope = NewDisposeScope();
        using var model = PretrainedModel.Load(Repo.Fixture("models", fixture), dtype: ScalarType.Float32);
        using var peft = LowRankModel.Create(model, new LoraOptions { R = 4, LoraAlpha = 8, TargetModules = ModuleSelector.AllLinear });
        using (no_grad())
            foreach (var (n, p) in peft.named_parameters())
                if (n.Contains("lora_B")) p.normal_(0, 0.05);
        var ids = randint(0, model.Config.VocabSize, new long[] { 2, 7 }, generator: new Generator(1));
        (double loss, Dictionary<string, Tensor> grads) Run(bool fused)
        {
            SpeedAssert.SetFused(peft, fused);
            peft.zero_grad();
            var loss = peft.forward(new ModelInputs { InputIds = ids, Labels = ids }).Loss!;
            loss.backward();
            return (loss.ToDouble(), peft.named_parameters().Where(p => p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter.grad!.clone()));
        }
        var unfused = Run(false);
        var fused = Run(true);
        Assert.Equal(unfused.loss, fused.loss, 5);
        Assert.NotEmpty(fused.grads);
        foreach (var (name, g) in unfused.grads) SpeedAssert.Close(g, fused.grads[name], 1e-6, 1e-4, name);
    }
}
