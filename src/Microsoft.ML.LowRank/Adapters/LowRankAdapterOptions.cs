using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Adapters;

/// <summary>
/// Base of every adapter method's options (PEFT's <c>PeftConfig</c>): the method name, which modules get an adapter
/// (target rules: <see cref="TargetModules"/>, <see cref="ExcludeModules"/>, <see cref="LayersToTransform"/> /
/// <see cref="LayersPattern"/>), which modules are trained and saved whole (<see cref="ModulesToSave"/>), and the
/// PEFT <c>adapter_config.json</c> fields common to all methods. A method adds one subclass (and one
/// <see cref="AdapterLayer"/> subclass) and registers it in <see cref="AdapterMethods"/>.
/// </summary>
public abstract class LowRankAdapterOptions
{
    /// <summary>PEFT's <c>peft_type</c> (e.g. "LORA").</summary>
    public abstract string PeftType { get; }

    /// <summary>
    /// PEFT <c>target_modules</c>: the modules that get an adapter (names or dotted suffixes, a regular expression, or
    /// "all-linear"; see <see cref="ModuleSelector"/>). Null: the method's default for the model type (PEFT's table,
    /// e.g. q_proj and v_proj for LLaMA, c_attn for GPT-2, query and value for BERT).
    /// </summary>
    public ModuleSelector? TargetModules { get; set; }

    /// <summary>PEFT <c>exclude_modules</c>: modules never adapted even when <see cref="TargetModules"/> selects them
    /// (same forms as the target rule, without "all-linear"). Default null.</summary>
    public ModuleSelector? ExcludeModules { get; set; }

    /// <summary>PEFT <c>layers_to_transform</c>: only adapt modules inside these block indices (the number after the
    /// block list's name, e.g. 0 in "model.layers.0.self_attn.q_proj"). Only applies to the list form of
    /// <see cref="TargetModules"/>, as in PEFT. Default null (every block).</summary>
    public IReadOnlyList<int>? LayersToTransform { get; set; }

    /// <summary>PEFT <c>layers_pattern</c>: the name(s) of the block list whose index <see cref="LayersToTransform"/>
    /// refers to ("layers", "h", "layer"); null: the first "name.number." in the module name. Default null.</summary>
    public IReadOnlyList<string>? LayersPattern { get; set; }

    /// <summary>PEFT <c>modules_to_save</c>: modules (names or dotted suffixes) trained in full next to the adapter and
    /// saved in the adapter file (e.g. a new classification head). Sequence-classification and token-classification
    /// models add "classifier" and "score" automatically, as PEFT does for those task types. Default null.</summary>
    public IReadOnlyList<string>? ModulesToSave { get; set; }

    /// <summary>PEFT <c>task_type</c> ("CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS", "FEATURE_EXTRACTION"); null: taken from the
    /// model's task when the adapter is created.</summary>
    public string? TaskType { get; set; }

    /// <summary>PEFT <c>base_model_name_or_path</c>: where the base model came from (informational). Default null.</summary>
    public string? BaseModelNameOrPath { get; set; }

    /// <summary>PEFT <c>inference_mode</c>: the adapter is frozen (no trainable parameters). Saved files say true, as PEFT
    /// writes them. Default false.</summary>
    public bool InferenceMode { get; set; }

    /// <summary>PEFT <c>revision</c> of the base model (informational). Default null.</summary>
    public string? Revision { get; set; }

    /// <summary>Checks the options; throws <see cref="ArgumentException"/> naming the bad field.</summary>
    public virtual void Validate()
    {
        if (LayersToTransform is { Count: > 0 } && TargetModules is { IsList: false })
            throw new ArgumentException("layers_to_transform cannot be used when target_modules is a string (a regular expression or 'all-linear'), as in PEFT");
        if (LayersPattern is { Count: > 0 } && LayersToTransform is not { Count: > 0 })
            throw new ArgumentException("layers_pattern needs layers_to_transform, as in PEFT");
        if (ExcludeModules is { IsAllLinear: true })
            throw new ArgumentException("exclude_modules cannot be 'all-linear'");
        if (LayersToTransform is { } l && l.Any(i => i < 0))
            throw new ArgumentException("layers_to_transform indices must be non-negative");
    }

