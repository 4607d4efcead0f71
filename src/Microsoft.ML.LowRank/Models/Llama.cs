using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Models;

/// <summary>Self-attention of the LLaMA family: q/k/v/o projections, RoPE, grouped-query attention, KV cache.</summary>
public sealed class LlamaAttention : nn.Module
{
    private readonly ModelConfig _c;

    /// <summary>Creates the block's attention.</summary>
    /// <param name="c">Config.</param>
    /// <param name="device">Device.</param>
    /// <param name="dtype">Element type.</param>
    public LlamaAttention(ModelConfig c, Device? device, ScalarType? dtype) : base(nameof(LlamaAttention))
    {
        _c = c;
        register_module("q_proj", nn.Linear(c.HiddenSize, c.NumAttentionHeads * c.HeadDim, c.QkvBias, device, dtype));
        register_module("k_proj", nn.Linear(c.HiddenSize, c.NumKeyValueHeads * c.HeadDim, c.QkvBias, device, dtype));
        register_module("v_proj", nn.Linear(c.HiddenSize, c.NumKeyValueHeads * c.HeadDim, c.QkvBias, device, dtype));
        register_module("o_proj", nn.Linear(c.NumAttentionHeads * c.HeadDim, c.HiddenSize, c.OutputProjBias, device, dtype));
    }

    /// <summary>Attention output [batch, seq, hidden].</summary>
    /// <param name="x">Normalised input [batch, seq, hidden].</param>
    /// <param name="cos">RoPE cos table.</param>
    /// <param name="sin">RoPE sin table.</param>
    /// <param name="mask">Additive mask or null.</param>
    /// <param name="cache">KV cache or null.</param>
    /// <param name="layer">Layer index (for the cache).</param>
    /// <param name="isCausal">With no mask: attend causally (scaled_dot_product_attention's is_causal, which lets libtorch 2.x
    /// pick a flash kernel).</param>
    /// <returns>The output.</returns>
    public Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KVCache? cache, int layer, bool isCausal = false)
    {
        using var scope = NewDisposeScope();
        long b = x.size(0), t = x.size(1);
        // q/k/v share their input: adapter layers may evaluate them in one fused call (SharedInputProjections).
        var qkv = SharedInputProjections.Forward(x, P("q_proj"), P("k_proj"), P("v_proj"));
        var q = qkv[0].view(b, t, _c.NumAttentionHeads, _c.HeadDim).transpose(1, 2);
        var k = qkv[1].view(b, t, _c.NumKeyValueHeads, _c.HeadDim).transpose(1, 2);
        var v = qkv[2].view(b, t, _c.NumKeyValueHeads, _c.HeadDim).transpose(1, 2);
        q = AttentionUtils.ApplyRope(q, cos, sin);
        k = AttentionUtils.ApplyRope(k, cos, sin);
        if (cache is not null) (k, v) = cache.Update(layer, k, v);
        var rep = _c.NumAttentionHeads / _c.NumKeyValueHeads;
        k = AttentionUtils.RepeatKv(k, rep);
        v = AttentionUtils.RepeatKv(v, rep);
        var o = nn.functional.scaled_dot_product_attention(q, k, v, mask, 0.0, isCausal && mask is null, 1.0 / Math.Sqrt(_c.HeadDim));
        o = o.transpose(1, 2).reshape(b, t, _c.NumAttentionHeads * _c.HeadDim);
        return Proj("o_proj", o).MoveToOuterDisposeScope();
    }

    private Tensor Proj(string name, Tensor x) => P(name).call(x);

    private nn.Module<Tensor, Tensor> P(string name) => (nn.Module<Tensor, Tensor>)get_submodule(name);
}

/// <summary>The gated MLP: down(act(gate(x)) · up(x)).</summary>
public sealed class LlamaMlp : nn.Module<Tensor, Tensor>, IFeedForwardBlock
{
    private readonly Activation _act;

    /// <summary>Creates the MLP.</summary>
    /// <param name="c">Config.</param>
    /// <param name="device">Device.</param>
    /// <param name="dtype">Element type.</param>
    public LlamaMlp(ModelConfig c, Device? device, ScalarType? dtype) : base(nameof(LlamaMlp))
    {
        register_module("gate_proj", nn.Linear(c.HiddenSize, c.IntermediateSize, c.MlpBias, device, dtype));
        register_module("up_proj", nn.Linear(c.HiddenSize, c.IntermediateSize, c.MlpBias, device, dtype));
        register_module("down_proj", nn.Linear(c.IntermediateSize, c.HiddenSize, c.MlpBias, device, dtype));
        _act = nn.ActivationByName(c.HiddenAct);
    }

    /// <inheritdoc/>
    public string? GateProjectionName => "gate_proj";

    /// <inheritdoc/>
    public string UpProjectionName => "up_proj";

    /// <inheritdoc/>
    public string DownProjectionName => "down_proj";

    /// <inheritdoc/>
    public nn.Module<Tensor, Tensor> Projection(string name) => P(name);

    /// <inheritdoc/>
    public Tensor Activate(Tensor? gate, Tensor up) => _act.call(gate ?? throw new ArgumentNullException(nameof(gate))) * up;

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        if (P("gate_proj") is IFeedForwardBlockOverride o && o.ForwardBlock(this, x) is { } overridden) return overridden;
        using var scope = NewDisposeScope();
        var gu = SharedInputProjections.Forward(x, P("gate_proj"), P("up_proj"));
        var g = _act.call(gu[0]);
        return P("down_proj").call(g * gu[1]).MoveToOuterDisposeScope();
    }

    private nn.Module<Tensor, Tensor> P(string n) => (nn.Module<Tensor, Tensor>)get_submodule(n);
}

