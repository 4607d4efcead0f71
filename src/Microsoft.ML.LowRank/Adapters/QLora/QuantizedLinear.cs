using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.QLora;

/// <summary>
/// A frozen Linear layer whose weight is stored in 4-bit NF4 (bitsandbytes' Linear4bit layout): y = x·Ŵᵀ + b, where Ŵ
/// is dequantised on the fly in every forward from the packed codes (see <see cref="Nf4"/>). Storage: the parameter
/// <c>weight</c> (uint8, two codes per byte, ⌈out·in/2⌉ bytes, never trained), the buffer <c>absmax</c> (one scale per
/// block: uint8 codes with double quantisation, else float32), with double quantisation the buffers
/// <c>nested_absmax</c> (float32, one per 256 scales) and <c>nested_offset</c> (float32 scalar), and the
/// <c>bias</c> (unquantised, in <see cref="ComputeType"/>). The weight is always in Linear layout [out, in]; a GPT-2
/// Conv1D is transposed when quantised.
/// </summary>
/// <remarks>
/// Training memory: libtorch's autograd keeps the dequantised weight of each layer alive from forward to backward (it
/// needs Ŵ for the input gradient) because this library has no custom autograd function from managed code; bitsandbytes
/// re-dequantises in backward instead. The storage of the model itself (what this type saves) is ≈ 0.26× float16.
/// </remarks>
public sealed class QuantizedLinear : nn.Module<Tensor, Tensor>
{
    private QuantizedLinear(long inFeatures, long outFeatures, int blockSize, bool doubleQuant, ScalarType computeType, bool fromConv1D)
        : base(nameof(QuantizedLinear))
    {
        in_features = inFeatures;
        out_features = outFeatures;
        BlockSize = blockSize;
        DoubleQuant = doubleQuant;
        ComputeType = computeType;
        FromConv1D = fromConv1D;
    }

    /// <summary>Input size.</summary>
    public long in_features { get; }

    /// <summary>Output size.</summary>
    public long out_features { get; }

    /// <summary>Elements per quantisation block (64 in QLoRA).</summary>
    public int BlockSize { get; }

    /// <summary>Whether the block scales are themselves quantised to 8 bits (QLoRA's double quantisation).</summary>
    public bool DoubleQuant { get; }

    /// <summary>The floating-point type the weight is dequantised to and the layer computes in (the original weight's type).</summary>
    public ScalarType ComputeType { get; }

    /// <summary>True when the layer was made from GPT-2's Conv1D (<see cref="ToDense"/> gives a Conv1D back).</summary>
    public bool FromConv1D { get; }

    /// <summary>The packed NF4 codes (uint8, never trained).</summary>
    public nn.Parameter weight => get_parameter("weight");

    /// <summary>The bias [out], or null.</summary>
    public nn.Parameter? bias => named_parameters(false).Where(p => p.name == "bias").Select(p => p.parameter).FirstOrDefault();

    private Tensor Buffer(string name) => named_buffers(false).First(b => b.name == name).buffer;

