using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Mixture;

namespace Microsoft.ML.LowRank.Tests.Adapters.Mixture;

/// <summary>
/// methods.md §7 in float64 loops, written independently of the library: router softmax, stable top-k / top-p / switch
/// selection, capacity, the per-Linear mixture (output space and parameter space), shared experts, the MOLE
/// expert-output router. Evaluation-mode semantics (no dropout, jitter or noise) unless noise is given.
/// </summary>
public static class MoeMath
{
    public static double[] Softmax(double[] z, double temperature = 1)
    {
        var m = z.Max() / temperature;
        var e = z.Select(v => Math.Exp(v / temperature - m)).ToArray();
        var s = e.Sum();
        return e.Select(v => v / s).ToArray();
    }

    /// <summary>Indices by descending value, ties by ascending index.</summary>
    public static int[] Order(double[] p) => Enumerable.Range(0, p.Length).OrderByDescending(i => p[i]).ThenBy(i => i).ToArray();

    /// <summary>Expert weights of one row (zero for unselected experts) and the selected set, for a gating mode.</summary>
    public static (double[] w, bool[] selected) Gate(double[] probs, GatingMode mode, int k, double topP, bool renormalize)
    {
        int e = probs.Length;
        var w = new double[e];
        var sel = new bool[e];
        var order = Order(probs);
        switch (mode)
        {
            case GatingMode.Dense:
                for (int i = 0; i < e; i++) { w[i] = probs[i]; sel[i] = true; }
                break;
            case GatingMode.TopK:
            case GatingMode.NoisyTopK:
            case GatingMode.Switch:
                {
                    int kk = mode == GatingMode.Switch ? 1 : Math.Min(k, e);
                    double s = 0;
                    for (int j = 0; j < kk; j++) s += probs[order[j]];
                    bool norm = mode != GatingMode.Switch && renormalize;
                    for (int j = 0; j < kk; j++) { w[order[j]] = norm ? probs[order[j]] / s : probs[order[j]]; sel[order[j]] = true; }
                    break;
                }
            case GatingMode.TopP:
                {
                    double before = 0, s = 0;
                    var keep = new List<int>();
                    foreach (var i in order)
                    {
                        if (before > topP) break;
                        keep.Add(i);
                        before += probs[i];
                        s += probs[i];
                    }
                    foreach (var i in keep) { w[i] = renormalize ? probs[i] / s : probs[i]; sel[i] = true; }
                    break;
                }
            default:
                throw new NotSupportedException(mode.ToString());
        }
        return (w, sel);
    }

    public static double[] Row(double[] a, int row, int width) => a.AsSpan(row * width, width).ToArray();

    /// <summary>M [rows, cols] (row-major) times v [cols].</summary>
    public static double[] MatVec(double[] m, int rows, int cols, double[] v, int colOffset = 0, int colCount = -1, int rowOffset = 0, int rowCount = -1)
    {
        // Uses the sub-block rows [rowOffset, rowOffset+rowCount) x cols [colOffset, colOffset+colCount) of m (full width cols).
        if (colCount < 0) colCount = cols;
        if (rowCount < 0) rowCount = rows;
        var r = new double[rowCount];
        for (int i = 0; i < rowCount; i++)
        {
            double s = 0;
            for (int j = 0; j < colCount; j++) s += m[(rowOffset + i) * cols + colOffset + j] * v[j];
            r[i] = s;
        }
        return r;
    }

    /// <summary>s·B_e·A_e·x for the expert stacked at rank offset <paramref name="off"/> (A [T, in], B [out, T]; with a
    /// shared B [out, r] the columns start at 0).</summary>
    public static double[] Expert(double[] A, double[] B, int inF, int outF, int total, int bCols, int off, int r, double s, double[] x, bool sharedB)
    {
        var h = MatVec(A, total, inF, x, rowOffset: off, rowCount: r);
        var y = MatVec(B, outF, bCols, h, colOffset: sharedB ? 0 : off, colCount: r);
        for (int i = 0; i < y.Length; i++) y[i] *= s;
        return y;
    }

    public static double[] LayerNorm(double[] v, double eps = 1e-5)
    {
        var mean = v.Average();
        var var = v.Select(x => (x - mean) * (x - mean)).Average();
        return v.Select(x => (x - mean) / Math.Sqrt(var + eps)).ToArray();
    }
}

/// <summary>The float64 formula of a per-Linear mixture-of-experts layer for the invariant fixture and the gating tests.</summary>
public sealed class MixtureReference : AdapterReference
{
    /// <summary>Batch size of the rows given to <see cref="Forward"/> (rows = batch·seq), for sequence routing and capacity.</summary>
    public int Batch { get; init; } = 2;

    /// <summary>Routing inputs for instance or task routing (double arrays per example).</summary>
    public double[][]? InstanceFeatures { get; init; }

    /// <summary>Task id per example.</summary>
    public long[]? TaskIds { get; init; }

    /// <summary>Noise per (row of the routing decision, expert), added as logits + noise·σ (noisy top-k in training).</summary>
    public double[,]? Noise { get; init; }