    /// <summary>The default <see cref="TargetModules"/> for a Hugging Face <c>model_type</c> (PEFT's table), or null.</summary>
    /// <param name="modelType">HF model type, e.g. "llama".</param>
    /// <returns>The selector, or null when the method has no default for the type.</returns>
    public virtual ModuleSelector? DefaultTargetModules(string modelType) => modelType switch
    {
        "gpt2" => ModuleSelector.FromNames("c_attn"),
        "bert" or "roberta" => ModuleSelector.FromNames("query", "value"),
        "llama" or "mistral" or "qwen2" or "gemma" => ModuleSelector.FromNames("q_proj", "v_proj"),
        _ => null,
    };

    /// <summary>Adjusts these (already copied) options to the model they are about to be injected into, before target
    /// modules are resolved (e.g. settings that depend on the number of blocks). Default: nothing.</summary>
    /// <param name="model">The model.</param>
    protected internal virtual void PrepareForModel(Models.PretrainedModel model) { }

    /// <summary>Wraps a base layer (Linear or GPT-2 Conv1D) in this method's adapter layer, with no adapter yet.</summary>
    /// <param name="baseLayer">The frozen base layer.</param>
    /// <returns>The adapter layer.</returns>
    protected internal abstract AdapterLayer CreateLayer(torch.nn.Module baseLayer);

    /// <summary>Adds one named adapter of this method to a layer.</summary>
    /// <param name="layer">A layer made by <see cref="CreateLayer"/> (possibly holding other adapters).</param>
    /// <param name="adapterName">The adapter's name.</param>
    /// <param name="modulePath">The layer's dotted name in the model (for per-module patterns).</param>
    /// <param name="context">How to create the weights.</param>
    protected internal abstract void AddAdapter(AdapterLayer layer, string adapterName, string modulePath, AdapterCreationContext context);

    /// <summary>Whether <paramref name="layer"/> can hold an adapter of this method (same layer type).</summary>
    /// <param name="layer">An existing adapter layer.</param>
    /// <returns>True when this method can add an adapter to it.</returns>
    protected internal abstract bool IsCompatibleLayer(AdapterLayer layer);

    /// <summary>Whether an adapter parameter of this method trains while its adapter is active and not in inference mode
    /// (default: every adapter parameter does; LoRA-FA keeps its A factors frozen).</summary>
    /// <param name="parameterName">The parameter's name inside its adapter module (e.g. "lora_A.default.weight",
    /// "modules_to_save.default.weight").</param>
    /// <returns>True when it trains.</returns>
    protected internal virtual bool IsTrainableParameter(string parameterName) => true;
    /// <summary>
    /// Called once by <see cref="LowRankModel"/> before it creates this adapter's layers (PEFT's
    /// <c>_pre_injection_hook</c>), with every module the target rules select (in model order; existing adapter layers
    /// included). A method whose adapters share tensors across layers (VeRA's projections) creates them here and
    /// registers them with <see cref="LowRankModel.RegisterSharedModule"/>. Default: nothing.
    /// </summary>
    /// <param name="model">The model being adapted.</param>
    /// <param name="adapterName">The adapter's name.</param>
    /// <param name="targets">The selected modules with their names.</param>
    /// <param name="context">How weights are created (when loading, <see cref="AdapterCreationContext.Initialize"/> is false).</param>
    protected internal virtual void PrepareInjection(LowRankModel model, string adapterName, IReadOnlyList<(string name, torch.nn.Module module)> targets, AdapterCreationContext context) { }

