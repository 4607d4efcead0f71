using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Mixture;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters.Mixture;

/// <summary>Builds a standalone float64 mixture layer (a Linear in → out with one adapter "default"), all adapter
/// parameters perturbed so zero-initialised B matrices do not hide anything.</summary>
internal static class MoeLayers
{
    public const int In = 6, Out = 5;

    public static MixtureOfLoraExpertsLayer Make(MixtureOfLoraExpertsOptions o, string path = "model.layers.0.self_attn.q_proj", ulong seed = 1,
        ScalarType dtype = ScalarType.Float64, int inF = In, int outF = Out, double perturb = 0.3)
    {
        o.Validate();
        using var g = new Generator(seed);
        var baseLayer = new Linear(inF, outF, true, dtype: dtype);
        using (no_grad())
        {
            baseLayer.weight.copy_(randn(baseLayer.weight.shape, dtype, generator: g) * 0.3);
            baseLayer.bias!.copy_(randn(new long[] { outF }, dtype, generator: g) * 0.1);
        }
        baseLayer.weight.requires_grad = false;
        baseLayer.bias!.requires_grad = false;
        var layer = (MixtureOfLoraExpertsLayer)o.CreateLayer(baseLayer);
        o.AddAdapter(layer, "default", path, new AdapterCreationContext { Generator = g });
        layer.SetActiveAdapters(new[] { "default" });
        using (no_grad())
            foreach (var (_, p) in layer.named_parameters())
                if (!ReferenceEquals(p, baseLayer.weight) && !ReferenceEquals(p, baseLayer.bias)) p.add_(randn(p.shape, p.dtype, generator: g) * perturb);
        layer.eval();
        return layer;
    }

    public static Dictionary<string, double[]> Params(nn.Module layer) => layer.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter.ToDoubleArray());
}

/// <summary>
/// Forward and gradients of every gating mode and feature of the mixture layer against the float64 formula written in
/// <see cref="MixtureReference"/> (finite differences of the formula for the gradients); batched expert compute against a
/// naive per-token loop; deterministic tie-breaking; experts that receive no token.
/// </summary>
[Collection(SerialCollection.Name)]
public class MixtureLayerTests
{
    private static MixtureOfLoraExpertsOptions Base(Action<MixtureOfLoraExpertsOptions> set)
    {
        var o = new MixtureOfLoraExpertsOptions { NumExperts = 4, R = 2, LoraAlpha = 3, LoraDropout = 0, TopK = 2 };
        set(o);
        return o;
    }

    public static TheoryData<string> Modes => new()
    {
        "dense", "top_k", "top_k_no_renorm", "top_p", "switch", "noisy_top_k_train", "temperature", "shared_experts", "heterogeneous_ranks",
        "shared_b", "rslora", "unscaled", "capacity_per_sequence", "capacity_factor", "sequence_router", "instance_router", "task_table",
        "task_embedding", "expert_outputs", "expert_outputs_top_k", "stochastic_average_eval", "stochastic_sum_eval", "relaxed_bernoulli_eval",
    };

