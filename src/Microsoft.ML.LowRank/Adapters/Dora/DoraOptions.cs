using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Adapters.Dora;

/// <summary>
/// DoRA options (Liu et al., "DoRA: Weight-Decomposed Low-Rank Adaptation", arXiv 2402.09353), stored by PEFT as a
/// <c>LoraConfig</c> with <c>use_dora: true</c>: the same fields as <see cref="LoraOptions"/> (PEFT JSON names on each
/// property), read from and written to <c>adapter_config.json</c> with <c>peft_type "LORA"</c> and
/// <c>use_dora: true</c>. Each targeted weight becomes W' = m ⊙ (W0 + s·B·A) / ‖W0 + s·B·A‖_row, with a trainable
/// magnitude m (one value per output row, initialised to ‖W0‖_row) and the LoRA factors A [r, in], B [out, r];
/// s = α/r (α/√r with rsLoRA). See <see cref="DoraLayer"/> and docs/methods/dora.md. Defaults are PEFT's.
/// </summary>
/// <remarks>
/// Only the <see cref="LoraInitialization.Default"/>, <see cref="LoraInitialization.Gaussian"/> and
/// <see cref="LoraInitialization.None"/> initialisations are supported with DoRA (PiSSA / OLoRA rewrite the base weight;
/// combining them with DoRA is not implemented). LoRA and DoRA adapters cannot share a layer (PEFT allows it).
/// </remarks>
public sealed class DoraOptions : LowRankAdapterOptions
{
    /// <summary>PEFT stores DoRA as a LoRA config: "LORA".</summary>
    public override string PeftType => "LORA";

    /// <summary><c>r</c>: the rank. Default 8.</summary>
    public int R { get; set; } = 8;

    /// <summary><c>lora_alpha</c>: α in the scaling. Default 8.</summary>
    public double LoraAlpha { get; set; } = 8;

    /// <summary><c>lora_dropout</c>: dropout probability on the adapter input. With active dropout the DoRA term also
    /// recomputes W0·x̃ on the dropped input (as PEFT does). Default 0.</summary>
    public double LoraDropout { get; set; }

    /// <summary><c>use_rslora</c>: scaling α/√r instead of α/r. Default false.</summary>
    public bool UseRsLora { get; set; }

    /// <summary><c>init_lora_weights</c>: <see cref="LoraInitialization.Default"/> (JSON <c>true</c>, the default),
    /// <see cref="LoraInitialization.Gaussian"/> or <see cref="LoraInitialization.None"/> (JSON <c>false</c>).</summary>
    public LoraInitialization InitLoraWeights { get; set; } = LoraInitialization.Default;

    /// <summary><c>fan_in_fan_out</c>: set automatically when a GPT-2 Conv1D is targeted (each layer follows its own
    /// base type). Default false.</summary>
    public bool FanInFanOut { get; set; }

    /// <summary><c>bias</c>: only "none" (the default) is implemented.</summary>
    public string Bias { get; set; } = "none";

    /// <summary><c>rank_pattern</c>: per-module ranks (keys as in <see cref="LoraOptions.RankPattern"/>). Default empty.</summary>
    public IReadOnlyDictionary<string, int> RankPattern { get; set; } = new Dictionary<string, int>();

    /// <summary><c>alpha_pattern</c>: per-module α (keys as in <see cref="LoraOptions.AlphaPattern"/>). Default empty.</summary>
    public IReadOnlyDictionary<string, double> AlphaPattern { get; set; } = new Dictionary<string, double>();

