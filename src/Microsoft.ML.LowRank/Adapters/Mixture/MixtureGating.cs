using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.Mixture;

/// <summary>A routing decision: sparse (expert index and weight per slot, index E for an empty slot) or dense (one weight
/// per expert), per token or per example (row-level).</summary>
internal sealed class RoutingDecision
{
    public required Tensor Logits { get; init; }
    public required Tensor Probs { get; init; }
    /// <summary>Selected before capacity [M, E] (0/1, router type).</summary>
    public required Tensor Selected { get; set; }
    /// <summary>[M, k] int64, E marks an empty slot (dropped by top-p or capacity).</summary>
    public Tensor? Index { get; set; }
    /// <summary>[M, k] weights (0 in empty slots).</summary>
    public Tensor? Weight { get; set; }
    /// <summary>[M, E] weights (dense gating).</summary>
    public Tensor? Dense { get; set; }
    public required int Experts { get; init; }
    public required bool RowLevel { get; init; }

    /// <summary>The final weights as a dense [M, E] matrix.</summary>
    public Tensor GatesDense()
    {
        if (Dense is not null) return Dense;
        var m = Index!.size(0);
        var full = zeros(new[] { m, (long)Experts + 1 }, Weight!.dtype, Weight.device).scatter_add(1, Index, Weight);
        return full.narrow(1, 0, Experts);
    }

    /// <summary>1 where a row was dispatched to an expert (after capacity) [M, E].</summary>
    public Tensor DispatchedDense()
    {
        if (Dense is not null) return ones_like(Dense);
        var m = Index!.size(0);
        var full = zeros(new[] { m, (long)Experts + 1 }, Probs.dtype, Probs.device)
            .scatter_add(1, Index, ones(Index.shape, Probs.dtype, Probs.device));
        return full.narrow(1, 0, Experts).clamp_max(1);
    }
}

/// <summary>The gating rules of the mixture-of-experts family, on router probabilities [M, E]. Ties are broken toward the
/// lower expert index (a stable descending sort), so selections are deterministic.</summary>
internal static class MixtureGating
{
    /// <summary>Sorts probabilities descending, ties by ascending expert index.</summary>
    public static (Tensor values, Tensor indices) SortDescending(Tensor probs) => probs.sort(-1, descending: true, stable: true);

    /// <summary>Softmax → the k largest → (optionally) renormalised.</summary>
    public static (Tensor index, Tensor weight) TopK(Tensor probs, int k, bool renormalize)
    {
        var (v, i) = SortDescending(probs);
        var w = v.narrow(1, 0, k);
        if (renormalize) w = w / w.sum(-1, keepdim: true);
        return (i.narrow(1, 0, k).contiguous(), w);
    }

    /// <summary>MixLoRA-dynamic's top-p: sorted descending, keep expert j when the mass before it is at most p (so the
    /// expert crossing p is kept); weights are the probabilities (renormalised on request); dropped slots get index E.</summary>
    public static (Tensor index, Tensor weight) TopP(Tensor probs, double p, bool renormalize)
    {
        var (v, i) = SortDescending(probs);
        var cum = v.cumsum(1);
        var before = cat(new[] { zeros(new[] { v.size(0), 1L }, v.dtype, v.device), cum.narrow(1, 0, v.size(1) - 1) }, 1);
        var keep = before.le(p);
        var w = v * keep.to_type(v.dtype);
        if (renormalize) w = w / w.sum(-1, keepdim: true);
        var idx = i.masked_fill(keep.logical_not(), probs.size(1));
        return (idx, w);
    }

    /// <summary>The 0/1 selection matrix [M, E] of an index matrix [M, k] (index E ignored).</summary>
    public static Tensor SelectionMask(Tensor index, int experts, ScalarType dtype)
    {
        var m = index.size(0);
        var full = zeros(new[] { m, (long)experts + 1 }, dtype, index.device)
            .scatter_add(1, index, ones(index.shape, dtype, index.device));
        return full.narrow(1, 0, experts).clamp_max(1);
    }

    /// <summary>
    /// Capacity: slots over an expert's capacity become empty (index E, weight 0). Per sequence (<paramref name="perSequence"/>,
    /// MixLoRA-switch): rows are [batch·seq] tokens and each sequence's tokens count in order; otherwise the whole batch,
    /// first choices before second choices (GShard), in row order.
    /// </summary>
    public static (Tensor index, Tensor weight) ApplyCapacity(Tensor index, Tensor weight, int experts, long capacity, long batch, long seq, bool perSequence)
    {
        long m = index.size(0), k = index.size(1);
        var oh = one_hot(index, experts + 1).narrow(2, 0, experts); // [M, k, E] int64
        Tensor pos;
        if (perSequence)
        {
            var o = oh.view(batch, seq, k, experts).permute(0, 2, 1, 3).reshape(batch, k * seq, experts);
            var c = (o.cumsum(1) * o).sum(-1); // [B, k·S]: 1-based position of the slot within its expert's queue
            pos = c.view(batch, k, seq).permute(0, 2, 1).reshape(m, k);
        }
        else
        {
            var o = oh.permute(1, 0, 2).reshape(k * m, experts);
            var c = (o.cumsum(0) * o).sum(-1);
            pos = c.view(k, m).permute(1, 0).reshape(m, k);
        }
        var keep = pos.le(capacity).logical_and(index.lt(experts));
        return (index.masked_fill(keep.logical_not(), experts), weight * keep.to_type(weight.dtype));
    }

    /// <summary>Polytropon's relaxed-Bernoulli weights: training samples sigmoid((logits + log u − log(1−u))/τ), evaluation
    /// uses sigmoid(logits); normalised to sum 1 (+1e-12) per row.</summary>
    public static Tensor RelaxedBernoulli(Tensor logits, bool training, double temperature = 1.0, Generator? generator = null)
    {
        Tensor y;
        if (training)
        {
            var u = rand(logits.shape, logits.dtype, logits.device, generator: generator).clamp(1e-6, 1 - 1e-6);
            y = ((logits + u.log() - (1 - u).log()) / temperature).sigmoid();
        }
        else y = logits.sigmoid();
        return y / (y.sum(-1, keepdim: true) + 1e-12);
    }

    /// <summary>Groups the (row, slot) pairs of a sparse decision by expert with one sort (one host read of the counts):
    /// for every expert with rows, the rows and their weights. Index E (empty slot) is skipped.</summary>
    public static List<(int expert, Tensor rows, Tensor weights)> GroupByExpert(Tensor index, Tensor weight, int experts)
    {
        long m = index.size(0), k = index.size(1);
        var flatE = index.reshape(-1);
        var flatRow = arange(m, ScalarType.Int64, index.device).unsqueeze(1).expand(m, k).reshape(-1);
        var flatW = weight.reshape(-1);
        var counts = one_hot(flatE, experts + 1).sum(0).cpu().ToArray<long>();
        var order = flatE.argsort(0, descending: false, stable: true);
        var rows = flatRow.index_select(0, order);
        var ws = flatW.index_select(0, order);
        var groups = new List<(int, Tensor, Tensor)>();
        long offset = 0;
        for (int e = 0; e < experts; e++)
        {
            var c = counts[e];
            if (c > 0) groups.Add((e, rows.narrow(0, offset, c), ws.narrow(0, offset, c)));
            offset += c;
        }
        return groups;
    }
}
