using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.QLora;

/// <summary>
/// The 4-bit NormalFloat (NF4) data type and the block-wise quantisation QLoRA uses (Dettmers et al., 2305.14314), with
/// the constants of bitsandbytes: 16 NF4 levels in [−1, 1] (asymmetric: 8 non-negative, 7 negative, plus −1), and for the
/// double quantisation of the block scales bitsandbytes' signed 8-bit "dynamic" map. Everything runs as torch ops on the
/// tensor's device (no per-element C# loop).
/// </summary>
/// <remarks>
/// <para>NF4 quantisation of a flat tensor with block size b: absmax_k = max |x| over block k; every x of the block is
/// normalised x·(1/absmax_k) (in float32, as bitsandbytes multiplies by the reciprocal) and mapped to the nearest level;
/// the decision thresholds are the midpoints of neighbouring levels, a value exactly on a midpoint takes the lower level
/// (bitsandbytes' <c>x &gt; threshold</c> tree). Codes are packed two per byte, the first element in the high nibble.
/// A block of zeros keeps absmax 0 and code 7 (level 0).</para>
/// <para>Double quantisation (bitsandbytes' <c>compress_statistics</c>): offset = mean(absmax); the centred scales
/// absmax − offset are quantised block-wise (256 per block) to the nearest value of the dynamic map, scaled by the block's
/// max |absmax − offset| (kept in float32); dequantisation is map[q]·scale + offset.</para>
/// </remarks>
public static class Nf4
{
    /// <summary>The 16 NF4 levels, ordered by code (bitsandbytes' <c>get_4bit_type("nf4")</c>).</summary>
    public static IReadOnlyList<float> Levels { get; } = new float[]
    {
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    };

    /// <summary>The code of level 0 (what an all-zero block stores).</summary>
    public const int ZeroCode = 7;

    /// <summary>The block sizes bitsandbytes accepts for 4-bit quantisation.</summary>
    public static IReadOnlyList<int> BlockSizes { get; } = new[] { 64, 128, 256, 512, 1024, 2048, 4096 };

    /// <summary>The block size of the double quantisation of the scales (QLoRA's, fixed in bitsandbytes).</summary>
    public const int NestedBlockSize = 256;

    private static float[]? s_dynamicMap;
    private static double[]? s_dynamicMidpoints;

    /// <summary>
    /// bitsandbytes' signed 8-bit dynamic map (<c>create_dynamic_map(signed=True)</c>), 256 sorted values: for exponent
    /// e = 0..6, 2^e fraction steps: the midpoints of <c>linspace(0.1, 1, 2^e + 1)</c> (float32) times ±10^(e−6), plus 0
    /// and 1. The largest gap is 0.9/64 (between neighbouring values of the top decade).
    /// </summary>
    /// <returns>The 256 values (a copy).</returns>
    public static float[] DynamicMap()
    {
        if (s_dynamicMap is null)
        {
            var data = new List<float>(256);
            using (var scope = NewDisposeScope())
            {
                for (int i = 0; i < 7; i++)
                {
                    int items = (1 << i) + 1;
                    // The same float32 tensor ops bitsandbytes runs (linspace, means, scalar products), on the same libtorch.
                    var b = linspace(0.1, 1.0, items, ScalarType.Float32);
                    var means = (b.narrow(0, 0, items - 1) + b.narrow(0, 1, items - 1)) / 2.0;
                    double scale = Math.Pow(10, -6 + i);
                    data.AddRange((means * scale).ToArray<float>());
                    data.AddRange((means * -scale).ToArray<float>());
                }
            }
            data.Add(0);
            data.Add(1.0f);
            if (data.Count != 256) throw new InvalidOperationException($"the dynamic map has {data.Count} values, expected 256");
            s_dynamicMap = data.Order().ToArray();
            s_dynamicMidpoints = Midpoints(s_dynamicMap);
        }
        return (float[])s_dynamicMap.Clone();
    }