    /// <summary>The LoRA options with the same LoRA fields (used for their validation and JSON).</summary>
    /// <returns>A new <see cref="LoraOptions"/> (target rules and other common fields left at their defaults).</returns>
    public LoraOptions ToLoraFields() => new()
    {
        R = R,
        LoraAlpha = LoraAlpha,
        LoraDropout = LoraDropout,
        UseRsLora = UseRsLora,
        InitLoraWeights = InitLoraWeights,
        FanInFanOut = FanInFanOut,
        Bias = Bias,
        RankPattern = new Dictionary<string, int>(RankPattern),
        AlphaPattern = new Dictionary<string, double>(AlphaPattern),
    };

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        ToLoraFields().Validate();
        if (InitLoraWeights is LoraInitialization.PiSSA or LoraInitialization.OLoRA)
            throw new NotSupportedException($"init_lora_weights {InitLoraWeights} is not supported with DoRA (supported: true, false, \"gaussian\")");
    }

    /// <summary>The rank of a module (from <see cref="RankPattern"/> or <see cref="R"/>).</summary>
    /// <param name="modulePath">Full module name.</param>
    /// <returns>The rank.</returns>
    public int RankFor(string modulePath) => LoraOptions.PatternKey(RankPattern.Keys, modulePath) is { } k ? RankPattern[k] : R;

    /// <summary>α of a module (from <see cref="AlphaPattern"/> or <see cref="LoraAlpha"/>).</summary>
    /// <param name="modulePath">Full module name.</param>
    /// <returns>α.</returns>
    public double AlphaFor(string modulePath) => LoraOptions.PatternKey(AlphaPattern.Keys, modulePath) is { } k ? AlphaPattern[k] : LoraAlpha;

    /// <inheritdoc/>
    protected internal override AdapterLayer CreateLayer(torch.nn.Module baseLayer) => new DoraLayer(baseLayer);

    /// <inheritdoc/>
    protected internal override bool IsCompatibleLayer(AdapterLayer layer) => layer is DoraLayer;

    /// <inheritdoc/>
    protected internal override void AddAdapter(AdapterLayer layer, string adapterName, string modulePath, AdapterCreationContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var dora = layer as DoraLayer ?? throw new ArgumentException($"DoRA adapters go into a DoraLayer, not a {layer.name}", nameof(layer));
        if (dora.FanInFanOut) FanInFanOut = true;
        dora.UpdateLayer(adapterName, RankFor(modulePath), AlphaFor(modulePath), LoraDropout, UseRsLora,
            context.Initialize ? InitLoraWeights : LoraInitialization.Default, context);
    }

    /// <inheritdoc/>
    protected override void CloneCollections()
    {
        RankPattern = new Dictionary<string, int>(RankPattern);
        AlphaPattern = new Dictionary<string, double>(AlphaPattern);
    }

    // ------------------------------------------------------------------ JSON

    /// <summary>A PEFT LoRA config with <c>use_dora: true</c>.</summary>
    /// <param name="config">The JSON object.</param>
    /// <returns>True when this class reads it.</returns>
    public override bool Accepts(JsonObject config)
        => base.Accepts(config) && (Bool(config, "use_dora") ?? false);

    /// <summary>Writes PEFT's LoRA config fields with <c>use_dora: true</c>.</summary>
    /// <param name="o">The object.</param>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        var lora = new JsonObject();
        ToLoraFields().WriteJson(lora);
        // The LoRA-specific keys (the common ones were written above from this object's own fields).
        foreach (var (k, v) in lora)
            if (!o.ContainsKey(k)) o[k] = v?.DeepClone();
        o["use_dora"] = true;
    }

    /// <summary>Reads PEFT's LoRA config fields (<c>use_dora</c> must be true).</summary>
    /// <param name="o">The object.</param>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        if (Bool(o, "use_dora") != true) throw new FormatException("a DoRA config needs use_dora: true");
        var copy = (JsonObject)o.DeepClone();
        copy["use_dora"] = false;
        var lora = new LoraOptions();
        lora.ReadJson(copy);
        R = lora.R;
        LoraAlpha = lora.LoraAlpha;
        LoraDropout = lora.LoraDropout;
        UseRsLora = lora.UseRsLora;
        InitLoraWeights = lora.InitLoraWeights;
        FanInFanOut = lora.FanInFanOut;
        Bias = lora.Bias;
        RankPattern = new Dictionary<string, int>(lora.RankPattern);
        AlphaPattern = new Dictionary<string, double>(lora.AlphaPattern);
    }
}
