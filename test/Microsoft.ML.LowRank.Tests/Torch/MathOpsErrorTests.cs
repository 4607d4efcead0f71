using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Torch;

/// <summary>Bad input to math ops raises a .NET exception naming the problem, and the process carries on.</summary>
public class MathOpsErrorTests
{
    private static void StillWorks()
    {
        using var scope = NewDisposeScope();
        var r = tensor(new double[] { 1, 2 }) + tensor(new double[] { 3, 4 });
        Assert.Equal(new double[] { 4, 6 }, r.ToArray<double>());
    }

    [Fact]
    public void MatmulOfIncompatibleShapesNamesTheShapes()
    {
        using (var scope = NewDisposeScope())
        {
            var a = ones(2, 3);
            var b = ones(4, 5);
            var ex = Assert.Throws<TorchException>(() => a.matmul(b));
            Assert.Contains("2x3", ex.Message);
            Assert.Contains("4x5", ex.Message);
            var ex2 = Assert.Throws<TorchException>(() => torch.mm(a, b));
            Assert.Contains("2x3", ex2.Message);
            Assert.Throws<TorchException>(() => a.addmm(a, b));
            Assert.Throws<TorchException>(() => ones(3).dot(ones(4)));
            Assert.Throws<TorchException>(() => ones(2, 3).mv(ones(4)));
        }
        StillWorks();
    }

    [Fact]
    public void BroadcastMismatchThrows()
    {
        using (var scope = NewDisposeScope())
        {
            var a = ones(2, 3);
            var b = ones(4);
            var ex = Assert.Throws<TorchException>(() => a + b);
            Assert.Contains("size of tensor a (3) must match the size of tensor b (4)", ex.Message);
            Assert.Throws<TorchException>(() => a.mul(ones(2, 2)));
            Assert.Throws<TorchException>(() => a.maximum(b));
            Assert.Throws<TorchException>(() => a.eq(b));
            Assert.Throws<TorchException>(() => where(ones(new long[] { 2, 3 }, ScalarType.Bool), a, b));
            Assert.Throws<TorchException>(() => a.masked_fill(ones(new long[] { 4 }, ScalarType.Bool), 0));
            Assert.Throws<TorchException>(() => a.add_(b));
            Assert.Throws<TorchException>(() => a.lerp(ones(5), 0.5));
        }
        StillWorks();
    }

    [Fact]
    public void OutOfRangeDimsThrow()
    {
        using (var scope = NewDisposeScope())
        {
            var a = ones(2, 3);
            var ex = Assert.Throws<TorchException>(() => a.sum(5));
            Assert.Contains("out of range", ex.Message);
            Assert.Contains("5", ex.Message);
            Assert.Throws<TorchException>(() => a.sum(new long[] { 0, -3 }));
            Assert.Throws<TorchException>(() => a.mean(2));
            Assert.Throws<TorchException>(() => a.prod(new long[] { 7 }));
            Assert.Throws<TorchException>(() => a.prod(new long[] { 1, -1 })); // repeated dim
            Assert.Throws<TorchException>(() => a.var(3));
            Assert.Throws<TorchException>(() => a.max(2));
            Assert.Throws<TorchException>(() => a.min(-3));
            Assert.Throws<TorchException>(() => a.amax(2));
            Assert.Throws<TorchException>(() => a.argmax(2));
            Assert.Throws<TorchException>(() => a.norm(2, new long[] { 4 }));
            Assert.Throws<TorchException>(() => a.logsumexp(9));
            Assert.Throws<TorchException>(() => a.cumsum(2));
            Assert.Throws<TorchException>(() => a.any(2));
        }
        StillWorks();
    }

    [Fact]
    public void WrongDtypeOrRankThrows()
    {
        using (var scope = NewDisposeScope())
        {
            var i = tensor(new long[] { 1, 2, 3 });
            var ex = Assert.Throws<TorchException>(() => i.mean());
            Assert.Contains("Long", ex.Message);
            Assert.Throws<TorchException>(() => ones(2, 3).bmm(ones(3, 2)));          // bmm needs 3-D
            Assert.Throws<TorchException>(() => ones(2, 2, 3).bmm(ones(3, 3, 2)));   // batch sizes differ
            Assert.Throws<TorchException>(() => ones(2, 3).mm(ones(3)));             // mm needs 2-D
            Assert.Throws<TorchException>(() => ones(3).dot(tensor(new double[] { 1, 2, 3 }))); // dot needs equal dtypes
            var cond = Assert.Throws<TorchException>(() => where(ones(3), ones(3), ones(3))); // condition must be bool
            Assert.Contains("bool", cond.Message, StringComparison.OrdinalIgnoreCase);
            Assert.Throws<TorchException>(() => i.pow(-1));                          // integers to negative powers
            Assert.Throws<TorchException>(() => ones(3).clamp());                    // no bound at all
            Assert.Throws<TorchException>(() => einsum("ij,jk->ik", ones(2, 3)));    // operand count
            Assert.Throws<TorchException>(() => einsum("ij->ij", ones(2, 3, 4)));    // subscript count
            Assert.Throws<TorchException>(() => ones(0).max());                      // empty reduction without identity
        }
        StillWorks();
    }

    [Fact]
    public void DisposedOperandThrowsObjectDisposed()
    {
        var a = ones(2);
        var b = ones(2);
        b.Dispose();
        Assert.Throws<ObjectDisposedException>(() => a + b);
        Assert.Throws<ObjectDisposedException>(() => einsum("i,i->", a, b));
        a.Dispose();
        StillWorks();
    }
}

[Collection(SerialCollection.Name)]
public class MathOpsLeakTests
{
    [Fact]
    public void OpsAndFailuresLeaveNoHandlesBehind()
    {
        var before = Tensor.TotalCount;
        using (var scope = NewDisposeScope())
        {
            var a = tensor(new double[] { 3, 1, 2, 5 }, new long[] { 2, 2 });
            var (v, i) = a.max(1);
            var s = (a * 2 + 1).sum() / a.numel();
            var e = einsum("ij,jk->ik", a, a);
            a.add_(1).mul_(2);
            for (int k = 0; k < 10; k++)
            {
                Assert.Throws<TorchException>(() => a.matmul(ones(3, 3)));
                Assert.Throws<TorchException>(() => a.max(4));
            }
        }
        Assert.Equal(before, Tensor.TotalCount);
    }
}
