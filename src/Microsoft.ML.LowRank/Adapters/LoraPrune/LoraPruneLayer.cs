using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.LoraPrune;

/// <summary>
/// A LoRAPrune layer: y = m ⊙ (base(x) + Σ_active s·B(A(dropout(x)))), s = α/r, where m is the adapter's structured
/// pruning mask over the output channels (the buffer <c>lora_mask.&lt;adapter&gt;</c>, saved with the adapter as
/// <c>lora_mask</c>; all ones until the pruner zeroes the channels of pruned heads / MLP channels). The mask multiplies
/// the whole output (base, bias and LoRA), as in the reference implementation, also when the adapter is merged; with
/// adapters disabled the output is the unpruned base. With several active adapters the masks multiply.
/// </summary>
public sealed class LoraPruneLayer : AdapterLayer
{
    private readonly Dictionary<string, (int r, double alpha, double scaling)> _hp = new(StringComparer.Ordinal);

    /// <summary>Wraps a base layer with no adapter yet.</summary>
    /// <param name="baseLayer">A Linear or GPT-2 Conv1D.</param>
    public LoraPruneLayer(nn.Module baseLayer) : base("LoraPruneLayer", baseLayer)
    {
        register_module("lora_dropout", new AdapterDict<Dropout>());
        register_module("lora_A", new AdapterDict<Linear>());
        register_module("lora_B", new AdapterDict<Linear>());
        register_module("lora_mask", new AdapterTensorDict(AdapterTensorKind.PersistentBuffer));
    }

    private AdapterDict<Linear> ADict => (AdapterDict<Linear>)get_submodule("lora_A");
    private AdapterDict<Linear> BDict => (AdapterDict<Linear>)get_submodule("lora_B");
    private AdapterDict<Dropout> DropDict => (AdapterDict<Dropout>)get_submodule("lora_dropout");
    private AdapterTensorDict MaskDict => (AdapterTensorDict)get_submodule("lora_mask");

    /// <summary>The down projection A [r, in] of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The Linear.</returns>
    public Linear LoraA(string adapterName) => ADict[adapterName];

    /// <summary>The up projection B [out, r] of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The Linear.</returns>
    public Linear LoraB(string adapterName) => BDict[adapterName];

    /// <summary>The output-channel mask [out] of an adapter (1 = kept, 0 = pruned); the buffer itself.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The mask.</returns>
    public Tensor Mask(string adapterName) => MaskDict[adapterName];

    /// <summary>The rank of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>r.</returns>
    public int Rank(string adapterName) => Hp(adapterName).r;

    /// <summary>The scaling s = α/r of an adapter.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>s.</returns>
    public double Scaling(string adapterName) => Hp(adapterName).scaling;

    private (int r, double alpha, double scaling) Hp(string adapterName)
        => _hp.TryGetValue(adapterName, out var h) ? h : throw new KeyNotFoundException($"no LoRAPrune adapter '{adapterName}' in this layer (adapters: {string.Join(", ", AdapterNames)})");

    /// <summary>Adds (or re-creates) an adapter: A Kaiming-uniform (a = √5), B zero, mask all ones; on the base weight's
    /// device in the adapter type of <paramref name="context"/>.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout probability on the adapter input.</param>
    /// <param name="context">Creation settings.</param>
    public void UpdateLayer(string adapterName, int r, double alpha, double dropout, AdapterCreationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (r <= 0) throw new ArgumentOutOfRangeException(nameof(r), r, "the LoRA rank must be positive");
        if (HasAdapter(adapterName)) DeleteAdapter(adapterName);
        var w = BaseWeight;
        var dtype = context.AdapterType(w.dtype);
        var a = new Linear(InFeatures, r, false, w.device, dtype);
        var b = new Linear(r, OutFeatures, false, w.device, dtype);
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            if (w.device.type != DeviceType.META)
            {
                nn.init.kaiming_uniform_(a.weight, Math.Sqrt(5), generator: context.Generator);
                b.weight.zero_();
            }
            MaskDict.Set(adapterName, ones(new[] { OutFeatures }, w.dtype, w.device));
        }
        _hp[adapterName] = (r, alpha, alpha / r);
        DropDict.Add(adapterName, new Dropout(dropout));
        ADict.Add(adapterName, a);
        BDict.Add(adapterName, b);
        RegisterAdapterName(adapterName);
    }

    /// <summary>Sets an adapter's output-channel mask (copied into the buffer).</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="mask">[out] values (1 kept, 0 pruned).</param>
    public void SetMask(string adapterName, Tensor mask)
    {
        ArgumentNullException.ThrowIfNull(mask);
        var m = Mask(adapterName);
        if (!mask.shape.SequenceEqual(m.shape)) throw new ArgumentException($"the mask has shape [{string.Join(", ", mask.shape)}] but the layer has {OutFeatures} output channels", nameof(mask));
        using var ng = no_grad();
        m.copy_(mask);
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        var y = base.forward(input);
        if (AdaptersDisabled) return y;
        var rows = MixedBatchAdapterNames;
        using var scope = NewDisposeScope();
        Tensor result;
        if (rows is null)
        {
            result = y;
            foreach (var a in ActiveAdapters)
                if (HasAdapter(a)) result = result * Mask(a).to_type(result.dtype);
            if (ReferenceEquals(result, y)) return y;
        }
        else
        {
            // One mask per row: the row's adapter's mask, or ones for rows without a LoRAPrune adapter of this layer.
            var masks = rows.Select(a => HasAdapter(a) ? Mask(a) : ones(new[] { OutFeatures }, y.dtype, y.device)).ToArray();
            var m = stack(masks, 0).to_type(y.dtype);
            var shape = new long[y.dim()];
            Array.Fill(shape, 1L);
            shape[0] = y.size(0);
            shape[^1] = OutFeatures;
            result = y * m.view(shape);
        }
        y.Dispose();
        return result.MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    protected override Tensor AdapterOutput(Tensor x, string adapterName)
    {
        var a = ADict[adapterName];
        var xa = x.dtype == a.weight.dtype ? x : x.to_type(a.weight.dtype);
        return BDict[adapterName].call(a.call(DropDict[adapterName].call(xa))) * Hp(adapterName).scaling;
    }

    /// <inheritdoc/>
    public override Tensor GetDeltaWeight(string adapterName)
    {
        using var scope = NewDisposeScope();
        var ct = MergeType;
        var delta = BDict[adapterName].weight.to_type(ct).matmul(ADict[adapterName].weight.to_type(ct)) * Hp(adapterName).scaling;
        return delta.MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    protected override void DeleteAdapterCore(string adapterName)
    {
        RemoveFromDict<Linear>("lora_A", adapterName);
        RemoveFromDict<Linear>("lora_B", adapterName);
        RemoveFromDict<Dropout>("lora_dropout", adapterName);
        MaskDict.Remove(adapterName);
        _hp.Remove(adapterName);
    }
}
