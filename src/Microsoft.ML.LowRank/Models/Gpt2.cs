using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Models;

/// <summary>GPT-2's Conv1D: y = x W + b with W stored as [in, out] (the transpose of Linear's layout), as in HF checkpoints.</summary>
public sealed class Conv1D : nn.Module<Tensor, Tensor>
{
    /// <summary>Creates the layer (W ~ N(0, 0.02²), b = 0, as HF initialises GPT-2).</summary>
    /// <param name="nx">Input size.</param>
    /// <param name="nf">Output size.</param>
    /// <param name="device">Device.</param>
    /// <param name="dtype">Element type.</param>
    public Conv1D(long nx, long nf, Device? device = null, ScalarType? dtype = null) : base(nameof(Conv1D))
    {
        in_features = nx;
        out_features = nf;
        using var scope = NewDisposeScope();
        var w = empty(new[] { nx, nf }, dtype, device);
        if (device?.type != DeviceType.META) w.normal_(0, 0.02);
        register_parameter("weight", new nn.Parameter(w));
        register_parameter("bias", new nn.Parameter(zeros(new[] { nf }, dtype, device)));
    }

    /// <summary>Input size.</summary>
    public long in_features { get; }

    /// <summary>Output size.</summary>
    public long out_features { get; }

    /// <summary>The weight [in, out].</summary>
    public nn.Parameter weight => get_parameter("weight");

    /// <summary>The bias [out].</summary>
    public nn.Parameter bias => get_parameter("bias");

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var shape = x.shape;
        var flat = x.reshape(-1, in_features);
        var y = addmm(bias, flat, weight);
        shape[^1] = out_features;
        return y.view(shape).MoveToOuterDisposeScope();
    }
}

/// <summary>GPT-2 attention: fused c_attn (q, k, v), causal, c_proj.</summary>
public sealed class Gpt2Attention : nn.Module
{
    private readonly ModelConfig _c;

    /// <summary>Creates the attention.</summary>
    /// <param name="c">Config.</param>
    /// <param name="device">Device.</param>
    /// <param name="dtype">Element type.</param>
    public Gpt2Attention(ModelConfig c, Device? device, ScalarType? dtype) : base(nameof(Gpt2Attention))
    {
        _c = c;
        register_module("c_attn", new Conv1D(c.HiddenSize, 3 * c.HiddenSize, device, dtype));
        register_module("c_proj", new Conv1D(c.HiddenSize, c.HiddenSize, device, dtype));
    }

    /// <summary>Attention output.</summary>
    /// <param name="x">Input [batch, seq, hidden].</param>
    /// <param name="mask">Additive mask.</param>
    /// <param name="cache">KV cache.</param>
    /// <param name="layer">Layer index.</param>
    /// <param name="isCausal">With no mask: attend causally (scaled_dot_product_attention's is_causal).</param>
    /// <returns>The output.</returns>
    public Tensor forward(Tensor x, Tensor? mask, KVCache? cache, int layer, bool isCausal = false)
    {
        using var scope = NewDisposeScope();
        long b = x.size(0), t = x.size(1), h = _c.NumAttentionHeads, d = _c.HeadDim;
        var qkv = ((nn.Module<Tensor, Tensor>)get_submodule("c_attn")).call(x).split(_c.HiddenSize, 2);
        var q = qkv[0].view(b, t, h, d).transpose(1, 2);
        var k = qkv[1].view(b, t, h, d).transpose(1, 2);
        var v = qkv[2].view(b, t, h, d).transpose(1, 2);
        if (cache is not null) (k, v) = cache.Update(layer, k, v);
        var o = nn.functional.scaled_dot_product_attention(q, k, v, mask, 0.0, isCausal && mask is null, 1.0 / Math.Sqrt(d));
        o = o.transpose(1, 2).reshape(b, t, h * d);
        return ((nn.Module<Tensor, Tensor>)get_submodule("c_proj")).call(o).MoveToOuterDisposeScope();
    }
}

/// <summary>GPT-2 MLP: c_proj(act(c_fc(x))).</summary>
public sealed class Gpt2Mlp : nn.Module<Tensor, Tensor>, IFeedForwardBlock
{
    private readonly Activation _act;

    /// <summary>Creates the MLP.</summary>
    /// <param name="c">Config.</param>
    /// <param name="device">Device.</param>
    /// <param name="dtype">Element type.</param>
    public Gpt2Mlp(ModelConfig c, Device? device, ScalarType? dtype) : base(nameof(Gpt2Mlp))
    {
        register_module("c_fc", new Conv1D(c.HiddenSize, c.IntermediateSize, device, dtype));
        register_module("c_proj", new Conv1D(c.IntermediateSize, c.HiddenSize, device, dtype));
        _act = nn.ActivationByName(c.HiddenAct);
    }

    /// <inheritdoc/>
    public string? GateProjectionName => null;

    /// <inheritdoc/>
    public string UpProjectionName => "c_fc";

    /// <inheritdoc/>
    public string DownProjectionName => "c_proj";

