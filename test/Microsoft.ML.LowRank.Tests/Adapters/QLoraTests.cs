using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Adapters.QLora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>
/// An independent float64 NF4 reference (bitsandbytes' recipe written out here): the 16 levels, the signed 8-bit dynamic
/// map built from its definition, nearest-value quantisation per block, and dequantisation of a <see cref="QuantizedLinear"/>
/// read from its stored bytes.
/// </summary>
internal static class Nf4Reference
{
    public static readonly double[] Levels =
    {
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
        -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    };

    /// <summary>create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) in float64.</summary>
    public static double[] DynamicMap()
    {
        var data = new List<double>();
        for (int i = 0; i < 7; i++)
        {
            int items = (1 << i) + 1;
            for (int k = 0; k < items - 1; k++)
            {
                double b0 = 0.1 + 0.9 * k / (items - 1), b1 = 0.1 + 0.9 * (k + 1) / (items - 1);
                double mean = (b0 + b1) / 2;
                data.Add(Math.Pow(10, i - 6) * mean);
                data.Add(-Math.Pow(10, i - 6) * mean);
            }
        }
        data.Add(0);
        data.Add(1);
        return data.Order().ToArray();
    }

    /// <summary>Index of the nearest table value (the lower one on an exact tie) and whether x is within
    /// <paramref name="tieTolerance"/> of a midpoint (where float32 and float64 may legitimately disagree).</summary>
    public static (int index, bool nearTie) Nearest(double x, double[] table, double tieTolerance)
    {
        int best = 0;
        for (int i = 1; i < table.Length; i++)
            if (Math.Abs(x - table[i]) < Math.Abs(x - table[best])) best = i;
        bool tie = false;
        for (int i = 0; i + 1 < table.Length; i++)
            if (Math.Abs(x - (table[i] + table[i + 1]) / 2) < tieTolerance) tie = true;
        return (best, tie);
    }

    /// <summary>Codes unpacked from bytes: the first element in the high nibble.</summary>
    public static int[] Unpack(byte[] packed, long n)
    {
        var codes = new int[n];
        for (long i = 0; i < n; i++) codes[i] = i % 2 == 0 ? packed[i / 2] >> 4 : packed[i / 2] & 15;
        return codes;
    }

    /// <summary>Ŵ [out, in] of a quantised layer in float64, from its stored codes and (double-quantised) scales.</summary>
    public static double[] Dequantize(QuantizedLinear q)
    {
        long n = q.in_features * q.out_features;
        var codes = Unpack(q.weight.ToArray<byte>(), n);
        var buffers = q.named_buffers(false).ToDictionary(b => b.name, b => b.buffer);
        double[] scales;
        if (q.DoubleQuant)
        {
            var map = DynamicMap();
            var qa = buffers["absmax"].ToArray<byte>();
            var nested = buffers["nested_absmax"].ToDoubleArray();
            double offset = buffers["nested_offset"].ToDouble();
            scales = qa.Select((c, i) => map[c] * nested[i / 256] + offset).ToArray();
        }
        else scales = buffers["absmax"].ToDoubleArray();
        var w = new double[n];
        for (long i = 0; i < n; i++) w[i] = Levels[codes[i]] * scales[i / q.BlockSize];
        return w;
    }
}

/// <summary>QLoRA's layer formula in float64: x·Ŵᵀ + b + Σ s·(x·Aᵀ)·Bᵀ with Ŵ dequantised by <see cref="Nf4Reference"/>
/// (LoRA's reference applied to the dequantised weight).</summary>
public sealed class QLoraReference : AdapterReference
{
    private static readonly LoraReference s_lora = new();

    private static Dictionary<string, double[]> WithDense(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p)
    {
        var d = p.ToDictionary(kv => kv.Key, kv => kv.Value);
        d["base_layer.weight"] = Nf4Reference.Dequantize((QuantizedLinear)layer.BaseLayer);
        return d;
    }

    public override double[] Forward(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p, double[] x, int rows)
        => s_lora.Forward(layer, WithDense(layer, p), x, rows);

    public override (double[] dx, Dictionary<string, double[]> dp) Gradients(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p,
        double[] x, int rows, double[] gy, IReadOnlyCollection<string> wrt)
        => s_lora.Gradients(layer, WithDense(layer, p), x, rows, gy, wrt);
}

