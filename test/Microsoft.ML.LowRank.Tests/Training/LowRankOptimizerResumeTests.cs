using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Training;

/// <summary>
/// state_dict → (safetensors file) → load_state_dict into a new optimizer over copies of the parameters → the remaining
/// steps give parameters bit-identical to an uninterrupted run, for LoRA-FA, LoRA-Pro, LoRA-RITE and GaLore (whose
/// projector is refreshed after the resume point).
/// </summary>
public class LowRankOptimizerResumeTests
{
    public static TheoryData<string> Methods => new() { "lorafa", "lorapro", "lorarite", "galore" };

    /// <summary>Parameters: pair 0 (A [3, 7], B [5, 3]), pair 1 (A [2, 4], B [6, 2]), a 1-D extra and a 2-D extra.</summary>
    private static nn.Parameter[] MakeParameters(bool trainA)
    {
        var g = new Generator(5);
        var shapes = new[] { new long[] { 3, 7 }, new long[] { 5, 3 }, new long[] { 2, 4 }, new long[] { 6, 2 }, new long[] { 5 }, new long[] { 6, 5 } };
        return shapes.Select((s, i) => new nn.Parameter(randn(s, ScalarType.Float32, generator: g) * 0.5, requires_grad: trainA || (i != 0 && i != 2))).ToArray();
    }

    private static optim.Optimizer Create(string method, nn.Parameter[] p)
    {
        var pairs = new[] { new optim.LoraPair(p[0], p[1], 2.0), new optim.LoraPair(p[2], p[3], 0.5) };
        optim.ParamGroup[] Groups(bool withA) => new[]
        {
            new optim.ParamGroup(withA ? new[] { p[0], p[1], p[2] } : new[] { p[1] }, lr: 0.01, weight_decay: 0.01),
            new optim.ParamGroup(new[] { p[3], p[4], p[5] }, lr: 0.02),
        };
        return method switch
        {
            "lorafa" => optim.LoraFA(Groups(false), pairs),
            "lorapro" => optim.LoraPro(Groups(true), pairs),
            "lorarite" => optim.LoraRite(Groups(true), pairs),
            "galore" => optim.GaLoreAdamW(new[]
            {
                new optim.GaLoreParamGroup(new optim.ParamGroup(new[] { p[0], p[1], p[4], p[5] }, lr: 0.01), new optim.GaLoreSettings(rank: 2, update_proj_gap: 2)),
                new optim.GaLoreParamGroup(new optim.ParamGroup(new[] { p[2], p[3] }, lr: 0.02)),
            }),
            _ => throw new ArgumentException(method),
        };
    }

    private static void Step(optim.Optimizer opt, nn.Parameter[] p, int step)
    {
        var g = new Generator((ulong)(100 + step));
        foreach (var q in p)
            if (q.requires_grad) q.grad = randn(q.shape, ScalarType.Float32, generator: g);
        opt.step();
    }

    /// <summary>The same steps on CUDA agree with the CPU within float32 rounding (skipped without a CUDA device).</summary>
    [CudaFact]
    public void CudaStepsMatchTheCpu()
    {
        using var scope = NewDisposeScope();
        foreach (var method in new[] { "lorafa", "lorapro", "lorarite", "galore" })
        {
            bool trainA = method != "lorafa";
            var cpu = MakeParameters(trainA);
            var gpu = cpu.Select(q => new nn.Parameter(q.detach().to(Device.CUDA, copy: true), q.requires_grad)).ToArray();
            using var optCpu = Create(method, cpu);
            using var optGpu = Create(method, gpu);
            // GaLore: two steps, before the second projector refresh (singular vectors' signs may differ between devices,
            // and moments carried into a new basis depend on them).
            for (int s = 1; s <= (method == "galore" ? 2 : 3); s++)
            {
                Step(optCpu, cpu, s);
                var g = new Generator((ulong)(100 + s));
                foreach (var q in gpu)
                    if (q.requires_grad) q.grad = randn(q.shape, ScalarType.Float32, generator: g).to(Device.CUDA);
                optGpu.step();
            }
            for (int i = 0; i < cpu.Length; i++)
            {
                var diff = (gpu[i].cpu() - cpu[i]).abs().max().ToDouble();
                var scale = Math.Max(1, cpu[i].abs().max().ToDouble());
                Assert.True(diff <= 1e-4 * scale, $"{method}: parameter {i} differs between CUDA and CPU by {diff:E2}");
            }
        }
    }

    [Theory, MemberData(nameof(Methods))]
    public void ResumingFromTheStateDictIsBitIdentical(string method)
    {
        using var scope = NewDisposeScope();
        bool trainA = method != "lorafa";
        const int total = 5, split = 2;

        var straight = MakeParameters(trainA);
        using (var opt = Create(method, straight))
            for (int s = 1; s <= total; s++) Step(opt, straight, s);

        var first = MakeParameters(trainA);
        var file = Path.Combine(Directory.CreateTempSubdirectory("lowrank-opt-").FullName, "optimizer.safetensors");
        Dictionary<string, double> scalars;
        using (var opt = Create(method, first))
        {
            for (int s = 1; s <= split; s++) Step(opt, first, s);
            using var sd = opt.state_dict();
            Assert.NotEmpty(sd.Tensors);
            Safetensors.Save(file, sd.Tensors);
            scalars = new Dictionary<string, double>(sd.Scalars);
        }
        var resumed = first.Select(q => new nn.Parameter(q.detach().clone(), q.requires_grad)).ToArray();
        using (var opt = Create(method, resumed))
        {
            using var sd = new optim.OptimizerState();
            foreach (var (k, t) in Safetensors.Load(file)) sd.Tensors[k] = t;
            foreach (var (k, v) in scalars) sd.Scalars[k] = v;
            opt.load_state_dict(sd);
            for (int s = split + 1; s <= total; s++) Step(opt, resumed, s);
        }
        for (int i = 0; i < straight.Length; i++)
            Assert.True(straight[i].equal(resumed[i]), $"{method}: parameter {i} differs from the uninterrupted run");
        // The run really moved the parameters, and a missing state would not have given the same result.
        Assert.False(straight[1].equal(MakeParameters(trainA)[1]));
        var fresh = first.Select(q => new nn.Parameter(q.detach().clone(), q.requires_grad)).ToArray();
        using (var opt = Create(method, fresh))
            for (int s = split + 1; s <= total; s++) Step(opt, fresh, s);
        Assert.False(Enumerable.Range(0, fresh.Length).All(i => fresh[i].equal(straight[i])), $"{method}: the state made no difference");
    }
}