    /// <inheritdoc/>
    public nn.Module<Tensor, Tensor> Projection(string name) => (nn.Module<Tensor, Tensor>)get_submodule(name);

    /// <inheritdoc/>
    public Tensor Activate(Tensor? gate, Tensor up) => _act.call(up);

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        if (get_submodule("c_fc") is IFeedForwardBlockOverride o && o.ForwardBlock(this, x) is { } overridden) return overridden;
        using var scope = NewDisposeScope();
        // Children are looked up as plain unary modules so adapter layers can replace them.
        var y = ((nn.Module<Tensor, Tensor>)get_submodule("c_proj")).call(_act.call(((nn.Module<Tensor, Tensor>)get_submodule("c_fc")).call(x)));
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>One GPT-2 block (pre-norm).</summary>
public sealed class Gpt2Block : nn.Module
{
    /// <summary>Creates the block.</summary>
    /// <param name="c">Config.</param>
    /// <param name="device">Device.</param>
    /// <param name="dtype">Element type.</param>
    public Gpt2Block(ModelConfig c, Device? device, ScalarType? dtype) : base(nameof(Gpt2Block))
    {
        register_module("ln_1", nn.LayerNorm(new[] { c.HiddenSize }, c.NormEps, true, true, device, dtype));
        register_module("attn", new Gpt2Attention(c, device, dtype));
        register_module("ln_2", nn.LayerNorm(new[] { c.HiddenSize }, c.NormEps, true, true, device, dtype));
        register_module("mlp", new Gpt2Mlp(c, device, dtype));
    }

    /// <summary>Block output.</summary>
    /// <param name="x">Input.</param>
    /// <param name="mask">Additive mask.</param>
    /// <param name="cache">KV cache.</param>
    /// <param name="layer">Layer index.</param>
    /// <param name="isCausal">With no mask: attend causally.</param>
    /// <returns>The output.</returns>
    public Tensor forward(Tensor x, Tensor? mask, KVCache? cache, int layer, bool isCausal = false)
    {
        using var scope = NewDisposeScope();
        var h = x + ((Gpt2Attention)get_submodule("attn")).forward(((LayerNorm)get_submodule("ln_1")).call(x), mask, cache, layer, isCausal);
        var o = h + ((Gpt2Mlp)get_submodule("mlp")).call(((LayerNorm)get_submodule("ln_2")).call(h));
        return o.MoveToOuterDisposeScope();
    }
}

/// <summary>The GPT-2 backbone (HF GPT2Model): wte, wpe, h, ln_f.</summary>
public sealed class Gpt2Model : TransformerBackbone
{
    private readonly ModuleList<Gpt2Block> _h;

    /// <summary>Creates the backbone.</summary>
    /// <param name="c">Config.</param>
    /// <param name="device">Device.</param>
    /// <param name="dtype">Element type.</param>
    public Gpt2Model(ModelConfig c, Device? device, ScalarType? dtype) : base(nameof(Gpt2Model), c)
    {
        var wte = register_module("wte", nn.Embedding(c.VocabSize, c.HiddenSize, null, device, dtype));
        var wpe = register_module("wpe", nn.Embedding(c.MaxPositionEmbeddings, c.HiddenSize, null, device, dtype));
        if (device?.type != DeviceType.META)
        {
            wte.weight.normal_(0, 0.02);
            wpe.weight.normal_(0, 0.01);
        }
        _h = register_module("h", nn.ModuleList(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new Gpt2Block(c, device, dtype)).ToArray()));
        register_module("ln_f", nn.LayerNorm(new[] { c.HiddenSize }, c.NormEps, true, true, device, dtype));
    }

    /// <inheritdoc/>
    public override Embedding TokenEmbedding => (Embedding)get_submodule("wte");

    /// <inheritdoc/>
    public override (Tensor last, List<Tensor>? hidden) Forward(ModelInputs inputs)
    {
        using var scope = NewDisposeScope();
        var ids = inputs.InputIds;
        long b = ids.size(0), t = ids.size(1);
        long past = inputs.Cache?.Length ?? 0;
        var pos = inputs.PositionIds ?? AttentionUtils.DefaultPositions(b, t, past, ids.device);
        var h = TokenEmbedding.call(ids) + ((Embedding)get_submodule("wpe")).call(pos);
        bool causalOnly = inputs.AttentionMask is null && inputs.SequenceIds is null && past == 0;
        var mask = causalOnly ? null : AttentionUtils.AdditiveMask(inputs.AttentionMask, b, t, past, causal: true, h.dtype, h.device, inputs.SequenceIds);
        var hidden = inputs.OutputHiddenStates ? new List<Tensor> { h } : null;
        for (int i = 0; i < _h.Count; i++)
        {
            var block = _h[i];
            int li = i;
            h = RunBlock(block, new[] { h, mask }, a => block.forward(a[0]!, a[1], inputs.Cache, li, causalOnly), inputs.Cache is not null);
            if (hidden is not null && i < _h.Count - 1) hidden.Add(h);
        }
        h = ((LayerNorm)get_submodule("ln_f")).call(h);
        hidden?.Add(h);
        return Escape(h, hidden);
    }
}