    private static (MixtureOfLoraExpertsOptions o, MixtureReference r, bool train, Action<MixtureOfLoraExpertsLayer>? setup) Case(string mode)
    {
        const int batch = 2;
        MixtureRuntime Rt(MixtureRoutingInputs i) => new() { Inputs = i };
        switch (mode)
        {
            case "dense": return (Base(o => o.Gating = GatingMode.Dense), new MixtureReference { Batch = batch }, false, null);
            case "top_k": return (Base(_ => { }), new MixtureReference { Batch = batch }, false, null);
            case "top_k_no_renorm": return (Base(o => { o.Renormalize = false; o.TopK = 3; }), new MixtureReference { Batch = batch }, false, null);
            case "top_p": return (Base(o => { o.Gating = GatingMode.TopP; o.TopP = 0.6; o.Renormalize = false; }), new MixtureReference { Batch = batch }, false, null);
            case "switch": return (Base(o => o.Gating = GatingMode.Switch), new MixtureReference { Batch = batch }, false, null);
            case "temperature": return (Base(o => { o.Gating = GatingMode.Dense; o.RouterTemperature = 0.5; }), new MixtureReference { Batch = batch }, false, null);
            case "shared_experts": return (Base(o => { o.NumSharedExperts = 2; o.SharedExpertRank = 3; }), new MixtureReference { Batch = batch }, false, null);
            case "heterogeneous_ranks": return (Base(o => { o.ExpertRanks = new[] { 1, 2, 3, 4 }; o.Gating = GatingMode.Dense; }), new MixtureReference { Batch = batch }, false, null);
            case "shared_b": return (Base(o => { o.ShareLoraB = true; o.Gating = GatingMode.Dense; }), new MixtureReference { Batch = batch }, false, null);
            case "rslora": return (Base(o => { o.UseRsLora = true; o.ExpertRanks = new[] { 1, 2, 3, 4 }; }), new MixtureReference { Batch = batch }, false, null);
            case "unscaled": return (Base(o => o.ScaleExperts = false), new MixtureReference { Batch = batch }, false, null);
            case "capacity_per_sequence": return (Base(o => { o.Gating = GatingMode.Switch; o.ExpertCapacity = 1; }), new MixtureReference { Batch = batch }, false, null);
            case "capacity_factor": return (Base(o => o.CapacityFactor = 0.75), new MixtureReference { Batch = batch }, false, null);
            case "sequence_router": return (Base(o => o.RouterInput = RouterInput.Sequence), new MixtureReference { Batch = batch }, false, null);
            case "instance_router":
                {
                    var feats = new[] { new[] { 0.3, -1.0, 0.5 }, new[] { 1.2, 0.1, -0.4 } };
                    return (Base(o => { o.RouterInput = RouterInput.Instance; o.InstanceDim = 3; }), new MixtureReference { Batch = batch, InstanceFeatures = feats }, false,
                        l => l.Runtime = Rt(new MixtureRoutingInputs { InstanceFeatures = tensor(feats.SelectMany(v => v).ToArray(), new long[] { 2, 3 }, ScalarType.Float64).DetachFromDisposeScope() }));
                }
            case "task_table":
                return (Base(o => { o.RouterInput = RouterInput.Task; o.NumTasks = 3; }), new MixtureReference { Batch = batch, TaskIds = new long[] { 2, 0 } }, false,
                    l => l.Runtime = Rt(new MixtureRoutingInputs { TaskIds = tensor(new long[] { 2, 0 }).DetachFromDisposeScope() }));
            case "task_embedding":
                return (Base(o => { o.RouterInput = RouterInput.Task; o.NumTasks = 3; o.TaskEmbeddingDim = 4; o.Gating = GatingMode.Dense; }), new MixtureReference { Batch = batch, TaskIds = new long[] { 1, 2 } }, false,
                    l => l.Runtime = Rt(new MixtureRoutingInputs { TaskIds = tensor(new long[] { 1, 2 }).DetachFromDisposeScope() }));
            case "expert_outputs": return (Base(o => { o.RouterInput = RouterInput.ExpertOutputs; o.Gating = GatingMode.Dense; o.RouterTemperature = 2; }), new MixtureReference { Batch = batch }, false, null);
            case "expert_outputs_top_k": return (Base(o => { o.RouterInput = RouterInput.ExpertOutputs; o.Gating = GatingMode.TopK; }), new MixtureReference { Batch = batch }, false, null);
            case "stochastic_average_eval": return (Base(o => { o.Gating = GatingMode.Stochastic; o.MixSpace = MixingSpace.Parameter; o.RouterInput = RouterInput.None; o.ShareLoraB = false; }), new MixtureReference { Batch = batch }, false, null);
            case "stochastic_sum_eval": return (Base(o => { o.Gating = GatingMode.Stochastic; o.MixSpace = MixingSpace.Parameter; o.RouterInput = RouterInput.None; o.StochasticEval = StochasticEvaluation.Sum; }), new MixtureReference { Batch = batch }, false, null);
            case "relaxed_bernoulli_eval":
                return (Base(o => { o.Gating = GatingMode.RelaxedBernoulli; o.MixSpace = MixingSpace.Parameter; o.RouterInput = RouterInput.Task; o.NumTasks = 3; }),
                    new MixtureReference { Batch = batch, TaskIds = new long[] { 0, 2 } }, false,
                    l => l.Runtime = Rt(new MixtureRoutingInputs { TaskIds = tensor(new long[] { 0, 2 }).DetachFromDisposeScope() }));
            case "noisy_top_k_train": return (Base(o => o.Gating = GatingMode.NoisyTopK), new MixtureReference { Batch = batch }, true, null);
            default: throw new ArgumentException(mode);
        }
    }

