using Microsoft.ML.LowRank.Adapters.PeriodicLora;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Training;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.DeltaLora;

/// <summary>
/// The training hook of <see cref="DeltaLoraOptions"/>: after each optimizer step t &gt; K it adds
/// λ·s·(B_t·A_t − B_{t−1}·A_{t−1}) to every adapted base weight (computed in float32, float64 for a float64 base), then
/// remembers A_t, B_t. Its checkpoint state holds the previous factors and the base weights, so resume is exact.
/// </summary>
public sealed class DeltaLoraHook : ITrainingHook, IDisposable
{
    private readonly BaseWeightWriter _writer;
    private readonly string _adapter;
    private readonly double _ratio;
    private readonly int _start;
    private readonly Tensor?[] _prevA, _prevB;
    private bool _restored;

    internal DeltaLoraHook(LowRankModel model, string adapterName, double ratio, int startStep)
    {
        _writer = new BaseWeightWriter(model, adapterName, "Delta-LoRA");
        _adapter = adapterName;
        _ratio = ratio;
        _start = startStep;
        _prevA = new Tensor?[_writer.Layers.Count];
        _prevB = new Tensor?[_writer.Layers.Count];
    }

    /// <summary>Optimizer steps after which W was updated (in this run, and before a resume).</summary>
    public int Updates { get; private set; }

    /// <inheritdoc/>
    public void OnTrainBegin(TrainingContext context)
    {
        if (!_restored) Remember();
    }

    private void Remember()
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        for (int i = 0; i < _writer.Layers.Count; i++)
        {
            var layer = _writer.Layers[i].layer;
            Copy(ref _prevA[i], layer.LoraA(_adapter).weight);
            Copy(ref _prevB[i], layer.LoraB(_adapter).weight);
        }
    }

    private static void Copy(ref Tensor? slot, Tensor value)
    {
        if (slot is null) slot = value.clone().DetachFromDisposeScope();
        else slot.copy_(value);
    }

    /// <inheritdoc/>
    public void AfterOptimizerStep(TrainingContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.Step > _start)
        {
            using var scope = NewDisposeScope();
            using var ng = no_grad();
            for (int i = 0; i < _writer.Layers.Count; i++)
            {
                var layer = _writer.Layers[i].layer;
                var ct = layer.BaseType == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
                var now = layer.LoraB(_adapter).weight.to_type(ct).matmul(layer.LoraA(_adapter).weight.to_type(ct));
                var before = _prevB[i]!.to_type(ct).matmul(_prevA[i]!.to_type(ct));
                _writer.Add(i, (now - before) * (_ratio * layer.Scaling(_adapter)));
            }
            Updates++;
        }
        Remember();
    }

    /// <summary>Frees the previous factors and master copies (training is over; the base weights stay as written).</summary>
    /// <param name="context">The training context.</param>
    public void OnTrainEnd(TrainingContext context) => Dispose();

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor>? GetState()
    {
        var state = new Dictionary<string, Tensor>(StringComparer.Ordinal) { ["updates"] = tensor(new long[] { Updates }) };
        for (int i = 0; i < _prevA.Length; i++)
        {
            if (_prevA[i] is { } a) state["prev_A." + i] = a;
            if (_prevB[i] is { } b) state["prev_B." + i] = b;
        }
        _writer.AddState(state, "base.");
        return state;
    }

    /// <inheritdoc/>
    public void SetState(IReadOnlyDictionary<string, Tensor> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        _writer.SetState(state, "base.");
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        for (int i = 0; i < _prevA.Length; i++)
        {
            if (!state.TryGetValue("prev_A." + i, out var a) || !state.TryGetValue("prev_B." + i, out var b))
                throw new InvalidDataException($"the checkpoint holds no previous LoRA factors for '{_writer.Layers[i].path}'");
            var layer = _writer.Layers[i].layer;
            Copy(ref _prevA[i], a.to(layer.LoraA(_adapter).weight.device));
            Copy(ref _prevB[i], b.to(layer.LoraB(_adapter).weight.device));
        }
        Updates = state.TryGetValue("updates", out var u) ? (int)u.ToInt64() : 0;
        _restored = true;
    }

    /// <summary>Frees the previous factors and any float32 master copies.</summary>
    public void Dispose()
    {
        _writer.Dispose();
        for (int i = 0; i < _prevA.Length; i++)
        {
            _prevA[i]?.Dispose();
            _prevB[i]?.Dispose();
            _prevA[i] = _prevB[i] = null;
        }
    }
}
