using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Torch;

/// <summary>Finite-difference gradient checks (float64) of every differentiable math op.</summary>
public class MathOpsGradTests
{
    private static readonly long[] M = { 2, 3 };

    private static Tensor X(int seed, long[] shape, double lo = -2, double hi = 2, bool grad = true)
        => tensor(MathRef.Rand(seed, MathRef.Numel(shape), lo, hi), shape, requires_grad: grad);

    private static Tensor Pos(int seed, long[] shape) => X(seed, shape, 0.5, 2);

    private static Tensor Mask(long[] shape, params bool[] values) => tensor(values, shape);

    private static readonly Dictionary<string, (Func<Tensor[], Tensor> f, Func<Tensor[]> inputs)> Cases = new()
    {
        // elementwise binary (with broadcasting [2,3] against [3])
        ["add"] = (t => t[0].add(t[1]), () => new[] { X(1, M), X(2, new long[] { 3 }) }),
        ["add_alpha"] = (t => torch.add(t[0], t[1], alpha: -1.5), () => new[] { X(1, M), X(2, M) }),
        ["add_scalar"] = (t => t[0] + 2.5, () => new[] { X(1, M) }),
        ["sub"] = (t => t[0] - t[1], () => new[] { X(1, M), X(2, new long[] { 2, 1 }) }),
        ["sub_alpha"] = (t => t[0].sub(t[1], alpha: 3), () => new[] { X(1, M), X(2, M) }),
        ["rsub_scalar"] = (t => 1.5 - t[0], () => new[] { X(1, M) }),
        ["mul"] = (t => t[0] * t[1], () => new[] { X(1, M), X(2, new long[] { 3 }) }),
        ["mul_scalar"] = (t => -3 * t[0], () => new[] { X(1, M) }),
        ["div"] = (t => t[0] / t[1], () => new[] { X(1, M), Pos(2, M) }),
        ["div_scalar"] = (t => t[0] / 0.7, () => new[] { X(1, M) }),
        ["rdiv_scalar"] = (t => 2 / t[0], () => new[] { Pos(1, M) }),
        ["pow"] = (t => t[0].pow(t[1]), () => new[] { Pos(1, M), X(2, M) }),
        ["pow_scalar"] = (t => t[0].pow(2.5), () => new[] { Pos(1, M) }),
        ["rpow_scalar"] = (t => torch.pow(1.7, t[0]), () => new[] { X(1, M) }),
        ["remainder"] = (t => t[0].remainder(t[1]), () => new[] { X(1, M), Pos(2, M) }),
        ["fmod"] = (t => torch.fmod(t[0], t[1]), () => new[] { X(1, M), Pos(2, M) }),
        ["maximum"] = (t => t[0].maximum(t[1]), () => new[] { X(1, M), X(2, M) }),
        ["minimum"] = (t => torch.minimum(t[0], t[1]), () => new[] { X(1, M), X(2, M) }),
        ["atan2"] = (t => t[0].atan2(t[1]), () => new[] { X(1, M), X(2, M) }),
        ["operators_chain"] = (t => -(t[0] * t[1] - t[0] / 2) + 1 / (t[1] + 3), () => new[] { X(1, M), Pos(2, M) }),
        // unary
        ["neg"] = (t => t[0].neg(), () => new[] { X(1, M) }),
        ["abs"] = (t => t[0].abs(), () => new[] { X(1, M) }),
        ["exp"] = (t => t[0].exp(), () => new[] { X(1, M) }),
        ["exp2"] = (t => t[0].exp2(), () => new[] { X(1, M) }),
        ["log"] = (t => t[0].log(), () => new[] { Pos(1, M) }),
        ["log2"] = (t => t[0].log2(), () => new[] { Pos(1, M) }),
        ["log10"] = (t => t[0].log10(), () => new[] { Pos(1, M) }),
        ["log1p"] = (t => t[0].log1p(), () => new[] { Pos(1, M) }),
        ["expm1"] = (t => t[0].expm1(), () => new[] { X(1, M) }),
        ["sqrt"] = (t => t[0].sqrt(), () => new[] { Pos(1, M) }),
        ["rsqrt"] = (t => t[0].rsqrt(), () => new[] { Pos(1, M) }),
        ["square"] = (t => t[0].square(), () => new[] { X(1, M) }),
        ["sin"] = (t => t[0].sin(), () => new[] { X(1, M) }),
        ["cos"] = (t => t[0].cos(), () => new[] { X(1, M) }),
        ["tan"] = (t => t[0].tan(), () => new[] { X(1, M, -1, 1) }),
        ["tanh"] = (t => t[0].tanh(), () => new[] { X(1, M) }),
        ["sigmoid"] = (t => t[0].sigmoid(), () => new[] { X(1, M) }),
        ["relu"] = (t => t[0].relu(), () => new[] { X(1, M) }),
        ["reciprocal"] = (t => t[0].reciprocal(), () => new[] { Pos(1, M) }),
        ["erf"] = (t => t[0].erf(), () => new[] { X(1, M) }),
        ["nan_to_num"] = (t => t[0].nan_to_num(), () => new[] { X(1, M) }),
        // multi-operand
        ["clamp"] = (t => t[0].clamp(-0.5, 0.7), () => new[] { X(1, M) }),
        ["clamp_min"] = (t => torch.clamp(t[0], min: 0.1), () => new[] { X(1, M) }),
        ["clamp_tensor"] = (t => t[0].clamp(t[1], t[2]), () => new[] { X(1, M), X(2, M, -2, -0.5), X(3, new long[] { 3 }, 0.5, 2) }),
        ["lerp"] = (t => t[0].lerp(t[1], 0.3), () => new[] { X(1, M), X(2, M) }),
        ["lerp_tensor"] = (t => torch.lerp(t[0], t[1], t[2]), () => new[] { X(1, M), X(2, M), X(3, new long[] { 3 }, 0, 1) }),
        ["addcmul"] = (t => t[0].addcmul(t[1], t[2], 0.5), () => new[] { X(1, M), X(2, M), X(3, new long[] { 3 }) }),
        ["addcdiv"] = (t => torch.addcdiv(t[0], t[1], t[2], -2), () => new[] { X(1, M), X(2, M), Pos(3, M) }),
        ["inplace_chain"] = (t => t[0].clone().mul_(t[1]).add_(t[2], alpha: 2).addcdiv_(t[1], t[2].exp(), 0.5).sqrt_(),
            () => new[] { Pos(1, M), Pos(2, M), Pos(3, M) }),
        ["inplace_scalar_chain"] = (t => t[0].clone().mul_(2).add_(1).div_(3).pow_(2).sub_(0.5).neg_().exp_(), () => new[] { X(1, M) }),
        ["inplace_lerp_clamp"] = (t => t[0].clone().lerp_(t[1], 0.25).clamp_(-0.5, 0.5).addcmul_(t[0], t[1]), () => new[] { X(1, M), X(2, M) }),
        // selection
        ["where"] = (t => where(t[2], t[0], t[1]), () => new[] { X(1, M), X(2, new long[] { 3 }), Mask(M, true, false, true, false, false, true) }),
        ["where_scalar"] = (t => where(t[1], t[0], 0.5), () => new[] { X(1, M), Mask(M, true, false, true, false, false, true) }),
        ["masked_fill"] = (t => t[0].masked_fill(t[1], -1), () => new[] { X(1, M), Mask(new long[] { 3 }, false, true, false) }),
        ["masked_fill_tensor"] = (t => t[0].masked_fill(t[1], t[2]), () => new[] { X(1, M), Mask(new long[] { 3 }, false, true, false), X(3, Array.Empty<long>()) }),
        // reductions
        ["sum_all"] = (t => t[0].sum(), () => new[] { X(1, M) }),
        ["sum_dim"] = (t => t[0].sum(new long[] { 0, 2 }, keepdim: true), () => new[] { X(1, new long[] { 2, 3, 2 }) }),
        ["mean"] = (t => t[0].mean(-1), () => new[] { X(1, M) }),
        ["mean_all"] = (t => torch.mean(t[0]), () => new[] { X(1, M) }),
        ["prod"] = (t => t[0].prod(new long[] { 0, 1 }), () => new[] { X(1, new long[] { 2, 3, 2 }) }),
        ["var"] = (t => t[0].var(1), () => new[] { X(1, M) }),
        ["var_all_biased"] = (t => t[0].var(unbiased: false), () => new[] { X(1, M) }),
        ["std"] = (t => t[0].std(new long[] { 0 }, keepdim: true), () => new[] { X(1, new long[] { 3, 2 }) }),
        ["std_correction"] = (t => torch.std(t[0], null, correction: 2), () => new[] { X(1, M) }),
        ["max_all"] = (t => t[0].max(), () => new[] { X(1, M) }),
        ["max_dim"] = (t => t[0].max(1).values, () => new[] { X(1, M) }),
        ["min_dim"] = (t => torch.min(t[0], 0, keepdim: true).values, () => new[] { X(1, M) }),
        ["amax"] = (t => t[0].amax(new long[] { -1 }), () => new[] { X(1, M) }),
        ["amin"] = (t => t[0].amin(0), () => new[] { X(1, M) }),
        ["norm"] = (t => t[0].norm(), () => new[] { X(1, M) }),
        ["norm_dim"] = (t => t[0].norm(2, new long[] { 1 }, keepdim: true), () => new[] { X(1, M) }),
        ["norm_p1"] = (t => torch.norm(t[0], 1, new long[] { 0 }), () => new[] { X(1, M) }),
        ["norm_p3"] = (t => t[0].norm(3), () => new[] { X(1, M) }),
        ["logsumexp"] = (t => t[0].logsumexp(1), () => new[] { X(1, M) }),
        ["logsumexp_all"] = (t => t[0].logsumexp(null, keepdim: true), () => new[] { X(1, M) }),
        ["cumsum"] = (t => t[0].cumsum(-1), () => new[] { X(1, M) }),
        ["cumsum_dim0"] = (t => torch.cumsum(t[0], 0), () => new[] { X(1, M) }),
        // linear algebra
        ["matmul"] = (t => t[0].matmul(t[1]), () => new[] { X(1, M), X(2, new long[] { 3, 2 }) }),
        ["matmul_vec_mat"] = (t => t[0].matmul(t[1]), () => new[] { X(1, new long[] { 3 }), X(2, new long[] { 3, 2 }) }),
        ["matmul_mat_vec"] = (t => torch.matmul(t[0], t[1]), () => new[] { X(1, M), X(2, new long[] { 3 }) }),
        ["matmul_vec_vec"] = (t => t[0].matmul(t[1]), () => new[] { X(1, new long[] { 3 }), X(2, new long[] { 3 }) }),
        ["matmul_batched"] = (t => t[0].matmul(t[1]), () => new[] { X(1, new long[] { 2, 2, 3 }), X(2, new long[] { 3, 2 }) }),
        ["mm"] = (t => t[0].mm(t[1]), () => new[] { X(1, M), X(2, new long[] { 3, 2 }) }),
        ["bmm"] = (t => t[0].bmm(t[1]), () => new[] { X(1, new long[] { 2, 2, 3 }), X(2, new long[] { 2, 3, 2 }) }),
        ["mv"] = (t => t[0].mv(t[1]), () => new[] { X(1, M), X(2, new long[] { 3 }) }),
        ["addmm"] = (t => t[0].addmm(t[1], t[2], beta: 0.5, alpha: 2), () => new[] { X(1, new long[] { 2 }), X(2, M), X(3, new long[] { 3, 2 }) }),
        ["baddbmm"] = (t => torch.baddbmm(t[0], t[1], t[2], beta: -1, alpha: 0.5),
            () => new[] { X(1, new long[] { 2, 2, 2 }), X(2, new long[] { 2, 2, 3 }), X(3, new long[] { 2, 3, 2 }) }),
        ["outer"] = (t => t[0].outer(t[1]), () => new[] { X(1, new long[] { 2 }), X(2, new long[] { 3 }) }),
        ["dot"] = (t => torch.dot(t[0], t[1]), () => new[] { X(1, new long[] { 3 }), X(2, new long[] { 3 }) }),
        ["einsum"] = (t => einsum("bij,jk->bik", t[0], t[1]), () => new[] { X(1, new long[] { 2, 2, 3 }), X(2, new long[] { 3, 2 }) }),
        ["einsum_three"] = (t => einsum("i,ij,j->", t[0], t[1], t[2]), () => new[] { X(1, new long[] { 2 }), X(2, M), X(3, new long[] { 3 }) }),
    };

    public static IEnumerable<object[]> CaseNames() => Cases.Keys.Select(k => new object[] { k });

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void GradientMatchesFiniteDifferences(string name)
    {
        using var scope = NewDisposeScope();
        var (f, inputs) = Cases[name];
        GradCheck.Assert(f, inputs());
    }

    [Fact]
    public void MaxAlongDimSendsGradientToTheArgmax()
    {
        using var scope = NewDisposeScope();
        var x = tensor(new double[] { 1, 5, 2, 7, 3, 4 }, new long[] { 2, 3 }, requires_grad: true);
        var (values, indices) = x.max(1);
        values.sum().backward();
        Assert.Equal(new long[] { 1, 0 }, indices.ToArray<long>());
        Assert.Equal(new double[] { 0, 1, 0, 1, 0, 0 }, x.grad!.ToArray<double>());
    }
}