/// <summary>NF4 quantisation against the float64 reference, the double quantisation's error bound, memory, QLoRA's
/// forward and gradients, the invariants that apply (init = the dequantised base, disable = the dequantised base, only
/// adapters train, save → load), the merge decision, and the options.</summary>
public class QLoraTests(ITestOutputHelper output)
{
    private static Tensor Weights(long n, int seed)
    {
        using var g = new Generator((ulong)seed);
        // Blocks of very different scales, and one all-zero block.
        var x = randn(new[] { n }, generator: g) * (rand(new[] { n }, generator: g) * 3 + 0.01).exp();
        var mask = ones(new[] { n });
        if (n > 192) mask.narrow(0, 128, 64).zero_();
        return x * mask;
    }

    [Theory]
    [InlineData(999, 64)]
    [InlineData(4096, 64)]
    [InlineData(1001, 128)]
    public void Nf4MatchesTheFloat64NearestLevelReference(long n, int blockSize)
    {
        using var scope = NewDisposeScope();
        var x = Weights(n, 3);
        var (packed, absmax) = Nf4.Quantize(x, blockSize);
        Assert.Equal(ScalarType.Byte, packed.dtype);
        Assert.Equal((n + 1) / 2, packed.numel());
        Assert.Equal((n + blockSize - 1) / blockSize, absmax.numel());
        var xs = x.ToDoubleArray();
        var scales = absmax.ToDoubleArray();
        var bytes = packed.ToArray<byte>();
        var codes = Nf4Reference.Unpack(bytes, n);
        if (n % 2 == 1) Assert.Equal(Nf4.ZeroCode, bytes[^1] & 15); // the unused low nibble holds the code of 0, as bitsandbytes' zero padding gives
        var deq = Nf4.Dequantize(packed, absmax, n, blockSize).ToDoubleArray();
        int ties = 0;
        double worstBound = 0;
        for (long i = 0; i < n; i++)
        {
            long blk = i / blockSize;
            double amax = 0;
            for (long k = blk * blockSize; k < Math.Min(n, (blk + 1) * blockSize); k++) amax = Math.Max(amax, Math.Abs(xs[k]));
            Assert.Equal(amax, scales[blk]); // max |x| is exact in float32
            var (want, nearTie) = Nf4Reference.Nearest(amax == 0 ? 0 : xs[i] / amax, Nf4Reference.Levels, 1e-6);
            if (codes[i] != want)
            {
                Assert.True(nearTie, $"element {i}: code {codes[i]}, nearest level {want} (x/absmax = {xs[i] / amax})");
                ties++;
            }
            double expected = Nf4Reference.Levels[codes[i]] * scales[blk];
            Assert.True(Math.Abs(deq[i] - expected) <= 1e-7 * Math.Abs(expected), $"dequantised {deq[i]} != level·absmax {expected}");
            // Nearest level: the error is at most half the widest gap of the levels (between −1 and −0.696) times absmax.
            worstBound = Math.Max(worstBound, Math.Abs(deq[i] - xs[i]) / (amax == 0 ? 1 : amax));
        }
        Assert.True(worstBound <= (1 - 0.6961928009986877) / 2 + 1e-6, $"worst |x − x̂|/absmax = {worstBound}");
        Assert.True(ties <= 2, $"{ties} codes differ from the reference near a midpoint");
        if (n > 192) Assert.All(codes.Skip(128).Take(64), c => Assert.Equal(Nf4.ZeroCode, c)); // the zero block
        output.WriteLine($"n = {n}, block {blockSize}: worst |x − x̂|/absmax {worstBound:F4}, {ties} midpoint ties");
    }

    [Fact]
    public void DynamicMapIsBitsandbytesSigned8BitMap()
    {
        var map = Nf4.DynamicMap();
        var reference = Nf4Reference.DynamicMap();
        Assert.Equal(256, map.Length);
        for (int i = 0; i < 256; i++) Assert.True(Math.Abs(map[i] - reference[i]) <= 3e-7 * Math.Max(1e-6, Math.Abs(reference[i])), $"map[{i}] = {map[i]}, reference {reference[i]}"); // float32 vs float64
        Assert.Equal(1.0f, map[^1]);
        Assert.Contains(0f, map);
        double maxGap = 0;
        for (int i = 1; i < 256; i++)
        {
            Assert.True(map[i] > map[i - 1]);
            maxGap = Math.Max(maxGap, map[i] - map[i - 1]);
        }
        Assert.InRange(maxGap, 0.9 / 64 - 1e-6, 0.9 / 64 + 1e-6);
    }

