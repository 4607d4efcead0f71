using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Mixture;

namespace Microsoft.ML.LowRank.Tests.Adapters.Mixture;

/// <summary>The mixture-of-experts presets run through <see cref="AdapterInvariants"/> (small expert counts and ranks so
/// the finite-difference check stays fast; dropout off so training-mode steps are deterministic enough).</summary>
public static class MixtureCases
{
    private static readonly MixtureReference s_ref = new();

    private static MixtureOfLoraExpertsOptions Small(MixtureOfLoraExpertsOptions o)
    {
        o.LoraDropout = 0;
        o.AdapterDropout = 0;
        return o;
    }

    /// <summary>(case, options, the checks it skips with the reason).</summary>
    public static readonly (AdapterCase c, string[] skip)[] All =
    {
        // MixLoRA: the first adapter layer is an attention projection with a plain LoRA; the FFN blocks hold the experts.
        (new AdapterCase { Name = "mixlora", Options = () => Small(MixtureOfLoraExpertsOptions.MixLoRA(numExperts: 4, topK: 2, r: 4, alpha: 8)), Reference = s_ref, Mergeable = false }, Array.Empty<string>()),
        (new AdapterCase { Name = "loramoe", Options = () => Small(MixtureOfLoraExpertsOptions.LoRAMoE(numExperts: 4, r: 2, alpha: 8)), Reference = s_ref, Mergeable = false }, Array.Empty<string>()),
        (new AdapterCase { Name = "mola", Options = () => Small(MixtureOfLoraExpertsOptions.MoLA(MolaAllocation.InvertedTriangle, r: 2, alpha: 4)), Reference = s_ref, Mergeable = false }, Array.Empty<string>()),
        (new AdapterCase { Name = "moelora", Options = () => Small(MixtureOfLoraExpertsOptions.MoELoRA(numExperts: 4, r: 2)), Reference = s_ref, Mergeable = false }, Array.Empty<string>()),
        (new AdapterCase { Name = "sira", Options = () => Small(MixtureOfLoraExpertsOptions.SiRA(numExperts: 4, r: 2)), Reference = s_ref, Mergeable = false }, Array.Empty<string>()),
        (new AdapterCase { Name = "mole", Options = MoleOptions, Reference = s_ref, Mergeable = false, Build = BuildMole, CheckInit = CheckMoleInit }, Array.Empty<string>()),
        (new AdapterCase { Name = "adamix", Options = () => Small(MixtureOfLoraExpertsOptions.AdaMix(numExperts: 3, r: 4)), Reference = s_ref, Mergeable = true }, Array.Empty<string>()),
        (new AdapterCase { Name = "mosa", Options = () => Small(MixtureOfLoraExpertsOptions.MoSA(numSlices: 2, r: 4)), Reference = s_ref, Mergeable = true }, Array.Empty<string>()),
        // PESC's first adapter layer only holds the block router, used by the block (tested in MixtureFeedForwardTests).
        (new AdapterCase { Name = "pesc", Options = () => Small(MixtureOfLoraExpertsOptions.PESC(numExperts: 4, topK: 2, adapterDim: 4)), Reference = s_ref, Mergeable = false }, new[] { "formula" }),
        // One routing decision per sequence (2 sequences, top-9 of 15): most experts get no example in one step.
        (new AdapterCase { Name = "mlore", Options = () => Small(MixtureOfLoraExpertsOptions.MLoRE()), Reference = s_ref, Mergeable = false }, new[] { "train", "formula" }),
    };

    private static MixtureOfLoraExpertsOptions MoleOptions() => Small(MixtureOfLoraExpertsOptions.MOLE(numLoras: 3, r: 2));

    /// <summary>MOLE's experts are frozen, already-trained LoRAs: give them values (the gate is what trains).</summary>
    private static LowRankModel BuildMole(Microsoft.ML.LowRank.Models.PretrainedModel model)
    {
        var lm = LowRankModel.Create(model, MoleOptions());
        using var g = new Microsoft.ML.LowRank.Torch.torch.Generator(5);
        using var scope = Microsoft.ML.LowRank.Torch.torch.NewDisposeScope();
        using var ng = Microsoft.ML.LowRank.Torch.torch.no_grad();
        foreach (var (n, p) in lm.named_parameters())
            if (n.Contains(".lora_A.", StringComparison.Ordinal) || n.Contains(".lora_B.", StringComparison.Ordinal))
            {
                Assert.False(p.requires_grad, $"{n}: MOLE's experts must be frozen");
                p.copy_(Microsoft.ML.LowRank.Torch.torch.randn(p.shape, p.dtype, p.device, generator: g) * 0.1);
            }
        return lm;
    }

