using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Torch.Modules;

/// <summary>
/// A module that can evaluate itself together with sibling projections of the same input in one fused call (for
/// example LoRA layers on q/k/v or gate/up; see <see cref="torch.nn.functional.lora_linear_shared"/>).
/// </summary>
public interface ISharedInputProjection
{
    /// <summary>All the outputs of <paramref name="group"/> (which starts with this module) for one input, or null when
    /// the group cannot be fused now (the caller then calls each module).</summary>
    /// <param name="input">The shared input.</param>
    /// <param name="group">The projections, in output order.</param>
    /// <returns>One output per module, or null.</returns>
    Tensor[]? TryForwardShared(Tensor input, IReadOnlyList<nn.Module<Tensor, Tensor>> group);
}

/// <summary>Runs several projections of one input, fused where the modules allow it (<see cref="ISharedInputProjection"/>).</summary>
public static class SharedInputProjections
{
    /// <summary>The outputs of <paramref name="modules"/> for <paramref name="input"/>: one fused call when the first
    /// module implements <see cref="ISharedInputProjection"/> and accepts the group, else one call per module.</summary>
    /// <param name="input">The shared input.</param>
    /// <param name="modules">The projections.</param>
    /// <returns>One output per module.</returns>
    public static Tensor[] Forward(Tensor input, params nn.Module<Tensor, Tensor>[] modules)
    {
        ArgumentNullException.ThrowIfNull(modules);
        if (modules.Length > 1 && modules[0] is ISharedInputProjection fused && fused.TryForwardShared(input, modules) is { } outputs)
            return outputs;
        var result = new Tensor[modules.Length];
        for (int i = 0; i < modules.Length; i++) result[i] = modules[i].call(input);
        return result;
    }
}