    /// <summary>The adapter to apply (default: the layer's active adapters).</summary>
    public string? Adapter { get; init; }

    public override double[] Forward(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p, double[] x, int rows)
    {
        var y = BaseForward(layer, p, x, rows);
        var moe = (MixtureOfLoraExpertsLayer)layer;
        foreach (var a in Adapter is null ? layer.ActiveAdapters.Where(layer.HasAdapter) : new[] { Adapter })
        {
            var d = Delta(moe, a, p, x, rows);
            for (int i = 0; i < y.Length; i++) y[i] += d[i];
        }
        return y;
    }

    public double[] Delta(MixtureOfLoraExpertsLayer layer, string a, IReadOnlyDictionary<string, double[]> p, double[] x, int rows)
    {
        var st = layer.State(a);
        var o = st.Options;
        int inF = (int)layer.InFeatures, outF = (int)layer.OutFeatures;
        var y = new double[rows * outF];
        if (!p.TryGetValue($"lora_A.{a}.weight", out var A)) return y;
        var B = p[$"lora_B.{a}.weight"];
        int total = A.Length / inF;
        int bCols = B.Length / outF;
        int E = st.Experts;
        int seq = rows / Batch;
        bool sharedB = o.ShareLoraB;
        var ranks = st.Ranks;
        var offs = new int[E];
        for (int e = 1; e < E; e++) offs[e] = offs[e - 1] + ranks[e - 1];
        double Scale(int r) => !o.ScaleExperts ? 1 : o.UseRsLora ? o.LoraAlpha / Math.Sqrt(r) : o.LoraAlpha / r;

        if (st.Role == ExpertRole.Plain)
        {
            // A plain LoRA (MixLoRA's attention projections): s·B·A·x.
            for (int row = 0; row < rows; row++)
            {
                var pl = MoeMath.Expert(A, B, inF, outF, total, bCols, 0, total, Scale(total), MoeMath.Row(x, row, inF), false);
                for (int i = 0; i < outF; i++) y[row * outF + i] += pl[i];
            }
            return y;
        }
        if (o.MixSpace == MixingSpace.Parameter)
        {
            // Evaluation form of stochastic routing (average or sum), or per-example weights (relaxed Bernoulli eval).
            int r = ranks[0];
            for (int b = 0; b < Batch; b++)
            {
                var w = new double[E];
                if (o.Gating == GatingMode.Stochastic)
                    for (int e = 0; e < E; e++) w[e] = o.StochasticEval == StochasticEvaluation.Average ? 1.0 / E : 1.0;
                else
                {
                    var table = p[$"lora_router.{a}.weight"];
                    var t = (int)TaskIds![b];
                    var sg = Enumerable.Range(0, E).Select(e => 1 / (1 + Math.Exp(-table[t * E + e]))).ToArray();
                    var sum = sg.Sum() + 1e-12;
                    for (int e = 0; e < E; e++) w[e] = sg[e] / sum;
                }
                // A_b = Σ w_e A_e, B_b = Σ w_e B_e (averages for AdaMix; MoSA "sum" is the full LoRA = concatenated slices).
                for (int s = 0; s < seq; s++)
                {
                    int row = b * seq + s;
                    var xr = MoeMath.Row(x, row, inF);
                    if (o.Gating == GatingMode.Stochastic && o.StochasticEval == StochasticEvaluation.Sum)
                    {
                        var full = MoeMath.Expert(A, B, inF, outF, total, bCols, 0, total, Scale(r), xr, false);
                        for (int i = 0; i < outF; i++) y[row * outF + i] += full[i];
                        continue;
                    }
                    var h = new double[r];
                    for (int e = 0; e < E; e++)
                    {
                        var he = MoeMath.MatVec(A, total, inF, xr, rowOffset: offs[e], rowCount: r);
                        for (int j = 0; j < r; j++) h[j] += w[e] * he[j];
                    }
                    for (int i = 0; i < outF; i++)
                    {
                        double acc = 0;
                        for (int j = 0; j < r; j++)
                        {
                            double bij = 0;
                            if (sharedB) bij = B[i * bCols + j];
                            else for (int e = 0; e < E; e++) bij += w[e] * B[i * bCols + offs[e] + j];
                            acc += bij * h[j];
                        }
                        y[row * outF + i] += Scale(r) * acc;
                    }
                }
            }
            return y;
        }

        // Routing decisions: per token, or per example (sequence / instance / task).
        bool rowLevel = o.RouterInput is RouterInput.Sequence or RouterInput.Instance or RouterInput.Task;
        int m = rowLevel ? Batch : rows;
        var weights = new double[m][];
        var outputsPerRow = new double[rows][][];
        for (int i = 0; i < m; i++)
        {
            double[] logits;
            if (o.RouterInput == RouterInput.ExpertOutputs)
            {
                var xr = MoeMath.Row(x, i, inF);
                var outsE = new double[E][];
                for (int e = 0; e < E; e++) outsE[e] = MoeMath.Expert(A, B, inF, outF, total, bCols, offs[e], ranks[e], Scale(ranks[e]), xr, sharedB);
                outputsPerRow[i] = outsE;
                var feats = MoeMath.LayerNorm(outsE.SelectMany(v => v).ToArray());
                logits = MoeMath.MatVec(p[$"lora_router.{a}.weight"], E, feats.Length, feats);
            }
            else if (o.RouterInput == RouterInput.Task)
            {
                var t = (int)TaskIds![i];
                if (o.TaskEmbeddingDim == 0) logits = MoeMath.Row(p[$"lora_router.{a}.weight"], t, E);
                else
                {
                    var emb = MoeMath.Row(p[$"lora_router.{a}.task_embedding"], t, o.TaskEmbeddingDim);
                    logits = MoeMath.MatVec(p[$"lora_router.{a}.weight"], E, o.TaskEmbeddingDim, emb);
                }
            }
            else
            {
                double[] feats;
                if (o.RouterInput == RouterInput.Sequence)
                {
                    feats = new double[inF];
                    for (int s = 0; s < seq; s++)
                        for (int j = 0; j < inF; j++) feats[j] += x[(i * seq + s) * inF + j] / seq;
                }
                else if (o.RouterInput == RouterInput.Instance) feats = InstanceFeatures![i];
                else feats = MoeMath.Row(x, i, inF);
                var W = RouterWeight(layer, a, p);
                logits = MoeMath.MatVec(W, E, feats.Length, feats);
                if (Noise is not null)
                {
                    var sigma = MoeMath.MatVec(p[$"lora_router.{a}.noise_weight"], E, feats.Length, feats);
                    for (int e = 0; e < E; e++) logits[e] += Noise[i, e] * sigma[e];
                }
            }
            var probs = MoeMath.Softmax(logits, o.RouterTemperature);
            weights[i] = MoeMath.Gate(probs, o.Gating, o.TopK, o.TopP, o.Renormalize).w;
        }
        ApplyCapacity(o, weights, E, rowLevel ? 1 : seq);

        for (int row = 0; row < rows; row++)
        {
            var w = weights[rowLevel ? row / seq : row];
            var xr = MoeMath.Row(x, row, inF);
            for (int e = 0; e < E; e++)
            {
                if (w[e] == 0) continue;
                var oe = outputsPerRow[row]?[e] ?? MoeMath.Expert(A, B, inF, outF, total, bCols, offs[e], ranks[e], Scale(ranks[e]), xr, sharedB);
                for (int i = 0; i < outF; i++) y[row * outF + i] += w[e] * oe[i];
            }
            if (st.Shared > 0)
            {
                int sr = st.Shared * st.SharedRank;
                var sh = MoeMath.Expert(A, B, inF, outF, total, bCols, total - sr, sr, Scale(st.SharedRank), xr, false);
                for (int i = 0; i < outF; i++) y[row * outF + i] += sh[i];
            }
        }
        return y;
    }

