using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Training;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.Coto;

/// <summary>
/// The training hook of <see cref="CotoOptions"/>: draws which layer groups are active (at train begin with p0, then
/// after every optimizer step with p(t)) and sets <see cref="AdapterLayer.SkipAdaptersInTraining"/> on the layers of the
/// inactive groups; clears every flag when training ends. Its checkpoint state holds the generator and the current draw.
/// </summary>
public sealed class CotoHook : ITrainingHook, IDisposable
{
    private readonly CotoOptions _options;
    private readonly List<(string key, List<AdapterLayer> layers)> _groups;
    private Generator? _generator;
    private bool[] _active;
    private bool _restored;

    internal CotoHook(LowRankModel model, string adapterName, CotoOptions options)
    {
        _options = options;
        _groups = Groups(model, adapterName);
        if (_groups.Count == 0) throw new InvalidOperationException($"CoTo: no adapter layer holds adapter '{adapterName}'");
        _active = Enumerable.Repeat(true, _groups.Count).ToArray();
    }

    /// <summary>The layer groups of an adapter: one per transformer block (the module name up to its first numeric
    /// segment, e.g. "model.layers.3"), a layer outside any block alone; in model order.</summary>
    /// <param name="model">The model.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>(group key, layers) pairs.</returns>
    public static List<(string key, List<AdapterLayer> layers)> Groups(LowRankModel model, string adapterName)
    {
        ArgumentNullException.ThrowIfNull(model);
        var groups = new List<(string key, List<AdapterLayer> layers)>();
        foreach (var (path, layer) in model.AdapterLayers())
        {
            if (!layer.HasAdapter(adapterName)) continue;
            var parts = path.Split('.');
            int idx = Array.FindIndex(parts, p => p.Length > 0 && p.All(char.IsAsciiDigit));
            var key = idx >= 0 ? string.Join('.', parts.Take(idx + 1)) : path;
            var g = groups.FindIndex(x => x.key == key);
            if (g < 0) groups.Add((key, new List<AdapterLayer> { layer }));
            else groups[g].layers.Add(layer);
        }
        return groups;
    }

    /// <summary>The group keys, in order.</summary>
    public IReadOnlyList<string> GroupKeys => _groups.Select(g => g.key).ToList();

    /// <summary>Which groups are active for the next training step.</summary>
    public IReadOnlyList<bool> ActiveGroups => _active;

    /// <summary>The seed of the hook's generator for a trainer seed.</summary>
    /// <param name="trainerSeed"><see cref="TrainerOptions.Seed"/>.</param>
    /// <returns>The seed.</returns>
    public static ulong SeedOf(int trainerSeed) => unchecked((ulong)(uint)trainerSeed * 0x9E3779B97F4A7C15UL + 0x436F546FUL);

    /// <summary>One draw: u ~ U(0, 1) per group (float32, from <paramref name="generator"/>), active iff u ≤ p, repeated until
    /// at least one group is active.</summary>
    /// <param name="groups">Number of groups.</param>
    /// <param name="p">The activation probability (&gt; 0).</param>
    /// <param name="generator">The generator.</param>
    /// <returns>The active flags.</returns>
    public static bool[] Draw(int groups, double p, Generator generator)
    {
        if (!(p > 0)) throw new ArgumentOutOfRangeException(nameof(p), p, "the activation probability must be > 0");
        while (true)
        {
            using var u = rand(new long[] { groups }, ScalarType.Float32, generator: generator);
            var values = u.ToArray<float>();
            var active = values.Select(v => v <= p).ToArray();
            if (active.Any(a => a)) return active;
        }
    }

    private void Apply()
    {
        for (int g = 0; g < _groups.Count; g++)
            foreach (var layer in _groups[g].layers) layer.SkipAdaptersInTraining = !_active[g];
    }

    /// <inheritdoc/>
    public void OnTrainBegin(TrainingContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (!_restored)
        {
            _generator?.Dispose();
            _generator = new Generator(SeedOf(context.Options.Seed));
            _active = Draw(_groups.Count, _options.Probability(context.GlobalStep, context.TotalSteps), _generator);
        }
        Apply();
    }

    /// <inheritdoc/>
    public void AfterOptimizerStep(TrainingContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        _generator ??= new Generator(SeedOf(context.Options.Seed));
        _active = Draw(_groups.Count, _options.Probability(context.Step, context.TotalSteps), _generator);
        Apply();
    }

    /// <summary>Clears every layer's skip flag (after training every layer is active again) and frees the generator.</summary>
    /// <param name="context">The training context.</param>
    public void OnTrainEnd(TrainingContext context)
    {
        foreach (var (_, layers) in _groups)
            foreach (var layer in layers) layer.SkipAdaptersInTraining = false;
        Dispose();
    }

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor>? GetState()
    {
        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            ["active"] = tensor(_active.Select(a => a ? (byte)1 : (byte)0).ToArray()),
        };
        if (_generator is not null) state["generator"] = _generator.get_state();
        return state;
    }

    /// <inheritdoc/>
    public void SetState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (!state.TryGetValue("active", out var a) || !state.TryGetValue("generator", out var g))
            throw new InvalidDataException("the checkpoint's CoTo state is incomplete (active groups and generator expected)");
        byte[] flags;
        using (var bytes = a.to_type(ScalarType.Byte)) flags = bytes.ToArray<byte>();
        if (flags.Length != _groups.Count)
            throw new InvalidDataException($"the checkpoint's CoTo state has {flags.Length} layer groups, the model {_groups.Count}");
        _active = flags.Select(f => f != 0).ToArray();
        _generator ??= new Generator();
        _generator.set_state(g);
        _restored = true;
    }

    /// <summary>Frees the generator.</summary>
    public void Dispose()
    {
        _generator?.Dispose();
        _generator = null;
    }
}