    /// <summary>
    /// Quantises a Linear (or GPT-2 Conv1D) layer. On the meta device only the shapes are created (parameter counting).
    /// </summary>
    /// <param name="layer">A <see cref="Linear"/> or <see cref="Conv1D"/> (not changed).</param>
    /// <param name="blockSize">Elements per block (one of <see cref="Nf4.BlockSizes"/>; QLoRA: 64).</param>
    /// <param name="doubleQuant">Quantise the block scales to 8 bits (QLoRA: true).</param>
    /// <param name="computeType">The type to dequantise to (null: the layer's weight type).</param>
    /// <returns>The quantised layer.</returns>
    /// <exception cref="NotSupportedException">Another layer type.</exception>
    public static QuantizedLinear Quantize(nn.Module layer, int blockSize = 64, bool doubleQuant = true, ScalarType? computeType = null)
    {
        ArgumentNullException.ThrowIfNull(layer);
        Nf4.CheckBlockSize(blockSize);
        var (w, b, fromConv) = layer switch
        {
            Linear l => (l.weight, l.bias, false),
            Conv1D c => (c.weight, (Tensor?)c.bias, true),
            _ => throw new NotSupportedException($"only Linear and GPT-2 Conv1D layers can be quantised to NF4, not {layer.name}"),
        };
        long inF = fromConv ? w.size(0) : w.size(1), outF = fromConv ? w.size(1) : w.size(0);
        var ct = computeType ?? w.dtype;
        if (!ct.IsFloatingPoint()) throw new ArgumentException($"the compute type must be a floating-point type, not {ct}", nameof(computeType));
        var q = new QuantizedLinear(inF, outF, blockSize, doubleQuant, ct, fromConv);
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        long n = inF * outF, blocks = (n + blockSize - 1) / blockSize;
        Tensor packed, absmax;
        Tensor? nested = null, offset = null;
        if (w.device.type == DeviceType.META)
        {
            packed = empty(new[] { (n + 1) / 2 }, ScalarType.Byte, w.device);
            absmax = empty(new[] { blocks }, doubleQuant ? ScalarType.Byte : ScalarType.Float32, w.device);
            if (doubleQuant)
            {
                nested = empty(new[] { (blocks + Nf4.NestedBlockSize - 1) / Nf4.NestedBlockSize }, ScalarType.Float32, w.device);
                offset = empty(Array.Empty<long>(), ScalarType.Float32, w.device);
            }
        }
        else
        {
            (packed, absmax) = Nf4.Quantize(fromConv ? w.t() : w, blockSize);
            if (doubleQuant) (absmax, nested, offset) = Nf4.QuantizeScales(absmax);
        }
        q.register_parameter("weight", new nn.Parameter(packed, requires_grad: false));
        if (b is not null) q.register_parameter("bias", new nn.Parameter(b.to_type(ct, copy: true), requires_grad: false));
        q.register_buffer("absmax", absmax);
        if (doubleQuant)
        {
            q.register_buffer("nested_absmax", nested);
            q.register_buffer("nested_offset", offset);
        }
        return q;
    }

    /// <summary>The block scales in float32 (dequantised from 8 bits with double quantisation).</summary>
    /// <returns>The scales (the caller owns them).</returns>
    public Tensor Scales()
    {
        var absmax = Buffer("absmax");
        return DoubleQuant ? Nf4.DequantizeScales(absmax, Buffer("nested_absmax"), Buffer("nested_offset")) : absmax.to_type(ScalarType.Float32, copy: true);
    }

    /// <summary>The dequantised weight Ŵ [out, in] in <see cref="ComputeType"/> (computed in float32, then cast).</summary>
    /// <returns>The weight (the caller owns it).</returns>
    public Tensor Dequantize()
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var w = Nf4.Dequantize(weight, Scales(), in_features * out_features, BlockSize).view(out_features, in_features);
        return w.to_type(ComputeType).MoveToOuterDisposeScope();
    }

    /// <summary>x·Ŵᵀ + b in <see cref="ComputeType"/> (an input of another floating type is cast to it and the result cast
    /// back, as bitsandbytes does with its compute dtype).</summary>
    /// <param name="input">[..., in].</param>
    /// <returns>[..., out].</returns>
    public override Tensor forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        using var scope = NewDisposeScope();
        var x = input.dtype == ComputeType ? input : input.to_type(ComputeType);
        var y = nn.functional.linear(x, Dequantize(), bias);
        return (y.dtype == input.dtype ? y : y.to_type(input.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>Bytes of the quantised weight's storage: packed codes, scales, and the double quantisation's scales and
    /// offset (the bias and the 16-level / 256-value code tables, shared by every layer, are not counted).</summary>
    public long StorageBytes
    {
        get
        {
            long bytes = weight.numel() * weight.element_size();
            foreach (var (_, t) in named_buffers(false)) bytes += t.numel() * t.element_size();
            return bytes;
        }
    }

    /// <summary>A dense layer holding Ŵ (and the bias): a <see cref="Linear"/>, or a <see cref="Conv1D"/> with Ŵᵀ when the
    /// layer was made from one. Its forward equals this layer's.</summary>
    /// <returns>The new layer (the caller owns it).</returns>
    public nn.Module<Tensor, Tensor> ToDense()
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        var device = weight.device;
        var w = Dequantize();
        var b = bias;
        if (FromConv1D)
        {
            var c = new Conv1D(in_features, out_features, device, ComputeType);
            c.weight.copy_(w.t());
            if (b is not null) c.bias.copy_(b);
            else c.bias.zero_();
            return c;
        }
        var l = new Linear(in_features, out_features, b is not null, device, ComputeType);
        l.weight.copy_(w);
        if (b is not null) l.bias!.copy_(b);
        return l;
    }
}
