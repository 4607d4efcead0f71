using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.PeriodicLora;

/// <summary>
/// Writes updates into the frozen base weights of LoRA layers during training (PeriodicLoRA / COLA merges, Delta-LoRA's
/// per-step update). float32/float64 weights are updated in place; a float16/bfloat16 weight gets a float32 master copy
/// (made at the first update) that accumulates the updates and is cast into the weight after each one, so rounding does
/// not pile up (methods.md §9.6). The weights (or master copies) travel in the trainer's checkpoints, so a resumed run
/// continues from the same base.
/// </summary>
internal sealed class BaseWeightWriter : IDisposable
{
    private readonly (string path, LoraLayer layer)[] _layers;
    private readonly Tensor?[] _masters;

    /// <summary>Collects the LoRA layers holding <paramref name="adapterName"/>.</summary>
    public BaseWeightWriter(LowRankModel model, string adapterName, string method)
    {
        _layers = LoraLayersOf(model, adapterName);
        if (_layers.Length == 0) throw new InvalidOperationException($"{method}: no LoRA layer holds adapter '{adapterName}'");
        _masters = new Tensor?[_layers.Length];
        using var ng = no_grad();
        for (int i = 0; i < _layers.Length; i++)
        {
            var (path, layer) = _layers[i];
            if (layer.BaseLayer is QLora.QuantizedLinear)
                throw new NotSupportedException($"{method} writes into the base weight of '{path}', which is NF4-quantised; it needs a writable float base (methods.md §9.6)");
            if (layer.BaseWeight.device.type == DeviceType.META) throw new InvalidOperationException($"{method} cannot train on the meta device");
        }
    }

    private static bool IsHalf(Tensor w) => w.dtype is ScalarType.Float16 or ScalarType.BFloat16;

    /// <summary>The LoRA layers of a model holding an adapter, with their paths, in model order.</summary>
    public static (string path, LoraLayer layer)[] LoraLayersOf(LowRankModel model, string adapterName)
        => model.AdapterLayers().Where(l => l.layer is LoraLayer && l.layer.HasAdapter(adapterName)).Select(l => (l.name, (LoraLayer)l.layer)).ToArray();

    /// <summary>The layers, in model order.</summary>
    public IReadOnlyList<(string path, LoraLayer layer)> Layers => _layers;

    /// <summary>W ← W + delta for layer <paramref name="i"/>; <paramref name="delta"/> is in Linear layout [out, in].</summary>
    public void Add(int i, Tensor delta)
    {
        var (path, layer) = _layers[i];
        if (layer.Merged) throw new InvalidOperationException($"the adapters of '{path}' are merged: unmerge them before training");
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var w = layer.BaseWeight;
        var d = layer.FanInFanOut ? delta.t() : delta;
        if (IsHalf(w))
        {
            var master = _masters[i] ??= w.to_type(ScalarType.Float32, copy: true).DetachFromDisposeScope();
            master.add_(d.to_type(ScalarType.Float32));
            w.copy_(master);
        }
        else w.add_(d.dtype == w.dtype ? d : d.to_type(w.dtype));
    }

    /// <summary>Adds the weights (or their float32 master copies, once made) to a checkpoint state under <c>{prefix}{i}</c>.</summary>
    public void AddState(Dictionary<string, Tensor> state, string prefix)
    {
        for (int i = 0; i < _layers.Length; i++) state[prefix + i] = _masters[i] ?? _layers[i].layer.BaseWeight;
    }

    /// <summary>Restores what <see cref="AddState"/> saved.</summary>
    public void SetState(IReadOnlyDictionary<string, Tensor> state, string prefix)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        for (int i = 0; i < _layers.Length; i++)
        {
            if (!state.TryGetValue(prefix + i, out var saved))
                throw new InvalidDataException($"the checkpoint holds no base weight for '{_layers[i].path}' (key '{prefix}{i}'): it was written for another model or method");
            var w = _layers[i].layer.BaseWeight;
            if (!saved.shape.SequenceEqual(w.shape))
                throw new InvalidDataException($"the checkpoint's base weight for '{_layers[i].path}' has shape [{string.Join(", ", saved.shape)}], the model's [{string.Join(", ", w.shape)}]");
            _masters[i]?.Dispose();
            _masters[i] = null;
            if (IsHalf(w) && saved.dtype == ScalarType.Float32)
                _masters[i] = saved.to_type(ScalarType.Float32, copy: true).to(w.device).DetachFromDisposeScope();
            w.copy_(saved);
        }
    }

    /// <summary>Frees the master copies.</summary>
    public void Dispose()
    {
        for (int i = 0; i < _masters.Length; i++)
        {
            _masters[i]?.Dispose();
            _masters[i] = null;
        }
    }
}