    /// <summary>A copy whose collections can be changed without touching this one.</summary>
    /// <returns>The copy.</returns>
    public LowRankAdapterOptions Clone()
    {
        var c = (LowRankAdapterOptions)MemberwiseClone();
        c.LayersToTransform = LayersToTransform?.ToArray();
        c.LayersPattern = LayersPattern?.ToArray();
        c.ModulesToSave = ModulesToSave?.ToArray();
        c.CloneCollections();
        return c;
    }

    /// <summary>Deep-copies the subclass's collections after a member-wise clone.</summary>
    protected virtual void CloneCollections() { }

    // ------------------------------------------------------------------ JSON

    /// <summary>Whether a PEFT <c>adapter_config.json</c> describes this method (default: its <c>peft_type</c> equals
    /// <see cref="PeftType"/>).</summary>
    /// <param name="config">The JSON object.</param>
    /// <returns>True when this class reads it.</returns>
    public virtual bool Accepts(JsonObject config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config["peft_type"] is JsonValue v && v.TryGetValue<string>(out var t) && t == PeftType;
    }

    /// <summary>Writes the fields into a PEFT <c>adapter_config.json</c> object.</summary>
    /// <param name="o">The object.</param>
    public virtual void WriteJson(JsonObject o)
    {
        ArgumentNullException.ThrowIfNull(o);
        o["peft_type"] = PeftType;
        o["auto_mapping"] = null;
        o["base_model_name_or_path"] = BaseModelNameOrPath;
        o["revision"] = Revision;
        o["task_type"] = TaskType;
        o["inference_mode"] = InferenceMode;
        o["target_modules"] = TargetModules?.ToJson();
        o["exclude_modules"] = ExcludeModules?.ToJson();
        o["layers_to_transform"] = LayersToTransform is null ? null : new JsonArray(LayersToTransform.Select(i => (JsonNode?)JsonValue.Create(i)).ToArray());
        o["layers_pattern"] = LayersPattern is null ? null : LayersPattern.Count == 1 ? JsonValue.Create(LayersPattern[0]) : new JsonArray(LayersPattern.Select(s => (JsonNode?)JsonValue.Create(s)).ToArray());
        o["modules_to_save"] = ModulesToSave is null ? null : new JsonArray(ModulesToSave.Select(s => (JsonNode?)JsonValue.Create(s)).ToArray());
    }

    /// <summary>Reads the fields from a PEFT <c>adapter_config.json</c> object (unknown fields are ignored; known
    /// features this library does not implement fail with <see cref="NotSupportedException"/>).</summary>
    /// <param name="o">The object.</param>
    public virtual void ReadJson(JsonObject o)
    {
        ArgumentNullException.ThrowIfNull(o);
        BaseModelNameOrPath = Str(o, "base_model_name_or_path");
        Revision = Str(o, "revision");
        TaskType = Str(o, "task_type");
        InferenceMode = Bool(o, "inference_mode") ?? false;
        TargetModules = ModuleSelector.FromJson(o["target_modules"], "target_modules");
        ExcludeModules = ModuleSelector.FromJson(o["exclude_modules"], "exclude_modules");
        LayersToTransform = o["layers_to_transform"] switch
        {
            null => null,
            JsonArray a => a.Select(v => Int(v, "layers_to_transform")).ToArray(),
            var v => new[] { Int(v, "layers_to_transform") },
        };
        LayersPattern = o["layers_pattern"] switch
        {
            null => null,
            JsonArray a => a.Select(v => (string?)v ?? throw new FormatException("layers_pattern: null entry")).ToArray(),
            var v => new[] { (string?)v ?? "" },
        };
        if (LayersPattern is { Count: 0 }) LayersPattern = null;
        ModulesToSave = o["modules_to_save"] switch
        {
            null => null,
            JsonArray a => a.Select(v => (string?)v ?? throw new FormatException("modules_to_save: null entry")).ToArray(),
            var v => throw new FormatException($"modules_to_save: expected a list, got {v.ToJsonString()}"),
        };
    }

