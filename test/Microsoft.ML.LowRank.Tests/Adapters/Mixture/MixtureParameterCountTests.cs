using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Mixture;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Cli;
using Microsoft.ML.LowRank.Tests.Helpers;

namespace Microsoft.ML.LowRank.Tests.Adapters.Mixture;

/// <summary>
/// <c>lowrank params --method &lt;preset&gt;</c> on the gpt2, llama and gemma fixture configs equals methods.md §8's
/// formula for every preset, computed here from the config's dimensions (routers counted as the references do: a Linear
/// d → E without bias per router, a [tasks, E] table, MOELoRA's task embedding of tasks + 1 rows, one global gate for
/// Octavius, MLoRE's learned-noise projection; frozen MOLE experts not counted).
/// </summary>
public class MixtureParameterCountTests
{
    /// <summary>An adapted projection: its block, input and output sizes, and whether it is attention or FFN (and which).</summary>
    private sealed record Proj(int Layer, long In, long Out, bool Ffn, string Name);

    private static List<Proj> Projections(ModelConfig c)
    {
        var list = new List<Proj>();
        long d = c.HiddenSize, i = c.IntermediateSize;
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            if (c.ModelType == "gpt2")
            {
                list.Add(new(l, d, 3 * d, false, "c_attn"));
                list.Add(new(l, d, d, false, "attn.c_proj"));
                list.Add(new(l, d, i, true, "c_fc"));
                list.Add(new(l, i, d, true, "mlp.c_proj"));
            }
            else
            {
                long q = c.NumAttentionHeads * c.HeadDim, kv = c.NumKeyValueHeads * c.HeadDim;
                list.Add(new(l, d, q, false, "q_proj"));
                list.Add(new(l, d, kv, false, "k_proj"));
                list.Add(new(l, d, kv, false, "v_proj"));
                list.Add(new(l, q, d, false, "o_proj"));
                list.Add(new(l, d, i, true, "gate_proj"));
                list.Add(new(l, d, i, true, "up_proj"));
                list.Add(new(l, i, d, true, "down_proj"));
            }
        }
        return list;
    }

    private static bool IsQueryValue(Proj p) => p.Name is "q_proj" or "v_proj" or "c_attn";

    /// <summary>methods.md §8 per preset (with each preset's default hyper-parameters).</summary>
    private static long Formula(string preset, ModelConfig c)
    {
        var ps = Projections(c);
        long d = c.HiddenSize;
        int L = c.NumHiddenLayers;
        long Lora(Proj p, long r) => r * (p.In + p.Out);
        long PerLinear(IEnumerable<Proj> sel, int e, long r, long routerPerIn = 1) => sel.Sum(p => e * Lora(p, r) + routerPerIn * p.In * e);
        // FFN experts: Σ_{gate,up,down} E·r(in+out) per block + one router d·E per block on the FFN input.
        long FfnExperts(int e, long r) => ps.Where(p => p.Ffn).Sum(p => e * Lora(p, r)) + L * d * e;
        switch (preset)
        {
            case "molora": return PerLinear(ps, 4, 8);
            case "mixlora" or "mixlora-dynamic" or "mixlora-switch": return ps.Where(p => !p.Ffn).Sum(p => Lora(p, 16)) + FfnExperts(8, 16);
            case "loramoe": return PerLinear(ps.Where(p => p.Ffn), 8, 4);
            case "mola" or "mola-8642" or "mola-3773" or "mola-5555":
                {
                    var groups = preset switch { "mola" => new[] { 2, 4, 6, 8 }, "mola-8642" => new[] { 8, 6, 4, 2 }, "mola-3773" => new[] { 3, 7, 7, 3 }, _ => new[] { 5, 5, 5, 5 } };
                    return ps.Sum(p => { int e = groups[p.Layer * 4 / L]; return e * Lora(p, 8) + p.In * e; });
                }
            case "moelora": return PerLinear(ps.Where(IsQueryValue), 8, 4);
            case "mmoelora": return ps.Sum(p => Lora(p, 16) + (16 + 1) * 64 + 64 * 8);
            case "moa": return PerLinear(ps, 4, 8);
            case "moral": return FfnExperts(4, 8);
            case "pesc":
                // Adapters d → 64 → d per expert on the FFN output, router d·E on the FFN input, per block.
                return L * (8 * 2 * d * 64 + d * 8);
            case "adamix": return ps.Where(IsQueryValue).Sum(p => 4 * 16 * p.In + 16 * p.Out);
            case "sira": return PerLinear(ps, 4, 4);
            case "mocle": return ps.Sum(p => (8 + 1) * Lora(p, 8) + 64 * 8);
            case "octavius": return ps.Where(p => !p.Ffn).Sum(p => 4 * Lora(p, 32)) + d * 4;
            case "llava-mole": return PerLinear(ps.Where(p => p.Ffn), 4, 8);
            case "mole": return ps.Sum(p => 3 * p.Out * 3);
            case "poly": return ps.Where(IsQueryValue).Sum(p => 4 * Lora(p, 8) + 1 * 4);
            case "mlore":
                {
                    long ranks = Enumerable.Range(0, 15).Sum(i => 16 + 8 * i); // 1080
                    return ps.Sum(p => (ranks + 72) * (p.In + p.Out) + 2 * p.In * 15);
                }
            case "mosa": return ps.Sum(p => Lora(p, 16));
            default: throw new ArgumentException(preset);
        }
    }

    public static TheoryData<string, string> Matrix()
    {
        var d = new TheoryData<string, string>();
        foreach (var p in MixtureOfLoraExpertsOptions.Presets)
            foreach (var f in new[] { "gpt2", "llama", "gemma" }) d.Add(p.Name, f);
        return d;
    }

    [Theory, MemberData(nameof(Matrix))]
    public void LowrankParamsEqualsTheFormula(string preset, string fixture)
    {
        var dir = Repo.Fixture("models", fixture);
        var (code, output, err) = CliTests.Run("params", dir, "--method", preset, "--json");
        Assert.True(code == 0, err);
        var trainable = JsonNode.Parse(output)!["trainable"]!.GetValue<long>();
        Assert.Equal(Formula(preset, ModelConfig.FromFile(dir)), trainable);
    }

    [Fact]
    public void EveryPresetIsRegisteredAndReadsItsOwnConfig()
    {
        var names = MixtureOfLoraExpertsOptions.Presets.Select(p => p.Name).ToList();
        Assert.Equal(names.Count, names.Distinct(StringComparer.OrdinalIgnoreCase).Count());
        foreach (var p in MixtureOfLoraExpertsOptions.Presets)
        {
            var o = (MixtureOfLoraExpertsOptions)AdapterMethods.Create(p.Name);
            Assert.Equal(p.Name, o.Preset);
            o.Validate();
            var back = (MixtureOfLoraExpertsOptions)LowRankAdapterOptions.FromJson(o.ToJson());
            Assert.Equal(o.ToJson(), back.ToJson());
        }
    }

    [Fact]
    public void MatchRankFindsTheRankClosestToALoraBudget()
    {
        var config = ModelConfig.FromFile(Repo.Fixture("models", "llama"));
        var budget = MixtureOfLoraExperts.CountTrainableParameters(config, new Microsoft.ML.LowRank.Adapters.Lora.LoraOptions { R = 64, TargetModules = ModuleSelector.AllLinear });
        var o = MixtureOfLoraExpertsOptions.MixLoRA();
        var (rank, count) = MixtureOfLoraExperts.MatchRank(config, o, budget);
        var below = MixtureOfLoraExperts.CountTrainableParameters(config, MixtureOfLoraExperts.WithRank(o, rank - 1));
        var above = MixtureOfLoraExperts.CountTrainableParameters(config, MixtureOfLoraExperts.WithRank(o, rank + 1));
        Assert.Equal(count, MixtureOfLoraExperts.CountTrainableParameters(config, MixtureOfLoraExperts.WithRank(o, rank)));
        Assert.True(Math.Abs(count - budget) <= Math.Abs(below - budget) && Math.Abs(count - budget) <= Math.Abs(above - budget),
            $"rank {rank} gives {count}; {rank - 1} gives {below}, {rank + 1} gives {above}; budget {budget}");
        var all = MixtureOfLoraExperts.PresetsMatchedTo(config, budget);
        Assert.Equal(MixtureOfLoraExpertsOptions.Presets.Count, all.Count);
        foreach (var (preset, r, n, opts) in all)
        {
            Assert.Equal(n, MixtureOfLoraExperts.CountTrainableParameters(config, opts));
            if (preset.Name != "pesc") Assert.Equal(r, opts.R);
        }
    }
}
