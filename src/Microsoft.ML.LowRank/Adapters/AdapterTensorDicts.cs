using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters;

/// <summary>
/// A module holding one parameter per adapter, registered under the adapter's name (PyTorch's ParameterDict as PEFT
/// uses it for VeRA's <c>vera_lambda_b</c>), so the state-dict key is <c>vera_lambda_b.default</c> and PEFT's file key
/// <c>vera_lambda_b</c>.
/// </summary>
public sealed class AdapterParameterDict : nn.Module
{
    private readonly Dictionary<string, nn.Parameter> _items = new(StringComparer.Ordinal);

    /// <summary>Creates an empty dictionary.</summary>
    public AdapterParameterDict() : base("ParameterDict") { }

    /// <summary>Adds (or replaces, disposing the old one) the parameter of an adapter.</summary>
    /// <param name="adapterName">The adapter name (no dots).</param>
    /// <param name="parameter">The parameter (owned by this module from now on).</param>
    /// <returns>The parameter.</returns>
    public nn.Parameter Add(string adapterName, nn.Parameter parameter)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        register_parameter(adapterName, parameter);
        _items[adapterName] = parameter;
        return parameter;
    }

    /// <summary>The parameter of an adapter.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <returns>The parameter.</returns>
    public nn.Parameter this[string adapterName] => _items.TryGetValue(adapterName, out var p) ? p
        : throw new KeyNotFoundException($"no adapter '{adapterName}' here (adapters: {string.Join(", ", _items.Keys)})");

    /// <summary>Removes and disposes the parameter of an adapter (no-op when absent).</summary>
    /// <param name="adapterName">The adapter name.</param>
    public void Remove(string adapterName)
    {
        if (!_items.Remove(adapterName)) return;
        register_parameter(adapterName, null);
    }
}

/// <summary>A module holding one buffer per adapter, registered under the adapter's name (PEFT's BufferDict).</summary>
public sealed class AdapterBufferDict : nn.Module
{
    private readonly Dictionary<string, Tensor> _items = new(StringComparer.Ordinal);

    /// <summary>Creates an empty dictionary.</summary>
    public AdapterBufferDict() : base("BufferDict") { }

    /// <summary>Adds (or replaces, disposing the old one) the buffer of an adapter.</summary>
    /// <param name="adapterName">The adapter name (no dots).</param>
    /// <param name="buffer">The buffer (owned by this module from now on).</param>
    /// <param name="persistent">Whether it is part of the state dict.</param>
    /// <returns>The buffer.</returns>
    public Tensor Add(string adapterName, Tensor buffer, bool persistent = true)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        register_buffer(adapterName, buffer, persistent);
        _items[adapterName] = buffer;
        return buffer;
    }

    /// <summary>The buffer of an adapter.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <returns>The buffer.</returns>
    public Tensor this[string adapterName] => _items.TryGetValue(adapterName, out var b) ? b
        : throw new KeyNotFoundException($"no adapter '{adapterName}' here (adapters: {string.Join(", ", _items.Keys)})");

    /// <summary>Whether an adapter has a buffer here.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <returns>True when present.</returns>
    public bool ContainsKey(string adapterName) => _items.ContainsKey(adapterName);

    /// <summary>The adapters with a buffer here.</summary>
    public IEnumerable<string> Keys => _items.Keys;

    /// <summary>Removes and disposes the buffer of an adapter (no-op when absent).</summary>
    /// <param name="adapterName">The adapter name.</param>
    public void Remove(string adapterName)
    {
        if (!_items.Remove(adapterName)) return;
        register_buffer(adapterName, null);
    }
}

/// <summary>
/// Tensors an adapter method shares across all of its layers, one per adapter (VeRA's frozen random projections), held
/// by the <see cref="LowRankModel"/> next to the model (see <see cref="LowRankModel.RegisterSharedModule"/>): the in-memory
/// key is <c>base_model.&lt;name&gt;.&lt;adapter&gt;</c> and the file key <c>base_model.&lt;name&gt;</c>, as in PEFT. An
/// entry registered as not persistent is neither saved nor expected when loading.
/// </summary>
public sealed class SharedAdapterTensors : nn.Module, IAdapterModule
{
    private readonly Dictionary<string, (Tensor tensor, bool persistent)> _items = new(StringComparer.Ordinal);
    private readonly List<string> _order = new();
    private List<string> _active = new();

    /// <summary>Creates an empty holder.</summary>
    public SharedAdapterTensors() : base("BufferDict") { }

    /// <summary>Sets (or replaces, disposing the old one) the shared tensor of an adapter (a buffer named after it).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="tensor">The tensor (owned from now on).</param>
    /// <param name="persistent">Whether it is saved with the adapter.</param>
    /// <returns>The tensor.</returns>
    public Tensor Set(string adapterName, Tensor tensor, bool persistent)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        register_buffer(adapterName, tensor, persistent);
        _items[adapterName] = (tensor, persistent);
        if (!_order.Contains(adapterName)) _order.Add(adapterName);
        return tensor;
    }

    /// <summary>The shared tensor of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The tensor.</returns>
    public Tensor this[string adapterName] => _items.TryGetValue(adapterName, out var e) ? e.tensor
        : throw new KeyNotFoundException($"no shared tensor for adapter '{adapterName}' (adapters: {string.Join(", ", _order)})");

    /// <summary>Whether an adapter has a tensor here.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>True when present.</returns>
    public bool Contains(string adapterName) => _items.ContainsKey(adapterName);

    /// <summary>Whether the adapter's tensor is saved with it.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>True when persistent.</returns>
    public bool IsPersistent(string adapterName) => _items.TryGetValue(adapterName, out var e) && e.persistent;

    /// <inheritdoc/>
    public IReadOnlyList<string> AdapterNames => _order;

    /// <inheritdoc/>
    public IReadOnlyList<string> ActiveAdapters => _active;

    /// <inheritdoc/>
    public void SetActiveAdapters(IReadOnlyList<string> adapterNames)
    {
        ArgumentNullException.ThrowIfNull(adapterNames);
        _active = adapterNames.ToList();
    }

    /// <inheritdoc/>
    public bool AdaptersDisabled { get; set; }

    /// <inheritdoc/>
    public IReadOnlyList<string>? MixedBatchAdapterNames { get; set; }

    /// <inheritdoc/>
    public void DeleteAdapter(string adapterName)
    {
        if (!_items.Remove(adapterName)) return;
        register_buffer(adapterName, null);
        _order.Remove(adapterName);
        _active.Remove(adapterName);
    }

    /// <inheritdoc/>
    public IEnumerable<(string name, nn.Parameter parameter)> AdapterParameters(string adapterName) => Array.Empty<(string, nn.Parameter)>();

    /// <inheritdoc/>
    public IEnumerable<(string key, Tensor value)> AdapterStateDict(string adapterName)
    {
        if (_items.TryGetValue(adapterName, out var e) && e.persistent) yield return ("", e.tensor.alias());
    }
}
