using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Nn;

public class ModuleTests
{
    private sealed class Block : nn.Module<Tensor, Tensor>
    {
        public Block() : base("Block")
        {
            register_module("q_proj", nn.Linear(4, 4));
            register_module("norm", nn.RMSNorm(4, 1e-6));
            register_buffer("table", arange(3, ScalarType.Float32));
            register_buffer("scratch", zeros(2), persistent: false);
        }

        public override Tensor forward(Tensor x) => ((RMSNorm)get_submodule("norm")).call(((Linear)get_submodule("q_proj")).call(x));
    }

    private sealed class Net : nn.Module<Tensor, Tensor>
    {
        public Net() : base("Net")
        {
            register_module("layers", nn.ModuleList(new Block(), new Block()));
            register_module("lm_head", nn.Linear(4, 5, hasBias: false));
        }

        public override Tensor forward(Tensor x)
        {
            var h = x;
            foreach (var b in (ModuleList<Block>)get_submodule("layers")) h = b.call(h);
            return ((Linear)get_submodule("lm_head")).call(h);
        }
    }

    [Fact]
    public void NamesFollowRegistrationPathsLikePyTorch()
    {
        using var net = new Net();
        Assert.Equal(new[]
        {
            "layers.0.q_proj.weight", "layers.0.q_proj.bias", "layers.0.norm.weight",
            "layers.1.q_proj.weight", "layers.1.q_proj.bias", "layers.1.norm.weight", "lm_head.weight",
        }, net.named_parameters().Select(p => p.name));
        Assert.Equal(new[] { "layers.0.table", "layers.0.scratch", "layers.1.table", "layers.1.scratch" }, net.named_buffers().Select(b => b.name));
        Assert.Equal(new[] { "", "layers", "layers.0", "layers.0.q_proj", "layers.0.norm", "layers.1", "layers.1.q_proj", "layers.1.norm", "lm_head" },
            net.named_modules().Select(m => m.name));
        using var scope = NewDisposeScope();
        var sd = net.state_dict();
        Assert.Contains("layers.1.table", sd.Keys);
        Assert.DoesNotContain("layers.1.scratch", sd.Keys);
        var ex = Assert.Throws<KeyNotFoundException>(() => net.get_submodule("layers.0.k_proj"));
        Assert.Contains("q_proj", ex.Message);
    }

    [Fact]
    public void StateDictRoundTripsAndStrictModeReportsKeys()
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        using var a = new Net();
        manual_seed(2);
        using var b = new Net();
        var x = randn(2, 4);
        using (no_grad()) Assert.False(a.call(x).allclose(b.call(x)));
        var (missing, unexpected) = b.load_state_dict(a.state_dict());
        Assert.Empty(missing);
        Assert.Empty(unexpected);
        using (no_grad()) Assert.Equal(a.call(x).ToArray<float>(), b.call(x).ToArray<float>());

        var partial = a.state_dict();
        partial.Remove("lm_head.weight");
        partial["extra.weight"] = ones(1);
        var ex = Assert.Throws<InvalidOperationException>(() => b.load_state_dict(partial));
        Assert.Contains("missing keys (1): lm_head.weight", ex.Message);
        Assert.Contains("unexpected keys (1): extra.weight", ex.Message);
        (missing, unexpected) = b.load_state_dict(partial, strict: false);
        Assert.Equal(new[] { "lm_head.weight" }, missing);
        Assert.Equal(new[] { "extra.weight" }, unexpected);

        var wrong = a.state_dict();
        wrong["lm_head.weight"] = ones(5, 3);
        var shape = Assert.Throws<InvalidOperationException>(() => b.load_state_dict(wrong));
        Assert.Contains("lm_head.weight: checkpoint [5, 3] vs model [5, 4]", shape.Message);
    }

    [Fact]
    public void FreezingDtypeMovesAndTrainModeApplyToTheWholeTree()
    {
        using var scope = NewDisposeScope();
        using var net = new Net();
        var weight = net.get_parameter("layers.0.q_proj.weight");
        net.requires_grad_(false);
        Assert.All(net.parameters(), p => Assert.False(p.requires_grad));
        net.get_submodule("lm_head").requires_grad_(true);
        Assert.Equal(new[] { "lm_head.weight" }, net.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name));
        net.to(ScalarType.Float64);
        Assert.All(net.parameters(), p => Assert.Equal(ScalarType.Float64, p.dtype));
        Assert.Same(weight, net.get_parameter("layers.0.q_proj.weight"));
        Assert.Equal(ScalarType.Float64, net.named_buffers().First().buffer.dtype);
        net.eval();
        Assert.All(net.modules(), m => Assert.False(m.training));
        net.train();
        Assert.All(net.modules(), m => Assert.True(m.training));
    }

    [Fact]
    public void LinearMatchesItsFormulaAndDefaultInitBounds()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        using var lin = nn.Linear(64, 8);
        var w = lin.weight.ToArray<float>();
        var bound = 1 / Math.Sqrt(64);
        Assert.All(w, v => Assert.InRange(v, -bound, bound));
        Assert.InRange(w.Select(v => (double)v * v).Average(), bound * bound / 3 * 0.7, bound * bound / 3 * 1.3); // U(-b,b) variance b²/3
        var x = randn(3, 64);
        var y = lin.call(x).ToArray<float>();
        var xs = x.ToArray<float>();
        var bs = lin.bias!.ToArray<float>();
        for (int r = 0; r < 3; r++)
            for (int o = 0; o < 8; o++)
            {
                double s = bs[o];
                for (int i = 0; i < 64; i++) s += (double)xs[r * 64 + i] * w[o * 64 + i];
                Assert.InRange(y[r * 8 + o] - s, -1e-4, 1e-4);
            }
    }

    [Fact]
    public void RmsNormMatchesLlamaAndGemmaFormulas()
    {
        using var scope = NewDisposeScope();
        var x = tensor(new float[] { 1, -2, 3, 0.5f, 0, 4 }, new long[] { 2, 3 });
        using var llama = nn.RMSNorm(3, 1e-6);
        using var gemma = nn.RMSNorm(3, 1e-6, weight_offset: 1);
        using (no_grad())
        {
            llama.weight.copy_(tensor(new float[] { 0.5f, 1, 2 }));
            gemma.weight.copy_(tensor(new float[] { -0.5f, 0, 1 }));
        }
        var xs = x.ToArray<float>();
        var l = llama.call(x).ToArray<float>();
        var g = gemma.call(x).ToArray<float>();
        var wl = new[] { 0.5, 1, 2 };
        var wg = new[] { 0.5, 1, 2 }; // 1 + w
        for (int r = 0; r < 2; r++)
        {
            double ms = 0;
            for (int i = 0; i < 3; i++) ms += xs[r * 3 + i] * (double)xs[r * 3 + i];
            var inv = 1 / Math.Sqrt(ms / 3 + 1e-6);
            for (int i = 0; i < 3; i++)
            {
                Assert.InRange(l[r * 3 + i] - xs[r * 3 + i] * inv * wl[i], -1e-5, 1e-5);
                Assert.InRange(g[r * 3 + i] - xs[r * 3 + i] * inv * wg[i], -1e-5, 1e-5);
            }
        }
    }

    [Fact]
    public void DisposingAModuleFreesItsTensors()
    {
        GC.Collect(); GC.WaitForPendingFinalizers();
        var net = new Net();
        var weight = net.get_parameter("lm_head.weight");
        net.Dispose();
        Assert.True(weight.IsInvalid);
    }
}
