using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Adapters;

/// <summary>
/// A module whose children are keyed by adapter name (PyTorch's ModuleDict as PEFT uses it), so an adapter's weights
/// get state-dict keys such as <c>lora_A.default.weight</c>. Children are added with <see cref="Add"/>; removal builds
/// a new dictionary (<see cref="Without"/>) that the owner registers in place of this one.
/// </summary>
/// <typeparam name="T">Child type.</typeparam>
public sealed class AdapterDict<T> : torch.nn.Module where T : torch.nn.Module
{
    private readonly Dictionary<string, T> _items = new(StringComparer.Ordinal);
    private readonly List<string> _order = new();

    /// <summary>Creates an empty dictionary.</summary>
    public AdapterDict() : base("ModuleDict") { }

    /// <summary>Adds (or replaces) the child for an adapter.</summary>
    /// <param name="adapterName">The adapter name (no dots).</param>
    /// <param name="module">The child.</param>
    /// <returns>The child.</returns>
    public T Add(string adapterName, T module)
    {
        register_module(adapterName, module);
        if (!_items.ContainsKey(adapterName)) _order.Add(adapterName);
        _items[adapterName] = module;
        return module;
    }

    /// <summary>The child of an adapter.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <returns>The child.</returns>
    public T this[string adapterName] => _items.TryGetValue(adapterName, out var m) ? m
        : throw new KeyNotFoundException($"no adapter '{adapterName}' here (adapters: {string.Join(", ", _order)})");

    /// <summary>Looks a child up.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <param name="module">The child, when found.</param>
    /// <returns>True when found.</returns>
    public bool TryGetValue(string adapterName, out T module) => _items.TryGetValue(adapterName, out module!);

    /// <summary>Whether an adapter has a child here.</summary>
    /// <param name="adapterName">The adapter name.</param>
    /// <returns>True when present.</returns>
    public bool ContainsKey(string adapterName) => _items.ContainsKey(adapterName);

    /// <summary>Adapter names in insertion order.</summary>
    public IReadOnlyList<string> Keys => _order;

    /// <summary>A new dictionary holding the same children except <paramref name="adapterName"/>'s, which is
    /// returned separately (not disposed).</summary>
    /// <param name="adapterName">The adapter to drop.</param>
    /// <param name="removed">Its child, or null when absent.</param>
    /// <returns>The new dictionary.</returns>
    public AdapterDict<T> Without(string adapterName, out T? removed)
    {
        var d = new AdapterDict<T>();
        removed = null;
        foreach (var k in _order)
        {
            if (k == adapterName) { removed = _items[k]; continue; }
            d.Add(k, _items[k]);
        }
        return d;
    }
}
