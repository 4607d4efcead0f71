using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Models;

/// <summary>
/// Every architecture against golden outputs of an independent float64 reference implementation
/// (test/fixtures/models/make_model_fixtures.py, run with Debian's PyTorch): logits, hidden states and loss within 1e-5.
/// </summary>
public class ModelFixtureTests
{
    public static TheoryData<string> Cases => new()
    {
        "gpt2", "llama", "llama_gqa", "llama3_rope", "llama_linear_rope", "mistral", "qwen2", "gemma",
        "bert_cls", "roberta_cls", "bert_token_cls", "llama_cls", "gpt2_cls", "llama_sharded", "llama_bf16",
    };

    internal static Tensor Ids(JsonNode? node)
    {
        var rows = node!.AsArray();
        var b = rows.Count;
        var t = rows[0]!.AsArray().Count;
        var data = rows.SelectMany(r => r!.AsArray().Select(v => v!.GetValue<long>())).ToArray();
        return tensor(data, new long[] { b, t });
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardMatchesTheReference(string name)
    {
        using var scope = NewDisposeScope();
        var dir = Repo.Fixture("models", name);
        var inputs = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "inputs.json")))!;
        using var model = PretrainedModel.Load(dir, dtype: ScalarType.Float32);
        model.eval();
        var expected = Safetensors.Load(Path.Combine(dir, "expected.safetensors"));
        Tensor? labels = null;
        if (inputs["labels"] is JsonArray la)
            labels = la[0] is JsonArray ? Ids(la) : tensor(la.Select(v => v!.GetValue<long>()).ToArray());
        var output = model.forward(new ModelInputs
        {
            InputIds = Ids(inputs["input_ids"]),
            AttentionMask = Ids(inputs["attention_mask"]),
            PositionIds = model.Config.Family is ModelFamily.Gpt2 or ModelFamily.Llama ? Ids(inputs["position_ids"]) : null,
            TokenTypeIds = inputs["token_type_ids"] is JsonArray tt ? Ids(tt) : null,
            Labels = labels,
            OutputHiddenStates = true,
        });
        AssertClose(expected["logits"], output.Logits!, name + " logits");
        AssertClose(expected["last_hidden_state"], output.LastHiddenState, name + " last_hidden_state");
        AssertClose(expected["embeddings"], output.HiddenStates![0], name + " embeddings");
        AssertClose(expected["hidden_states_0"], output.HiddenStates![1], name + " hidden_states_0");
        AssertClose(expected["loss"], output.Loss!, name + " loss");
        if (expected.TryGetValue("rope_inv_freq", out var inv))
            AssertClose(inv, tensor(AttentionUtils.RopeInvFreq(model.Config.HeadDim, model.Config.RopeTheta, model.Config.RopeScaling)), name + " inv_freq", 1e-7);
    }

    internal static void AssertClose(Tensor expected, Tensor actual, string what, double tol = 1e-5)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape), $"{what}: shape [{string.Join(",", actual.shape)}] != expected [{string.Join(",", expected.shape)}]");
        var e = expected.ToDoubleArray();
        var a = actual.ToDoubleArray();
        double worst = 0;
        int at = -1;
        for (int i = 0; i < e.Length; i++)
        {
            var err = Math.Abs(e[i] - a[i]) / Math.Max(1.0, Math.Abs(e[i]));
            if (double.IsNaN(a[i])) err = double.PositiveInfinity;
            if (err > worst) { worst = err; at = i; }
        }
        Assert.True(worst <= tol, $"{what}: max error {worst:E3} at flat index {at} (expected {(at >= 0 ? e[at] : 0)}, got {(at >= 0 ? a[at] : 0)})");
    }

    [Fact]
    public void SaveThenLoadGivesIdenticalOutputs()
    {
        using var scope = NewDisposeScope();
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama_gqa"));
        var dir = Directory.CreateTempSubdirectory().FullName;
        model.Save(dir);
        using var again = PretrainedModel.Load(dir);
        var ids = tensor(new long[] { 5, 9, 33, 2, 71 }, new long[] { 1, 5 });
        using var ng = no_grad();
        var a = model.forward(new ModelInputs { InputIds = ids }).Logits!.ToArray<float>();
        var b = again.forward(new ModelInputs { InputIds = ids }).Logits!.ToArray<float>();
        Assert.Equal(a, b);
    }

    [Fact]
    public void TiedGpt2HeadIsStoredOnceAndSharesTheEmbedding()
    {
        using var scope = NewDisposeScope();
        using var model = PretrainedModel.Load(Repo.Fixture("models", "gpt2"));
        Assert.True(model.get_parameter("lm_head.weight").is_same(model.get_parameter("transformer.wte.weight")));
        var dir = Directory.CreateTempSubdirectory().FullName;
        model.Save(dir);
        using var f = SafetensorsFile.Open(Path.Combine(dir, "model.safetensors"));
        Assert.False(f.Contains("lm_head.weight"));
        Assert.True(f.Contains("transformer.wte.weight"));
    }

    [Fact]
    public void NewClassificationHeadIsInitialisedAndReported()
    {
        using var scope = NewDisposeScope();
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama"), ModelTask.SequenceClassification, numLabels: 4);
        Assert.Equal(new[] { "score.weight" }, model.LoadReport.InitializedKeys);
        Assert.Contains("lm_head.weight", model.LoadReport.IgnoredKeys);
        Assert.Equal(new long[] { 4, 32 }, model.get_parameter("score.weight").shape);
        var std = model.get_parameter("score.weight").std().ToDouble();
        Assert.InRange(std, 0.01, 0.03);
    }

    [Fact]
    public void BrokenCheckpointsFailNamingTheFileAndTensor()
    {
        var src = Repo.Fixture("models", "llama");
        // Missing tensor.
        var dir = Directory.CreateTempSubdirectory().FullName;
        File.Copy(Path.Combine(src, "config.json"), Path.Combine(dir, "config.json"));
        using (var scope = NewDisposeScope())
        {
            var all = Safetensors.Load(Path.Combine(src, "model.safetensors"));
            all.Remove("model.layers.1.mlp.up_proj.weight");
            Safetensors.Save(Path.Combine(dir, "model.safetensors"), all);
        }
        var ex = Assert.Throws<InvalidDataException>(() => PretrainedModel.Load(dir));
        Assert.Contains("model.layers.1.mlp.up_proj.weight", ex.Message);
        // Shape mismatch.
        using (var scope = NewDisposeScope())
        {
            var all = Safetensors.Load(Path.Combine(src, "model.safetensors"));
            all["model.norm.weight"] = ones(31);
            Safetensors.Save(Path.Combine(dir, "model.safetensors"), all);
        }
        ex = Assert.Throws<InvalidDataException>(() => PretrainedModel.Load(dir));
        Assert.Contains("model.norm.weight", ex.Message);
        Assert.Contains("model.safetensors", ex.Message);
        // Truncated shard.
        var sharded = Directory.CreateTempSubdirectory().FullName;
        foreach (var f in Directory.GetFiles(Repo.Fixture("models", "llama_sharded"))) File.Copy(f, Path.Combine(sharded, Path.GetFileName(f)));
        var shard = Path.Combine(sharded, "model-00002-of-00002.safetensors");
        var bytes = File.ReadAllBytes(shard);
        File.WriteAllBytes(shard, bytes[..(bytes.Length - 100)]);
        var se = Assert.Throws<SafetensorsException>(() => PretrainedModel.Load(sharded));
        Assert.Contains("model-00002-of-00002.safetensors", se.Message);
        // Missing folder.
        Assert.Throws<DirectoryNotFoundException>(() => PretrainedModel.Load(Path.Combine(dir, "nope")));
    }
}
