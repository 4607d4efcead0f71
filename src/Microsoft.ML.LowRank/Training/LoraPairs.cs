using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Training;

/// <summary>
/// Finds the (A, B, s) factor pairs of the LoRA adapters of a model for the pair optimizers (<see cref="optim.LoraFA"/>,
/// <see cref="optim.LoraPro"/>, <see cref="optim.LoraRite"/>). Pairs are matched by module: the A and B of the same
/// adapter in the same <see cref="LoraLayer"/>, with that layer's own scaling, whatever order the parameters are listed
/// in (PEFT's LoRA-FA, the LoRA-RITE port and the LoRA-Pro DeepSpeed code instead assume A directly precedes B).
/// </summary>
public static class LoraPairs
{
    /// <summary>The pairs of every LoRA layer holding one of the adapters.</summary>
    /// <param name="model">The adapted model.</param>
    /// <param name="adapterNames">The adapters (null: every adapter of the model).</param>
    /// <returns>One pair per (layer, adapter), named "module path/adapter", in model order.</returns>
    public static IReadOnlyList<optim.LoraPair> Find(LowRankModel model, IEnumerable<string>? adapterNames = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var names = (adapterNames ?? model.AdapterNames).ToList();
        var pairs = new List<optim.LoraPair>();
        foreach (var (path, layer) in model.AdapterLayers())
        {
            if (layer is not LoraLayer lora) continue;
            foreach (var a in names)
                if (lora.HasAdapter(a))
                    pairs.Add(new optim.LoraPair(lora.LoraA(a).weight, lora.LoraB(a).weight, lora.Scaling(a), $"{path}/{a}"));
        }
        return pairs;
    }
}
