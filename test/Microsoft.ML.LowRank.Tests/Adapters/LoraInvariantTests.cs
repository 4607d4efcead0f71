namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>design.md's six invariants for LoRA, rsLoRA, gaussian init, PiSSA (full and fast SVD), OLoRA and a
/// two-adapter weighted combination, on the gpt2 (Conv1D), llama_gqa and bert_cls (modules_to_save) fixtures.</summary>
[Collection(Helpers.SerialCollection.Name)]
public class LoraInvariantTests
{
    public static TheoryData<string, string> Matrix => LoraCases.Matrix();

    [Theory, MemberData(nameof(Matrix))]
    public void InitEqualsBase(string method, string fixture) => AdapterInvariants.InitEqualsBase(LoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void MergeEqualsUnmergedAndUnmergeRestores(string method, string fixture) => AdapterInvariants.MergeEqualsUnmerged(LoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void DisableEqualsBase(string method, string fixture) => AdapterInvariants.DisableEqualsBase(LoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void TrainingStepChangesOnlyAdapterParameters(string method, string fixture) => AdapterInvariants.TrainingStepTouchesOnlyAdapters(LoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void SaveLoadGivesIdenticalOutputs(string method, string fixture) => AdapterInvariants.SaveLoadRoundTrip(LoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void LayerForwardAndGradientsMatchFloat64Formula(string method, string fixture) => AdapterInvariants.LayerMatchesFormula(LoraCases.Get(method), fixture);
}