    /// <summary>The PEFT <c>adapter_config.json</c> text (keys sorted, two-space indent, as PEFT writes it).</summary>
    /// <returns>The JSON.</returns>
    public string ToJson()
    {
        var o = new JsonObject();
        WriteJson(o);
        var sorted = new JsonObject();
        foreach (var kv in o.OrderBy(kv => kv.Key, StringComparer.Ordinal)) sorted[kv.Key] = kv.Value?.DeepClone();
        return sorted.ToJsonString(new JsonSerializerOptions { WriteIndented = true, IndentSize = 2 });
    }

    /// <summary>Reads options from PEFT's JSON: the class is chosen among <see cref="AdapterMethods.All"/> by
    /// <see cref="Accepts"/>.</summary>
    /// <param name="json">The <c>adapter_config.json</c> text.</param>
    /// <returns>The options.</returns>
    public static LowRankAdapterOptions FromJson(string json)
    {
        JsonObject o;
        try { o = JsonNode.Parse(json) as JsonObject ?? throw new FormatException("adapter config is not a JSON object"); }
        catch (JsonException e) { throw new FormatException($"adapter config is not valid JSON: {e.Message}", e); }
        var type = (string?)o["peft_type"] ?? throw new FormatException("adapter config has no peft_type");
        foreach (var factory in AdapterMethods.All)
        {
            var opts = factory();
            if (!opts.Accepts(o)) continue;
            opts.ReadJson(o);
            opts.Validate();
            return opts;
        }
        throw new NotSupportedException($"no adapter method of this library reads this adapter config (peft_type '{type}'); supported: {string.Join(", ", AdapterMethods.All.Select(f => f().PeftType).Distinct())}");
    }

    /// <summary>Reads <c>adapter_config.json</c> from an adapter folder.</summary>
    /// <param name="folder">The folder.</param>
    /// <returns>The options.</returns>
    public static LowRankAdapterOptions Load(string folder)
    {
        var path = Path.Combine(folder, AdapterFiles.ConfigName);
        if (!File.Exists(path)) throw new FileNotFoundException($"no {AdapterFiles.ConfigName} in {folder}", path);
        try { return FromJson(File.ReadAllText(path)); }
        catch (FormatException e) { throw new FormatException($"{path}: {e.Message}", e); }
    }

    // ------------------------------------------------------------------ JSON helpers for subclasses

    /// <summary>A string field (null when absent or null).</summary>
    /// <param name="o">Object.</param>
    /// <param name="name">Field.</param>
    /// <returns>The value.</returns>
    protected static string? Str(JsonObject o, string name) => o[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        var v => throw new FormatException($"{name}: expected a string, got {v.ToJsonString()}"),
    };

    /// <summary>A boolean field (null when absent or null).</summary>
    /// <param name="o">Object.</param>
    /// <param name="name">Field.</param>
    /// <returns>The value.</returns>
    protected static bool? Bool(JsonObject o, string name) => o[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<bool>(out var b) => b,
        var v => throw new FormatException($"{name}: expected true or false, got {v.ToJsonString()}"),
    };

    /// <summary>A number field (null when absent or null).</summary>
    /// <param name="o">Object.</param>
    /// <param name="name">Field.</param>
    /// <returns>The value.</returns>
    protected static double? Num(JsonObject o, string name) => o[name] is null ? null : Num(o[name]!, name);

    /// <summary>A number.</summary>
    /// <param name="v">Node.</param>
    /// <param name="name">Field (for errors).</param>
    /// <returns>The value.</returns>
    protected static double Num(JsonNode v, string name)
        => v is JsonValue jv && jv.GetValueKind() == JsonValueKind.Number ? jv.GetValue<double>() : throw new FormatException($"{name}: expected a number, got {v.ToJsonString()}");

    /// <summary>An integer.</summary>
    /// <param name="v">Node.</param>
    /// <param name="name">Field (for errors).</param>
    /// <returns>The value.</returns>
    protected static int Int(JsonNode? v, string name)
    {
        if (v is null) throw new FormatException($"{name}: expected an integer, got null");
        var d = Num(v, name);
        if (d != Math.Floor(d) || d > int.MaxValue || d < int.MinValue) throw new FormatException($"{name}: expected an integer, got {d.ToString(CultureInfo.InvariantCulture)}");
        return (int)d;
    }

