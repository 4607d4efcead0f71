using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Torch;

public class TensorBasicsTests
{
    [Fact]
    public void RoundTripsDataAndShape()
    {
        using var scope = NewDisposeScope();
        var data = new float[] { 1, 2, 3, 4, 5, 6 };
        var t = tensor(data, new long[] { 2, 3 });
        Assert.Equal(new long[] { 2, 3 }, t.shape);
        Assert.Equal(ScalarType.Float32, t.dtype);
        Assert.Equal(data, t.ToArray<float>());
        Assert.Equal(6, t.numel());
        Assert.Equal(Device.CPU, t.device);
    }

    [Fact]
    public void FactoriesProduceExpectedValues()
    {
        using var scope = NewDisposeScope();
        Assert.All(zeros(3, 4).ToArray<float>(), v => Assert.Equal(0f, v));
        Assert.All(ones(new long[] { 5 }, ScalarType.Float64).ToArray<double>(), v => Assert.Equal(1.0, v));
        Assert.All(full(new long[] { 2, 2 }, 2.5).ToArray<float>(), v => Assert.Equal(2.5f, v));
        Assert.Equal(new long[] { 0, 1, 2, 3, 4 }, arange(5).ToArray<long>());
        Assert.Equal(new double[] { 0, 0.25, 0.5, 0.75, 1 }, linspace(0, 1, 5, ScalarType.Float64).ToArray<double>());
        var e = eye(3, dtype: ScalarType.Float64).ToArray<double>();
        for (int i = 0; i < 3; i++) for (int j = 0; j < 3; j++) Assert.Equal(i == j ? 1.0 : 0.0, e[i * 3 + j]);
    }

    [Fact]
    public void ConvertsTypes()
    {
        using var scope = NewDisposeScope();
        var t = tensor(new double[] { 1.5, -2.25 });
        Assert.Equal(new float[] { 1.5f, -2.25f }, t.to_type(ScalarType.Float32).ToArray<float>());
        Assert.Equal(new long[] { 1, -2 }, t.to_type(ScalarType.Int64).ToArray<long>());
        Assert.Equal(new double[] { 1.5, -2.25 }, t.to_type(ScalarType.BFloat16).ToDoubleArray());
    }

    [Fact]
    public void ShapeMismatchOnCreationIsClear()
    {
        var ex = Assert.Throws<ArgumentException>(() => tensor(new float[] { 1, 2, 3 }, new long[] { 2, 2 }));
        Assert.Contains("holds 4 elements but 3 were given", ex.Message);
    }

    [Fact]
    public void NativeExceptionsOfEveryKindBecomeTorchExceptions()
    {
        for (int kind = 0; kind < 3; kind++)
        {
            var ex = Assert.Throws<TorchException>(() => Tensor.CheckStatus(Microsoft.ML.LowRank.Torch.Native.NativeMethods.lr_core_throw_test(kind)));
            Assert.Contains(kind switch { 0 => "test c10::Error", 1 => "test std::runtime_error", _ => "unknown native exception" }, ex.Message);
        }
        // The process keeps working afterwards.
        using var t = ones(2);
        Assert.Equal(2, t.numel());
    }

}

[Collection(Microsoft.ML.LowRank.Tests.Helpers.SerialCollection.Name)]
public class ScopeLeakTests
{
    private static void ScopeFrees()
    {
        GC.Collect(); GC.WaitForPendingFinalizers();
        var before = Tensor.TotalCount;
        Tensor kept;
        using (var scope = NewDisposeScope())
        {
            for (int i = 0; i < 10; i++) _ = ones(4);
            kept = zeros(2).MoveToOuterDisposeScope();
        }
        Assert.Equal(before + 1, Tensor.TotalCount);
        Assert.False(kept.IsInvalid);
        kept.Dispose();
        Assert.Equal(before, Tensor.TotalCount);
    }

    [Fact]
    public void ScopeFreesEverythingCreatedInside() => ScopeFrees();

    [Fact]
    public void ReportsVersionAndThreads()
    {
        Assert.Matches(@"^\d+\.\d+\.\d+$", __version__);
        Assert.True(get_num_threads() >= 1);
    }
}
