using Microsoft.ML.LowRank.Adapters;

namespace Microsoft.ML.LowRank.Training;

/// <summary>
/// Implemented by adapter options whose method changes training, not only the forward pass: an optimizer of its own
/// (LoRA-FA, LoRA-Pro, LoRA-RITE, GaLore), or hooks in the loop (PeriodicLoRA, Delta-LoRA, AdaLoRA, LoRA-drop, ...).
/// A <see cref="Trainer"/> built on a <see cref="LowRankModel"/> calls <see cref="ConfigureTraining"/> once for every
/// adapter whose options implement it, before it creates the optimizer, so the method plugs into every task unchanged.
/// </summary>
public interface IAdapterTrainingMethod
{
    /// <summary>Adjusts the trainer being built: set <see cref="AdapterTrainingSetup.Options"/>'
    /// <see cref="TrainerOptions.OptimizerFactory"/>, add hooks to <see cref="AdapterTrainingSetup.Hooks"/>.</summary>
    /// <param name="setup">The model, the adapter, the trainer's own copy of the options and its hook list.</param>
    void ConfigureTraining(AdapterTrainingSetup setup);
}

/// <summary>What an <see cref="IAdapterTrainingMethod"/> may adjust while a trainer is built.</summary>
public sealed class AdapterTrainingSetup
{
    internal AdapterTrainingSetup(LowRankModel model, string adapterName, TrainerOptions options, IList<ITrainingHook> hooks)
    {
        Model = model;
        AdapterName = adapterName;
        Options = options;
        Hooks = hooks;
    }

    /// <summary>The adapted model.</summary>
    public LowRankModel Model { get; }

    /// <summary>The adapter whose options are being applied.</summary>
    public string AdapterName { get; }

    /// <summary>The trainer's own copy of its options (changes apply to this trainer only).</summary>
    public TrainerOptions Options { get; }

    /// <summary>The trainer's hooks (run in order).</summary>
    public IList<ITrainingHook> Hooks { get; }
}