    [Theory, MemberData(nameof(Modes))]
    public void ForwardAndGradientsMatchTheFloat64Formula(string mode)
    {
        using var scope = NewDisposeScope();
        var (o, reference, train, setup) = Case(mode);
        var layer = MoeLayers.Make(o);
        setup?.Invoke(layer);
        const int batch = 2, seq = 4;
        using var g = new Generator(9);
        var x = randn(new long[] { batch, seq, MoeLayers.In }, ScalarType.Float64, generator: g).requires_grad_();
        var gy = randn(new long[] { batch, seq, MoeLayers.Out }, ScalarType.Float64, generator: g);
        var rows = batch * seq;
        MixtureReference r = reference;
        if (train)
        {
            // Noisy top-k in training: the layer's noise is the first random draw after seeding; replay it for the formula.
            layer.train();
            manual_seed(123);
            var noise = randn(new long[] { rows, o.NumExperts }, ScalarType.Float64).ToDoubleArray();
            var n2 = new double[rows, o.NumExperts];
            for (int i = 0; i < rows; i++) for (int e = 0; e < o.NumExperts; e++) n2[i, e] = noise[i * o.NumExperts + e];
            r = new MixtureReference { Batch = batch, Noise = n2 };
            manual_seed(123);
        }
        var y = layer.forward(x);
        (y * gy).sum().backward();
        var p = MoeLayers.Params(layer);
        var xd = x.ToDoubleArray();
        var yRef = r.Forward(layer, p, xd, rows);
        AdapterInvariants.AssertClose(yRef, y.ToDoubleArray(), 1e-10, $"{mode} forward");
        // The adapter changes the output (the comparison is not trivially base = base).
        using (no_grad())
            Assert.True((y - layer.BaseLayer.call(x)).abs().max().ToDouble() > 1e-3, $"{mode}: the adapter adds nothing");
        var wrt = layer.named_parameters().Where(kv => kv.parameter.requires_grad).Select(kv => kv.name).ToList();
        Assert.NotEmpty(wrt);
        var (dx, dp) = r.Gradients(layer, p, xd, rows, gy.ToDoubleArray(), wrt);
        AdapterInvariants.AssertClose(dx, x.grad!.ToDoubleArray(), 1e-6, $"{mode} d/dx");
        foreach (var (n, prm) in layer.named_parameters())
        {
            if (!prm.requires_grad) { Assert.Null(prm.grad); continue; }
            var grad = prm.grad is null ? new double[prm.numel()] : prm.grad.ToDoubleArray();
            AdapterInvariants.AssertClose(dp[n], grad, 1e-6, $"{mode} d/d{n}");
        }
    }

    [Theory]
    [InlineData(StochasticEvaluation.Average)]
    [InlineData(StochasticEvaluation.Sum)]
    public void StochasticRoutingInTrainingUsesOneRandomExpertPerPass(StochasticEvaluation eval)
    {
        using var scope = NewDisposeScope();
        var o = Base(x => { x.Gating = GatingMode.Stochastic; x.MixSpace = MixingSpace.Parameter; x.RouterInput = RouterInput.None; x.StochasticEval = eval; x.NumExperts = 3; });
        var layer = MoeLayers.Make(o);
        layer.train();
        using var g = new Generator(4);
        var x = randn(new long[] { 2, 3, MoeLayers.In }, ScalarType.Float64, generator: g);
        manual_seed(77);
        var picks = randint(0, 3, new long[] { 2 }, ScalarType.Int64).ToArray<long>();
        manual_seed(77);
        var y = layer.forward(x).ToDoubleArray();
        var p = MoeLayers.Params(layer);
        var A = p["lora_A.default.weight"];
        var B = p["lora_B.default.weight"];
        var W = p["base_layer.weight"];
        var bias = p["base_layer.bias"];
        int r = 2, total = 6, inF = MoeLayers.In, outF = MoeLayers.Out;
        var xd = x.ToDoubleArray();
        var expected = new double[6 * outF];
        double s = 3.0 / 2;
        for (int row = 0; row < 6; row++)
        {
            var xr = MoeMath.Row(xd, row, inF);
            var baseY = MoeMath.MatVec(W, outF, inF, xr);
            int ea = (int)picks[0], eb = eval == StochasticEvaluation.Average ? (int)picks[1] : (int)picks[0];
            var h = MoeMath.MatVec(A, total, inF, xr, rowOffset: ea * r, rowCount: r);
            var d = MoeMath.MatVec(B, outF, total, h, colOffset: eb * r, colCount: r);
            double f = eval == StochasticEvaluation.Sum ? 3 * s : s; // MoSA scales the drawn slice by E
            for (int i = 0; i < outF; i++) expected[row * outF + i] = baseY[i] + bias[i] + f * d[i];
        }
        AdapterInvariants.AssertClose(expected, y, 1e-10, $"stochastic {eval} training pass");
    }

