using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Adapters.ResLora;

/// <summary>Which residual shortcut ResLoRA adds between the LoRA blocks of same-type modules in consecutive layers
/// (the reference code's <c>res_flag</c>).</summary>
public enum ResLoraStructure
{
    /// <summary><c>"is"</c> (res_flag 1), input shortcut: y_l = W0·x_l + s·B_l·A_l·(x_l + x_{l−1}), x_{l−1} being the input
    /// of the previous same-type module in the same forward pass (x_l itself for the first module of a chain).</summary>
    InputShortcut,
    /// <summary><c>"bs"</c> (res_flag 2), block shortcut: y_l = W0·x_l + Σ_{k=0..pre_num} s·B_{l−k}·A_{l−k}·x_l.</summary>
    BlockShortcut,
    /// <summary><c>"ms"</c> (res_flag 3), middle shortcut: y_l = W0·x_l + s·B_l·(A_l·x_l + Σ_{k=1..pre_num} A_{l−k}·x_{l−k}).</summary>
    MiddleShortcut,
}

/// <summary>How the merge ratio α_l of the approximate merges (input and middle shortcuts) is estimated (the reference
/// code's <c>merge_flag</c>).</summary>
public enum ResLoraMergeEstimate
{
    /// <summary><c>"input_norm"</c> (merge_flag 4): from a moving window of Frobenius norms observed in training — of the
    /// layer input x_l (input shortcut) or of A_l·x̃_l (middle shortcut): α_l = mean‖·‖_{l−1} / mean‖·‖_l (input shortcut;
    /// 1 for the first module of a chain), α_l = Σ_{k=1..pre_num} mean‖·‖_{l−k} / mean‖·‖_l (middle shortcut; 0 for the
    /// first). A ratio whose window is empty counts as 1, as in the reference code.</summary>
    InputNorm,
    /// <summary><c>"weight_norm"</c> (merge_flag 3, input shortcut only): from the Frobenius norms F_j = ‖W0_j + s·B_j·A_j‖_F
    /// of the preceding modules: α_l = F_{l−2} / F_{l−1} (1 when the module has fewer than two predecessors), as the
    /// reference code computes it.</summary>
    WeightNorm,
}

/// <summary>
/// ResLoRA options (Shi et al., "ResLoRA: Identity Residual Mapping in Low-Rank Adaption", arXiv 2402.18039; reference
/// code microsoft/LMOps reslora/). Plain LoRA factors (A [r, in] Kaiming, B [out, r] zero, s = α/r) plus residual
/// shortcuts, during training, between the LoRA blocks of modules of the same name (all <c>q_proj</c>s form one chain, all
/// <c>down_proj</c>s another; a chain breaks where consecutive shapes differ). PEFT has no ResLoRA: the config is this
/// library's own (<c>peft_type "RESLORA"</c>, LoRA's file keys <c>lora_A.weight</c> / <c>lora_B.weight</c>, plus the norm
/// window <c>reslora_norms</c> of the input and middle shortcuts). See <see cref="ResLoraLayer"/> and
/// docs/methods/reslora.md.
/// </summary>
public sealed class ResLoraOptions : LowRankAdapterOptions
{
    private Dictionary<string, ResLoraChain> _openChains = new(StringComparer.Ordinal);

    /// <inheritdoc/>
    public override string PeftType => "RESLORA";

    /// <summary><c>r</c>: the rank. Default 16 (the reference config's).</summary>
    public int R { get; set; } = 16;

    /// <summary><c>lora_alpha</c>: α, s = α/r. Default 32 (the reference config's).</summary>
    public double LoraAlpha { get; set; } = 32;

    /// <summary><c>lora_dropout</c>: dropout probability on the adapter input (on x_l + x_{l−1} for the input shortcut).
    /// Default 0.05 (the reference config's).</summary>
    public double LoraDropout { get; set; } = 0.05;

    /// <summary><c>res_structure</c>: <c>"is"</c>, <c>"bs"</c> or <c>"ms"</c>. Default <see cref="ResLoraStructure.InputShortcut"/>
    /// (the structure of the authors' NLG script).</summary>
    public ResLoraStructure Structure { get; set; } = ResLoraStructure.InputShortcut;

    /// <summary><c>pre_num</c>: how many preceding modules the block and middle shortcuts reach (−1: all). The input
    /// shortcut always uses the immediately preceding module. Default 1 (the reference config's default 0 would make
    /// the block and middle shortcuts plain LoRA; its NLU script uses 4).</summary>
    public int PreNum { get; set; } = 1;

    /// <summary><c>merge_estimate</c>: how approximate merges estimate α_l. Default <see cref="ResLoraMergeEstimate.InputNorm"/>.</summary>
    public ResLoraMergeEstimate MergeEstimate { get; set; } = ResLoraMergeEstimate.InputNorm;

    /// <summary><c>norm_window</c>: how many training batches the norm window keeps (the reference code's <c>merge_4_len</c>).
    /// Default 100.</summary>
    public int NormWindow { get; set; } = 100;

    /// <summary><c>fan_in_fan_out</c>: set automatically when a GPT-2 Conv1D is targeted. Default false.</summary>
    public bool FanInFanOut { get; set; }

