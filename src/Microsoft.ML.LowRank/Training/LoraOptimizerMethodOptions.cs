using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Training;

/// <summary>
/// Base of the LoRA methods that differ from LoRA only in how the factors are optimized (LoRA-FA, LoRA-Pro,
/// LoRA-RITE): the layers, initialisation, merge and saved weights are plain LoRA (<see cref="LoraLayer"/>), the
/// saved <c>adapter_config.json</c> is a PEFT LoRA config (<c>peft_type</c> "LORA", so PEFT loads the adapter as a
/// LoRA) with one extra key, <c>lowrank_method</c>, naming the method, plus the method's optimizer settings under
/// keys prefixed with the method name (PEFT drops unknown keys with a warning). When a <see cref="Trainer"/> is built
/// on a <see cref="LowRankModel"/> holding such an adapter, the method installs its optimizer as
/// <see cref="TrainerOptions.OptimizerFactory"/>, over the pairs (<see cref="LoraPairs.Find"/>) of every adapter of the
/// model with this method; the trainer's learning rate, betas and weight decay (and LoRA+ ratio, through the groups)
/// apply, the method's own ε replaces <see cref="TrainerOptions.Epsilon"/>.
/// </summary>
public abstract class LoraOptimizerMethodOptions : LoraOptions, IAdapterTrainingMethod
{
    /// <summary>The <c>adapter_config.json</c> key naming the method ("lorafa", "lorapro", "lorarite").</summary>
    public const string MethodKey = "lowrank_method";

    /// <summary>The method's registry name, also written under <see cref="MethodKey"/>.</summary>
    public abstract string MethodName { get; }

    /// <summary>Creates the method's optimizer for a trainer.</summary>
    /// <param name="groups">The trainer's parameter groups (learning rate and weight decay set).</param>
    /// <param name="pairs">The LoRA pairs of every adapter of the model with this method.</param>
    /// <param name="options">The trainer's options (β1, β2 and the base learning rate are read from them).</param>
    /// <returns>The optimizer.</returns>
    public abstract optim.Optimizer CreateOptimizer(IReadOnlyList<optim.ParamGroup> groups, IReadOnlyList<optim.LoraPair> pairs, TrainerOptions options);

    /// <inheritdoc/>
    public override bool Accepts(JsonObject config)
        => base.Accepts(config) && config[MethodKey] is JsonValue v && v.TryGetValue<string>(out var s) && s == MethodName;

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o[MethodKey] = MethodName;
    }

    /// <summary>Installs the method's optimizer factory when the adapter is active (once per trainer, however many active
    /// adapters use the method; the settings of the first one apply).</summary>
    /// <param name="setup">The trainer being built.</param>
    /// <exception cref="InvalidOperationException">The trainer already has another optimizer factory (set by the user or by
    /// another method).</exception>
    public void ConfigureTraining(AdapterTrainingSetup setup)
    {
        ArgumentNullException.ThrowIfNull(setup);
        if (!setup.Model.ActiveAdapters.Contains(setup.AdapterName)) return; // an inactive adapter does not train
        var current = setup.Options.OptimizerFactory;
        if (current?.Target is Installed installed && installed.Method == MethodName) return;
        if (current is not null)
            throw new InvalidOperationException($"adapter '{setup.AdapterName}' ({MethodName}) installs its own optimizer, but TrainerOptions.OptimizerFactory " +
                "is already set (by you or by another adapter's method); leave it null, or build the optimizer yourself (torch.optim." +
                $"{OptimizerFactoryName}(groups, LoraPairs.Find(model), ...)) and use plain LoRA options");
        var model = setup.Model;
        var type = GetType();
        setup.Options.OptimizerFactory = new Installed(MethodName, (groups, o) =>
        {
            var adapters = model.AdapterNames.Where(n => model.PeftConfig[n].GetType() == type);
            return CreateOptimizer(groups, LoraPairs.Find(model, adapters), o);
        }).Create;
    }

    /// <summary>The name of the method's <c>torch.optim</c> factory (for messages).</summary>
    protected abstract string OptimizerFactoryName { get; }

    /// <summary>A number field of the config, or <paramref name="fallback"/>.</summary>
    /// <param name="o">The config.</param>
    /// <param name="name">The key.</param>
    /// <param name="fallback">The value when absent.</param>
    /// <returns>The value.</returns>
    protected static double NumOr(JsonObject o, string name, double fallback) => Num(o, name) ?? fallback;

    private sealed class Installed(string method, Func<IReadOnlyList<optim.ParamGroup>, TrainerOptions, optim.Optimizer> create)
    {
        public string Method { get; } = method;

        public optim.Optimizer Create(IReadOnlyList<optim.ParamGroup> groups, TrainerOptions options) => create(groups, options);
    }
}
