using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.ResLora;

/// <summary>
/// The ResLoRA layers of one adapter that form a residual chain (same module name, consecutive layers, equal shapes), in
/// model order, with the cross-layer forward cache. The cache holds only what later members of the SAME forward pass
/// still need, as its own tensor handles: the input shortcut keeps the last member's input until the next member takes
/// it (and disposes it); the middle shortcut keeps A·x̃ of the last <c>pre_num</c> members and drops each one as soon
/// as no later member needs it; the chain's last member keeps nothing. A pass that starts again at the first member
/// first disposes whatever an interrupted pass left behind, so no tensor outlives a forward pass by more than one
/// handle per chain (none after a complete pass).
/// </summary>
internal sealed class ResLoraChain
{
    private readonly List<ResLoraLayer> _members = new();
    private Tensor? _input;
    private int _inputIndex = -1;
    private readonly List<(int index, Tensor value)> _middle = new();

    public ResLoraChain(string moduleName, string adapterName)
    {
        ModuleName = moduleName;
        AdapterName = adapterName;
    }

    /// <summary>The module name the chain links (e.g. "q_proj").</summary>
    public string ModuleName { get; }

    /// <summary>The adapter.</summary>
    public string AdapterName { get; }

    /// <summary>The members in model order.</summary>
    public IReadOnlyList<ResLoraLayer> Members => _members;

    /// <summary>Whether <paramref name="layer"/> can follow the last member (same input and output sizes).</summary>
    public bool CanAppend(ResLoraLayer layer)
        => _members.Count > 0 && !_members.Contains(layer)
           && _members[^1].InFeatures == layer.InFeatures && _members[^1].OutFeatures == layer.OutFeatures;

    /// <summary>Adds a member at the end and tells it its place.</summary>
    public void Append(ResLoraLayer layer)
    {
        _members.Add(layer);
        layer.Link(AdapterName, this, _members.Count - 1);
    }

    /// <summary>Whether member <paramref name="index"/> is the last one.</summary>
    public bool IsLast(int index) => index == _members.Count - 1;

    /// <summary>Keeps member <paramref name="index"/>'s input for the next member (an alias, out of every dispose scope),
    /// disposing whatever was kept before.</summary>
    public void PutInput(int index, Tensor x)
    {
        _input?.Dispose();
        _input = x.alias().DetachFromDisposeScope();
        _inputIndex = index;
    }

    /// <summary>Takes member <paramref name="index"/>'s kept input (the caller disposes it), or null when this pass did not
    /// keep it.</summary>
    public Tensor? TakeInput(int index)
    {
        if (_input is null || _inputIndex != index) return null;
        var t = _input;
        _input = null;
        _inputIndex = -1;
        return t;
    }

    /// <summary>Member <paramref name="index"/>'s kept A·x̃ (still owned by the chain), or null.</summary>
    public Tensor? Middle(int index)
    {
        foreach (var (i, v) in _middle) if (i == index) return v;
        return null;
    }

    /// <summary>Keeps member <paramref name="index"/>'s A·x̃ and disposes every kept value of a member before
    /// <paramref name="keepFrom"/> (no later member needs those).</summary>
    public void PutMiddle(int index, Tensor value, int keepFrom)
    {
        DropMiddle(keepFrom);
        if (index >= keepFrom) _middle.Add((index, value.alias().DetachFromDisposeScope()));
    }

    /// <summary>Disposes kept A·x̃ values of members before <paramref name="keepFrom"/>.</summary>
    public void DropMiddle(int keepFrom)
    {
        for (int i = _middle.Count - 1; i >= 0; i--)
        {
            if (_middle[i].index >= keepFrom) continue;
            _middle[i].value.Dispose();
            _middle.RemoveAt(i);
        }
    }

    /// <summary>Disposes everything kept.</summary>
    public void Clear()
    {
        _input?.Dispose();
        _input = null;
        _inputIndex = -1;
        DropMiddle(int.MaxValue);
    }

    /// <summary>The number of tensor handles the cache holds now.</summary>
    public int CachedTensors => (_input is null ? 0 : 1) + _middle.Count;
}
