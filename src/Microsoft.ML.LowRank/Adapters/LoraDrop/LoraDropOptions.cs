using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Adapters.LoraDrop;

/// <summary>
/// LoRA-drop options (Zhou et al., arXiv 2402.07721). The adapter is a LoRA (ΔW = (α/r)·B·A per targeted matrix) in
/// which only the layers listed in <see cref="KeptModules"/> own their factors; every other targeted layer uses one
/// LoRA shared by all dropped layers of its module type (the module name with its block index replaced by "*", e.g.
/// "model.layers.*.self_attn.q_proj"). With <see cref="KeptModules"/> null every layer owns its factors: the stage-1
/// LoRA of the two-stage procedure (<see cref="LoraDropProcedure"/>) that measures which layers matter. Trainable
/// parameters per module type: (kept + 1)·r·(in + out) when at least one layer shares, kept·r·(in + out) otherwise.
/// </summary>
/// <remarks>
/// The saved config is a PEFT LoRA config (peft_type "LORA") with the extra <c>lora_drop_*</c> keys, and the weights
/// file repeats the shared factors under each sharing layer's LoRA keys, so PEFT (which ignores unknown config keys) and
/// this library's plain LoRA reader load it as an equivalent untied LoRA; this class reads it back with the sharing.
/// </remarks>
public sealed class LoraDropOptions : LowRankAdapterOptions
{
    private Dictionary<string, SharedLoraFactors> _shared = new(StringComparer.Ordinal);

    /// <inheritdoc/>
    public override string PeftType => "LORA";

    /// <summary><c>r</c>: the rank of every LoRA (kept and shared). Default 8.</summary>
    public int R { get; set; } = 8;

    /// <summary><c>lora_alpha</c>: α in the scaling α/r. Default 8.</summary>
    public double LoraAlpha { get; set; } = 8;

    /// <summary><c>lora_dropout</c>: dropout on the adapter input. Default 0.</summary>
    public double LoraDropout { get; set; }

    /// <summary><c>fan_in_fan_out</c>: set automatically when a GPT-2 Conv1D is targeted. Default false.</summary>
    public bool FanInFanOut { get; set; }

    /// <summary><c>lora_drop_kept_modules</c>: the full names of the modules that own their LoRA (the important layers);
    /// every other targeted module shares its type's LoRA. Null (default): every module owns its LoRA (stage 1).</summary>
    public IReadOnlyList<string>? KeptModules { get; set; }

    /// <summary><c>lora_drop_threshold</c>: T, the cumulative normalised importance the kept layers of a module type must
    /// reach (the smallest such set is kept). Default 0.9 (the value the method's summaries cite).</summary>
    public double Threshold { get; set; } = 0.9;

