using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Adapters.Lora;

/// <summary>How LoRA factors start (PEFT's <c>init_lora_weights</c>).</summary>
public enum LoraInitialization
{
    /// <summary>PEFT's default (<c>true</c>): A Kaiming-uniform with a = √5 (U(±1/√in)), B zero, so the adapter starts as a no-op.</summary>
    Default,
    /// <summary><c>"gaussian"</c>: A ~ N(0, (1/r)²), B zero.</summary>
    Gaussian,
    /// <summary><c>"pissa"</c> (or <c>"pissa_niter_N"</c> with <see cref="LoraOptions.PissaNiter"/>): A and B from the r
    /// principal singular triplets of W (B·A·s = U_r S_r V_rᵀ) and the base weight replaced by the residual
    /// W − s·B·A, so the adapted model starts equal to the original one.</summary>
    PiSSA,
    /// <summary><c>"olora"</c>: W = QR; B = Q[:, :r], A = R[:r]; base weight replaced by W − s·B·A.</summary>
    OLoRA,
    /// <summary><c>false</c>: both factors keep Linear's random initialisation (the adapter is not a no-op; for tests).</summary>
    None,
}

/// <summary>
/// LoRA options: PEFT's <c>LoraConfig</c> with .NET names (the PEFT JSON name is given on each property). The adapter
/// adds s·B·A to each targeted weight, A [r, in], B [out, r], s = α/r (α/√r with rsLoRA). Defaults are PEFT's.
/// </summary>
public class LoraOptions : LowRankAdapterOptions
{
    /// <inheritdoc/>
    public override string PeftType => "LORA";

    /// <summary><c>r</c>: the rank. Default 8.</summary>
    public int R { get; set; } = 8;

    /// <summary><c>lora_alpha</c>: α in the scaling. Default 8.</summary>
    public double LoraAlpha { get; set; } = 8;

    /// <summary><c>lora_dropout</c>: dropout probability on the adapter input (never on the base path). Default 0.</summary>
    public double LoraDropout { get; set; }

    /// <summary><c>use_rslora</c>: scaling α/√r instead of α/r. Default false.</summary>
    public bool UseRsLora { get; set; }

    /// <summary><c>init_lora_weights</c>. Default <see cref="LoraInitialization.Default"/> (JSON <c>true</c>).</summary>
    public LoraInitialization InitLoraWeights { get; set; } = LoraInitialization.Default;

    /// <summary>PiSSA's fast variant (<c>"pissa_niter_N"</c>): a randomized SVD with N subspace iterations instead of the
    /// full SVD. Null (default): full SVD (<c>"pissa"</c>).</summary>
    public int? PissaNiter { get; set; }

    /// <summary><c>fan_in_fan_out</c>: the targeted weights are stored [in, out]. Set automatically when a GPT-2 Conv1D
    /// is targeted (as PEFT does); each layer follows its own base type. Default false.</summary>
    public bool FanInFanOut { get; set; }

    /// <summary><c>bias</c>: which biases train. Only "none" (the default) is implemented.</summary>
    public string Bias { get; set; } = "none";

    /// <summary><c>rank_pattern</c>: per-module ranks. A key selects a module whose name matches <c>(.*\.)?(key)$</c>
    /// (a dotted suffix or a regular expression; the first matching key wins, as in PEFT). Default empty.</summary>
    public IReadOnlyDictionary<string, int> RankPattern { get; set; } = new Dictionary<string, int>();

