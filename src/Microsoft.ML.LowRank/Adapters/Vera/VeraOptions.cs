using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.Vera;

/// <summary>
/// VeRA options (Kopiczko et al., "VeRA: Vector-based Random Matrix Adaptation", arXiv 2310.11454): PEFT's
/// <c>VeraConfig</c> with .NET names (the PEFT JSON name is given on each property), <c>peft_type "VERA"</c>. One pair
/// of frozen random matrices A [r, max_in], B [max_out, r] is shared by every adapted layer (each layer uses the slices
/// A[:, :in], B[:out, :]); each layer trains only λ_d [r] and λ_b [out]:
/// y = x·W0ᵀ + b + λ_b ⊙ ((λ_d ⊙ (dropout(x)·A_sᵀ))·B_sᵀ), with no α scaling. See <see cref="VeraLayer"/> and
/// docs/methods/vera.md. Defaults are PEFT's.
/// </summary>
/// <remarks>
/// The shared matrices are PEFT's: Kaiming-uniform with gain √2 (bound √(6/fan_in), fan_in = max_in for A and r for B),
/// drawn A first then B from a CPU generator seeded with <see cref="ProjectionPrngKey"/>, in float32, then moved to the
/// base weights' device and the adapter type. They live at <c>base_model.vera_A.&lt;adapter&gt;</c> /
/// <c>base_model.vera_B.&lt;adapter&gt;</c> and are saved under PEFT's keys <c>base_model.vera_A</c> /
/// <c>base_model.vera_B</c> when <see cref="SaveProjection"/> is true (loading then restores them from the file);
/// otherwise they are regenerated from the seed on load. Unlike PEFT, every adapter of a model gets its own pair, sized
/// for its own targets and rank, so adapters of different shapes or ranks can be added in any order.
/// </remarks>
public sealed class VeraOptions : LowRankAdapterOptions
{
    private Tensor? _sharedA, _sharedB;

    /// <inheritdoc/>
    public override string PeftType => "VERA";

    /// <summary><c>r</c>: the rank of the shared projections. Default 256 (VeRA uses far larger ranks than LoRA).</summary>
    public int R { get; set; } = 256;

    /// <summary><c>projection_prng_key</c>: the seed of the generator that draws the shared projections. Default 0.</summary>
    public long ProjectionPrngKey { get; set; }

    /// <summary><c>save_projection</c>: save the shared projections with the adapter (loading then restores them from the
    /// file instead of regenerating them; random streams are not guaranteed identical across libraries and versions).
    /// Default true.</summary>
    public bool SaveProjection { get; set; } = true;

    /// <summary><c>vera_dropout</c>: dropout probability on the adapter input. Default 0.</summary>
    public double VeraDropout { get; set; }

    /// <summary><c>d_initial</c>: the initial value of every λ_d entry. Default 0.1.</summary>
    public double DInitial { get; set; } = 0.1;

    /// <summary><c>fan_in_fan_out</c>: set automatically when a GPT-2 Conv1D is targeted (each layer follows its own base
    /// type). Default false.</summary>
    public bool FanInFanOut { get; set; }

    /// <summary><c>bias</c>: only "none" (the default) is implemented.</summary>
    public string Bias { get; set; } = "none";

