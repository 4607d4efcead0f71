using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>Mixed-adapter batches (each row its own adapter) and weighted combinations of adapters.</summary>
public class LoraMixedBatchAndCombinationTests
{
    private static LowRankModel TwoAdapters(AdapterFixture f)
    {
        var lm = LowRankModel.Create(f.LoadModel(), new LoraOptions { R = 4, LoraAlpha = 8, TargetModules = ModuleSelector.AllLinear });
        lm.AddAdapter("b", new LoraOptions { R = 2, LoraAlpha = 4 });
        AdapterInvariants.Perturb(lm, 31);
        lm.SetAdapter("b");
        AdapterInvariants.Perturb(lm, 32);
        lm.SetAdapter("default");
        lm.eval();
        return lm;
    }

    [Theory]
    [InlineData("llama_gqa")]
    [InlineData("gpt2")]
    [InlineData("bert_cls")]
    public void MixedBatchRowsEqualRunningEachRowAloneWithItsAdapter(string fixture)
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        using var lm = TwoAdapters(f);
        var ids = tensor(new long[] { 5, 17, 33, 41, 8, 60, 12, 9, 71, 22, 4, 3, 0, 0, 44, 45, 46, 47, 48, 49, 50 }, new long[] { 3, 7 });
        var mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1 }, new long[] { 3, 7 });
        var names = new[] { "b", AdapterLayer.BaseAdapterName, "default" };
        using var ng = no_grad();
        var mixed = lm.forward(new ModelInputs { InputIds = ids, AttentionMask = mask }, names).Logits!;
        Assert.Equal("default", lm.ActiveAdapter);
        for (int i = 0; i < 3; i++)
        {
            var one = new ModelInputs { InputIds = ids.narrow(0, i, 1), AttentionMask = mask.narrow(0, i, 1) };
            Tensor alone;
            if (names[i] == AdapterLayer.BaseAdapterName)
                using (lm.DisableAdapter()) alone = lm.forward(one).Logits!;
            else
            {
                lm.SetAdapter(names[i]);
                alone = lm.forward(one).Logits!;
                lm.SetAdapter("default");
            }
            AdapterInvariants.AssertClose(alone.ToDoubleArray(), mixed.narrow(0, i, 1).ToDoubleArray(), 1e-5, $"{fixture} row {i} ({names[i]})");
        }
        // The rows really differ by adapter: row 0 with "default" is not what "b" gave.
        var swapped = lm.forward(new ModelInputs { InputIds = ids, AttentionMask = mask }, new[] { "default", "default", "default" }).Logits!;
        Assert.False(swapped.narrow(0, 0, 1).allclose(mixed.narrow(0, 0, 1), 1e-4, 1e-4));
        // Errors: unknown name, wrong count, merged adapters.
        Assert.Throws<KeyNotFoundException>(() => lm.forward(new ModelInputs { InputIds = ids }, new[] { "b", "c", "default" }));
        Assert.Throws<ArgumentException>(() => lm.forward(new ModelInputs { InputIds = ids }, new[] { "b", "default" }));
        lm.Merge();
        Assert.Throws<InvalidOperationException>(() => lm.forward(new ModelInputs { InputIds = ids }, names));
        lm.Unmerge();
        // The scope form (for generation) clears itself.
        using (lm.UseMixedBatch(names)) Assert.True(lm.forward(new ModelInputs { InputIds = ids, AttentionMask = mask }).Logits!.allclose(mixed, 1e-5, 1e-5));
        Assert.All(lm.AdapterModules(), m => Assert.Null(m.module.MixedBatchAdapterNames));
    }

    [Fact]
    public void MixedBatchGenerationWithKvCacheEqualsPerRowGeneration()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        using var lm = TwoAdapters(f);
        var prompts = new[] { new long[] { 5, 17, 33, 41 }, new long[] { 60, 12 }, new long[] { 9, 71, 22 } };
        var names = new[] { "b", "default", AdapterLayer.BaseAdapterName };
        var options = new GenerationOptions { MaxNewTokens = 6, PadTokenId = 0 };
        List<long[]> mixed;
        using (lm.UseMixedBatch(names)) mixed = TextGenerator.Generate(lm.Model, prompts, options);
        for (int i = 0; i < prompts.Length; i++)
        {
            List<long[]> alone;
            if (names[i] == AdapterLayer.BaseAdapterName)
                using (lm.DisableAdapter()) alone = TextGenerator.Generate(lm.Model, new[] { prompts[i] }, options);
            else
            {
                lm.SetAdapter(names[i]);
                alone = TextGenerator.Generate(lm.Model, new[] { prompts[i] }, options);
            }
            Assert.Equal(alone[0], mixed[i]);
        }
    }

    private static double[] Delta(LoraLayer l, string a) => l.GetDeltaWeight(a).ToDoubleArray();

    [Fact]
    public void CatCombinationIsExactlyTheWeightedSumOfDeltasWithPerLayerRanks()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        using var lm = LowRankModel.Create(f.LoadModel(), new LoraOptions { R = 4, LoraAlpha = 8, TargetModules = new[] { "q_proj", "v_proj" } });
        lm.AddAdapter("b", new LoraOptions { R = 2, LoraAlpha = 3, UseRsLora = true, TargetModules = new[] { "q_proj", "o_proj" } });
        AdapterInvariants.Perturb(lm, 41);
        lm.SetAdapter("b");
        AdapterInvariants.Perturb(lm, 42);
        lm.AddWeightedAdapter(new[] { "default", "b" }, new[] { 0.7, -0.4 }, "ab", LoraCombination.Cat);
        var cfg = (LoraOptions)lm.PeftConfig["ab"];
        Assert.Equal(6, cfg.R);
        Assert.Equal(6, cfg.LoraAlpha);
        Assert.False(cfg.UseRsLora);
        Assert.Equal(new[] { "q_proj", "v_proj", "o_proj" }, cfg.TargetModules!.Names);
        Assert.Equal(4, cfg.RankPattern["model.layers.0.self_attn.v_proj"]);
        Assert.Equal(2, cfg.RankPattern["model.layers.1.self_attn.o_proj"]);
        Assert.False(cfg.RankPattern.ContainsKey("model.layers.0.self_attn.q_proj"));
        foreach (var (path, layer) in lm.AdapterLayers())
        {
            var l = (LoraLayer)layer;
            Assert.Equal(1.0, l.Scaling("ab"));
            var want = new double[l.OutFeatures * l.InFeatures];
            foreach (var (a, w) in new[] { ("default", 0.7), ("b", -0.4) })
            {
                if (!l.HasAdapter(a)) continue;
                var d = Delta(l, a);
                for (int i = 0; i < want.Length; i++) want[i] += w * d[i];
            }
            AdapterInvariants.AssertClose(want, Delta(l, "ab"), 1e-6, $"cat delta of {path}");
            Assert.Equal(path.EndsWith("q_proj", StringComparison.Ordinal) ? 6 : path.EndsWith("v_proj", StringComparison.Ordinal) ? 4 : 2, l.Rank("ab"));
        }
        // The new adapter is not active and is frozen until activated.
        Assert.Equal(new[] { "b" }, lm.ActiveAdapters);
        lm.SetAdapter("ab");
        Assert.All(lm.named_parameters().Where(p => p.parameter.requires_grad), p => Assert.Contains(".ab.", p.name));
    }

    [Fact]
    public void LinearCombinationFollowsPeftsFormula()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("gpt2");
        using var lm = LowRankModel.Create(f.LoadModel(), new LoraOptions { R = 3, LoraAlpha = 6 });
        lm.AddAdapter("b", new LoraOptions { R = 3, LoraAlpha = 12 });
        AdapterInvariants.Perturb(lm, 51);
        lm.SetAdapter("b");
        AdapterInvariants.Perturb(lm, 52);
        lm.AddWeightedAdapter(new[] { "default", "b" }, new[] { 0.6, 0.8 }, "lin", LoraCombination.Linear);
        foreach (var (path, layer) in lm.AdapterLayers())
        {
            var l = (LoraLayer)layer;
            double fa = Math.Sqrt(0.6 * 2.0), fb = Math.Sqrt(0.8 * 4.0);
            foreach (var (get, name) in new (Func<string, double[]>, string)[] { (a => l.LoraA(a).weight.ToDoubleArray(), "A"), (a => l.LoraB(a).weight.ToDoubleArray(), "B") })
            {
                var x = get("default");
                var y = get("b");
                var want = x.Select((v, i) => fa * v + fb * y[i]).ToArray();
                AdapterInvariants.AssertClose(want, get("lin"), 1e-6, $"linear {name} of {path}");
            }
            Assert.Equal(1.0, l.Scaling("lin"));
        }
        Assert.Throws<ArgumentException>(() => lm.AddWeightedAdapter(new[] { "default", "b" }, new[] { 0.6, -0.1 }, "neg", LoraCombination.Linear));
        lm.AddAdapter("r2", new LoraOptions { R = 2 });
        Assert.Throws<ArgumentException>(() => lm.AddWeightedAdapter(new[] { "default", "r2" }, new[] { 0.5, 0.5 }, "bad", LoraCombination.Linear));
        Assert.Throws<KeyNotFoundException>(() => lm.AddWeightedAdapter(new[] { "default", "zz" }, new[] { 0.5, 0.5 }, "bad"));
        Assert.Throws<ArgumentException>(() => lm.AddWeightedAdapter(new[] { "default" }, new[] { 0.5, 0.5 }, "bad"));
        Assert.Throws<ArgumentException>(() => lm.AddWeightedAdapter(new[] { "default" }, new[] { 0.5 }, "b"));
        Assert.False(lm.PeftConfig.ContainsKey("neg") || lm.PeftConfig.ContainsKey("bad"));
    }

    [Fact]
    public void SvdCombinationIsTheTruncatedSvdOfTheWeightedDelta()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        using var lm = LowRankModel.Create(f.LoadModel(), new LoraOptions { R = 3, LoraAlpha = 6 });
        lm.AddAdapter("b", new LoraOptions { R = 2, LoraAlpha = 2 });
        AdapterInvariants.Perturb(lm, 61);
        lm.SetAdapter("b");
        AdapterInvariants.Perturb(lm, 62);
        // One source of rank 3 <= the new rank: the SVD reproduces 0.5·ΔW exactly.
        lm.AddWeightedAdapter(new[] { "default" }, new[] { 0.5 }, "half");
        // Two sources (rank 3 + 2) truncated to rank 3: the result is the best rank-3 approximation, so its error is
        // the norm of the dropped singular values and no larger than that of the cat combination truncated anyhow.
        lm.AddWeightedAdapter(new[] { "default", "b" }, new[] { 1.0, 1.0 }, "svd");
        foreach (var (path, layer) in lm.AdapterLayers())
        {
            var l = (LoraLayer)layer;
            var d = Delta(l, "default");
            AdapterInvariants.AssertClose(d.Select(v => 0.5 * v).ToArray(), Delta(l, "half"), 1e-5, $"svd of one adapter at {path}");
            Assert.Equal(3, l.Rank("svd"));
            var sum = Delta(l, "default").Zip(Delta(l, "b"), (p, q) => p + q).ToArray();
            var approx = Delta(l, "svd");
            var err = Math.Sqrt(sum.Zip(approx, (p, q) => (p - q) * (p - q)).Sum());
            var sv = linalg.svdvals(tensor(sum, new[] { l.OutFeatures, l.InFeatures })).ToDoubleArray();
            var dropped = Math.Sqrt(sv.Skip(3).Sum(v => v * v));
            Assert.True(Math.Abs(err - dropped) <= 1e-5 * Math.Max(1, dropped), $"{path}: error {err} vs dropped singular values {dropped}");
            Assert.True(dropped > 1e-4, "the truncation should drop something");
        }
    }
}
