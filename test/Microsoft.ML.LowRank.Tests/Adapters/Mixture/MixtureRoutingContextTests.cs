using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Adapters.Mixture;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters.Mixture;

/// <summary>
/// Routers that read the routing context (task ids: MOELoRA, Polytropon, MoCLE; instance embeddings: Octavius's global
/// gate; domain labels: MoA; task types: LoRAMoE), the PEFT-style save/load layout with the preset and per-layer expert
/// counts, MOLE's import of already-trained LoRAs, MoCLE's k-means, AdaMix's consistency loss.
/// </summary>
[Collection(SerialCollection.Name)]
public class MixtureRoutingContextTests
{
    private static float[] Logits(LowRankModel lm, AdapterFixture f, MixtureRoutingInputs? routing)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        using var r = routing is null ? null : lm.UseRouting(routing);
        return lm.forward(f.Inputs(false)).Logits!.ToArray<float>();
    }

    [Fact]
    public void TaskRoutedAdapterSavesRecordsThePresetAndExpertCountsAndReloads()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        var o = MixtureOfLoraExpertsOptions.MultiTaskMoELoRA(numTasks: 3, numExperts: 4, totalRank: 8, dropout: 0, taskEmbeddingDim: 4);
        using var lm = LowRankModel.Create(f.LoadModel(), o);
        lm.eval();
        AdapterInvariants.Perturb(lm, seed: 2);
        var task0 = new MixtureRoutingInputs { TaskIds = tensor(new long[] { 0, 0 }) };
        var task2 = new MixtureRoutingInputs { TaskIds = tensor(new long[] { 2, 1 }) };
        var y0 = Logits(lm, f, task0);
        var y2 = Logits(lm, f, task2);
        Assert.False(y0.AsSpan().SequenceEqual(y2), "different tasks should route differently");
        var e = Assert.Throws<InvalidOperationException>(() => Logits(lm, f, null));
        Assert.Contains("UseRouting", e.Message);

        var dir = Directory.CreateTempSubdirectory("lowrank-moe-").FullName;
        try
        {
            lm.Save(dir);
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, AdapterFiles.ConfigName)))!.AsObject();
            Assert.Equal("MOLORA", (string?)cfg["peft_type"]);
            Assert.Equal("mmoelora", (string?)cfg["preset"]);
            var layerExperts = cfg["layer_experts"]!.AsObject();
            Assert.Equal(lm.AdapterLayers().Count(), layerExperts.Count);
            Assert.All(layerExperts, kv => Assert.Equal(4, kv.Value!.GetValue<int>()));
            using (var file = SafetensorsFile.Open(Path.Combine(dir, AdapterFiles.WeightsName)))
            {
                var q = "base_model.model.model.layers.0.self_attn.q_proj.";
                Assert.Equal(new long[] { 8, 32 }, file.GetEntry(q + "lora_A.weight").Shape);
                Assert.Equal(new long[] { 4, 4 }, file.GetEntry(q + "lora_router.weight").Shape);
                Assert.Equal(new long[] { 4, 4 }, file.GetEntry(q + "lora_router.task_embedding").Shape);
            }
            using var loaded = LowRankModel.Load(f.LoadModel(), dir);
            loaded.eval();
            AdapterInvariants.AssertIdentical(y0, Logits(loaded, f, task0), "reloaded, task 0");
            AdapterInvariants.AssertIdentical(y2, Logits(loaded, f, task2), "reloaded, tasks 2 and 1");
            // The recorded per-layer counts decide the layout on load, whatever num_experts says.
            cfg["num_experts"] = 7;
            File.WriteAllText(Path.Combine(dir, AdapterFiles.ConfigName), cfg.ToJsonString());
            using var again = LowRankModel.Load(f.LoadModel(), dir);
            again.eval();
            AdapterInvariants.AssertIdentical(y2, Logits(again, f, task2), "reloaded with layer_experts");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void OctaviusUsesOneGlobalInstanceGateForEveryLayer()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        var o = MixtureOfLoraExpertsOptions.Octavius(numExperts: 3, topK: 2, r: 2, dropout: 0);
        using var lm = LowRankModel.Create(f.LoadModel(), o);
        lm.eval();
        AdapterInvariants.Perturb(lm, seed: 6);
        var routers = lm.named_parameters().Where(p => p.name.Contains("lora_router")).ToList();
        Assert.Single(routers);
        Assert.Equal(new long[] { 3, 32 }, routers[0].parameter.shape);
        var layers = lm.AdapterLayers().Select(l => (MixtureOfLoraExpertsLayer)l.layer).ToList();
        Assert.All(layers, l => Assert.Same(layers[0].Router("default"), l.Router("default")));

        // The instance feature: mean frozen token embedding of the instruction tokens.
        var inputs = f.Inputs(false);
        var mask = tensor(new long[] { 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0 }, new long[] { 2, 9 });
        var feats = MixtureOfLoraExperts.InstructionEmbedding(lm, inputs.InputIds, mask);
        var emb = lm.Model.Backbone.TokenEmbedding.weight.ToDoubleArray();
        var ids = inputs.InputIds.ToArray<long>();
        var md = mask.ToArray<long>();
        var fd = feats.ToDoubleArray();
        for (int b = 0; b < 2; b++)
            for (int j = 0; j < 32; j++)
            {
                double s = 0, n = 0;
                for (int t = 0; t < 9; t++) if (md[b * 9 + t] == 1) { s += emb[ids[b * 9 + t] * 32 + j]; n++; }
                Assert.Equal(s / n, fd[b * 32 + j], 5);
            }

        // One layer against the float64 formula with the shared gate.
        var layer = layers[2];
        using var routing = lm.UseRouting(new MixtureRoutingInputs { InstanceFeatures = feats });
        using var g = new Generator(1);
        var x = randn(new long[] { 2, 3, layer.InFeatures }, generator: g);
        using var ng = no_grad();
        var y = layer.forward(x).ToDoubleArray();
        var reference = new MixtureReference { Batch = 2, InstanceFeatures = new[] { fd.AsSpan(0, 32).ToArray(), fd.AsSpan(32, 32).ToArray() } };
        var p = MoeLayers.Params(layer);
        var expected = reference.Forward(layer, p, x.ToDoubleArray(), 6);
        AdapterInvariants.AssertClose(expected, y, 1e-5, "octavius layer with the global gate");
        // Changing the global gate changes every layer's routing.
        var before = Logits(lm, f, new MixtureRoutingInputs { InstanceFeatures = feats });
        routers[0].parameter.mul_(-1);
        Assert.False(before.AsSpan().SequenceEqual(Logits(lm, f, new MixtureRoutingInputs { InstanceFeatures = feats })));
    }

    [Fact]
    public void PolyWithOneTaskMergesExactlyAndWithSeveralTasksRefusesToMerge()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("gpt2");
        using var lm = LowRankModel.Create(f.LoadModel(), MixtureOfLoraExpertsOptions.Poly(numTasks: 1, numSkills: 3, r: 2));
        lm.eval();
        AdapterInvariants.Perturb(lm, seed: 8);
        var routing = new MixtureRoutingInputs { TaskIds = tensor(new long[] { 0, 0 }) };
        var unmerged = Logits(lm, f, routing);
        lm.Merge();
        AdapterInvariants.AssertClose(unmerged.Select(v => (double)v).ToList(), Logits(lm, f, routing).Select(v => (double)v).ToList(), 1e-5, "poly merged");
        lm.Unmerge();
        using var multi = LowRankModel.Create(f.LoadModel(), MixtureOfLoraExpertsOptions.Poly(numTasks: 2));
        Assert.Throws<InvalidOperationException>(() => multi.Merge());
    }

    [Fact]
    public void MoaRouterCrossEntropyAndLoramoeBalanceReadTheirLabelsFromTheContext()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        using var moa = LowRankModel.Create(f.LoadModel(), MixtureOfLoraExpertsOptions.MoA(numDomains: 3, r: 2));
        moa.train();
        var labels = tensor(new long[] { 2, 0 });
        using (moa.RecordRouting())
        {
            using (moa.UseRouting(new MixtureRoutingInputs { RouterLabels = labels })) moa.forward(f.Inputs());
            using (moa.UseRouting(new MixtureRoutingInputs { RouterLabels = labels }))
            {
                var ce = moa.TakeAuxiliaryLoss()!;
                // One sequence-level router per adapted Linear, each supervised by the labels.
                Assert.True(ce.ToDouble() > 0 && ce.requires_grad);
            }
            moa.forward(f.Inputs());
            var e = Assert.Throws<InvalidOperationException>(() => moa.TakeAuxiliaryLoss());
            Assert.Contains("RouterLabels", e.Message);
        }
        using var loramoe = LowRankModel.Create(f.LoadModel(), MixtureOfLoraExpertsOptions.LoRAMoE(numExperts: 4, r: 2, lbcWeight: 0.1, lbcDelta: 0.1));
        loramoe.train();
        using (loramoe.RecordRouting())
        {
            loramoe.forward(f.Inputs());
            Assert.Contains("TaskTypes", Assert.Throws<InvalidOperationException>(() => loramoe.TakeAuxiliaryLoss()).Message);
            using (loramoe.UseRouting(new MixtureRoutingInputs { TaskTypes = tensor(new long[] { 1, 0 }) }))
            {
                loramoe.forward(f.Inputs());
                var lbc = loramoe.TakeAuxiliaryLoss()!;
                Assert.True(lbc.ToDouble() > 0 && double.IsFinite(lbc.ToDouble()));
            }
        }
    }

    [Fact]
    public void MoleImportsAlreadyTrainedLorasAsFrozenExperts()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        var dirs = new List<string>();
        try
        {
            for (int i = 0; i < 2; i++)
            {
                using var lora = LowRankModel.Create(f.LoadModel(), new LoraOptions { R = 2 + i, LoraAlpha = 3 + i, TargetModules = ModuleSelector.FromNames("q_proj", "v_proj") });
                AdapterInvariants.Perturb(lora, seed: (ulong)(30 + i));
                var dir = Directory.CreateTempSubdirectory("lowrank-lora-").FullName;
                lora.Save(dir);
                dirs.Add(dir);
            }
            var o = MixtureOfLoraExpertsOptions.MOLE(numLoras: 2, r: 4, alpha: 8);
            o.TargetModules = ModuleSelector.FromNames("q_proj", "v_proj");
            using var mole = LowRankModel.Create(f.LoadModel(), o);
            MixtureOfLoraExperts.ImportLoraExperts(mole, "default", dirs);
            Assert.All(mole.named_parameters().Where(p => p.parameter.requires_grad), p => Assert.Contains("lora_router", p.name));
            // Expert e of every layer reproduces LoRA e's weight delta exactly: s·B'A' = s_e·B_e·A_e.
            for (int i = 0; i < 2; i++)
            {
                using var lora = LowRankModel.Load(f.LoadModel(), dirs[i]);
                foreach (var (path, layer) in lora.AdapterLayers())
                {
                    var expected = layer.GetDeltaWeight("default").ToDoubleArray();
                    var moe = (MixtureOfLoraExpertsLayer)mole.Model.get_submodule(path);
                    var A = moe.LoraA("default")!.weight.narrow(0, 4 * i, 4).to_type(ScalarType.Float64);
                    var B = moe.LoraB("default")!.weight.narrow(1, 4 * i, 4).to_type(ScalarType.Float64);
                    var got = (B.matmul(A) * moe.Scaling("default", i)).ToDoubleArray();
                    AdapterInvariants.AssertClose(expected, got, 1e-6, $"{path} expert {i}");
                }
            }
            Assert.Throws<ArgumentException>(() => MixtureOfLoraExperts.ImportLoraExperts(mole, "default", dirs.Take(1).ToList()));
        }
        finally { foreach (var d in dirs) Directory.Delete(d, true); }
    }

    [Fact]
    public void KMeansFindsSeparatedClustersDeterministically()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(3);
        var centers = tensor(new double[] { 0, 0, 10, 10, -10, 10 }, new long[] { 3, 2 }, ScalarType.Float64);
        var truth = tensor(Enumerable.Range(0, 30).Select(i => (long)(i % 3)).ToArray());
        var points = centers.index_select(0, truth) + randn(new long[] { 30, 2 }, ScalarType.Float64, generator: g) * 0.5;
        var (c1, a1) = MixtureOfLoraExperts.KMeans(points, 3, seed: 7);
        var (c2, a2) = MixtureOfLoraExperts.KMeans(points, 3, seed: 7);
        Assert.True(c1.equal(c2) && a1.equal(a2));
        var a = a1.ToArray<long>();
        var t = truth.ToArray<long>();
        // Same partition up to relabelling.
        for (int i = 0; i < 30; i++)
            for (int j = 0; j < 30; j++) Assert.Equal(t[i] == t[j], a[i] == a[j]);
        Assert.Equal(new long[] { 0, 1, 2 }, MixtureOfLoraExperts.AssignClusters(c1, c1).ToArray<long>());
        Assert.Throws<ArgumentOutOfRangeException>(() => MixtureOfLoraExperts.KMeans(points, 31));
    }

    [Fact]
    public void AdaMixConsistencyLossAddsTheSymmetricKlOfTwoStochasticPasses()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("gpt2");
        using var lm = LowRankModel.Create(f.LoadModel(), MixtureOfLoraExpertsOptions.AdaMix(numExperts: 3, r: 2));
        AdapterInvariants.Perturb(lm, seed: 4);
        lm.train();
        var inputs = f.Inputs();
        var batch = new Batch(inputs.InputIds, inputs.AttentionMask, inputs.Labels);
        manual_seed(12);
        var loss = MixtureOfLoraExperts.AdaMixConsistencyLoss(lm, batch, 3.0).ToDouble();
        manual_seed(12);
        var o1 = lm.forward(inputs);
        var o2 = lm.forward(inputs);
        var p = o1.Logits!.ToDoubleArray();
        var q = o2.Logits!.ToDoubleArray();
        var m = inputs.AttentionMask!.ToArray<long>();
        int v = (int)o1.Logits!.size(2);
        double sym = 0, count = 0;
        for (int pos = 0; pos < m.Length; pos++)
        {
            if (m[pos] == 0) continue;
            var lp = MoeMath.Softmax(p.AsSpan(pos * v, v).ToArray());
            var lq = MoeMath.Softmax(q.AsSpan(pos * v, v).ToArray());
            double kl1 = 0, kl2 = 0;
            for (int c = 0; c < v; c++) { kl1 += lp[c] * Math.Log(lp[c] / lq[c]); kl2 += lq[c] * Math.Log(lq[c] / lp[c]); }
            sym += 0.5 * (kl1 + kl2);
            count++;
        }
        Assert.True(sym > 0, "two stochastic passes should differ");
        Assert.Equal(o1.Loss!.ToDouble() + 3.0 * sym / count, loss, 4);
    }
}
