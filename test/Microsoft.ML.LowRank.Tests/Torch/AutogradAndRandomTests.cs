using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Torch;

public class AutogradAndRandomTests
{
    [Fact]
    public void BackwardAccumulatesAndGradCanBeCleared()
    {
        using var scope = NewDisposeScope();
        var x = tensor(new double[] { 1, 2, 3 }, requires_grad: true);
        // y = x * 1 via a leaf alias: use to_type (identity for float64 is an alias) through clone() which is differentiable.
        var y = x.clone();
        y.backward(tensor(new double[] { 0.5, -1, 2 }), retain_graph: true);
        Assert.Equal(new double[] { 0.5, -1, 2 }, x.grad!.ToArray<double>());
        y.backward(tensor(new double[] { 1, 1, 1 }));
        Assert.Equal(new double[] { 1.5, 0, 3 }, x.grad!.ToArray<double>());
        x.zero_grad();
        Assert.Equal(new double[] { 0, 0, 0 }, x.grad!.ToArray<double>());
        x.grad = null;
        Assert.Null(x.grad);
    }

    [Fact]
    public void NoGradStopsRecordingAndRestores()
    {
        using var scope = NewDisposeScope();
        var x = ones(new long[] { 2 }, requires_grad: true);
        Assert.True(is_grad_enabled());
        using (no_grad())
        {
            Assert.False(is_grad_enabled());
            Assert.False(x.clone().requires_grad);
            using (enable_grad()) Assert.True(x.clone().requires_grad);
        }
        Assert.True(is_grad_enabled());
        Assert.True(x.clone().requires_grad);
        Assert.False(x.detach().requires_grad);
    }

    [Fact]
    public void FunctionalGradReturnsPerInputGradients()
    {
        using var scope = NewDisposeScope();
        var a = tensor(new double[] { 1, 2 }, requires_grad: true);
        var b = tensor(new double[] { 3, 4 }, requires_grad: true);
        var y = a.clone();
        var g = autograd.grad(new[] { y }, new[] { a, b }, new Tensor?[] { tensor(new double[] { 2, 3 }) }, allow_unused: true);
        Assert.Equal(new double[] { 2, 3 }, g[0]!.ToArray<double>());
        Assert.Null(g[1]);
    }

    [Fact]
    public void GradCheckCatchesAWrongGradient()
    {
        // clone's gradient is the identity: the checker accepts it. A function whose recorded graph (clone) disagrees
        // with its value (2x, computed when gradients are off, as in the numeric pass) must be rejected.
        using var scope = NewDisposeScope();
        var x = tensor(new double[] { 0.3, -0.7 }, requires_grad: true);
        GradCheck.Assert(t => t[0].clone(), new[] { x });
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() =>
            GradCheck.Assert(t => is_grad_enabled() ? t[0].clone() : tensor(t[0].ToDoubleArray().Select(v => 2 * v).ToArray()), new[] { x }));
    }

    [Fact]
    public void SameSeedGivesSameNumbers()
    {
        using var scope = NewDisposeScope();
        manual_seed(42);
        var a = randn(5).ToArray<float>();
        manual_seed(42);
        var b = randn(5).ToArray<float>();
        Assert.Equal(a, b);
        using var g1 = new Generator(7);
        using var g2 = new Generator(7);
        Assert.Equal(rand(new long[] { 6 }, generator: g1).ToArray<float>(), rand(new long[] { 6 }, generator: g2).ToArray<float>());
        var state = g1.get_state();
        var next = randn(new long[] { 4 }, generator: g1).ToArray<float>();
        g1.set_state(state);
        Assert.Equal(next, randn(new long[] { 4 }, generator: g1).ToArray<float>());
        Assert.NotEqual(next, randn(new long[] { 4 }, generator: g1).ToArray<float>());
    }

    [Fact]
    public void RandomDistributionsHaveExpectedMoments()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(123);
        var n = 200_000;
        var u = rand(new long[] { n }, ScalarType.Float64, generator: g).ToArray<double>();
        Assert.All(u, v => Assert.InRange(v, 0.0, 1.0));
        Assert.InRange(u.Average(), 0.495, 0.505);
        var z = randn(new long[] { n }, ScalarType.Float64, generator: g).ToArray<double>();
        var mean = z.Average();
        var var = z.Select(v => (v - mean) * (v - mean)).Average();
        Assert.InRange(mean, -0.01, 0.01);
        Assert.InRange(var, 0.98, 1.02);
        var r = randint(3, 7, new long[] { 10_000 }, generator: g).ToArray<long>();
        Assert.All(r, v => Assert.InRange(v, 3L, 6L));
        Assert.Equal(4, r.Distinct().Count());
        var p = randperm(50, generator: g).ToArray<long>();
        Assert.Equal(Enumerable.Range(0, 50).Select(i => (long)i), p.OrderBy(v => v));
        var t = empty(new long[] { n }, ScalarType.Float64);
        t.normal_(2, 3, g);
        var tn = t.ToArray<double>();
        Assert.InRange(tn.Average(), 1.97, 2.03);
        t.uniform_(-2, 5, g);
        Assert.All(t.ToArray<double>(), v => Assert.InRange(v, -2.0, 5.0));
        t.bernoulli_(0.25, g);
        Assert.InRange(t.ToArray<double>().Average(), 0.245, 0.255);
    }

    [Fact]
    public void CudaQueriesAnswerOnCpuOnlyLibtorch()
    {
        var available = cuda.is_available();
        Assert.Equal(available, cuda.device_count() > 0);
        if (!available) Assert.Equal(0, cuda.memory_allocated());
    }

    [CudaFact]
    public void CudaRoundTripAndMemoryStats()
    {
        using var scope = NewDisposeScope();
        cuda.reset_peak_memory_stats();
        var x = tensor(new float[] { 1, 2, 3 }).cuda();
        Assert.Equal(DeviceType.CUDA, x.device.type);
        cuda.synchronize();
        Assert.True(cuda.max_memory_allocated() > 0);
        Assert.Equal(new float[] { 1, 2, 3 }, x.cpu().ToArray<float>());
    }
}