    [Theory]
    [InlineData(1000)]
    [InlineData(256)]
    public void DoubleQuantisedScalesStayWithinHalfTheMapsWidestGap(int count)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(5);
        var absmax = randn(new long[] { count }, generator: g).abs() * 0.05 + 0.01;
        var (codes, scale, offset) = Nf4.QuantizeScales(absmax);
        Assert.Equal(ScalarType.Byte, codes.dtype);
        Assert.Equal((count + 255) / 256, scale.numel());
        var a = absmax.ToDoubleArray();
        double mean = a.Average();
        Assert.True(Math.Abs(offset.ToDouble() - mean) <= 1e-6 * mean);
        var map = Nf4Reference.DynamicMap();
        var q = codes.ToArray<byte>();
        var s = scale.ToDoubleArray();
        var deq = Nf4.DequantizeScales(codes, scale, offset).ToDoubleArray();
        double off = offset.ToDouble(), worst = 0;
        int ties = 0;
        for (int i = 0; i < count; i++)
        {
            int blk = i / 256;
            double smax = 0;
            for (int k = blk * 256; k < Math.Min(count, (blk + 1) * 256); k++) smax = Math.Max(smax, Math.Abs(a[k] - off));
            Assert.True(Math.Abs(s[blk] - smax) <= 1e-6 * smax, $"block {blk}: scale {s[blk]} vs max |a − offset| {smax}");
            var (want, nearTie) = Nf4Reference.Nearest((a[i] - off) / s[blk], map, 1e-6);
            if (q[i] != want) { Assert.True(nearTie, $"scale {i}: code {q[i]}, nearest {want}"); ties++; }
            Assert.True(Math.Abs(deq[i] - (map[q[i]] * s[blk] + off)) <= 1e-6 * Math.Abs(deq[i]), $"dequantised scale {i}");
            worst = Math.Max(worst, Math.Abs(deq[i] - a[i]) / s[blk]);
        }
        // The bound: half the widest gap of the map (0.9/64 in its top decade) times the block's scale.
        Assert.True(worst <= 0.9 / 128 + 1e-6, $"worst |a − â|/scale = {worst}");
        Assert.True(ties <= 1);
        output.WriteLine($"{count} scales: worst relative error {worst:E3} of the block scale (bound {0.9 / 128:E3})");
    }

    [Fact]
    public void StorageIsAboutAQuarterOfFloat16()
    {
        using var scope = NewDisposeScope();
        using var dense = new Linear(2048, 2048, hasBias: false);
        using var q = QuantizedLinear.Quantize(dense);
        using var qNoDq = QuantizedLinear.Quantize(dense, doubleQuant: false);
        long n = 2048L * 2048;
        // Independently: every stored tensor's bytes.
        long Stored(QuantizedLinear m) => m.state_dict().Sum(kv => kv.Value.numel() * kv.Value.element_size());
        Assert.Equal(Stored(q), q.StorageBytes);
        Assert.Equal(n / 2 + n / 64 + 4 * (n / 64 / 256) + 4, q.StorageBytes);
        Assert.Equal(n / 2 + 4 * (n / 64), qNoDq.StorageBytes);
        double ratio = q.StorageBytes / (2.0 * n), ratioNoDq = qNoDq.StorageBytes / (2.0 * n);
        output.WriteLine($"NF4 2048x2048: {q.StorageBytes} bytes vs float16 {2 * n}: ratio {ratio:F4} (double quant), {ratioNoDq:F4} (float32 scales)");
        Assert.InRange(ratio, 0.257, 0.259);
        Assert.Equal(0.28125, ratioNoDq, 10);

        // A whole (tiny) model: every block linear of the llama fixture quantised.
        using var lm = LowRankModel.Create(new AdapterFixture("llama").LoadModel(), new QLoraOptions { R = 4 });
        var (qb, fb) = QLoraOptions.BaseWeightBytes(lm);
        output.WriteLine($"tiny llama, all-linear: {qb} bytes vs float16 {fb}: ratio {(double)qb / fb:F4}");
        Assert.Equal(14, lm.AdapterLayers().Count());
        Assert.InRange((double)qb / fb, 0.25, 0.27);
    }

    [Fact]
    public void QuantizedLinearForwardIsTheDenseForwardOverTheDequantisedWeight()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        using var dense = new Linear(48, 40);
        using var q = QuantizedLinear.Quantize(dense);
        var w = Nf4Reference.Dequantize(q);
        var b = dense.bias!.ToDoubleArray();
        using var g = new Generator(8);
        var x = randn(new long[] { 5, 48 }, generator: g);
        var y = q.forward(x).ToDoubleArray();
        var xs = x.ToDoubleArray();
        var expected = new double[5 * 40];
        for (int i = 0; i < 5; i++)
            for (int o = 0; o < 40; o++)
            {
                double t = b[o];
                for (int k = 0; k < 48; k++) t += xs[i * 48 + k] * w[o * 48 + k];
                expected[i * 40 + o] = t;
            }
        AdapterInvariants.AssertClose(expected, y, 1e-5, "NF4 forward vs float64 x·Ŵᵀ + b");
        // Ŵ approximates W: relative Frobenius error of 4-bit NF4 on a uniform-initialised weight.
        var wd = dense.weight.ToDoubleArray();
        double num = 0, den = 0;
        for (int i = 0; i < wd.Length; i++) { num += (w[i] - wd[i]) * (w[i] - wd[i]); den += wd[i] * wd[i]; }
        output.WriteLine($"relative error of Ŵ: {Math.Sqrt(num / den):F4}");
        Assert.InRange(Math.Sqrt(num / den), 0.01, 0.15);
        // A bfloat16 compute type: the input is cast to it and the output back.
        using var q16 = QuantizedLinear.Quantize(dense, computeType: ScalarType.BFloat16);
        var y16 = q16.forward(x);
        Assert.Equal(ScalarType.Float32, y16.dtype);
        AdapterInvariants.AssertClose(expected, y16.ToDoubleArray(), 5e-2, "bf16 compute");
    }

    [Fact]
    public void MergeIsRefusedOnNf4AndExactAfterDequantizeBase()
    {
        using var scope = NewDisposeScope();
        foreach (var fixture in new[] { "llama_gqa", "gpt2" })
        {
            var f = new AdapterFixture(fixture);
            using var lm = LowRankModel.Create(f.LoadModel(), new QLoraOptions { R = 4, LoraAlpha = 8 });
            lm.eval();
            AdapterInvariants.Perturb(lm);
            var before = f.Logits(lm).Select(v => (double)v).ToList();
            var e = Assert.Throws<InvalidOperationException>(() => lm.Merge());
            Assert.Contains("NF4", e.Message);
            Assert.Contains("DequantizeBase", e.Message);
            Assert.Equal(lm.AdapterLayers().Count(), QLoraOptions.DequantizeBase(lm));
            Assert.DoesNotContain(lm.AdapterLayers(), l => l.layer.BaseLayer is QuantizedLinear);
            if (fixture == "gpt2") Assert.All(lm.AdapterLayers(), l => Assert.IsType<Conv1D>(l.layer.BaseLayer));
            AdapterInvariants.AssertClose(before, f.Logits(lm).Select(v => (double)v).ToList(), 1e-5, $"{fixture}: dequantised base");
            using var merged = lm.MergeAndUnload();
            AdapterInvariants.AssertClose(before, f.Logits(merged).Select(v => (double)v).ToList(), 1e-5, $"{fixture}: merged and unloaded");
        }
    }

    [Fact]
    public void OptionsRoundTripAndRejectWhatIsNotImplemented()
    {
        var o = new QLoraOptions { R = 8, UseDoubleQuant = false, BlockSize = 128, ComputeDtype = ScalarType.BFloat16 };
        var back = Assert.IsType<QLoraOptions>(LowRankAdapterOptions.FromJson(o.ToJson()));
        Assert.Equal((8, false, 128, (ScalarType?)ScalarType.BFloat16, "nf4"), (back.R, back.UseDoubleQuant, back.BlockSize, back.ComputeDtype, back.QuantType));
        Assert.Null(Assert.IsType<QLoraOptions>(AdapterMethods.Create("qlora")).ComputeDtype);
        Assert.Contains("nf4", Assert.Throws<NotSupportedException>(() => new QLoraOptions { QuantType = "fp4" }.Validate()).Message);
        Assert.Contains("block size", Assert.Throws<ArgumentOutOfRangeException>(() => new QLoraOptions { BlockSize = 32 }.Validate()).Message);
        Assert.Throws<NotSupportedException>(() => new QLoraOptions { InitLoraWeights = LoraInitialization.PiSSA }.Validate());
        var e = Assert.Throws<ArgumentException>(() => AdapterMethods.WithSettings(new QLoraOptions(), new Dictionary<string, string> { ["bnb_4bit_compute_dtype"] = "int8" }));
        Assert.Contains("bnb_4bit_compute_dtype", e.Message);
        Assert.Equal(ScalarType.Float16, ((QLoraOptions)AdapterMethods.WithSettings(new QLoraOptions(), new Dictionary<string, string> { ["bnb_4bit_compute_dtype"] = "torch.float16" })).ComputeDtype);
        Assert.Throws<NotSupportedException>(() => QuantizedLinear.Quantize(new Embedding(10, 4)));
    }
}
