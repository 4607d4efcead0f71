using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Models;

public class CheckpointVariantsTests
{
    private static readonly long[] Ids = { 5, 9, 33, 2, 71, 40 };

    private static float[] Logits(PretrainedModel m)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        return m.forward(new ModelInputs { InputIds = tensor(Ids, new long[] { 1, Ids.Length }) }).Logits!.to_type(ScalarType.Float32).ToArray<float>();
    }

    [Theory]
    [InlineData(ScalarType.Float16, 2e-2)]
    [InlineData(ScalarType.BFloat16, 6e-2)]
    public void HalfPrecisionCheckpointsLoadAndStayCloseToFloat32(ScalarType stored, double tol)
    {
        using var f32 = PretrainedModel.Load(Repo.Fixture("models", "llama_gqa"));
        var dir = Directory.CreateTempSubdirectory().FullName;
        f32.Save(dir, stored);
        Assert.Contains(stored == ScalarType.Float16 ? "\"float16\"" : "\"bfloat16\"", File.ReadAllText(Path.Combine(dir, "config.json")));
        using var half = PretrainedModel.Load(dir);
        Assert.Equal(stored, half.parameters().First().dtype);
        using var upcast = PretrainedModel.Load(dir, dtype: ScalarType.Float32);
        var a = Logits(f32);
        var b = Logits(upcast);
        for (int i = 0; i < a.Length; i++) Assert.InRange(b[i] - a[i], -tol, tol); // weights rounded to half, computed in float32
        if (stored == ScalarType.Float16 && !cuda.is_available()) return; // libtorch 1.13 has no float16 matmul on the CPU
        var c = Logits(half);
        for (int i = 0; i < a.Length; i++) Assert.InRange(c[i] - a[i], -4 * tol, 4 * tol); // computed in half precision
    }

    [Fact]
    public void Gpt2HubLayoutWithoutPrefixAndWithAttentionBuffersLoads()
    {
        // The original gpt2 hub files name tensors without "transformer." and carry attn.bias / attn.masked_bias buffers.
        var src = Repo.Fixture("models", "gpt2");
        var dir = Directory.CreateTempSubdirectory().FullName;
        File.Copy(Path.Combine(src, "config.json"), Path.Combine(dir, "config.json"));
        using (var scope = NewDisposeScope())
        {
            var all = Safetensors.Load(Path.Combine(src, "model.safetensors"));
            var hub = all.ToDictionary(kv => kv.Key.StartsWith("transformer.", StringComparison.Ordinal) ? kv.Key["transformer.".Length..] : kv.Key, kv => kv.Value);
            hub["h.0.attn.bias"] = ones(1, 1, 64, 64).tril();
            hub["h.0.attn.masked_bias"] = scalar_tensor(-1e4);
            Safetensors.Save(Path.Combine(dir, "model.safetensors"), hub);
        }
        using var reference = PretrainedModel.Load(src);
        using var hubModel = PretrainedModel.Load(dir);
        Assert.Empty(hubModel.LoadReport.InitializedKeys);
        Assert.Empty(hubModel.LoadReport.IgnoredKeys);
        Assert.Equal(Logits(reference), Logits(hubModel));
    }

    [Fact]
    public void RegressionHeadHasOneOutputAndMeanSquareLoss()
    {
        using var scope = NewDisposeScope();
        using var m = PretrainedModel.Load(Repo.Fixture("models", "bert_cls"), ModelTask.Regression);
        Assert.Equal(new[] { "classifier.weight", "classifier.bias" }, m.LoadReport.InitializedKeys);
        var ids = tensor(new long[] { 2, 10, 11, 3, 2, 12, 13, 3 }, new long[] { 2, 4 });
        var y = tensor(new float[] { 0.5f, -1.5f });
        using var ng = no_grad();
        var o = m.forward(new ModelInputs { InputIds = ids, Labels = y });
        Assert.Equal(new long[] { 2, 1 }, o.Logits!.shape);
        var p = o.Logits!.ToArray<float>();
        var expected = ((p[0] - 0.5) * (p[0] - 0.5) + (p[1] + 1.5) * (p[1] + 1.5)) / 2;
        Assert.InRange(o.Loss!.ToDouble() - expected, -1e-5, 1e-5);
    }

    [Fact]
    public void TokenClassificationOnADecoderUsesAScoreHead()
    {
        using var scope = NewDisposeScope();
        using var m = PretrainedModel.Load(Repo.Fixture("models", "llama"), ModelTask.TokenClassification, numLabels: 5);
        Assert.Equal(new[] { "score.weight", "score.bias" }, m.LoadReport.InitializedKeys);
        using var ng = no_grad();
        var o = m.forward(new ModelInputs { InputIds = tensor(Ids, new long[] { 1, Ids.Length }), Labels = tensor(new long[] { 0, 1, -100, 4, 2, 3 }, new long[] { 1, 6 }) });
        Assert.Equal(new long[] { 1, 6, 5 }, o.Logits!.shape);
        // Loss = mean over the 5 labelled tokens of -log softmax.
        var l = o.Logits!.ToArray<float>();
        var labels = new[] { 0, 1, -100, 4, 2, 3 };
        double sum = 0; int n = 0;
        for (int t = 0; t < 6; t++)
        {
            if (labels[t] < 0) continue;
            double mx = double.MinValue, z = 0;
            for (int c = 0; c < 5; c++) mx = Math.Max(mx, l[t * 5 + c]);
            for (int c = 0; c < 5; c++) z += Math.Exp(l[t * 5 + c] - mx);
            sum += -(l[t * 5 + labels[t]] - mx - Math.Log(z));
            n++;
        }
        Assert.InRange(o.Loss!.ToDouble() - sum / n, -1e-5, 1e-5);
    }
}