    /// <summary><c>alpha_pattern</c>: per-module α, keys as in <see cref="RankPattern"/>. Default empty.</summary>
    public IReadOnlyDictionary<string, double> AlphaPattern { get; set; } = new Dictionary<string, double>();

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (R <= 0) throw new ArgumentException($"r must be positive, got {R}");
        if (double.IsNaN(LoraAlpha) || double.IsInfinity(LoraAlpha)) throw new ArgumentException($"lora_alpha must be finite, got {LoraAlpha}");
        if (LoraDropout < 0 || LoraDropout >= 1) throw new ArgumentException($"lora_dropout must be in [0, 1), got {LoraDropout}");
        if (Bias != "none") throw new NotSupportedException($"bias '{Bias}' is not implemented (only \"none\")");
        if (PissaNiter is { } n && (n < 0 || InitLoraWeights != LoraInitialization.PiSSA)) throw new ArgumentException("pissa niter needs init_lora_weights = PiSSA and a non-negative count");
        foreach (var (k, v) in RankPattern) if (v <= 0) throw new ArgumentException($"rank_pattern['{k}'] must be positive, got {v}");
    }

    /// <summary>The key of a pattern dictionary that selects a module (PEFT's rule), or null.</summary>
    /// <param name="keys">Pattern keys in order.</param>
    /// <param name="modulePath">Full module name.</param>
    /// <returns>The first matching key, or null.</returns>
    public static string? PatternKey(IEnumerable<string> keys, string modulePath)
    {
        foreach (var k in keys)
        {
            if (k == modulePath) return k;
            if (Regex.IsMatch(modulePath, @"\A(?:.*\.)?(?:" + k + @")\z", RegexOptions.CultureInvariant)) return k;
        }
        return null;
    }

    /// <summary>The rank of a module (from <see cref="RankPattern"/> or <see cref="R"/>).</summary>
    /// <param name="modulePath">Full module name.</param>
    /// <returns>The rank.</returns>
    public int RankFor(string modulePath) => PatternKey(RankPattern.Keys, modulePath) is { } k ? RankPattern[k] : R;

    /// <summary>α of a module (from <see cref="AlphaPattern"/> or <see cref="LoraAlpha"/>).</summary>
    /// <param name="modulePath">Full module name.</param>
    /// <returns>α.</returns>
    public double AlphaFor(string modulePath) => PatternKey(AlphaPattern.Keys, modulePath) is { } k ? AlphaPattern[k] : LoraAlpha;

    /// <summary>The scaling s for a rank and α: α/r, or α/√r with rsLoRA.</summary>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="useRsLora">rsLoRA.</param>
    /// <returns>s.</returns>
    public static double Scaling(int r, double alpha, bool useRsLora) => useRsLora ? alpha / Math.Sqrt(r) : alpha / r;

    /// <inheritdoc/>
    protected internal override AdapterLayer CreateLayer(torch.nn.Module baseLayer) => new LoraLayer(baseLayer);

    /// <inheritdoc/>
    protected internal override bool IsCompatibleLayer(AdapterLayer layer) => layer is LoraLayer;

    /// <inheritdoc/>
    protected internal override void AddAdapter(AdapterLayer layer, string adapterName, string modulePath, AdapterCreationContext context)
    {
        var lora = layer as LoraLayer ?? throw new ArgumentException($"LoRA adapters go into a LoraLayer, not a {layer.name}", nameof(layer));
        if (lora.FanInFanOut) FanInFanOut = true;
        lora.UpdateLayer(adapterName, RankFor(modulePath), AlphaFor(modulePath), LoraDropout, UseRsLora,
            context.Initialize ? InitLoraWeights : LoraInitialization.Default, PissaNiter, context);
    }

    /// <inheritdoc/>
    protected override void CloneCollections()
    {
        RankPattern = new Dictionary<string, int>(RankPattern);
        AlphaPattern = new Dictionary<string, double>(AlphaPattern);
    }

    // ------------------------------------------------------------------ JSON

    /// <summary>The JSON value of <c>init_lora_weights</c>.</summary>
    /// <returns>true, false, "gaussian", "pissa", "pissa_niter_N" or "olora".</returns>
    public JsonNode InitLoraWeightsJson() => InitLoraWeights switch
    {
        LoraInitialization.Default => JsonValue.Create(true),
        LoraInitialization.None => JsonValue.Create(false),
        LoraInitialization.Gaussian => JsonValue.Create("gaussian"),
        LoraInitialization.PiSSA => JsonValue.Create(PissaNiter is { } n ? "pissa_niter_" + n.ToString(CultureInfo.InvariantCulture) : "pissa"),
        LoraInitialization.OLoRA => JsonValue.Create("olora"),
        _ => throw new InvalidOperationException(),
    };

    /// <inheritdoc/>
    public override bool Accepts(JsonObject config)
        => base.Accepts(config) && !(Bool(config, "use_dora") ?? false);

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["r"] = R;
        o["lora_alpha"] = NumberNode(LoraAlpha);
        o["lora_dropout"] = LoraDropout;
        o["use_rslora"] = UseRsLora;
        o["init_lora_weights"] = InitLoraWeightsJson();
        o["fan_in_fan_out"] = FanInFanOut;
        o["bias"] = Bias;
        var rp = new JsonObject();
        foreach (var (k, v) in RankPattern) rp[k] = v;
        o["rank_pattern"] = rp;
        var ap = new JsonObject();
        foreach (var (k, v) in AlphaPattern) ap[k] = NumberNode(v);
        o["alpha_pattern"] = ap;
        o["use_dora"] = false;
        o["lora_bias"] = false;
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        if (o["r"] is { } r) R = Int(r, "r");
        LoraAlpha = Num(o, "lora_alpha") ?? LoraAlpha;
        LoraDropout = Num(o, "lora_dropout") ?? 0;
        UseRsLora = Bool(o, "use_rslora") ?? false;
        FanInFanOut = Bool(o, "fan_in_fan_out") ?? false;
        Bias = Str(o, "bias") ?? "none";
        if (Bool(o, "lora_bias") == true) throw new NotSupportedException("lora_bias adapters are not supported");
        if (Bool(o, "use_dora") == true) throw new NotSupportedException("DoRA adapters are not LoRA adapters");
        if (o["layer_replication"] is { } lr && lr is not JsonArray { Count: 0 }) throw new NotSupportedException("layer_replication is not supported");
        (InitLoraWeights, PissaNiter) = o["init_lora_weights"] switch
        {
            null => (LoraInitialization.Default, (int?)null),
            JsonValue v when v.TryGetValue<bool>(out var b) => (b ? LoraInitialization.Default : LoraInitialization.None, null),
            JsonValue v when v.TryGetValue<string>(out var s) => ParseInit(s),
            var v => throw new FormatException($"init_lora_weights: expected a boolean or a string, got {v.ToJsonString()}"),
        };
        var rank = new Dictionary<string, int>();
        if (o["rank_pattern"] is JsonObject rp) foreach (var (k, v) in rp) rank[k] = Int(v, "rank_pattern." + k);
        RankPattern = rank;
        var alpha = new Dictionary<string, double>();
        if (o["alpha_pattern"] is JsonObject ap) foreach (var (k, v) in ap) alpha[k] = Num(v ?? throw new FormatException($"alpha_pattern.{k}: null"), "alpha_pattern." + k);
        AlphaPattern = alpha;
    }

    private static (LoraInitialization, int?) ParseInit(string s)
    {
        switch (s)
        {
            case "gaussian": return (LoraInitialization.Gaussian, null);
            case "pissa": return (LoraInitialization.PiSSA, null);
            case "olora": return (LoraInitialization.OLoRA, null);
        }
        if (s.StartsWith("pissa_niter_", StringComparison.Ordinal) && int.TryParse(s.AsSpan("pissa_niter_".Length), NumberStyles.None, CultureInfo.InvariantCulture, out var n))
            return (LoraInitialization.PiSSA, n);
        throw new NotSupportedException($"init_lora_weights '{s}' is not supported (supported: true, false, \"gaussian\", \"pissa\", \"pissa_niter_N\", \"olora\")");
    }
}