    /// <summary>The router weight used by a layer: its own, or the global router's (stored in another layer).</summary>
    private static double[] RouterWeight(MixtureOfLoraExpertsLayer layer, string a, IReadOnlyDictionary<string, double[]> p)
        => p.TryGetValue($"lora_router.{a}.weight", out var w) ? w : layer.Router(a)!.Weight.ToDoubleArray();

    /// <summary>Capacity: per sequence (expert_capacity) or over all rows, first choices (largest weight) before second
    /// choices, in row order; slots over capacity lose their weight.</summary>
    public static void ApplyCapacity(MixtureOfLoraExpertsOptions o, double[][] weights, int experts, int seq)
    {
        if (o.ExpertCapacity == 0 && o.CapacityFactor == 0) return;
        int m = weights.Length;
        // Slot j of a row = its j-th selected expert by descending weight (the gating order).
        var slots = weights.Select(w => MoeMath.Order(w).Where(e => w[e] > 0).ToArray()).ToArray();
        int k = slots.Max(s => s.Length);
        if (o.ExpertCapacity > 0)
        {
            int batches = m / seq;
            for (int b = 0; b < batches; b++)
            {
                var count = new int[experts];
                for (int j = 0; j < k; j++)
                    for (int s = 0; s < seq; s++)
                    {
                        int row = b * seq + s;
                        if (j >= slots[row].Length) continue;
                        var e = slots[row][j];
                        if (++count[e] > o.ExpertCapacity) weights[row][e] = 0;
                    }
            }
        }
        else
        {
            long cap = (long)Math.Ceiling(o.CapacityFactor * m * Math.Min(o.Gating == GatingMode.Switch ? 1 : o.TopK, experts) / experts);
            var count = new int[experts];
            for (int j = 0; j < k; j++)
                for (int row = 0; row < m; row++)
                {
                    if (j >= slots[row].Length) continue;
                    var e = slots[row][j];
                    if (++count[e] > cap) weights[row][e] = 0;
                }
        }
    }
}