    /// <summary>With zero-initialised (not yet imported) experts the model equals the base.</summary>
    private static void CheckMoleInit(AdapterFixture f, LowRankModel built, float[] baseOut)
    {
        using var lm = LowRankModel.Create(f.LoadModel(), MoleOptions());
        lm.eval();
        AdapterInvariants.AssertIdentical(baseOut, f.Logits(lm), "mole init vs base");
        Assert.True(lm.GetNbTrainableParameters().trainable > 0);
    }

    public static AdapterCase Get(string name) => All.Single(c => c.c.Name == name).c;

    public static TheoryData<string, string> Matrix(string check)
    {
        var d = new TheoryData<string, string>();
        foreach (var (c, skip) in All)
        {
            if (skip.Contains(check)) continue;
            // The float64 formula check uses finite differences over every parameter: llama_gqa for every preset, GPT-2's
            // Conv1D (transposed base weight) for one token-routed and one parameter-space preset.
            if (check == "formula")
            {
                d.Add(c.Name, "llama_gqa");
                if (c.Name is "mola" or "mosa") d.Add(c.Name, "gpt2");
                continue;
            }
            foreach (var f in new[] { "gpt2", "llama_gqa" }) d.Add(c.Name, f);
            if (c.Name is "loramoe" or "mola" or "sira" or "adamix" && check != "train") d.Add(c.Name, "bert_cls");
        }
        return d;
    }
}

/// <summary>design.md's invariants for the mixture-of-LoRA-experts presets: zero-initialised experts give the base output,
/// disable gives the base output, a training step changes only adapter and router parameters, save → load (PEFT layout,
/// with the preset and per-layer expert counts recorded) gives identical outputs, the first adapted layer matches the
/// float64 formula, and the mergeable presets (AdaMix, MoSA) merge exactly.</summary>
public class MixtureInvariantTests
{
    public static TheoryData<string, string> Init => MixtureCases.Matrix("init");
    public static TheoryData<string, string> Disable => MixtureCases.Matrix("disable");
    public static TheoryData<string, string> Train => MixtureCases.Matrix("train");
    public static TheoryData<string, string> Save => MixtureCases.Matrix("save");
    public static TheoryData<string, string> Formula => MixtureCases.Matrix("formula");

    [Theory, MemberData(nameof(Init))]
    public void ZeroInitialisedExpertsGiveTheBaseOutput(string method, string fixture) => AdapterInvariants.InitEqualsBase(MixtureCases.Get(method), fixture);

    [Theory, MemberData(nameof(Disable))]
    public void DisableGivesTheBaseOutput(string method, string fixture) => AdapterInvariants.DisableEqualsBase(MixtureCases.Get(method), fixture);

    [Theory, MemberData(nameof(Train))]
    public void TrainingStepChangesOnlyAdapterAndRouterParameters(string method, string fixture) => AdapterInvariants.TrainingStepTouchesOnlyAdapters(MixtureCases.Get(method), fixture);

    [Theory, MemberData(nameof(Save))]
    public void SaveLoadGivesIdenticalOutputs(string method, string fixture) => AdapterInvariants.SaveLoadRoundTrip(MixtureCases.Get(method), fixture);

    [Theory, MemberData(nameof(Formula))]
    public void FirstLayerMatchesFloat64Formula(string method, string fixture) => AdapterInvariants.LayerMatchesFormula(MixtureCases.Get(method), fixture);

    [Theory]
    [InlineData("adamix", "gpt2")]
    [InlineData("adamix", "llama_gqa")]
    [InlineData("mosa", "gpt2")]
    [InlineData("mosa", "llama_gqa")]
    public void MergeablePresetsMergeExactly(string method, string fixture) => AdapterInvariants.MergeEqualsUnmerged(MixtureCases.Get(method), fixture);
}
