using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;
using F = Microsoft.ML.LowRank.Torch.torch.nn.functional;

namespace Microsoft.ML.LowRank.Tests.Speed;

/// <summary>
/// The shim's CPU attention node (libtorch 1.13's path of scaled_dot_product_attention for float32/float64 [B,H,L,E]):
/// outputs and q/k/v gradients against the attention formula written here in float64 with autograd, for causal,
/// float and bool masks, L != S, and the strided q/k/v views the models pass; and the switch that turns it off.
/// </summary>
public class CpuAttentionTests
{
    private const int B = 2, H = 3, E = 8, Ev = 6;

    private static (Tensor y, Tensor dq, Tensor dk, Tensor dv) Reference(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, double scale, Tensor gy)
    {
        // float64, composed from matmul / masked_fill / softmax (no call to scaled_dot_product_attention)
        var q64 = q.detach().to_type(ScalarType.Float64).requires_grad_(true);
        var k64 = k.detach().to_type(ScalarType.Float64).requires_grad_(true);
        var v64 = v.detach().to_type(ScalarType.Float64).requires_grad_(true);
        long L = q.size(2), S = k.size(2);
        var s = q64.matmul(k64.transpose(-2, -1)) * scale;
        if (causal) s = s.masked_fill(ones(new long[] { L, S }, ScalarType.Bool).triu(1), double.NegativeInfinity);
        if (mask is not null)
            s = mask.dtype == ScalarType.Bool ? s.masked_fill(mask.logical_not(), double.NegativeInfinity) : s + mask.to_type(ScalarType.Float64);
        var y = F.softmax(s, -1).matmul(v64);
        y.backward(gy.to_type(ScalarType.Float64));
        return (y.detach(), q64.grad!, k64.grad!, v64.grad!);
    }

    private static (Tensor y, Tensor dq, Tensor dk, Tensor dv) Run(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, double scale, Tensor gy)
    {
        var ql = q.detach().requires_grad_(true);
        var kl = k.detach().requires_grad_(true);
        var vl = v.detach().requires_grad_(true);
        // strided views like the models' [B,T,H,E] → [B,H,T,E] transpose
        var y = F.scaled_dot_product_attention(ql.transpose(1, 2), kl.transpose(1, 2), vl.transpose(1, 2), mask, 0, causal, scale);
        y.backward(gy);
        return (y.detach(), ql.grad!.transpose(1, 2), kl.grad!.transpose(1, 2), vl.grad!.transpose(1, 2));
    }

    private static Tensor FloatMask(ScalarType dt, int L, int S, Generator g)
    {
        var m = randn(new long[] { B, 1, L, S }, dt, generator: g);
        m.index(TensorIndex.Colon, TensorIndex.Colon, TensorIndex.Colon, TensorIndex.Single(S - 1)).fill_(double.NegativeInfinity);
        return m;
    }

    private static Tensor BoolMask(int S)
    {
        // [B,1,1,S] key padding: batch 0 keeps every key, batch 1 all but the last two
        var keep = new bool[B * S];
        for (int j = 0; j < S; j++) { keep[j] = true; keep[S + j] = j < Math.Max(1, S - 2); }
        return tensor(keep, new long[] { B, 1, 1, S });
    }

    private static void Check(ScalarType dt, int L, int S, string maskKind, bool causal, double tol)
    {
        using var scope = NewDisposeScope();
        var g = new Generator((ulong)(L * 100 + S));
        // inputs stored [B,T,H,E] (the models' layout before the transpose)
        var q = randn(new long[] { B, L, H, E }, dt, generator: g);
        var k = randn(new long[] { B, S, H, E }, dt, generator: g);
        var v = randn(new long[] { B, S, H, Ev }, dt, generator: g);
        var gy = randn(new long[] { B, H, L, Ev }, dt, generator: g);
        Tensor? mask = maskKind switch
        {
            "float" => FloatMask(dt, L, S, g),
            "bool" => BoolMask(S),
            _ => null,
        };
        double scale = 1 / Math.Sqrt(E);
        var r = Reference(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, causal, scale, gy);
        var o = Run(q, k, v, mask, causal, scale, gy);
        string what = $"{dt} L={L} S={S} mask={maskKind} causal={causal}";
        SpeedAssert.Close(r.y, o.y, tol, tol, "y " + what);
        SpeedAssert.Close(r.dq, o.dq, tol, tol, "dq " + what);
        SpeedAssert.Close(r.dk, o.dk, tol, tol, "dk " + what);
        SpeedAssert.Close(r.dv, o.dv, tol, tol, "dv " + what);
        foreach (var t in new[] { o.y, o.dq, o.dk, o.dv }) Assert.False(t.isnan().any().item<bool>(), "NaN in " + what);
    }

