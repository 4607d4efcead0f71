using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;

namespace Microsoft.ML.LowRank.Tests.Cli;

/// <summary><c>lowrank params --method M</c> for PeriodicLoRA, COLA, Delta-LoRA, CoTo and QLoRA on the gpt2, llama and
/// bert_cls fixtures equals methods.md §8: r·(in + out) per adapted matrix (per stage / link for PLoRA and COLA), plus
/// the classification head trained as a module to save (PEFT's SEQ_CLS rule).</summary>
[Collection(SerialCollection.Name)]
public class ScheduleMethodsCliTests
{
    private const long R = 4;

    /// <summary>(in, out) of every matrix the default targets (or all-linear) select, from the config.</summary>
    private static List<(long input, long output)> Matrices(ModelConfig c, bool allLinear)
    {
        long h = c.HiddenSize, i = c.IntermediateSize, layers = c.NumHiddenLayers;
        var perLayer = new List<(long, long)>();
        switch (c.ModelType)
        {
            case "gpt2":
                long inner = c.IntermediateSize > 0 ? c.IntermediateSize : 4 * h;
                perLayer.Add((h, 3 * h)); // c_attn (the default target)
                if (allLinear) perLayer.AddRange(new[] { (h, h), (h, inner), (inner, h) });
                break;
            case "llama":
                long q = c.NumAttentionHeads * c.HeadDim, kv = c.NumKeyValueHeads * c.HeadDim;
                perLayer.Add((h, q)); // q_proj
                perLayer.Add((h, kv)); // v_proj
                if (allLinear) perLayer.AddRange(new[] { (h, kv), (q, h), (h, i), (h, i), (i, h) });
                break;
            case "bert":
                perLayer.Add((h, h)); // query
                perLayer.Add((h, h)); // value
                if (allLinear) perLayer.AddRange(new[] { (h, h), (h, h), (h, i), (i, h) });
                break;
            default: throw new ArgumentException(c.ModelType);
        }
        var all = Enumerable.Range(0, (int)layers).SelectMany(_ => perLayer).ToList();
        if (allLinear && c.ModelType == "bert") all.Add((h, h)); // pooler.dense
        return all;
    }

    private static long Expected(string fixture, bool allLinear)
    {
        var c = ModelConfig.FromFile(Repo.Fixture("models", fixture));
        long lora = Matrices(c, allLinear).Sum(m => R * (m.input + m.output));
        long head = c.ModelType == "bert" ? c.HiddenSize * c.NumLabels + c.NumLabels : 0; // classifier, trained and saved
        return lora + head;
    }

    private static JsonNode Params(string fixture, params string[] extra)
    {
        var (code, output, err) = CliTests.Run(new[] { "params", Repo.Fixture("models", fixture), "--rank", R.ToString(), "--json" }.Concat(extra).ToArray());
        Assert.True(code == 0, err);
        return JsonNode.Parse(output)!;
    }

    public static TheoryData<string, string> Cases()
    {
        var d = new TheoryData<string, string>();
        foreach (var m in new[] { "plora", "cola", "deltalora", "coto", "qlora" })
            foreach (var f in new[] { "gpt2", "llama", "bert_cls" }) d.Add(m, f);
        return d;
    }

    [Theory, MemberData(nameof(Cases))]
    public void TrainableCountsFollowTheFormula(string method, string fixture)
    {
        bool allLinear = method == "qlora"; // QLoRA's default targets every block linear
        Assert.Equal(Expected(fixture, allLinear), Params(fixture, "--method", method)["trainable"]!.GetValue<long>());
        if (method == "qlora")
        {
            // A packed 4-bit weight counts as its elements (PEFT's Params4bit rule): the total equals LoRA's on the same targets.
            var lora = Params(fixture, "--method", "lora", "--targets", "all-linear");
            Assert.Equal(lora["total"]!.GetValue<long>(), Params(fixture, "--method", "qlora")["total"]!.GetValue<long>());
        }
    }

    [Fact]
    public void MethodSettingsAreSetByTheirConfigNames()
    {
        var o = Params("llama", "--method", "plora", "--set", "plora_stage_steps=5", "--set", "plora_unload_ratio=0.5", "--set", "stage_lr_schedule=per_stage");
        Assert.Equal(Expected("llama", false), o["trainable"]!.GetValue<long>());
        var (code, _, err) = CliTests.Run("params", Repo.Fixture("models", "llama"), "--method", "cola", "--set", "cola_chain_length=0");
        Assert.Equal(1, code);
        Assert.Contains("cola_chain_length", err);
        (code, _, err) = CliTests.Run("params", Repo.Fixture("models", "llama"), "--method", "deltalora", "--dropout", "0.1");
        Assert.Equal(1, code);
        Assert.Contains("lora_dropout", err);
        (code, var listing, _) = CliTests.Run("methods");
        Assert.Equal(0, code);
        foreach (var m in new[] { "plora", "cola", "deltalora", "coto", "qlora" }) Assert.Contains(m, listing);
    }
}