/// <summary>One pre-norm decoder block.</summary>
public sealed class LlamaDecoderLayer : nn.Module
{
    /// <summary>Creates the block.</summary>
    /// <param name="c">Config.</param>
    /// <param name="device">Device.</param>
    /// <param name="dtype">Element type.</param>
    public LlamaDecoderLayer(ModelConfig c, Device? device, ScalarType? dtype) : base(nameof(LlamaDecoderLayer))
    {
        register_module("self_attn", new LlamaAttention(c, device, dtype));
        register_module("mlp", new LlamaMlp(c, device, dtype));
        register_module("input_layernorm", nn.RMSNorm(c.HiddenSize, c.NormEps, c.NormWeightOffset, device, dtype));
        register_module("post_attention_layernorm", nn.RMSNorm(c.HiddenSize, c.NormEps, c.NormWeightOffset, device, dtype));
    }

    /// <summary>Block output.</summary>
    /// <param name="x">Input [batch, seq, hidden].</param>
    /// <param name="cos">RoPE cos.</param>
    /// <param name="sin">RoPE sin.</param>
    /// <param name="mask">Additive mask.</param>
    /// <param name="cache">KV cache.</param>
    /// <param name="layer">Layer index.</param>
    /// <param name="isCausal">With no mask: attend causally.</param>
    /// <returns>The output.</returns>
    public Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KVCache? cache, int layer, bool isCausal = false)
    {
        using var scope = NewDisposeScope();
        var attn = (LlamaAttention)get_submodule("self_attn");
        var h = x + attn.forward(((RMSNorm)get_submodule("input_layernorm")).call(x), cos, sin, mask, cache, layer, isCausal);
        var o = h + ((nn.Module<Tensor, Tensor>)get_submodule("mlp")).call(((RMSNorm)get_submodule("post_attention_layernorm")).call(h));
        return o.MoveToOuterDisposeScope();
    }
}

/// <summary>The LLaMA-family backbone (HF LlamaModel / MistralModel / Qwen2Model / GemmaModel): embed_tokens, layers, norm.</summary>
public sealed class LlamaModel : TransformerBackbone
{
    private readonly ModuleList<LlamaDecoderLayer> _layers;

    /// <summary>Creates the backbone.</summary>
    /// <param name="c">Config.</param>
    /// <param name="device">Device.</param>
    /// <param name="dtype">Element type.</param>
    public LlamaModel(ModelConfig c, Device? device, ScalarType? dtype) : base(nameof(LlamaModel), c)
    {
        register_module("embed_tokens", nn.Embedding(c.VocabSize, c.HiddenSize, c.PadTokenId is { } p && p < c.VocabSize ? p : null, device, dtype));
        _layers = register_module("layers", nn.ModuleList(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new LlamaDecoderLayer(c, device, dtype)).ToArray()));
        register_module("norm", nn.RMSNorm(c.HiddenSize, c.NormEps, c.NormWeightOffset, device, dtype));
        if (device?.type != DeviceType.META)
            register_buffer("inv_freq", tensor(AttentionUtils.RopeInvFreq(c.HeadDim, c.RopeTheta, c.RopeScaling), device: device), persistent: false);
    }

    /// <inheritdoc/>
    public override Embedding TokenEmbedding => (Embedding)get_submodule("embed_tokens");

    /// <inheritdoc/>
    public override (Tensor last, List<Tensor>? hidden) Forward(ModelInputs inputs)
    {
        using var scope = NewDisposeScope();
        var ids = inputs.InputIds;
        long b = ids.size(0), t = ids.size(1);
        long past = inputs.Cache?.Length ?? 0;
        var h = TokenEmbedding.call(ids);
        if (Config.ScaleEmbeddings)
        {
            using var normalizer = scalar_tensor(Math.Sqrt(Config.HiddenSize), h.dtype, h.device);
            h = h * normalizer;
        }
        var pos = inputs.PositionIds ?? AttentionUtils.DefaultPositions(b, t, past, h.device);
        var invFreq = named_buffers(false).First(x => x.name == "inv_freq").buffer;
        var (cos, sin) = AttentionUtils.RopeCosSin(invFreq, pos, h.dtype);
        // Without padding or cache the causal rule alone applies: no mask tensor (is_causal).
        bool causalOnly = inputs.AttentionMask is null && inputs.SequenceIds is null && past == 0;
        var mask = causalOnly ? null : AttentionUtils.AdditiveMask(inputs.AttentionMask, b, t, past, causal: true, h.dtype, h.device, inputs.SequenceIds);
        var hidden = inputs.OutputHiddenStates ? new List<Tensor> { h } : null;
        for (int i = 0; i < _layers.Count; i++)
        {
            var layer = _layers[i];
            int li = i;
            h = RunBlock(layer, new[] { h, cos, sin, mask }, a => layer.forward(a[0]!, a[1]!, a[2]!, a[3], inputs.Cache, li, causalOnly), inputs.Cache is not null);
            if (hidden is not null && i < _layers.Count - 1) hidden.Add(h);
        }
        h = ((RMSNorm)get_submodule("norm")).call(h);
        hidden?.Add(h);
        return TransformerBackbone.Escape(h, hidden);
    }
}