    [Fact]
    public void BatchedExpertComputeEqualsTheNaivePerTokenLoop()
    {
        using var scope = NewDisposeScope();
        // Float32, heterogeneous ranks, top-2 of 6 with a capacity-free token router: the layer groups tokens by expert
        // (one matmul pair per expert, index_add back); the loop below does each token with its own matmuls.
        var o = new MixtureOfLoraExpertsOptions { NumExperts = 6, ExpertRanks = new[] { 1, 2, 3, 2, 1, 4 }, TopK = 2, LoraAlpha = 4, LoraDropout = 0 };
        var layer = MoeLayers.Make(o, dtype: ScalarType.Float32, inF: 12, outF: 10);
        using var g = new Generator(3);
        var x = randn(new long[] { 3, 20, 12 }, generator: g).requires_grad_();
        var gy = randn(new long[] { 3, 20, 10 }, generator: g);
        var y = layer.forward(x);
        (y * gy).sum().backward();
        var A = layer.LoraA("default")!.weight;
        var B = layer.LoraB("default")!.weight;
        var W = layer.Router("default")!.Weight;
        var yBatched = y.detach().clone();
        var gradA = A.grad!.clone();
        var gradB = B.grad!.clone();
        var gradW = W.grad!.clone();
        var gradX = x.grad!.clone();
        A.grad = null; B.grad = null; W.grad = null; x.grad = null;

        var ranks = new[] { 1, 2, 3, 2, 1, 4 };
        var offs = new[] { 0, 1, 3, 6, 8, 9 };
        var xf = x.reshape(-1, 12);
        var gyf = gy.reshape(-1, 10);
        var outRows = new List<Tensor>();
        var baseOut = layer.BaseLayer.call(xf);
        for (int t = 0; t < 60; t++)
        {
            var xt = xf.narrow(0, t, 1);
            var probs = nn.functional.softmax(xt.matmul(W.t()), -1).squeeze(0);
            var pv = probs.ToArray<float>();
            var order = Enumerable.Range(0, 6).OrderByDescending(i => pv[i]).ThenBy(i => i).Take(2).ToArray();
            var sum = probs[order[0]] + probs[order[1]];
            var yt = baseOut.narrow(0, t, 1);
            foreach (var e in order)
            {
                var Ae = A.narrow(0, offs[e], ranks[e]);
                var Be = B.narrow(1, offs[e], ranks[e]);
                yt = yt + xt.matmul(Ae.t()).matmul(Be.t()) * (4.0 / ranks[e]) * (probs[e] / sum);
            }
            outRows.Add(yt);
        }
        var yLoop = cat(outRows, 0);
        (yLoop * gyf).sum().backward();
        AdapterInvariants.AssertClose(yLoop.ToDoubleArray(), yBatched.reshape(-1, 10).ToDoubleArray(), 1e-5, "batched vs loop output");
        AdapterInvariants.AssertClose(A.grad!.ToDoubleArray(), gradA.ToDoubleArray(), 1e-5, "dA");
        AdapterInvariants.AssertClose(B.grad!.ToDoubleArray(), gradB.ToDoubleArray(), 1e-5, "dB");
        AdapterInvariants.AssertClose(W.grad!.ToDoubleArray(), gradW.ToDoubleArray(), 1e-5, "d router");
        AdapterInvariants.AssertClose(x.grad!.ToDoubleArray(), gradX.ToDoubleArray(), 1e-5, "dx");
    }

