using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Speed;

internal static class SpeedAssert
{
    /// <summary>Asserts |expected - actual| &lt;= atol + rtol·|expected| elementwise (compared in float64).</summary>
    public static void Close(Tensor expected, Tensor? actual, double atol, double rtol, string what)
    {
        Assert.NotNull(actual);
        using var scope = NewDisposeScope();
        Assert.Equal(expected.shape, actual!.shape);
        var e = expected.to_type(ScalarType.Float64);
        var a = actual.to_type(ScalarType.Float64);
        var excess = ((e - a).abs() - (e.abs() * rtol + atol)).max().ToDouble();
        if (excess > 0)
        {
            var maxDiff = (e - a).abs().max().ToDouble();
            throw new Xunit.Sdk.XunitException($"{what}: max |expected - actual| = {maxDiff:G4} exceeds atol {atol:G3} + rtol {rtol:G3}·|expected|");
        }
    }

    /// <summary>Turns the fused LoRA kernel on or off in every LoRA layer of a module tree.</summary>
    public static void SetFused(nn.Module root, bool fused, LoraComputeOrder order = LoraComputeOrder.Auto)
    {
        foreach (var (_, m) in root.named_modules())
            if (m is LoraLayer l)
            {
                l.UseFusedKernel = fused;
                l.ComputeOrder = order;
            }
    }
}