    /// <summary>The thresholds between neighbouring sorted values (midpoints computed in float64, then rounded to float32
    /// as bitsandbytes' literals are).</summary>
    /// <param name="sorted">Sorted values.</param>
    /// <returns>Count − 1 thresholds.</returns>
    internal static double[] Midpoints(IReadOnlyList<float> sorted)
    {
        var m = new double[sorted.Count - 1];
        for (int i = 0; i < m.Length; i++) m[i] = (float)(((double)sorted[i] + sorted[i + 1]) / 2);
        return m;
    }

    private static readonly double[] s_nf4Midpoints = Midpoints(Levels);
    private static readonly object s_lock = new();
    private static readonly Dictionary<string, Tensor> s_tables = new(StringComparer.Ordinal);

    /// <summary>A constant table on a device, built once and kept for the process (never disposed).</summary>
    private static Tensor Table(string name, Device device, Func<Tensor> build)
    {
        var key = name + "@" + device;
        lock (s_lock)
        {
            if (!s_tables.TryGetValue(key, out var t))
            {
                using var scope = NewDisposeScope();
                t = build().to(device).DetachFromDisposeScope();
                s_tables[key] = t;
            }
            return t;
        }
    }

    /// <summary>[256, 2] float32: row b holds the levels of the high and the low nibble of byte b, so one
    /// index_select of the packed bytes dequantises two codes per byte.</summary>
    private static Tensor PairTable(Device device) => Table("nf4pairs", device, () =>
    {
        var t = new float[512];
        for (int b = 0; b < 256; b++)
        {
            t[2 * b] = Levels[b >> 4];
            t[2 * b + 1] = Levels[b & 15];
        }
        return tensor(t, new long[] { 256, 2 });
    });

    private static Tensor DynamicMapTensor(Device device) => Table("dynamic8", device, () => tensor(DynamicMap()));