    [Theory]
    [InlineData(7, 7, "none", true)]
    [InlineData(5, 9, "none", true)]
    [InlineData(9, 5, "none", true)]
    [InlineData(6, 10, "none", false)]
    [InlineData(6, 10, "float", false)]
    [InlineData(6, 10, "bool", false)]
    public void MatchesTheFloat64Formula(int L, int S, string mask, bool causal)
    {
        Check(ScalarType.Float64, L, S, mask, causal, 1e-12);
        Check(ScalarType.Float32, L, S, mask, causal, 2e-5);
    }

    [Theory]
    [InlineData(7, 7, "none", true)]
    [InlineData(6, 10, "float", false)]
    [InlineData(6, 10, "bool", false)]
    public void Bfloat16TakesTheBatchedFormulaAndMatchesFloat64(int L, int S, string mask, bool causal)
    {
        // bf16 is not the node's: the formula runs, with scale and mask folded into one baddbmm
        Check(ScalarType.BFloat16, L, S, mask, causal, 6e-2);
    }

    [Fact]
    public void RotaryEmbeddingMatchesTheRotateHalfFormula()
    {
        using var scope = NewDisposeScope();
        foreach (var dt in new[] { ScalarType.Float64, ScalarType.Float32, ScalarType.BFloat16 })
        {
            var g = new Generator(5);
            var x = randn(new long[] { 2, 3, 5, 8 }, dt, generator: g);
            var cos = randn(new long[] { 2, 1, 5, 8 }, dt, generator: g);
            var sin = randn(new long[] { 2, 1, 5, 8 }, dt, generator: g);
            var gy = randn(new long[] { 2, 3, 5, 8 }, dt, generator: g);
            // float64 reference: x·cos + [−x₂, x₁]·sin, gradient by autograd
            var x64 = x.to_type(ScalarType.Float64).requires_grad_(true);
            var rot = cat(new[] { -x64.narrow(-1, 4, 4), x64.narrow(-1, 0, 4) }, -1);
            var yr = x64 * cos.to_type(ScalarType.Float64) + rot * sin.to_type(ScalarType.Float64);
            yr.backward(gy.to_type(ScalarType.Float64));
            var xl = x.detach().requires_grad_(true);
            var y = F.rotary_embedding(xl, cos, sin);
            y.backward(gy);
            double tol = dt == ScalarType.Float64 ? 1e-12 : dt == ScalarType.Float32 ? 1e-5 : 5e-2;
            Assert.Equal(dt, y.dtype);
            SpeedAssert.Close(yr.detach(), y, tol, tol, $"rope y {dt}");
            SpeedAssert.Close(x64.grad!, xl.grad, tol, tol, $"rope dx {dt}");
        }
    }

    [Fact]
    public void RotaryEmbeddingRejectsBadShapesByName()
    {
        using var scope = NewDisposeScope();
        var x = randn(new long[] { 2, 3, 5, 8 });
        var e = Assert.ThrowsAny<Exception>(() => F.rotary_embedding(randn(new long[] { 2, 7 }), randn(new long[] { 2, 7 }), randn(new long[] { 2, 7 })));
        Assert.Contains("even", e.Message);
        e = Assert.ThrowsAny<Exception>(() => F.rotary_embedding(x, randn(new long[] { 5, 6 }), randn(new long[] { 5, 6 })));
        Assert.Contains("last dimension", e.Message);
        e = Assert.ThrowsAny<Exception>(() => F.rotary_embedding(x, randn(new long[] { 4, 3, 5, 8 }), randn(new long[] { 4, 3, 5, 8 })));
        Assert.Contains("broadcast", e.Message);
    }

    [Fact]
    public void TheSwitchSelectsTheFormulaAndBothAgree()
    {
        using var scope = NewDisposeScope();
        bool before = F.cpu_attention_kernel;
        Assert.Equal(__version__.StartsWith("1.", StringComparison.Ordinal), before && !F.sdpa_uses_fused_kernel);
        try
        {
            var g = new Generator(3);
            var q = randn(new long[] { 2, 4, 32, 16 }, generator: g);
            var k = randn(new long[] { 2, 4, 32, 16 }, generator: g);
            var v = randn(new long[] { 2, 4, 32, 16 }, generator: g);
            F.cpu_attention_kernel = true;
            Assert.True(F.cpu_attention_kernel);
            var on = F.scaled_dot_product_attention(q, k, v, is_causal: true);
            F.cpu_attention_kernel = false;
            Assert.False(F.cpu_attention_kernel);
            var off = F.scaled_dot_product_attention(q, k, v, is_causal: true);
            SpeedAssert.Close(off, on, 1e-5, 1e-5, "kernel vs formula");
        }
        finally { F.cpu_attention_kernel = before; }
    }

    [Fact]
    public void CausalWithAMaskIsRefusedByName()
    {
        using var scope = NewDisposeScope();
        var q = randn(new long[] { 1, 1, 4, 8 });
        var e = Assert.ThrowsAny<Exception>(() => F.scaled_dot_product_attention(q, q, q, ones(new long[] { 4, 4 }, ScalarType.Bool), 0, true));
        Assert.Contains("is_causal", e.Message);
    }
}