    /// <summary>The scaling s = α/r.</summary>
    public double Scaling => LoraAlpha / R;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (R <= 0) throw new ArgumentException($"r must be positive, got {R}");
        if (double.IsNaN(LoraAlpha) || double.IsInfinity(LoraAlpha)) throw new ArgumentException($"lora_alpha must be finite, got {LoraAlpha}");
        if (LoraDropout < 0 || LoraDropout >= 1) throw new ArgumentException($"lora_dropout must be in [0, 1), got {LoraDropout}");
        if (PreNum < -1) throw new ArgumentException($"pre_num must be -1 (all) or non-negative, got {PreNum}");
        if (NormWindow <= 0) throw new ArgumentException($"norm_window must be positive, got {NormWindow}");
        if (MergeEstimate == ResLoraMergeEstimate.WeightNorm && Structure != ResLoraStructure.InputShortcut)
            throw new ArgumentException("merge_estimate 'weight_norm' applies to the input shortcut (res_structure 'is') only");
    }

    /// <inheritdoc/>
    protected internal override AdapterLayer CreateLayer(torch.nn.Module baseLayer) => new ResLoraLayer(baseLayer);

    /// <inheritdoc/>
    protected internal override bool IsCompatibleLayer(AdapterLayer layer) => layer is ResLoraLayer;

    /// <inheritdoc/>
    protected internal override void PrepareInjection(LowRankModel model, string adapterName, IReadOnlyList<(string name, torch.nn.Module module)> targets, AdapterCreationContext context)
        => _openChains = new Dictionary<string, ResLoraChain>(StringComparer.Ordinal);

    /// <summary>Creates the adapter and links it into the chain of its module name (a new chain when the previous module
    /// of that name has another shape).</summary>
    /// <param name="layer">The layer.</param>
    /// <param name="adapterName">The adapter.</param>
    /// <param name="modulePath">The module's name in the model (its last segment names the chain).</param>
    /// <param name="context">Creation settings.</param>
    protected internal override void AddAdapter(AdapterLayer layer, string adapterName, string modulePath, AdapterCreationContext context)
    {
        ArgumentNullException.ThrowIfNull(modulePath);
        ArgumentNullException.ThrowIfNull(context);
        var res = layer as ResLoraLayer ?? throw new ArgumentException($"ResLoRA adapters go into a ResLoraLayer, not a {layer.name}", nameof(layer));
        if (res.FanInFanOut) FanInFanOut = true;
        res.UpdateLayer(adapterName, R, LoraAlpha, LoraDropout, Structure, PreNum, MergeEstimate, NormWindow, context);
        var key = modulePath[(modulePath.LastIndexOf('.') + 1)..];
        if (!_openChains.TryGetValue(key, out var chain) || !chain.CanAppend(res))
            _openChains[key] = chain = new ResLoraChain(key, adapterName);
        chain.Append(res);
    }

    /// <inheritdoc/>
    protected override void CloneCollections() => _openChains = new Dictionary<string, ResLoraChain>(StringComparer.Ordinal);

    // ------------------------------------------------------------------ JSON

    /// <summary>The JSON name of a structure.</summary>
    /// <param name="s">The structure.</param>
    /// <returns>"is", "bs" or "ms".</returns>
    public static string StructureName(ResLoraStructure s) => s switch
    {
        ResLoraStructure.InputShortcut => "is",
        ResLoraStructure.BlockShortcut => "bs",
        ResLoraStructure.MiddleShortcut => "ms",
        _ => throw new ArgumentOutOfRangeException(nameof(s)),
    };

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["r"] = R;
        o["lora_alpha"] = NumberNode(LoraAlpha);
        o["lora_dropout"] = LoraDropout;
        o["res_structure"] = StructureName(Structure);
        o["pre_num"] = PreNum;
        o["merge_estimate"] = MergeEstimate == ResLoraMergeEstimate.InputNorm ? "input_norm" : "weight_norm";
        o["norm_window"] = NormWindow;
        o["fan_in_fan_out"] = FanInFanOut;
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        if (o["r"] is { } r) R = Int(r, "r");
        LoraAlpha = Num(o, "lora_alpha") ?? LoraAlpha;
        LoraDropout = Num(o, "lora_dropout") ?? LoraDropout;
        Structure = Str(o, "res_structure") switch
        {
            null or "is" => ResLoraStructure.InputShortcut,
            "bs" => ResLoraStructure.BlockShortcut,
            "ms" => ResLoraStructure.MiddleShortcut,
            var s => throw new FormatException($"res_structure: expected \"is\", \"bs\" or \"ms\", got \"{s}\""),
        };
        if (o["pre_num"] is { } p) PreNum = Int(p, "pre_num");
        MergeEstimate = Str(o, "merge_estimate") switch
        {
            null or "input_norm" => ResLoraMergeEstimate.InputNorm,
            "weight_norm" => ResLoraMergeEstimate.WeightNorm,
            var s => throw new FormatException($"merge_estimate: expected \"input_norm\" or \"weight_norm\", got \"{s}\""),
        };
        if (o["norm_window"] is { } w) NormWindow = Int(w, "norm_window");
        FanInFanOut = Bool(o, "fan_in_fan_out") ?? false;
    }

    /// <summary>The LoRA scaling rule ResLoRA uses (α/r, no rsLoRA).</summary>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <returns>s.</returns>
    internal static double ScalingOf(int r, double alpha) => LoraOptions.Scaling(r, alpha, false);
}