    /// <summary><c>init_weights</c>: λ_b = 0 and λ_d = <see cref="DInitial"/> (the adapter starts as a no-op); false:
    /// λ_b = 1 and λ_d ~ N(0, 1), as PEFT does. Default true.</summary>
    public bool InitWeights { get; set; } = true;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (R <= 0) throw new ArgumentException($"r must be positive, got {R}");
        if (VeraDropout < 0 || VeraDropout >= 1) throw new ArgumentException($"vera_dropout must be in [0, 1), got {VeraDropout}");
        if (double.IsNaN(DInitial) || double.IsInfinity(DInitial)) throw new ArgumentException($"d_initial must be finite, got {DInitial}");
        if (ProjectionPrngKey < 0) throw new ArgumentException($"projection_prng_key must be non-negative, got {ProjectionPrngKey}");
        if (Bias != "none") throw new NotSupportedException($"bias '{Bias}' is not implemented (only \"none\")");
    }

    /// <summary>(in, out) of a module VeRA can adapt, or null.</summary>
    private static (long inF, long outF, Tensor weight)? Shape(nn.Module m) => m switch
    {
        AdapterLayer l => (l.InFeatures, l.OutFeatures, l.BaseWeight),
        Linear l => (l.in_features, l.out_features, l.weight),
        Conv1D c => (c.in_features, c.out_features, c.weight),
        _ => null,
    };

    /// <summary>
    /// Draws the shared projections as PEFT does (see the class remarks): A [r, max_in] then B [max_out, r], Kaiming-uniform
    /// with gain √2 from a CPU generator seeded with <paramref name="seed"/>, in float32.
    /// </summary>
    /// <param name="r">Rank.</param>
    /// <param name="maxIn">The largest input size of the adapted layers.</param>
    /// <param name="maxOut">The largest output size of the adapted layers.</param>
    /// <param name="seed">The seed (<c>projection_prng_key</c>).</param>
    /// <returns>A and B (float32, CPU, in the caller's dispose scope).</returns>
    public static (Tensor A, Tensor B) GenerateProjections(int r, long maxIn, long maxOut, long seed)
    {
        using var g = new Generator(unchecked((ulong)seed));
        var a = empty(new[] { (long)r, maxIn }, ScalarType.Float32);
        var b = empty(new[] { maxOut, (long)r }, ScalarType.Float32);
        using (no_grad())
        {
            // fan_in = size(1): max_in for A, r for B; gain √2: bound √3·(√2/√fan_in) = √(6 / fan_in), computed in
            // PEFT's order so the float32 draws match PyTorch's bit for bit.
            a.uniform_(-Bound(maxIn), Bound(maxIn), g);
            b.uniform_(-Bound(r), Bound(r), g);
        }
        return (a, b);

        static double Bound(long fanIn) => Math.Sqrt(3.0) * (Math.Sqrt(2.0) / Math.Sqrt(fanIn));
    }

    /// <summary>Creates this adapter's shared projections (PEFT's _init_vera_A_vera_B) and registers them with the model.</summary>
    /// <param name="model">The model.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="targets">The selected modules.</param>
    /// <param name="context">Creation settings.</param>
    protected internal override void PrepareInjection(LowRankModel model, string adapterName, IReadOnlyList<(string name, nn.Module module)> targets, AdapterCreationContext context)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentNullException.ThrowIfNull(context);
        long maxIn = 0, maxOut = 0;
        Tensor? weight = null;
        foreach (var (_, m) in targets)
        {
            if (Shape(m) is not { } s) continue;
            maxIn = Math.Max(maxIn, s.inF);
            maxOut = Math.Max(maxOut, s.outF);
            weight ??= s.weight;
        }
        if (weight is null)
            throw new ArgumentException("no module VeRA can adapt (Linear or GPT-2 Conv1D) is selected; check target_modules");
        var device = weight.device;
        var dtype = context.AdapterType(weight.dtype);
        using var scope = NewDisposeScope();
        Tensor a, b;
        if (device.type == DeviceType.META)
        {
            a = empty(new[] { (long)R, maxIn }, dtype, device);
            b = empty(new[] { maxOut, (long)R }, dtype, device);
        }
        else if (context.Initialize || !SaveProjection)
        {
            var (ga, gb) = GenerateProjections(R, maxIn, maxOut, ProjectionPrngKey);
            a = ga.to(dtype, device);
            b = gb.to(dtype, device);
        }
        else
        {
            // Loading an adapter saved with its projections: the file's values are copied in.
            a = zeros(new[] { (long)R, maxIn }, dtype, device);
            b = zeros(new[] { maxOut, (long)R }, dtype, device);
        }
        // The holders own them (register_buffer detaches them from this scope).
        _sharedA = model.RegisterSharedModule("vera_A", () => new SharedAdapterTensors()).Set(adapterName, a.contiguous(), SaveProjection);
        _sharedB = model.RegisterSharedModule("vera_B", () => new SharedAdapterTensors()).Set(adapterName, b.contiguous(), SaveProjection);
    }

    /// <inheritdoc/>
    protected internal override AdapterLayer CreateLayer(nn.Module baseLayer) => new VeraLayer(baseLayer);

    /// <inheritdoc/>
    protected internal override bool IsCompatibleLayer(AdapterLayer layer) => layer is VeraLayer;

    /// <inheritdoc/>
    protected internal override void AddAdapter(AdapterLayer layer, string adapterName, string modulePath, AdapterCreationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var vera = layer as VeraLayer ?? throw new ArgumentException($"VeRA adapters go into a VeraLayer, not a {layer.name}", nameof(layer));
        if (_sharedA is null || _sharedB is null)
            throw new InvalidOperationException("the shared VeRA projections were not created: add VeRA adapters through LowRankModel");
        if (vera.FanInFanOut) FanInFanOut = true;
        vera.UpdateLayer(adapterName, _sharedA, _sharedB, R, VeraDropout, !context.Initialize || InitWeights, DInitial, context);
    }

    /// <inheritdoc/>
    protected override void CloneCollections()
    {
        _sharedA = null;
        _sharedB = null;
    }

    // ------------------------------------------------------------------ JSON

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["r"] = R;
        o["projection_prng_key"] = ProjectionPrngKey;
        o["save_projection"] = SaveProjection;
        o["vera_dropout"] = VeraDropout;
        o["d_initial"] = DInitial;
        o["fan_in_fan_out"] = FanInFanOut;
        o["bias"] = Bias;
        o["init_weights"] = InitWeights;
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        if (o["r"] is { } r) R = Int(r, "r");
        if (o["projection_prng_key"] is { } k) ProjectionPrngKey = Int(k, "projection_prng_key");
        SaveProjection = Bool(o, "save_projection") ?? true;
        VeraDropout = Num(o, "vera_dropout") ?? 0;
        DInitial = Num(o, "d_initial") ?? 0.1;
        FanInFanOut = Bool(o, "fan_in_fan_out") ?? false;
        Bias = Str(o, "bias") ?? "none";
        InitWeights = Bool(o, "init_weights") ?? true;
    }
}