    /// <summary><c>lora_drop_sample_ratio</c>: α, the fraction of the training set (stratified when strata are given)
    /// stage 1 trains on and measures importance with. Default 0.1 (our choice: the paper's value was not verified).</summary>
    public double SampleRatio { get; set; } = 0.1;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (R <= 0) throw new ArgumentException($"r must be positive, got {R}");
        if (double.IsNaN(LoraAlpha) || double.IsInfinity(LoraAlpha)) throw new ArgumentException($"lora_alpha must be finite, got {LoraAlpha}");
        if (LoraDropout < 0 || LoraDropout >= 1) throw new ArgumentException($"lora_dropout must be in [0, 1), got {LoraDropout}");
        if (!(Threshold > 0 && Threshold <= 1)) throw new ArgumentException($"lora_drop_threshold must be in (0, 1], got {Threshold}");
        if (!(SampleRatio > 0 && SampleRatio <= 1)) throw new ArgumentException($"lora_drop_sample_ratio must be in (0, 1], got {SampleRatio}");
        if (KeptModules is { } k && k.Any(string.IsNullOrEmpty)) throw new ArgumentException("lora_drop_kept_modules holds an empty name");
    }

    /// <summary>The module type of a module name: its block indices replaced by "*" ("model.layers.3.mlp.up_proj" →
    /// "model.layers.*.mlp.up_proj"). Dropped layers of one type share one LoRA.</summary>
    /// <param name="modulePath">The module's full name.</param>
    /// <returns>The type.</returns>
    public static string ModuleType(string modulePath)
    {
        ArgumentNullException.ThrowIfNull(modulePath);
        return Regex.Replace(modulePath, @"(?<=(^|\.))\d+(?=(\.|$))", "*", RegexOptions.CultureInvariant);
    }

    /// <summary>Whether a module owns its LoRA under these options.</summary>
    /// <param name="modulePath">The module's full name.</param>
    /// <returns>True for a kept module (or when <see cref="KeptModules"/> is null).</returns>
    public bool IsKept(string modulePath) => KeptModules is null || KeptModules.Contains(modulePath);

    /// <inheritdoc/>
    protected internal override AdapterLayer CreateLayer(torch.nn.Module baseLayer) => new LoraDropLayer(baseLayer);

    /// <inheritdoc/>
    protected internal override bool IsCompatibleLayer(AdapterLayer layer) => layer is LoraDropLayer;

    /// <inheritdoc/>
    protected internal override void AddAdapter(AdapterLayer layer, string adapterName, string modulePath, AdapterCreationContext context)
    {
        var drop = layer as LoraDropLayer ?? throw new ArgumentException($"LoRA-drop adapters go into a LoraDropLayer, not a {layer.name}", nameof(layer));
        if (drop.FanInFanOut) FanInFanOut = true;
        SharedLoraFactors? shared = null;
        if (!IsKept(modulePath))
        {
            var key = adapterName + "\u0000" + ModuleType(modulePath);
            if (!_shared.TryGetValue(key, out shared))
            {
                var (a, b) = drop.CreateFactors(R, context);
                shared = new SharedLoraFactors(a, b);
                _shared[key] = shared;
            }
        }
        drop.UpdateLayer(adapterName, R, LoraAlpha, LoraDropout, shared, context);
    }

    /// <inheritdoc/>
    protected override void CloneCollections()
    {
        KeptModules = KeptModules?.ToArray();
        _shared = new Dictionary<string, SharedLoraFactors>(StringComparer.Ordinal);
    }

    // ------------------------------------------------------------------ JSON

    /// <summary>A LoRA-drop config is a PEFT LoRA config that carries <c>lora_drop_kept_modules</c>.</summary>
    /// <param name="config">The JSON object.</param>
    /// <returns>True when this class reads it.</returns>
    public override bool Accepts(JsonObject config)
        => base.Accepts(config) && config.ContainsKey("lora_drop_kept_modules") && !(Bool(config, "use_dora") ?? false);

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["r"] = R;
        o["lora_alpha"] = NumberNode(LoraAlpha);
        o["lora_dropout"] = LoraDropout;
        o["use_rslora"] = false;
        o["init_lora_weights"] = true;
        o["fan_in_fan_out"] = FanInFanOut;
        o["bias"] = "none";
        o["rank_pattern"] = new JsonObject();
        o["alpha_pattern"] = new JsonObject();
        o["use_dora"] = false;
        o["lora_bias"] = false;
        o["lora_drop_kept_modules"] = KeptModules is null ? null : new JsonArray(KeptModules.Select(s => (JsonNode?)JsonValue.Create(s)).ToArray());
        o["lora_drop_threshold"] = Threshold;
        o["lora_drop_sample_ratio"] = SampleRatio;
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        if (o["r"] is { } r) R = Int(r, "r");
        LoraAlpha = Num(o, "lora_alpha") ?? LoraAlpha;
        LoraDropout = Num(o, "lora_dropout") ?? 0;
        FanInFanOut = Bool(o, "fan_in_fan_out") ?? false;
        if ((Str(o, "bias") ?? "none") != "none") throw new NotSupportedException("LoRA-drop supports bias \"none\" only");
        if (Bool(o, "use_rslora") == true) throw new NotSupportedException("LoRA-drop adapters use the scaling alpha/r (use_rslora must be false)");
        if (Bool(o, "lora_bias") == true) throw new NotSupportedException("lora_bias adapters are not supported");
        if (o["rank_pattern"] is JsonObject { Count: > 0 } || o["alpha_pattern"] is JsonObject { Count: > 0 })
            throw new NotSupportedException("LoRA-drop adapters have one rank and alpha (rank_pattern and alpha_pattern must be empty)");
        KeptModules = o["lora_drop_kept_modules"] switch
        {
            null => null,
            JsonArray a => a.Select(v => (string?)v ?? throw new FormatException("lora_drop_kept_modules: null entry")).ToArray(),
            var v => throw new FormatException($"lora_drop_kept_modules: expected a list of module names or null, got {v.ToJsonString()}"),
        };
        Threshold = Num(o, "lora_drop_threshold") ?? Threshold;
        SampleRatio = Num(o, "lora_drop_sample_ratio") ?? SampleRatio;
    }
}
