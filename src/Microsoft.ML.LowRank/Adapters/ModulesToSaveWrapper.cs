using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters;

/// <summary>
/// PEFT's ModulesToSaveWrapper: keeps the original module frozen as child "original_module" and one trainable copy per
/// adapter under "modules_to_save.&lt;adapter&gt;"; forward uses the active adapter's copy (the original when adapters
/// are disabled or none of its adapters is active). In the adapter file the copy is saved under the module's own
/// path (<c>base_model.model.classifier.weight</c>), as PEFT does. Wraps Linear, Conv1D and Embedding modules.
/// </summary>
public sealed class ModulesToSaveWrapper : nn.Module<Tensor, Tensor>, IAdapterModule
{
    private List<string> _active = new();

    /// <summary>Wraps a module.</summary>
    /// <param name="original">The module (Linear, Conv1D or Embedding).</param>
    public ModulesToSaveWrapper(nn.Module<Tensor, Tensor> original) : base(nameof(ModulesToSaveWrapper))
    {
        ArgumentNullException.ThrowIfNull(original);
        if (!CanWrap(original)) throw new NotSupportedException($"modules_to_save cannot copy a {original.name} module (supported: Linear, Conv1D, Embedding)");
        register_module("original_module", original);
        register_module("modules_to_save", new AdapterDict<nn.Module<Tensor, Tensor>>());
    }

    /// <summary>Whether a module can be copied by this wrapper.</summary>
    /// <param name="module">The module.</param>
    /// <returns>True for Linear, Conv1D and Embedding.</returns>
    public static bool CanWrap(nn.Module module) => module is Linear or Conv1D or Embedding;

    /// <summary>The original (frozen) module.</summary>
    public nn.Module<Tensor, Tensor> OriginalModule => (nn.Module<Tensor, Tensor>)get_submodule("original_module");

    private AdapterDict<nn.Module<Tensor, Tensor>> Copies => (AdapterDict<nn.Module<Tensor, Tensor>>)get_submodule("modules_to_save");

    /// <summary>The trained copy of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The copy.</returns>
    public nn.Module<Tensor, Tensor> Copy(string adapterName) => Copies[adapterName];

    /// <summary>Adds a copy of the original module for an adapter (values copied; on the meta device only shapes).</summary>
    /// <param name="adapterName">The adapter.</param>
    public void AddAdapter(string adapterName)
    {
        if (Copies.ContainsKey(adapterName)) return;
        Copies.Add(adapterName, CloneModule(OriginalModule));
    }

    private static nn.Module<Tensor, Tensor> CloneModule(nn.Module<Tensor, Tensor> m)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        switch (m)
        {
            case Linear l:
                {
                    var c = new Linear(l.in_features, l.out_features, l.bias is not null, l.weight.device, l.weight.dtype);
                    CopyParameters(l, c);
                    return c;
                }
            case Conv1D cv:
                {
                    var c = new Conv1D(cv.in_features, cv.out_features, cv.weight.device, cv.weight.dtype);
                    CopyParameters(cv, c);
                    return c;
                }
            case Embedding e:
                {
                    var c = new Embedding(e.weight.size(0), e.weight.size(1), e.padding_idx, e.weight.device, e.weight.dtype);
                    CopyParameters(e, c);
                    return c;
                }
            default:
                throw new NotSupportedException($"modules_to_save cannot copy a {m.name} module");
        }
    }

    private static void CopyParameters(nn.Module from, nn.Module to)
    {
        var src = from.named_parameters(false).ToDictionary(p => p.name, p => p.parameter);
        foreach (var (n, p) in to.named_parameters(false))
            if (p.device.type != DeviceType.META) p.copy_(src[n]);
    }

    /// <inheritdoc/>
    public IReadOnlyList<string> AdapterNames => Copies.Keys;

    /// <inheritdoc/>
    public IReadOnlyList<string> ActiveAdapters => _active;

    /// <inheritdoc/>
    public void SetActiveAdapters(IReadOnlyList<string> adapterNames)
    {
        ArgumentNullException.ThrowIfNull(adapterNames);
        var held = adapterNames.Where(Copies.ContainsKey).Distinct().ToList();
        if (held.Count > 1)
            throw new InvalidOperationException($"adapters {string.Join(", ", held)} each have their own copy of a modules_to_save module; only one of them can be active at a time");
        _active = adapterNames.Distinct().ToList();
    }

    /// <inheritdoc/>
    public bool AdaptersDisabled { get; set; }

    /// <inheritdoc/>
    public IReadOnlyList<string>? MixedBatchAdapterNames { get; set; }

    /// <inheritdoc/>
    public void DeleteAdapter(string adapterName)
    {
        if (!Copies.ContainsKey(adapterName)) return;
        var replacement = Copies.Without(adapterName, out var removed);
        register_module("modules_to_save", replacement);
        removed?.Dispose();
        _active.Remove(adapterName);
    }

    /// <inheritdoc/>
    public IEnumerable<(string name, nn.Parameter parameter)> AdapterParameters(string adapterName)
    {
        if (!Copies.TryGetValue(adapterName, out var c)) yield break;
        foreach (var (n, p) in c.named_parameters()) yield return ($"modules_to_save.{adapterName}.{n}", p);
    }

    /// <inheritdoc/>
    public IEnumerable<(string key, Tensor value)> AdapterStateDict(string adapterName)
    {
        if (!Copies.TryGetValue(adapterName, out var c)) yield break;
        foreach (var (n, p) in c.named_parameters()) yield return (n, p.alias());
    }

    /// <summary>The module forward uses: the active adapter's copy, or the original.</summary>
    /// <returns>The module.</returns>
    public nn.Module<Tensor, Tensor> Current()
    {
        if (AdaptersDisabled) return OriginalModule;
        foreach (var a in _active) if (Copies.TryGetValue(a, out var c)) return c;
        return OriginalModule;
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var rows = MixedBatchAdapterNames;
        if (rows is null || AdaptersDisabled) return Current().call(input);
        if (input.dim() < 1 || input.size(0) != rows.Count)
            throw new ArgumentException($"a mixed-adapter batch needs one adapter name per row: {rows.Count} names for input [{string.Join(", ", input.shape)}]");
        using var scope = NewDisposeScope();
        Tensor? result = null;
        foreach (var adapter in rows.Distinct())
        {
            var idx = AdapterLayer.RowIndex(rows, adapter, input.device);
            var module = Copies.TryGetValue(adapter, out var c) ? c : OriginalModule;
            var part = module.call(input.index_select(0, idx));
            if (result is null)
            {
                var shape = part.shape;
                shape[0] = rows.Count;
                result = zeros(shape, part.dtype, part.device);
            }
            result = result.index_copy(0, idx, part);
        }
        return result!.MoveToOuterDisposeScope();
    }
}
