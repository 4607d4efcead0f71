using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Torch;

/// <summary>Finite-difference gradient checks (float64) of every differentiable shape / indexing op.</summary>
public class ShapeOpsGradTests
{
    private static Tensor X(int seed, params long[] shape)
        => tensor(ShapeRef.Data((int)ShapeRef.Numel(shape), seed), shape, requires_grad: true);

    private static void Check(Func<Tensor, Tensor> f, params long[] shape)
    {
        using var scope = NewDisposeScope();
        GradCheck.Assert(t => f(t[0]), new[] { X(1, shape) });
    }

    [Fact] public void ViewReshapeFlattenUnflatten()
    {
        Check(x => x.view(3, 2), 2, 3);
        Check(x => x.t().reshape(6), 2, 3);
        Check(x => x.flatten(1), 2, 3, 2);
        Check(x => x.unflatten(1, 3, 2), 2, 6);
    }

    [Fact] public void PermuteTransposeMovedim()
    {
        Check(x => x.permute(2, 0, 1), 2, 3, 2);
        Check(x => x.transpose(0, 1), 2, 3);
        Check(x => x.t(), 2, 3);
        Check(x => x.mT, 2, 2, 3);
        Check(x => x.movedim(0, 2), 2, 3, 2);
    }

    [Fact] public void SqueezeUnsqueezeExpandRepeat()
    {
        Check(x => x.unsqueeze(1).squeeze(), 2, 3);
        Check(x => x.expand(2, 3, 3), 3, 1);
        Check(x => x.repeat(2, 2), 2, 3);
        Check(x => x.repeat_interleave(2, 0), 2, 3);
    }

    [Fact] public void CatStackSplitChunkUnbind()
    {
        using var scope = NewDisposeScope();
        GradCheck.Assert(t => cat(new[] { t[0], t[1] }, 1), new[] { X(1, 2, 3), X(2, 2, 2) });
        GradCheck.Assert(t => stack(new[] { t[0], t[1] }, 1), new[] { X(3, 2, 3), X(4, 2, 3) });
        Check(x => { var p = x.split(new long[] { 1, 2 }, 1); return cat(new[] { p[1], p[0] }, 1); }, 2, 3);
        Check(x => x.split(2, 1)[1], 2, 3);
        Check(x => x.chunk(2, 0)[0], 3, 2);
        Check(x => x.unbind(1)[2], 2, 3);
    }

    [Fact] public void NarrowSliceSelectIndexerRead()
    {
        Check(x => x.narrow(1, 1, 2), 2, 3);
        Check(x => x.slice(1, 0, 3, 2), 2, 3);
        Check(x => x.select(0, 1), 2, 3);
        Check(x => x[1.., TensorIndex.Slice(null, null, 2)], 3, 3);
        Check(x => x[TensorIndex.Ellipsis, -1, TensorIndex.None], 2, 3);
        Check(x => x[tensor(new long[] { 2, 0, 2 })], 3, 2);            // duplicates accumulate
        Check(x => x[tensor(new[] { true, false, true, true, false, true }, new long[] { 2, 3 })], 2, 3);
    }

    [Fact] public void IndexSelectGatherScatterAdd()
    {
        Check(x => x.index_select(1, tensor(new long[] { 2, 0, 2 })), 2, 3);
        Check(x => x.gather(1, tensor(new long[] { 0, 2, 2, 1 }, new long[] { 2, 2 })), 2, 3);
        Check(x => x.take_along_dim(tensor(new long[] { 1, 0 }, new long[] { 1, 2 }), 1), 2, 3);
        using var scope = NewDisposeScope();
        var idx = tensor(new long[] { 1, 1, 0, 2 }, new long[] { 2, 2 });
        GradCheck.Assert(t => t[0].scatter_add(1, idx, t[1]), new[] { X(1, 2, 3), X(2, 2, 2) });
        GradCheck.Assert(t => t[0].scatter(1, tensor(new long[] { 2, 0, 1, 2 }, new long[] { 2, 2 }), t[1]), new[] { X(3, 2, 3), X(4, 2, 2) });
        GradCheck.Assert(t => t[0].index_add(0, tensor(new long[] { 1, 1 }), t[1], 0.5), new[] { X(5, 2, 3), X(6, 2, 3) });
        Check(x => x.masked_select(tensor(new[] { true, false, true })), 2, 3);
    }

    [Fact] public void TriangularAndDiagonal()
    {
        Check(x => x.tril(), 3, 3);
        Check(x => x.triu(1), 3, 4);
        Check(x => x.tril(-1), 2, 3, 3);
        Check(x => x.diagonal(), 3, 3);
        Check(x => x.diag(), 3);
        Check(x => x.diag_embed(), 2, 3);
    }

    [Fact] public void TopkSortFlipRollPad()
    {
        Check(x => x.topk(2).values, 2, 4);
        Check(x => x.topk(2, dim: 0, largest: false).values, 3, 2);
        Check(x => x.sort().values, 2, 4);
        Check(x => x.sort(dim: 0, descending: true).values, 3, 2);
        Check(x => x.flip(0, 1), 2, 3);
        Check(x => x.roll(1, 1), 2, 3);
        Check(x => x.roll(2), 2, 3);
        Check(x => pad(x, new long[] { 1, 0, 1, 2 }, 3.0), 2, 3);
    }
}

[Collection(SerialCollection.Name)]
public class ShapeOpsHandleTests
{
    [Fact]
    public void SplitsSortsAndIndexingLeaveNoHandles()
    {
        var before = Tensor.TotalCount;
        using (var scope = NewDisposeScope())
        {
            var x = rand(4, 6);
            _ = x.split(2, 1);
            _ = x.chunk(3);
            _ = x.unbind();
            _ = x.sort();
            _ = x.topk(2);
            _ = x[1.., tensor(new long[] { 0, 2 })];
            x[0] = 1.0;
            _ = meshgrid(new[] { arange(3), arange(2) });
            _ = cat(x.unbind(), 0);
        }
        Assert.Equal(before, Tensor.TotalCount);
    }
}
