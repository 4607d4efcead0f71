using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Mixture;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters.Mixture;

/// <summary>
/// FFN experts (MixLoRA, MixLoRA-switch, PESC) on the LLaMA (gated SiLU) and GPT-2 (Conv1D, gelu_new) fixtures: the
/// block output and its gradients against the float64 formula out = Σ_e w_e·FFN_e(x) + (1 − Σ_e w_e)·FFN(x), FFN_e the
/// frozen FFN with expert e's LoRA deltas on gate/up/down (PESC: FFN(x) + Σ_e w_e·σ·Up_e(GELU(Down_e(FFN(x))))).
/// </summary>
public class MixtureFeedForwardTests
{
    private static double Silu(double v) => v / (1 + Math.Exp(-v));
    private static double GeluTanh(double v) => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));

    /// <summary>erf to ~1e-15: the Maclaurin series for |x| &lt; 2.5, else 1 − erfc from its continued fraction
    /// erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))).</summary>
    private static double Erf(double x)
    {
        double ax = Math.Abs(x);
        if (ax < 2.5)
        {
            double sum = 0, term = x;
            for (int n = 0; n < 200; n++)
            {
                sum += term / (2 * n + 1);
                term *= -x * x / (n + 1);
                if (Math.Abs(term) < 1e-18) break;
            }
            return 2 / Math.Sqrt(Math.PI) * sum;
        }
        double k = ax;
        for (int n = 200; n >= 1; n--) k = ax + n / 2.0 / k;
        double erfc = Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / k;
        return Math.Sign(x) * (1 - erfc);
    }

    private static double Gelu(double v) => 0.5 * v * (1 + Erf(v / Math.Sqrt(2)));

    /// <summary>The float64 block formula. <paramref name="p"/>: the three projections' parameters by "gate."/"up."/"down."
    /// prefix and the layer's own names.</summary>
    private static double[] BlockFormula(Dictionary<string, double[]> p, double[] x, int rows, int d, int inter, bool gated, MixtureOfLoraExpertsOptions o, int seq)
    {
        int E = o.NumExperts, r = o.R;
        double s = o.LoraAlpha / r;
        double Act(double v) => gated ? Silu(v) : GeluTanh(v);
        // Base projections: Linear weights [out, in]; GPT-2 Conv1D weights [in, out] (with bias).
        double[] Proj(string name, double[] v, int inF, int outF)
        {
            var w = p[name + ".base_layer.weight"];
            p.TryGetValue(name + ".base_layer.bias", out var b);
            var y = new double[outF];
            for (int o2 = 0; o2 < outF; o2++)
            {
                double acc = b?[o2] ?? 0;
                for (int i = 0; i < inF; i++) acc += v[i] * (gated ? w[o2 * inF + i] : w[i * outF + o2]);
                y[o2] = acc;
            }
            return y;
        }
        double[] Delta(string name, int e, double[] v, int inF, int outF)
        {
            if (!p.TryGetValue(name + ".lora_A.default.weight", out var A)) return new double[outF];
            var B = p[name + ".lora_B.default.weight"];
            return MoeMath.Expert(A, B, inF, outF, E * r, E * r, e * r, r, s, v, false);
        }
        string host = gated ? "gate" : "up";
        var router = p[host + ".lora_router.default.weight"];
        var y = new double[rows * d];
        var weights = new double[rows][];
        for (int t = 0; t < rows; t++)
        {
            var xt = MoeMath.Row(x, t, d);
            var probs = MoeMath.Softmax(MoeMath.MatVec(router, E, d, xt));
            weights[t] = MoeMath.Gate(probs, o.Gating, o.TopK, o.TopP, o.Renormalize).w;
        }
        MixtureReference.ApplyCapacity(o, weights, E, seq);
        for (int t = 0; t < rows; t++)
        {
            var xt = MoeMath.Row(x, t, d);
            var g0 = gated ? Proj("gate", xt, d, inter) : null;
            var u0 = Proj("up", xt, d, inter);
            var h0 = Enumerable.Range(0, inter).Select(i => gated ? Act(g0![i]) * u0[i] : Act(u0[i])).ToArray();
            var y0 = Proj("down", h0, inter, d);
            var w = weights[t];
            var outT = y0.Select(v => v * (1 - w.Sum())).ToArray();
            for (int e = 0; e < E; e++)
            {
                if (w[e] == 0) continue;
                double[] ye;
                if (o.FeedForwardExpert == FeedForwardExpertKind.Adapter)
                {
                    // PESC: h + σ·Up_e(GELU(Down_e(h))) on the FFN output h = y0.
                    var dn = p["down.adapter_down.default.weight"];
                    var up = p["down.adapter_up.default.weight"];
                    int a = o.AdapterDim;
                    var z = MoeMath.MatVec(dn, E * a, d, y0, rowOffset: e * a, rowCount: a).Select(Gelu).ToArray();
                    var add = MoeMath.MatVec(up, d, E * a, z, colOffset: e * a, colCount: a);
                    ye = y0.Select((v, i) => v + o.AdapterScaling * add[i]).ToArray();
                }
                else
                {
                    var ge = gated ? g0!.Zip(Delta("gate", e, xt, d, inter), (q, dq) => q + dq).ToArray() : null;
                    var ue = u0.Zip(Delta("up", e, xt, d, inter), (q, dq) => q + dq).ToArray();
                    var he = Enumerable.Range(0, inter).Select(i => gated ? Act(ge![i]) * ue[i] : Act(ue[i])).ToArray();
                    var yd = Proj("down", he, inter, d);
                    var dd = Delta("down", e, he, inter, d);
                    ye = yd.Zip(dd, (q, dq) => q + dq).ToArray();
                }
                for (int i = 0; i < d; i++) outT[i] += w[e] * ye[i];
            }
            Array.Copy(outT, 0, y, t * d, d);
        }
        return y;
    }

    public static TheoryData<string, string> Cases => new()
    {
        { "mixlora", "llama_gqa" }, { "mixlora", "gpt2" }, { "pesc", "llama_gqa" }, { "pesc", "gpt2" },
        { "mixlora-switch", "llama_gqa" }, { "mixlora-dynamic", "gpt2" },
    };

    private static MixtureOfLoraExpertsOptions Options(string preset) => preset switch
    {
        "mixlora" => MixtureOfLoraExpertsOptions.MixLoRA(numExperts: 4, topK: 2, r: 2, alpha: 3, dropout: 0),
        "mixlora-switch" => Tweak(MixtureOfLoraExpertsOptions.MixLoRASwitch(numExperts: 3, expertCapacity: 2, r: 2, alpha: 3, dropout: 0)),
        "mixlora-dynamic" => MixtureOfLoraExpertsOptions.MixLoRADynamic(numExperts: 4, topP: 0.5, r: 2, alpha: 3, dropout: 0),
        _ => Adapter(MixtureOfLoraExpertsOptions.PESC(numExperts: 4, topK: 2, adapterDim: 3, adapterScaling: 0.7)),
    };

    private static MixtureOfLoraExpertsOptions Tweak(MixtureOfLoraExpertsOptions o) { o.JitterNoise = 0; return o; }
    private static MixtureOfLoraExpertsOptions Adapter(MixtureOfLoraExpertsOptions o) { o.AdapterDropout = 0; return o; }

    [Theory, MemberData(nameof(Cases))]
    public void BlockOutputAndGradientsMatchTheFloat64Formula(string preset, string fixture)
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        var o = Options(preset);
        using var lm = LowRankModel.Create(f.LoadModel(), o);
        lm.eval();
        AdapterInvariants.Perturb(lm, seed: 3, std: 0.3);
        bool gated = fixture != "gpt2";
        var mlpPath = gated ? "model.layers.0.mlp" : "transformer.h.0.mlp";
        var mlp = (nn.Module<Tensor, Tensor>)lm.Model.get_submodule(mlpPath);
        var block = (IFeedForwardBlock)mlp;
        int d = (int)lm.Model.Config.HiddenSize, inter = (int)lm.Model.Config.IntermediateSize;
        if (!gated) inter = 4 * d;
        var p = new Dictionary<string, double[]>();
        var projections = new List<(string prefix, nn.Module module)>();
        foreach (var (prefix, name) in new[] { ("gate", block.GateProjectionName), ("up", block.UpProjectionName), ("down", block.DownProjectionName) })
        {
            if (name is null) continue;
            var m = block.Projection(name);
            projections.Add((prefix, m));
            foreach (var (n, prm) in m.named_parameters())
                p[prefix + "." + (m is AdapterLayer ? n : "base_layer." + n)] = prm.ToDoubleArray();
        }
        const int batch = 2, seq = 3, rows = batch * seq;
        using var g = new Generator(21);
        var x = (randn(new long[] { batch, seq, d }, generator: g) * 1.5).requires_grad_();
        var gy = randn(new long[] { batch, seq, d }, generator: g);
        var y = mlp.call(x);
        (y * gy).sum().backward();
        var xd = x.ToDoubleArray();
        var expected = BlockFormula(p, xd, rows, d, inter, gated, lm.PeftConfig["default"] as MixtureOfLoraExpertsOptions ?? o, seq);
        AdapterInvariants.AssertClose(expected, y.ToDoubleArray(), 2e-5, $"{preset}/{fixture} block forward");
        // The experts change the output (this is not the base FFN).
        using (lm.DisableAdapter())
        using (no_grad())
            Assert.True((y - mlp.call(x)).abs().max().ToDouble() > 1e-3, "the FFN experts add nothing");

        var gyd = gy.ToDoubleArray();
        double Objective(Dictionary<string, double[]> pp, double[] xx)
        {
            var yy = BlockFormula(pp, xx, rows, d, inter, gated, (MixtureOfLoraExpertsOptions)lm.PeftConfig["default"], seq);
            double s = 0;
            for (int i = 0; i < yy.Length; i++) s += yy[i] * gyd[i];
            return s;
        }
        const double h = 1e-5;
        // d/dx: every 5th entry (every token, varied features).
        var gx = x.grad!.ToDoubleArray();
        for (int i = 0; i < xd.Length; i += 5)
        {
            var v = xd[i];
            xd[i] = v + h; var lp = Objective(p, xd);
            xd[i] = v - h; var lmn = Objective(p, xd);
            xd[i] = v;
            var want = (lp - lmn) / (2 * h);
            Assert.True(Math.Abs(want - gx[i]) <= 2e-4 * Math.Max(1, Math.Abs(want)), $"{preset}/{fixture} d/dx[{i}]: formula {want}, autograd {gx[i]}");
        }
        // Every trainable parameter of the block: a deterministic sample of 6 entries each.
        int checkedParams = 0;
        foreach (var (prefix, m) in projections)
            foreach (var (n, prm) in m.named_parameters())
            {
                if (!prm.requires_grad) { Assert.Null(prm.grad); continue; }
                var key = prefix + "." + n;
                var arr = p[key];
                var grad = prm.grad?.ToDoubleArray() ?? new double[arr.Length];
                for (int j = 0; j < 6; j++)
                {
                    int idx = (int)((long)j * 7919 % arr.Length);
                    var v = arr[idx];
                    arr[idx] = v + h; var lp = Objective(p, xd);
                    arr[idx] = v - h; var lmn = Objective(p, xd);
                    arr[idx] = v;
                    var want = (lp - lmn) / (2 * h);
                    Assert.True(Math.Abs(want - grad[idx]) <= 2e-4 * Math.Max(1, Math.Abs(want)), $"{preset}/{fixture} d/d{key}[{idx}]: formula {want}, autograd {grad[idx]}");
                }
                checkedParams++;
            }
        Assert.True(checkedParams >= 2);
    }

    [Fact]
    public void FfnExpertsWithoutTheBlocksRouterHostFailWithAMessage()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        var o = MixtureOfLoraExpertsOptions.MixLoRA(numExperts: 2, r: 2, dropout: 0);
        o.TargetModules = ModuleSelector.FromNames("up_proj", "down_proj");
        using var lm = LowRankModel.Create(f.LoadModel(), o);
        var e = Assert.Throws<InvalidOperationException>(() => f.Logits(lm));
        Assert.Contains("gate_proj", e.Message);
    }

    [Fact]
    public void TheFrozenFfnRunsOnceAndTokensOverCapacityKeepTheBaseOutput()
    {
        // MixLoRA-switch with capacity 1 per sequence and a router that sends every token to expert 0: only the first token
        // of each sequence gets the expert; the others equal the base FFN exactly.
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        var o = MixtureOfLoraExpertsOptions.MixLoRASwitch(numExperts: 2, expertCapacity: 1, r: 2, alpha: 2, dropout: 0);
        o.JitterNoise = 0;
        using var lm = LowRankModel.Create(f.LoadModel(), o);
        lm.eval();
        AdapterInvariants.Perturb(lm, seed: 4, std: 0.3);
        var mlp = (nn.Module<Tensor, Tensor>)lm.Model.get_submodule("model.layers.0.mlp");
        var host = (MixtureOfLoraExpertsLayer)lm.Model.get_submodule("model.layers.0.mlp.gate_proj");
        using (no_grad())
        {
            var w = host.Router("default")!.Weight;
            w.zero_();
        }
        using var g = new Generator(8);
        var x = randn(new long[] { 2, 4, 32 }, generator: g);
        using var ng = no_grad();
        var y = mlp.call(x);
        Tensor yBase;
        using (lm.DisableAdapter()) yBase = mlp.call(x);
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 4; t++)
            {
                var diff = (y[b, t] - yBase[b, t]).abs().max().ToDouble();
                if (t == 0) Assert.True(diff > 1e-4, $"sequence {b}: the first token should get expert 0");
                else Assert.True(diff <= 1e-6, $"sequence {b}, token {t} is over capacity and should keep the base FFN output (|diff| {diff:E2})");
            }
    }
}