    /// <summary>A number as JSON, written as an integer when it is one (PEFT writes <c>lora_alpha: 16</c>).</summary>
    /// <param name="d">The value.</param>
    /// <returns>The node.</returns>
    protected static JsonNode NumberNode(double d) => d == Math.Floor(d) && Math.Abs(d) < 1e15 ? JsonValue.Create((long)d) : JsonValue.Create(d);
}

/// <summary>How <see cref="LowRankAdapterOptions.AddAdapter"/> creates adapter weights.</summary>
public sealed class AdapterCreationContext
{
    /// <summary>Initialise as the options say (true), or just allocate because a checkpoint will be copied in
    /// (false: no data-dependent initialisation such as PiSSA's, which would change the base weight).</summary>
    public bool Initialize { get; init; } = true;

    /// <summary>Keep adapter weights in float32 when the base layer is float16/bfloat16 (PEFT's
    /// <c>autocast_adapter_dtype</c>, default true); false: the base layer's type.</summary>
    public bool AutocastAdapterDtype { get; init; } = true;

    /// <summary>Random generator for initialisation (null: the global one).</summary>
    public torch.Generator? Generator { get; init; }

    /// <summary>The adapter element type for a base weight of type <paramref name="baseType"/>.</summary>
    /// <param name="baseType">The base weight's type.</param>
    /// <returns>The adapter type.</returns>
    public ScalarType AdapterType(ScalarType baseType)
        => AutocastAdapterDtype && baseType is ScalarType.Float16 or ScalarType.BFloat16 ? ScalarType.Float32 : baseType;
}

/// <summary>One adapter method as the library names it (CLI <c>--method</c>, estimator options, comparison runs).</summary>
/// <param name="Name">The short lower-case name (e.g. <c>lora</c>, <c>dora</c>, <c>vera</c>).</param>
/// <param name="Description">One line: what the method is, with its paper.</param>
/// <param name="Create">Creates the method's options with its documented defaults.</param>
public sealed record AdapterMethod(string Name, string Description, Func<LowRankAdapterOptions> Create);

