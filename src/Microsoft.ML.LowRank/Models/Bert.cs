using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Models;

/// <summary>A module that only groups children (HF's nested containers such as attention.self).</summary>
public sealed class Container : nn.Module
{
    /// <summary>Creates the container.</summary>
    /// <param name="name">Type name.</param>
    public Container(string name) : base(name) { }
}

/// <summary>The BERT / RoBERTa encoder backbone (HF BertModel / RobertaModel): embeddings, encoder, optional pooler.</summary>
public sealed class BertModel : TransformerBackbone
{
    private readonly ModuleList<Container> _layers;
    private readonly Activation _act;

    /// <summary>Creates the backbone.</summary>
    /// <param name="c">Config.</param>
    /// <param name="addPooler">Include the pooler (BERT sequence classification uses it; RoBERTa's does not).</param>
    /// <param name="device">Device.</param>
    /// <param name="dtype">Element type.</param>
    public BertModel(ModelConfig c, bool addPooler, Device? device, ScalarType? dtype) : base(nameof(BertModel), c)
    {
        var meta = device?.type == DeviceType.META;
        Linear Lin(long i, long o) => Init(nn.Linear(i, o, true, device, dtype), meta);
        var emb = register_module("embeddings", new Container("BertEmbeddings"));
        var pad = c.PadTokenId is { } p && p < c.VocabSize ? p : (long?)null;
        foreach (var (n, e) in new[] { ("word_embeddings", nn.Embedding(c.VocabSize, c.HiddenSize, pad, device, dtype)),
                                       ("position_embeddings", nn.Embedding(c.MaxPositionEmbeddings, c.HiddenSize, c.Family == ModelFamily.Roberta ? pad : null, device, dtype)),
                                       ("token_type_embeddings", nn.Embedding(c.TypeVocabSize, c.HiddenSize, null, device, dtype)) })
        {
            if (!meta)
            {
                e.weight.normal_(0, 0.02);
                if (e.padding_idx is { } pi) { using var ng = no_grad(); e.weight[pi].fill_(0); }
            }
            emb.register_module(n, e);
        }
        emb.register_module("LayerNorm", nn.LayerNorm(new[] { c.HiddenSize }, c.NormEps, true, true, device, dtype));
        var encoder = register_module("encoder", new Container("BertEncoder"));
        var layers = new List<Container>();
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            var layer = new Container("BertLayer");
            var attention = layer.register_module("attention", new Container("BertAttention"));
            var self = attention.register_module("self", new Container("BertSelfAttention"));
            self.register_module("query", Lin(c.HiddenSize, c.HiddenSize));
            self.register_module("key", Lin(c.HiddenSize, c.HiddenSize));
            self.register_module("value", Lin(c.HiddenSize, c.HiddenSize));
            var aout = attention.register_module("output", new Container("BertSelfOutput"));
            aout.register_module("dense", Lin(c.HiddenSize, c.HiddenSize));
            aout.register_module("LayerNorm", nn.LayerNorm(new[] { c.HiddenSize }, c.NormEps, true, true, device, dtype));
            layer.register_module("intermediate", new Container("BertIntermediate")).register_module("dense", Lin(c.HiddenSize, c.IntermediateSize));
            var output = layer.register_module("output", new Container("BertOutput"));
            output.register_module("dense", Lin(c.IntermediateSize, c.HiddenSize));
            output.register_module("LayerNorm", nn.LayerNorm(new[] { c.HiddenSize }, c.NormEps, true, true, device, dtype));
            layers.Add(layer);
        }
        _layers = encoder.register_module("layer", nn.ModuleList(layers.ToArray()));
        if (addPooler) register_module("pooler", new Container("BertPooler")).register_module("dense", Lin(c.HiddenSize, c.HiddenSize));
        _act = nn.ActivationByName(c.HiddenAct);
    }

    internal static Linear Init(Linear l, bool meta)
    {
        if (!meta)
        {
            l.weight.normal_(0, 0.02);
            if (l.bias is { } b) nn.init.zeros_(b);
        }
        return l;
    }

    /// <inheritdoc/>
    public override Embedding TokenEmbedding => (Embedding)get_submodule("embeddings.word_embeddings");

    /// <summary>Whether the pooler exists.</summary>
    public bool HasPooler => named_children().Any(c => c.name == "pooler");

    private Tensor L(string path, Tensor x) => ((nn.Module<Tensor, Tensor>)get_submodule(path)).call(x);
    private static Tensor L(nn.Module m, string path, Tensor x) => ((nn.Module<Tensor, Tensor>)m.get_submodule(path)).call(x);

    /// <summary>RoBERTa positions: padding_idx + cumulative count of non-pad tokens (pad tokens get padding_idx).</summary>
    /// <param name="ids">[batch, seq] ids.</param>
    /// <param name="paddingIdx">Padding id.</param>
    /// <returns>Positions.</returns>
    public static Tensor RobertaPositions(Tensor ids, long paddingIdx)
    {
        using var scope = NewDisposeScope();
        var mask = ids.ne(paddingIdx).to_type(ScalarType.Int64);
        return (mask.cumsum(1) * mask + paddingIdx).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public override (Tensor last, List<Tensor>? hidden) Forward(ModelInputs inputs)
    {
        using var scope = NewDisposeScope();
        var ids = inputs.InputIds;
        long b = ids.size(0), t = ids.size(1), heads = Config.NumAttentionHeads, d = Config.HeadDim;
        var pos = inputs.PositionIds ?? (Config.Family == ModelFamily.Roberta
            ? RobertaPositions(ids, Config.PadTokenId ?? 1)
            : AttentionUtils.DefaultPositions(b, t, 0, ids.device));
        var types = inputs.TokenTypeIds ?? zeros(new[] { b, t }, ScalarType.Int64, ids.device);
        var h = L("embeddings.word_embeddings", ids) + L("embeddings.position_embeddings", pos) + L("embeddings.token_type_embeddings", types);
        h = L("embeddings.LayerNorm", h);
        var mask = AttentionUtils.AdditiveMask(inputs.AttentionMask, b, t, 0, causal: false, h.dtype, h.device);
        var hidden = inputs.OutputHiddenStates ? new List<Tensor> { h } : null;
        foreach (var layer in _layers)
        {
            var q = L(layer, "attention.self.query", h).view(b, t, heads, d).transpose(1, 2);
            var k = L(layer, "attention.self.key", h).view(b, t, heads, d).transpose(1, 2);
            var v = L(layer, "attention.self.value", h).view(b, t, heads, d).transpose(1, 2);
            var a = nn.functional.scaled_dot_product_attention(q, k, v, mask, 0.0, false, 1.0 / Math.Sqrt(d)).transpose(1, 2).reshape(b, t, heads * d);
            h = L(layer, "attention.output.LayerNorm", L(layer, "attention.output.dense", a) + h);
            var inter = _act.call(L(layer, "intermediate.dense", h));
            h = L(layer, "output.LayerNorm", L(layer, "output.dense", inter) + h);
            hidden?.Add(h);
        }
        return Escape(h, hidden);
    }

    /// <summary>BERT's pooler: tanh(dense(first token)).</summary>
    /// <param name="last">Last hidden states.</param>
    /// <returns>[batch, hidden].</returns>
    public Tensor Pool(Tensor last)
    {
        using var scope = NewDisposeScope();
        return L("pooler.dense", last.select(1, 0)).tanh().MoveToOuterDisposeScope();
    }
}
