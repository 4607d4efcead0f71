using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Helpers;

/// <summary>
/// Finite-difference gradient check in float64, independent of any op under test: the analytic gradient comes
/// from backward(v) with a random cotangent v; the numeric one from central differences of &lt;v, f(x)&gt;,
/// computed in C# from tensors rebuilt from perturbed double arrays.
/// </summary>
public static class GradCheck
{
    /// <summary>Checks the gradients of <paramref name="f"/> with respect to every float64 input that requires grad.</summary>
    public static void Assert(Func<Tensor[], Tensor> f, Tensor[] inputs, double eps = 1e-6, double atol = 1e-6, double rtol = 1e-4, int seed = 1)
    {
        using var scope = NewDisposeScope();
        var data = inputs.Select(t => t.ToDoubleArray()).ToArray();
        var shapes = inputs.Select(t => t.shape).ToArray();
        var dtypes = inputs.Select(t => t.dtype).ToArray();
        var needs = inputs.Select(t => t.requires_grad).ToArray();
        if (!needs.Any(x => x)) throw new ArgumentException("no input requires grad");
        foreach (var (t, i) in inputs.Select((t, i) => (t, i)))
            if (needs[i] && t.dtype != ScalarType.Float64) throw new ArgumentException($"input {i} must be float64 for gradcheck, is {t.dtype}");

        Tensor[] Build(int perturbed = -1, int index = -1, double delta = 0)
        {
            var res = new Tensor[data.Length];
            for (int i = 0; i < data.Length; i++)
            {
                var d = data[i];
                if (i == perturbed) { d = (double[])d.Clone(); d[index] += delta; }
                var t = tensor(d, shapes[i], dtype: dtypes[i]);
                if (needs[i]) t.requires_grad = true;
                res[i] = t;
            }
            return res;
        }

        // analytic
        var leaves = Build();
        var output = f(leaves);
        var outShape = output.shape;
        var rng = new Random(seed);
        var v = new double[output.numel()];
        for (int k = 0; k < v.Length; k++) v[k] = rng.NextDouble() * 2 - 1;
        using (var vt = tensor(v, outShape, dtype: output.dtype)) output.backward(vt);
        var analytic = new double[data.Length][];
        for (int i = 0; i < data.Length; i++)
        {
            if (!needs[i]) continue;
            using var g = leaves[i].grad;
            analytic[i] = g is null ? new double[data[i].Length] : g.ToDoubleArray();
        }

        double Objective(int i, int k, double delta)
        {
            using var inner = NewDisposeScope();
            using var ng = no_grad();
            var outp = f(Build(i, k, delta)).ToDoubleArray();
            double s = 0;
            for (int j = 0; j < outp.Length; j++) s += outp[j] * v[j];
            return s;
        }

        for (int i = 0; i < data.Length; i++)
        {
            if (!needs[i]) continue;
            for (int k = 0; k < data[i].Length; k++)
            {
                var numeric = (Objective(i, k, eps) - Objective(i, k, -eps)) / (2 * eps);
                var a = analytic[i][k];
                if (Math.Abs(a - numeric) > atol + rtol * Math.Abs(numeric))
                    throw new Xunit.Sdk.XunitException($"gradcheck failed for input {i} element {k}: analytic {a:R}, numeric {numeric:R}");
            }
        }
    }
}
