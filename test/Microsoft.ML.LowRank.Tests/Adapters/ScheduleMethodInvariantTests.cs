using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Cola;
using Microsoft.ML.LowRank.Adapters.Coto;
using Microsoft.ML.LowRank.Adapters.DeltaLora;
using Microsoft.ML.LowRank.Adapters.PeriodicLora;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>
/// The schedule methods (PeriodicLoRA, COLA, Delta-LoRA, CoTo) through design.md's six invariants. Their forward is
/// LoRA's, so the float64 reference is <see cref="LoraReference"/>; the fixture's training-step check (4) takes a plain
/// SGD step without the trainer's hooks, so it checks the forward/backward path only: the base-weight writes these
/// methods do by design (invariant 4's documented exception) and CoTo's layer drop are checked in their own training
/// tests.
/// </summary>
public static class ScheduleCases
{
    private static readonly LoraReference s_ref = new();

    public static readonly AdapterCase PLora = new()
    {
        Name = "plora",
        Options = () => new PeriodicLoraOptions { R = 4, LoraAlpha = 8, LoraDropout = 0.1, StageSteps = 3 },
        Reference = s_ref,
    };

    public static readonly AdapterCase PLoraMomentum = new()
    {
        Name = "plora_momentum",
        Options = () => new PeriodicLoraOptions { R = 4, LoraAlpha = 8, StageSteps = 1, UnloadRatio = 0.1, TargetModules = ModuleSelector.AllLinear },
        Reference = s_ref,
    };

    public static readonly AdapterCase Cola = new()
    {
        Name = "cola",
        Options = () => new ColaOptions { R = 2, LoraAlpha = 4, ChainLength = 3, UseRsLora = true, TargetModules = ModuleSelector.AllLinear },
        Reference = s_ref,
    };

    public static readonly AdapterCase DeltaLora = new()
    {
        Name = "deltalora",
        Options = () => new DeltaLoraOptions { R = 4, LoraAlpha = 8, UpdateRatio = 2, StartStep = 0 },
        Reference = s_ref,
    };

    public static readonly AdapterCase Coto = new()
    {
        Name = "coto",
        Options = () => new CotoOptions { R = 4, LoraAlpha = 8, InitialProbability = 0.1, TargetModules = ModuleSelector.AllLinear },
        Reference = s_ref,
    };

    public static readonly AdapterCase[] All = { PLora, PLoraMomentum, Cola, DeltaLora, Coto };

    public static AdapterCase Get(string name) => All.Single(c => c.Name == name);

    public static TheoryData<string, string> Matrix()
    {
        var d = new TheoryData<string, string>();
        foreach (var c in All)
            foreach (var f in AdapterInvariants.Fixtures) d.Add(c.Name, f);
        return d;
    }
}

/// <summary>design.md's six invariants for PeriodicLoRA (full and momentum unloading), COLA, Delta-LoRA and CoTo on the
/// gpt2 (Conv1D), llama_gqa and bert_cls (modules_to_save) fixtures.</summary>
public class ScheduleMethodInvariantTests
{
    public static TheoryData<string, string> Matrix => ScheduleCases.Matrix();

    [Theory, MemberData(nameof(Matrix))]
    public void InitEqualsBase(string method, string fixture) => AdapterInvariants.InitEqualsBase(ScheduleCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void MergeEqualsUnmergedAndUnmergeRestores(string method, string fixture) => AdapterInvariants.MergeEqualsUnmerged(ScheduleCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void DisableEqualsBase(string method, string fixture) => AdapterInvariants.DisableEqualsBase(ScheduleCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void TrainingStepChangesOnlyAdapterParameters(string method, string fixture) => AdapterInvariants.TrainingStepTouchesOnlyAdapters(ScheduleCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void SaveLoadGivesIdenticalOutputs(string method, string fixture) => AdapterInvariants.SaveLoadRoundTrip(ScheduleCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void LayerForwardAndGradientsMatchFloat64Formula(string method, string fixture) => AdapterInvariants.LayerMatchesFormula(ScheduleCases.Get(method), fixture);
}