/// <summary>The adapter methods of the library: PEFT configs are read into them and <c>--method</c> names them (a new
/// method adds itself here, before the more general methods it specialises, such as LoRA).</summary>
public static class AdapterMethods
{
    /// <summary>Every method, in the order <see cref="LowRankAdapterOptions.FromJson"/> tries them (specific first).</summary>
    public static IReadOnlyList<AdapterMethod> Methods { get; } = new AdapterMethod[]
    {
        new("lorafa", "LoRA-FA: LoRA with A frozen, B trained on its (A·Aᵀ)⁻¹/s²-projected gradient (Zhang et al., 2308.03303)", () => new LoraFa.LoraFaOptions()),
        new("lorapro", "LoRA-Pro: LoRA steps following Adam on the equivalent full gradient (Wang et al., 2407.18242)", () => new LoraPro.LoraProOptions()),
        new("lorarite", "LoRA-RITE: transformation-invariant matrix-preconditioned LoRA optimizer (Yen et al., 2410.20625)", () => new LoraRite.LoraRiteOptions()),
        new("plora", "PeriodicLoRA: LoRA unloaded into the base and restarted every stage (Meng et al., 2402.16141)", () => new PeriodicLora.PeriodicLoraOptions()),
        new("cola", "COLA, Chain of LoRA: LoRA links merged into the base one after another (Xia et al., 2401.04151)", () => new Cola.ColaOptions()),
        new("deltalora", "Delta-LoRA: LoRA whose per-step change lambda·s·d(B·A) also updates W (Zi et al., 2309.02411)", () => new DeltaLora.DeltaLoraOptions()),
        new("coto", "CoTo/CopRA: LoRA with progressive random layer activation (Zhuang et al., 2410.22911, 2506.05713)", () => new Coto.CotoOptions()),
        new("qlora", "QLoRA: LoRA over NF4 4-bit base weights with double quantisation (Dettmers et al., 2305.14314)", () => new QLora.QLoraOptions()),
        new("loradrop", "LoRA-drop: LoRA kept on the layers whose output ||dW x||^2 matters, one shared LoRA per module type elsewhere (Zhou et al., 2402.07721)", () => new LoraDrop.LoraDropOptions()),
        new("adalora", "AdaLoRA: SVD-shaped P·diag(E)·Q with importance-driven rank allocation to a cubic budget (Zhang et al., 2303.10512)", () => new AdaLora.AdaLoraOptions()),
        new("loraprune", "LoRAPrune: LoRA plus structured pruning of heads and MLP channels by LoRA-gradient importance (Zhang et al., 2305.18403)", () => new LoraPrune.LoraPruneOptions()),
        new("molora", Mixture.MixtureOfLoraExpertsOptions.Describe("molora"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("molora")),
        new("mixlora", Mixture.MixtureOfLoraExpertsOptions.Describe("mixlora"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("mixlora")),
        new("mixlora-dynamic", Mixture.MixtureOfLoraExpertsOptions.Describe("mixlora-dynamic"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("mixlora-dynamic")),
        new("mixlora-switch", Mixture.MixtureOfLoraExpertsOptions.Describe("mixlora-switch"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("mixlora-switch")),
        new("loramoe", Mixture.MixtureOfLoraExpertsOptions.Describe("loramoe"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("loramoe")),
        new("mola", Mixture.MixtureOfLoraExpertsOptions.Describe("mola"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("mola")),
        new("mola-8642", Mixture.MixtureOfLoraExpertsOptions.Describe("mola-8642"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("mola-8642")),
        new("mola-3773", Mixture.MixtureOfLoraExpertsOptions.Describe("mola-3773"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("mola-3773")),
        new("mola-5555", Mixture.MixtureOfLoraExpertsOptions.Describe("mola-5555"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("mola-5555")),
        new("moelora", Mixture.MixtureOfLoraExpertsOptions.Describe("moelora"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("moelora")),
        new("mmoelora", Mixture.MixtureOfLoraExpertsOptions.Describe("mmoelora"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("mmoelora")),
        new("moa", Mixture.MixtureOfLoraExpertsOptions.Describe("moa"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("moa")),
        new("moral", Mixture.MixtureOfLoraExpertsOptions.Describe("moral"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("moral")),
        new("pesc", Mixture.MixtureOfLoraExpertsOptions.Describe("pesc"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("pesc")),
        new("adamix", Mixture.MixtureOfLoraExpertsOptions.Describe("adamix"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("adamix")),
        new("sira", Mixture.MixtureOfLoraExpertsOptions.Describe("sira"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("sira")),
        new("mocle", Mixture.MixtureOfLoraExpertsOptions.Describe("mocle"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("mocle")),
        new("octavius", Mixture.MixtureOfLoraExpertsOptions.Describe("octavius"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("octavius")),
        new("llava-mole", Mixture.MixtureOfLoraExpertsOptions.Describe("llava-mole"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("llava-mole")),
        new("mole", Mixture.MixtureOfLoraExpertsOptions.Describe("mole"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("mole")),
        new("poly", Mixture.MixtureOfLoraExpertsOptions.Describe("poly"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("poly")),
        new("mlore", Mixture.MixtureOfLoraExpertsOptions.Describe("mlore"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("mlore")),
        new("mosa", Mixture.MixtureOfLoraExpertsOptions.Describe("mosa"), () => Mixture.MixtureOfLoraExpertsOptions.FromPreset("mosa")),
        new("dora", "DoRA: m ⊙ (W + s·B·A) / ‖W + s·B·A‖_row, trainable magnitude m (Liu et al., 2402.09353)", () => new Dora.DoraOptions()),
        new("vera", "VeRA: shared frozen random A, B; per layer only λ_b ⊙ B·(λ_d ⊙ A) trains (Kopiczko et al., 2310.11454)", () => new Vera.VeraOptions()),
        new("reslora", "ResLoRA: LoRA with residual shortcuts between same-name layers, is/bs/ms (Shi et al., 2402.18039)", () => new ResLora.ResLoraOptions()),
        // New methods go above this line (the more specific a config reader, the earlier).
        new("lora", "LoRA: W + (alpha/r)·B·A (Hu et al., 2106.09685)", () => new Lora.LoraOptions()),
        new("rslora", "rsLoRA: LoRA with scaling alpha/sqrt(r) (Kalajdzievski, 2312.03732)", () => new Lora.LoraOptions { UseRsLora = true }),
    };

    /// <summary>Factories of every options class, tried in order by <see cref="LowRankAdapterOptions.FromJson"/>.</summary>
    public static IReadOnlyList<Func<LowRankAdapterOptions>> All { get; } = Methods.Select(m => m.Create).ToArray();

    /// <summary>Creates a method's options by name (case-insensitive).</summary>
    /// <param name="name">The method's name, e.g. <c>dora</c>.</param>
    /// <returns>New options with the method's defaults.</returns>
    /// <exception cref="ArgumentException">No method has that name (the message lists them).</exception>
    public static LowRankAdapterOptions Create(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        foreach (var m in Methods)
            if (string.Equals(m.Name, name, StringComparison.OrdinalIgnoreCase)) return m.Create();
        throw new ArgumentException($"unknown adapter method '{name}'; available: {string.Join(", ", Methods.Select(m => m.Name))}", nameof(name));
    }

    /// <summary>
    /// Returns a copy of <paramref name="options"/> with settings given by their PEFT config names (the keys of
    /// <c>adapter_config.json</c>, e.g. <c>r=16</c>, <c>lora_alpha=32</c>, <c>target_modules=["q_proj","v_proj"]</c>).
    /// A value is read as JSON when it parses (numbers, true/false, lists, null) and as a string otherwise.
    /// </summary>
    /// <param name="options">The options to start from (not modified).</param>
    /// <param name="settings">Config key → value text.</param>
    /// <returns>The new, validated options.</returns>
    /// <exception cref="ArgumentException">A key the method's config does not have (the message lists the keys), or a
    /// value of the wrong type.</exception>
    public static LowRankAdapterOptions WithSettings(LowRankAdapterOptions options, IEnumerable<KeyValuePair<string, string>> settings)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(settings);
        var o = new JsonObject();
        options.WriteJson(o);
        foreach (var (key, text) in settings)
        {
            if (!o.ContainsKey(key))
                throw new ArgumentException($"the {options.PeftType} config has no setting '{key}'; its settings: {string.Join(", ", o.Select(kv => kv.Key).Where(k => k != "peft_type").Order(StringComparer.Ordinal))}", nameof(settings));
            JsonNode? value;
            try { value = JsonNode.Parse(text); }
            catch (JsonException) { value = JsonValue.Create(text); }
            o[key] = value;
        }
        var copy = options.Clone();
        // Re-parse so every value is a JSON element (values written from CLR numbers are not readable as double).
        o = (JsonObject)JsonNode.Parse(o.ToJsonString())!;
        try { copy.ReadJson(o); }
        catch (FormatException e) { throw new ArgumentException($"invalid {options.PeftType} setting: {e.Message}", nameof(settings), e); }
        copy.Validate();
        return copy;
    }
}

/// <summary>PEFT's adapter file names.</summary>
public static class AdapterFiles
{
    /// <summary><c>adapter_config.json</c>.</summary>
    public const string ConfigName = "adapter_config.json";

    /// <summary><c>adapter_model.safetensors</c>.</summary>
    public const string WeightsName = "adapter_model.safetensors";

    /// <summary>The prefix of every key in the weights file (PEFT's PeftModel → LoraModel → model).</summary>
    public const string KeyPrefix = "base_model.model.";
}
