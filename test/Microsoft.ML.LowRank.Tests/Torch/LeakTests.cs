using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Torch;

[Collection(SerialCollection.Name)]
public class LeakTests
{
    private static long Live() => LiveTensors.Count();

    [Fact]
    public void ThousandForwardBackwardStepsInScopesLeaveLiveCountUnchanged()
    {
        manual_seed(3);
        using var w = randn(8, 16).DetachFromDisposeScope().requires_grad_();
        using var b = zeros(new long[] { 8 }, requires_grad: true).DetachFromDisposeScope();
        // Warm-up (lazy native state), then measure.
        Step(w, b);
        var before = Live();
        DisposeScopeManager.Statistics.Reset();
        for (int i = 0; i < 1000; i++) Step(w, b);
        Assert.Equal(before, Live());
        Assert.True(DisposeScopeManager.Statistics.CreatedInScopeCount >= 1000 * 5, "the steps created tensors inside scopes");
    }

    private static void Step(Tensor w, Tensor b)
    {
        using var scope = NewDisposeScope();
        var x = randn(4, 16);
        var y = nn.functional.linear(x, w, b).tanh();
        var loss = (y * y).sum();
        loss.backward();
        Assert.NotNull(w.grad);
        w.grad = null;
        b.grad = null;
    }

    [Fact]
    public void NestedScopesAndMovedTensorsAreAccountedFor()
    {
        var before = Live();
        Tensor survivor;
        using (var outer = NewDisposeScope())
        {
            using (var inner = NewDisposeScope())
            {
                var a = ones(3);
                var c = (a + a).MoveToOuterDisposeScope();
                _ = c * 2;
            }
            Assert.Equal(1, outer.Count);
            survivor = (ones(2) * 3).DetachFromDisposeScope();
        }
        Assert.Equal(before + 1, Live());
        Assert.Equal(new float[] { 3, 3 }, survivor.ToArray<float>());
        survivor.Dispose();
        Assert.Equal(before, Live());
    }

    [Fact]
    public void DisposeEverythingButKeepsOnlyTheNamedTensors()
    {
        var before = Live();
        using (var scope = NewDisposeScope())
        {
            var keep = ones(4);
            for (int i = 0; i < 5; i++) _ = zeros(2);
            scope.DisposeEverythingBut(keep);
            Assert.Equal(before + 1, Live());
            Assert.Equal(4, keep.numel());
        }
        Assert.Equal(before, Live());
    }

    [Fact]
    public void ForgottenTensorsAreFreedByTheFinalizer()
    {
        var before = Live();
        MakeGarbage();
        Assert.Equal(before, Live());

        static void MakeGarbage()
        {
            for (int i = 0; i < 100; i++) _ = ones(16);
        }
    }
}
