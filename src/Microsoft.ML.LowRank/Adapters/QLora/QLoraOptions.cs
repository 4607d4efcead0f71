using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Adapters.QLora;

/// <summary>
/// QLoRA (Dettmers et al., 2305.14314): LoRA over a base whose targeted Linear weights are stored in 4-bit NF4 with
/// block size 64 and double-quantised block scales (8-bit, 256 per block), dequantised on the fly in every forward
/// (<see cref="QuantizedLinear"/>). The LoRA factors stay in float32 (PEFT's autocast of adapter weights, for
/// float16/bfloat16 bases) or the base type. Defaults: LoRA's, with <see cref="LowRankAdapterOptions.TargetModules"/>
/// "all-linear" (QLoRA adapts every linear layer of the blocks).
/// </summary>
/// <remarks>
/// <para>Which weights are quantised: exactly the targeted ones (each is quantised when its adapter layer is created, so
/// loading a saved QLoRA adapter onto the original dense model reproduces the same codes). Embeddings, norms, heads and
/// untargeted linears stay dense; QLoRA quantises every linear of the blocks, which the default all-linear target does.</para>
/// <para>Merging: merging into NF4 would re-quantise (PEFT does, lossily); here <c>Merge</c> refuses on a quantised base.
/// <see cref="DequantizeBase"/> first replaces every quantised base by a dense layer holding the dequantised weight Ŵ; the
/// merge is then exact (the merged model equals the QLoRA model up to float rounding).</para>
/// <para>The config is PEFT's LoRA config plus bitsandbytes-style keys (<c>bnb_4bit_quant_type</c>,
/// <c>bnb_4bit_use_double_quant</c>, <c>bnb_4bit_blocksize</c>, <c>bnb_4bit_compute_dtype</c>); PEFT ≥ 0.13 drops unknown
/// keys with a warning, so the adapter loads there as plain LoRA (onto a bitsandbytes-quantised base).</para>
/// </remarks>
public sealed class QLoraOptions : LoraOptions
{
    /// <summary><c>bnb_4bit_quant_type</c>: the 4-bit type. Only "nf4" (the default) is implemented.</summary>
    public string QuantType { get; set; } = "nf4";

    /// <summary><c>bnb_4bit_use_double_quant</c>: quantise the block scales to 8 bits (256 per block). Default true.</summary>
    public bool UseDoubleQuant { get; set; } = true;

    /// <summary><c>bnb_4bit_blocksize</c>: elements per quantisation block (one of <see cref="Nf4.BlockSizes"/>). Default 64.</summary>
    public int BlockSize { get; set; } = 64;

    /// <summary><c>bnb_4bit_compute_dtype</c>: the type the weights are dequantised to ("float32", "bfloat16",
    /// "float16", "float64"); null (the default): the base weight's type.</summary>
    public ScalarType? ComputeDtype { get; set; }

    /// <inheritdoc/>
    public override ModuleSelector? DefaultTargetModules(string modelType) => ModuleSelector.AllLinear;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (QuantType != "nf4") throw new NotSupportedException($"bnb_4bit_quant_type '{QuantType}' is not implemented (only \"nf4\")");
        Nf4.CheckBlockSize(BlockSize);
        if (ComputeDtype is { } t && !t.IsFloatingPoint()) throw new ArgumentException($"bnb_4bit_compute_dtype must be a floating-point type, not {t}");
        if (InitLoraWeights is LoraInitialization.PiSSA or LoraInitialization.OLoRA)
            throw new NotSupportedException($"QLoRA with init_lora_weights {InitLoraWeights} would rewrite the quantised base weight; use the default or gaussian init");
    }

    /// <inheritdoc/>
    protected internal override AdapterLayer CreateLayer(torch.nn.Module baseLayer)
        => new LoraLayer(QuantizedLinear.Quantize(baseLayer, BlockSize, UseDoubleQuant, ComputeDtype));

    /// <inheritdoc/>
    protected internal override bool IsCompatibleLayer(AdapterLayer layer)
        => layer is LoraLayer { BaseLayer: QuantizedLinear q } && q.BlockSize == BlockSize && q.DoubleQuant == UseDoubleQuant;

    /// <summary>
    /// Replaces every NF4 base layer of the model's adapter layers by a dense layer holding its dequantised weight (a
    /// Linear, or a Conv1D for GPT-2) in the layer's compute type. Outputs do not change; afterwards merging is exact and
    /// <see cref="LowRankModel.MergeAndUnload"/> gives a plain dense model equal to the trained QLoRA model.
    /// </summary>
    /// <param name="model">The adapted model.</param>
    /// <returns>How many layers were dequantised.</returns>
    public static int DequantizeBase(LowRankModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        int count = 0;
        foreach (var (_, layer) in model.AdapterLayers().ToList())
        {
            if (layer.BaseLayer is not QuantizedLinear q) continue;
            var dense = q.ToDense();
            foreach (var p in dense.parameters()) p.requires_grad = false;
            layer.register_module("base_layer", dense);
            q.Dispose();
            count++;
        }
        return count;
    }

    /// <summary>The bytes the quantised base weights of a model occupy (<see cref="QuantizedLinear.StorageBytes"/> summed)
    /// and the bytes the same weights take in float16 (2 per element).</summary>
    /// <param name="model">The adapted model.</param>
    /// <returns>(quantised, float16) bytes.</returns>
    public static (long quantized, long float16) BaseWeightBytes(LowRankModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        long q = 0, f = 0;
        foreach (var (_, layer) in model.AdapterLayers())
            if (layer.BaseLayer is QuantizedLinear ql)
            {
                q += ql.StorageBytes;
                f += 2 * ql.in_features * ql.out_features;
            }
        return (q, f);
    }

    // ------------------------------------------------------------------ JSON

    /// <inheritdoc/>
    public override bool Accepts(JsonObject config) => base.Accepts(config) && config.ContainsKey("bnb_4bit_quant_type");

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["bnb_4bit_quant_type"] = QuantType;
        o["bnb_4bit_use_double_quant"] = UseDoubleQuant;
        o["bnb_4bit_blocksize"] = BlockSize;
        o["bnb_4bit_compute_dtype"] = ComputeDtype is { } t ? DtypeName(t) : null;
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        QuantType = Str(o, "bnb_4bit_quant_type") ?? "nf4";
        UseDoubleQuant = Bool(o, "bnb_4bit_use_double_quant") ?? true;
        if (o["bnb_4bit_blocksize"] is { } b) BlockSize = Int(b, "bnb_4bit_blocksize");
        ComputeDtype = Str(o, "bnb_4bit_compute_dtype") is { } s ? ParseDtype(s) : null;
    }

    private static string DtypeName(ScalarType t) => t switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.Float16 => "float16",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float64 => "float64",
        _ => throw new ArgumentException($"not a floating-point type: {t}"),
    };

    private static ScalarType ParseDtype(string s) => s.StartsWith("torch.", StringComparison.Ordinal) ? ParseDtype(s["torch.".Length..]) : s switch
    {
        "float32" or "float" => ScalarType.Float32,
        "float16" or "half" => ScalarType.Float16,
        "bfloat16" => ScalarType.BFloat16,
        "float64" or "double" => ScalarType.Float64,
        _ => throw new FormatException($"bnb_4bit_compute_dtype: unknown type '{s}' (float32, bfloat16, float16, float64)"),
    };
}