    [Fact]
    public void TopKTiesGoToTheLowerExpertsDeterministicallyAndUnusedExpertsGetZeroGradients()
    {
        using var scope = NewDisposeScope();
        var o = new MixtureOfLoraExpertsOptions { NumExperts = 4, R = 2, TopK = 2, LoraDropout = 0 };
        var layer = MoeLayers.Make(o);
        using (no_grad()) layer.Router("default")!.Weight.zero_(); // every logit equal: a 4-way tie on every token
        layer.Runtime = new MixtureRuntime { RecordingCount = 1 };
        layer.train();
        using var g = new Generator(2);
        var x = randn(new long[] { 2, 5, MoeLayers.In }, ScalarType.Float64, generator: g);
        var y1 = layer.forward(x);
        y1.sum().backward();
        var rec = layer.Runtime.Take("default").Single();
        var dispatched = rec.Dispatched.sum(0).ToDoubleArray();
        Assert.Equal(new double[] { 10, 10, 0, 0 }, dispatched);
        var gates = rec.Gates.ToDoubleArray();
        for (int t = 0; t < 10; t++) Assert.Equal(new[] { 0.5, 0.5, 0, 0 }, gates.AsSpan(t * 4, 4).ToArray());
        rec.Dispose();
        // Experts 2 and 3 received no token: their rows of A and columns of B get exactly zero gradient.
        var gA = layer.LoraA("default")!.weight.grad!;
        var gB = layer.LoraB("default")!.weight.grad!;
        Assert.Equal(0.0, gA.narrow(0, 4, 4).abs().sum().ToDouble());
        Assert.Equal(0.0, gB.narrow(1, 4, 4).abs().sum().ToDouble());
        Assert.True(gA.narrow(0, 0, 4).abs().sum().ToDouble() > 0);
        // The same input routes identically again (bitwise).
        var y2 = layer.forward(x);
        Assert.True(y1.equal(y2));
        layer.Runtime.Clear("default");
    }

    [Fact]
    public void MissingRoutingContextFailsWithAMessageNamingIt()
    {
        using var scope = NewDisposeScope();
        var task = MoeLayers.Make(Base(o => { o.RouterInput = RouterInput.Task; o.NumTasks = 2; }));
        var x = randn(new long[] { 2, 3, MoeLayers.In }, ScalarType.Float64);
        var e = Assert.Throws<InvalidOperationException>(() => task.forward(x));
        Assert.Contains("TaskIds", e.Message);
        task.Runtime = new MixtureRuntime { Inputs = new MixtureRoutingInputs { TaskIds = tensor(new long[] { 0, 5 }) } };
        var e2 = Assert.Throws<ArgumentException>(() => task.forward(x));
        Assert.Contains("[0, 2)", e2.Message);
        var inst = MoeLayers.Make(Base(o => { o.RouterInput = RouterInput.Instance; o.InstanceDim = 3; }));
        Assert.Contains("InstanceFeatures", Assert.Throws<InvalidOperationException>(() => inst.forward(x)).Message);
    }

    [Fact]
    public void InvalidOptionsAreRejectedWithTheFieldName()
    {
        Assert.Contains("top_k", Assert.Throws<ArgumentException>(() => new MixtureOfLoraExpertsOptions { TopK = 0 }.Validate()).Message);
        Assert.Contains("mix_space", Assert.Throws<ArgumentException>(() => new MixtureOfLoraExpertsOptions { Gating = GatingMode.Stochastic, RouterInput = RouterInput.None }.Validate()).Message);
        Assert.Contains("num_tasks", Assert.Throws<ArgumentException>(() => new MixtureOfLoraExpertsOptions { RouterInput = RouterInput.Task }.Validate()).Message);
        Assert.Contains("expert_ranks", Assert.Throws<ArgumentException>(() => new MixtureOfLoraExpertsOptions { NumExperts = 3, ExpertRanks = new[] { 1, 2 } }.Validate()).Message);
        Assert.Contains("global", Assert.Throws<ArgumentException>(() => new MixtureOfLoraExpertsOptions { RouterScope = RouterScope.Global }.Validate()).Message);
        Assert.Contains("even", Assert.Throws<ArgumentException>(() => new MixtureOfLoraExpertsOptions { NumExperts = 3, AuxLosses = new[] { new AuxiliaryLoss(AuxiliaryLossKind.LocalizedBalance, 0.1) } }.Validate()).Message);
        Assert.Contains("expert_capacity", Assert.Throws<ArgumentException>(() => new MixtureOfLoraExpertsOptions { ExpertCapacity = 2, CapacityFactor = 1 }.Validate()).Message);
    }
}