    /// <summary>Indices of the nearest value among sorted values with the given midpoints: the count of midpoints strictly
    /// below x (so a value on a midpoint takes the lower one), as uint8.</summary>
    private static Tensor NearestCodes(Tensor x, double[] midpoints)
    {
        using var scope = NewDisposeScope();
        var codes = zeros(x.shape, ScalarType.Byte, x.device);
        foreach (var m in midpoints) codes.add_(x.gt(m).to_type(ScalarType.Byte));
        return codes.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Quantises a tensor (any shape, read flat in row-major order) to packed NF4 codes and float32 block scales.
    /// </summary>
    /// <param name="x">The values (any floating type; converted to float32).</param>
    /// <param name="blockSize">Elements per block (one of <see cref="BlockSizes"/>).</param>
    /// <returns>Packed codes (uint8, ⌈n/2⌉) and absmax (float32, ⌈n/blockSize⌉).</returns>
    public static (Tensor packed, Tensor absmax) Quantize(Tensor x, int blockSize = 64)
    {
        ArgumentNullException.ThrowIfNull(x);
        CheckBlockSize(blockSize);
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        long n = x.numel();
        long blocks = (n + blockSize - 1) / blockSize;
        var flat = x.to_type(ScalarType.Float32).reshape(-1);
        long pad = blocks * blockSize - n;
        if (pad > 0) flat = cat(new[] { flat, zeros(new[] { pad }, ScalarType.Float32, x.device) });
        var b = flat.view(blocks, blockSize);
        var absmax = b.abs().amax(new long[] { 1 });
        // x·(1/absmax) as bitsandbytes; a zero block is scaled by 1 (all its values are 0 and map to level 0).
        var inv = absmax.reciprocal().masked_fill(absmax.eq(0), 1.0);
        var codes = NearestCodes(b * inv.unsqueeze(1), s_nf4Midpoints).reshape(-1);
        long bytes = (n + 1) / 2;
        var pairs = codes.narrow(0, 0, 2 * bytes).view(bytes, 2);
        var packed = pairs.select(1, 0) * 16 + pairs.select(1, 1);
        return (packed.to_type(ScalarType.Byte).contiguous().MoveToOuterDisposeScope(), absmax.MoveToOuterDisposeScope());
    }

    /// <summary>Dequantises packed NF4 codes: level(code)·absmax of the element's block, in float32, flat (n elements).</summary>
    /// <param name="packed">Packed codes (uint8).</param>
    /// <param name="absmax">Block scales (float32).</param>
    /// <param name="n">Number of elements.</param>
    /// <param name="blockSize">Elements per block.</param>
    /// <returns>The n values (float32).</returns>
    public static Tensor Dequantize(Tensor packed, Tensor absmax, long n, int blockSize = 64)
    {
        ArgumentNullException.ThrowIfNull(packed);
        ArgumentNullException.ThrowIfNull(absmax);
        using var scope = NewDisposeScope();
        long blocks = absmax.numel();
        if (packed.numel() != (n + 1) / 2 || blocks != (n + blockSize - 1) / blockSize)
            throw new ArgumentException($"{packed.numel()} packed bytes and {blocks} scales do not describe {n} values in blocks of {blockSize}");
        var values = PairTable(packed.device).index_select(0, packed.to_type(ScalarType.Int32)).reshape(-1);
        long full = blocks * blockSize;
        if (values.numel() < full) values = cat(new[] { values, zeros(new[] { full - values.numel() }, ScalarType.Float32, packed.device) });
        else if (values.numel() > full) values = values.narrow(0, 0, full);
        var result = (values.view(blocks, blockSize) * absmax.to_type(ScalarType.Float32).unsqueeze(1)).reshape(-1);
        if (full != n) result = result.narrow(0, 0, n);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>Double quantisation of block scales: (codes uint8, per-block scale float32, offset float32 scalar).</summary>
    /// <param name="absmax">The float32 scales.</param>
    /// <returns>The compressed scales.</returns>
    public static (Tensor codes, Tensor scale, Tensor offset) QuantizeScales(Tensor absmax)
    {
        ArgumentNullException.ThrowIfNull(absmax);
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        long n = absmax.numel();
        long blocks = (n + NestedBlockSize - 1) / NestedBlockSize;
        var a = absmax.to_type(ScalarType.Float32).reshape(-1);
        var offset = a.mean();
        var centred = a - offset;
        long pad = blocks * NestedBlockSize - n;
        var padded = pad > 0 ? cat(new[] { centred, zeros(new[] { pad }, ScalarType.Float32, a.device) }) : centred;
        var b = padded.view(blocks, NestedBlockSize);
        var scale = b.abs().amax(new long[] { 1 });
        var inv = scale.reciprocal().masked_fill(scale.eq(0), 1.0);
        DynamicMap();
        var codes = NearestCodes(b * inv.unsqueeze(1), s_dynamicMidpoints!).reshape(-1).narrow(0, 0, n).contiguous();
        return (codes.MoveToOuterDisposeScope(), scale.MoveToOuterDisposeScope(), offset.MoveToOuterDisposeScope());
    }

    /// <summary>Dequantises compressed scales: map[code]·scale + offset (float32).</summary>
    /// <param name="codes">uint8 codes.</param>
    /// <param name="scale">Per-block scales (float32).</param>
    /// <param name="offset">The offset (float32 scalar).</param>
    /// <returns>The float32 scales.</returns>
    public static Tensor DequantizeScales(Tensor codes, Tensor scale, Tensor offset)
    {
        ArgumentNullException.ThrowIfNull(codes);
        ArgumentNullException.ThrowIfNull(scale);
        ArgumentNullException.ThrowIfNull(offset);
        using var scope = NewDisposeScope();
        long n = codes.numel();
        var perElement = scale.repeat_interleave(NestedBlockSize).narrow(0, 0, n);
        var result = DynamicMapTensor(codes.device).index_select(0, codes.to_type(ScalarType.Int32)) * perElement + offset;
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>Throws unless <paramref name="blockSize"/> is one of <see cref="BlockSizes"/>.</summary>
    /// <param name="blockSize">The block size.</param>
    public static void CheckBlockSize(int blockSize)
    {
        if (!BlockSizes.Contains(blockSize))
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, $"the NF4 block size must be one of {string.Join(", ", BlockSizes)} (bitsandbytes' sizes)");
    }
}
