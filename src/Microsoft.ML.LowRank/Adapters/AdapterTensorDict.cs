using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Adapters;

/// <summary>What an <see cref="AdapterTensorDict"/> holds.</summary>
public enum AdapterTensorKind
{
    /// <summary>Parameters (PyTorch's ParameterDict as PEFT uses it: AdaLoRA's <c>lora_A</c>, <c>lora_E</c>, <c>lora_B</c>).</summary>
    Parameter,
    /// <summary>Buffers saved in state dicts and adapter files (e.g. LoRAPrune's <c>lora_mask</c>).</summary>
    PersistentBuffer,
    /// <summary>Buffers that are not saved (e.g. AdaLoRA's <c>ranknum</c>, which PEFT never writes to the adapter file).</summary>
    NonPersistentBuffer,
}

/// <summary>
/// A module holding one tensor per adapter name, registered under the adapter's name, so an adapter's tensor gets the
/// state-dict key <c>&lt;dict&gt;.&lt;adapter&gt;</c> (PEFT's ParameterDict / BufferDict layout, e.g.
/// <c>lora_E.default</c>, saved as <c>lora_E</c>). Every entry is of the dictionary's <see cref="Kind"/>.
/// </summary>
public sealed class AdapterTensorDict : torch.nn.Module
{
    private readonly List<string> _order = new();

    /// <summary>Creates an empty dictionary.</summary>
    /// <param name="kind">What the entries are.</param>
    public AdapterTensorDict(AdapterTensorKind kind) : base(kind == AdapterTensorKind.Parameter ? "ParameterDict" : "BufferDict")
    {
        Kind = kind;
    }

    /// <summary>What the entries are.</summary>
    public AdapterTensorKind Kind { get; }

    /// <summary>Adapter names in insertion order.</summary>
    public IReadOnlyList<string> Keys => _order;

    /// <summary>Whether an adapter has an entry.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>True when present.</returns>
    public bool ContainsKey(string adapterName) => _order.Contains(adapterName);

    /// <summary>Sets (or replaces, disposing the old one) an adapter's tensor. A parameter dictionary wraps it in a
    /// parameter (trainable); a buffer dictionary takes ownership of it.</summary>
    /// <param name="adapterName">The adapter (no dots).</param>
    /// <param name="value">The tensor.</param>
    /// <returns>The registered tensor (the parameter for a parameter dictionary).</returns>
    public torch.Tensor Set(string adapterName, torch.Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        torch.Tensor registered;
        if (Kind == AdapterTensorKind.Parameter)
        {
            var p = value as torch.nn.Parameter ?? new torch.nn.Parameter(value);
            register_parameter(adapterName, p);
            registered = p;
        }
        else
        {
            register_buffer(adapterName, value, Kind == AdapterTensorKind.PersistentBuffer);
            registered = value;
        }
        if (!_order.Contains(adapterName)) _order.Add(adapterName);
        return registered;
    }

    /// <summary>An adapter's tensor.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The tensor (a <see cref="torch.nn.Parameter"/> for a parameter dictionary).</returns>
    public torch.Tensor this[string adapterName]
    {
        get
        {
            if (!_order.Contains(adapterName))
                throw new KeyNotFoundException($"no adapter '{adapterName}' here (adapters: {string.Join(", ", _order)})");
            if (Kind == AdapterTensorKind.Parameter) return get_parameter(adapterName);
            foreach (var (n, b) in named_buffers(false))
                if (n == adapterName) return b;
            throw new KeyNotFoundException($"no adapter '{adapterName}' here");
        }
    }

    /// <summary>Removes and disposes an adapter's entry (no-op when absent).</summary>
    /// <param name="adapterName">The adapter.</param>
    public void Remove(string adapterName)
    {
        if (!_order.Remove(adapterName)) return;
        if (Kind == AdapterTensorKind.Parameter) register_parameter(adapterName, null);
        else register_buffer(adapterName, null);
    }
}
