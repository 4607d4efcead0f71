using System.Globalization;
using System.Text;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters;

/// <summary>
/// A pretrained model with adapters injected (PEFT's PeftModel). The wrapped model is registered as
/// <c>base_model.model</c>, so parameter names are PEFT's (<c>base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight</c>).
/// Targeted modules are replaced in the model (it is changed in place and owned by this object from then on); every
/// parameter except the active adapters' (and their modules-to-save copies) is frozen. Holds any number of named
/// adapters of one method; one or more are active.
/// </summary>
public sealed partial class LowRankModel : nn.Module
{
    private readonly Dictionary<string, LowRankAdapterOptions> _configs = new(StringComparer.Ordinal);
    private readonly List<string> _adapterOrder = new();
    private readonly List<(string name, IAdapterModule module)> _shared = new();
    private List<string> _active = new();
    private bool _unloaded;

    private LowRankModel(PretrainedModel model) : base("PeftModel")
    {
        Model = model;
        var tuner = register_module("base_model", new Container("LowRankTunerModel"));
        tuner.register_module("model", model);
    }

    /// <summary>The wrapped model (with adapter layers in place of the targeted modules).</summary>
    public PretrainedModel Model { get; }

    /// <summary>Each adapter's options, by name (PEFT's <c>peft_config</c>).</summary>
    public IReadOnlyDictionary<string, LowRankAdapterOptions> PeftConfig => _configs;

    /// <summary>Adapter names in creation order.</summary>
    public IReadOnlyList<string> AdapterNames => _adapterOrder;

    /// <summary>The method of this model's adapters (PEFT's <c>peft_type</c>).</summary>
    public string PeftType => _configs.Count > 0 ? _configs[_adapterOrder[0]].PeftType : "";

    /// <summary>The active adapters.</summary>
    public IReadOnlyList<string> ActiveAdapters => _active;

    /// <summary>The first active adapter.</summary>
    public string ActiveAdapter => _active.Count > 0 ? _active[0] : throw new InvalidOperationException("no adapter is active");

    // ------------------------------------------------------------------ creation

    /// <summary>
    /// Injects an adapter into a model (PEFT's get_peft_model): replaces every module the options select with an
    /// adapter layer (via set_submodule), wraps the modules to save, and freezes everything else. The options are
    /// copied; unset target modules default to the method's table for the model type; the task type defaults to the
    /// model's task (and for classification tasks the heads "classifier"/"score" are trained and saved, as in PEFT).
    /// Works on a model built on the meta device (shapes only, for parameter accounting).
    /// </summary>
    /// <param name="model">The model; changed in place and owned by the result.</param>
    /// <param name="options">The adapter options.</param>
    /// <param name="adapterName">The adapter's name.</param>
    /// <param name="context">Creation settings (null: defaults).</param>
    /// <returns>The adapted model.</returns>
    public static LowRankModel Create(PretrainedModel model, LowRankAdapterOptions options, string adapterName = "default", AdapterCreationContext? context = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        if (model.named_modules().Any(m => m.module is IAdapterModule))
            throw new ArgumentException("the model already holds adapters; use AddAdapter on its LowRankModel", nameof(model));
        var lm = new LowRankModel(model);
        lm.AddAdapter(adapterName, options, context);
        lm.SetAdapter(adapterName);
        return lm;
    }

    /// <summary>Adds another adapter of the same method (not activated, as in PEFT; use <see cref="SetAdapter"/>).</summary>
    /// <param name="adapterName">The new adapter's name.</param>
    /// <param name="options">Its options (copied).</param>
    /// <param name="context">Creation settings (null: defaults).</param>
    public void AddAdapter(string adapterName, LowRankAdapterOptions options, AdapterCreationContext? context = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var opts = PrepareOptions(adapterName, options);
        Inject(adapterName, opts, context ?? new AdapterCreationContext(), keep: null);
        if (_active.Count == 0) _active = new List<string> { adapterName };
        ApplyActive();
    }

    private LowRankAdapterOptions PrepareOptions(string adapterName, LowRankAdapterOptions options)
    {
        CheckUsable();
        CheckAdapterName(adapterName);
        if (_configs.ContainsKey(adapterName)) throw new ArgumentException($"an adapter named '{adapterName}' already exists", nameof(adapterName));
        if (_configs.Count > 0 && options.PeftType != PeftType)
            throw new ArgumentException($"cannot combine adapters of different methods: this model holds {PeftType} adapters, not {options.PeftType}");
        var opts = options.Clone();
        opts.Validate();
        opts.PrepareForModel(Model);
        opts.TaskType ??= TaskTypeOf(Model.Task);
        opts.TargetModules ??= opts.DefaultTargetModules(Model.Config.ModelType)
            ?? throw new ArgumentException($"no default target modules for model type '{Model.Config.ModelType}': set TargetModules. {TargetMatcher.Available(TargetMatcher.Candidates(Model))}");
        if (opts.TaskType is "SEQ_CLS" or "TOKEN_CLS")
        {
            var list = (opts.ModulesToSave ?? Array.Empty<string>()).ToList();
            foreach (var h in new[] { "classifier", "score" }) if (!list.Contains(h)) list.Add(h);
            opts.ModulesToSave = list;
        }
        return opts;
    }

    /// <summary>
    /// Registers a module that holds tensors an adapter method shares across layers, as a child of <c>base_model</c>
    /// next to the model (PEFT keeps VeRA's projections there: <c>base_model.vera_A.&lt;adapter&gt;</c>). Its
    /// <see cref="IAdapterModule.AdapterStateDict"/> entries are saved and loaded under <c>base_model.&lt;name&gt;</c>
    /// (plus <c>.&lt;key&gt;</c> when the key is not empty), and deleting an adapter deletes its entries. Registering a
    /// name again returns the module already registered.
    /// </summary>
    /// <typeparam name="T">The module type.</typeparam>
    /// <param name="name">The child name (no dots), e.g. "vera_A".</param>
    /// <param name="create">Creates the module when none has that name.</param>
    /// <returns>The registered module.</returns>
    public T RegisterSharedModule<T>(string name, Func<T> create) where T : nn.Module, IAdapterModule
    {
        ArgumentNullException.ThrowIfNull(create);
        CheckUsable();
        if (name == "model") throw new ArgumentException("'model' is the wrapped model's name under base_model; choose another name", nameof(name));
        foreach (var (n, m) in _shared)
            if (n == name) return m as T ?? throw new InvalidOperationException($"shared module '{name}' is a {((nn.Module)m).name}, not a {typeof(T).Name}");
        var module = create();
        get_submodule("base_model").register_module(name, module);
        _shared.Add((name, module));
        return module;
    }

    /// <summary>The shared modules (see <see cref="RegisterSharedModule"/>) with their names under <c>base_model</c>.</summary>
    public IReadOnlyList<(string name, IAdapterModule module)> SharedModules => _shared;

    /// <summary>PEFT's task_type for a model task.</summary>
    /// <param name="task">The task.</param>
    /// <returns>"CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS" or "FEATURE_EXTRACTION".</returns>
    public static string TaskTypeOf(ModelTask task) => task switch
    {
        ModelTask.CausalLM => "CAUSAL_LM",
        ModelTask.SequenceClassification or ModelTask.Regression => "SEQ_CLS",
        ModelTask.TokenClassification => "TOKEN_CLS",
        _ => "FEATURE_EXTRACTION",
    };

    private static void CheckAdapterName(string adapterName)
    {
        if (string.IsNullOrEmpty(adapterName) || adapterName.Contains('.') || adapterName == AdapterLayer.BaseAdapterName)
            throw new ArgumentException($"invalid adapter name '{adapterName}': it must be non-empty, contain no '.', and not be '{AdapterLayer.BaseAdapterName}'", nameof(adapterName));
    }

    private void CheckUsable()
    {
        if (_unloaded) throw new InvalidOperationException("the adapters were unloaded from this model; use the returned PretrainedModel");
    }

    /// <summary>
    /// Creates the adapter's layers and modules-to-save copies. With <paramref name="keep"/> (loading), modules the
    /// rules select but for which <paramref name="keep"/> is false are skipped, and a rule target that is also a module
    /// to save is left to the modules-to-save wrapper. On failure the model's structure is restored.
    /// </summary>
    private void Inject(string adapterName, LowRankAdapterOptions opts, AdapterCreationContext context, Func<string, bool>? keep)
    {
        var targets = TargetMatcher.FindTargets(Model, opts);
        var selected = targets.ToList();
        var candidates = TargetMatcher.Candidates(Model);
        // PEFT stores "all-linear" expanded into the short names of the modules it selected.
        if (opts.TargetModules!.IsAllLinear)
            opts.TargetModules = ModuleSelector.FromNames(targets.Select(t => t.name[(t.name.LastIndexOf('.') + 1)..]));
        var saves = new List<(string name, nn.Module module)>();
        var userSaves = UserSaves(opts);
        foreach (var s in opts.ModulesToSave ?? Array.Empty<string>())
        {
            var found = TargetMatcher.FindModulesToSave(candidates, s);
            if (found.Count == 0 && userSaves.Contains(s))
                throw new ArgumentException($"modules_to_save '{s}' matches no module of {Model.name}; top-level modules: {string.Join(", ", Model.named_children().Select(c => c.name))}");
            foreach (var f in found) if (!saves.Exists(x => x.name == f.name)) saves.Add(f);
        }
        bool UnderSave(string n) => saves.Exists(s => n == s.name || n.StartsWith(s.name + ".", StringComparison.Ordinal));
        if (keep is null)
        {
            var clash = targets.Where(t => UnderSave(t.name)).Select(t => t.name).ToList();
            if (clash.Count > 0)
                throw new ArgumentException($"module(s) {string.Join(", ", clash)} are both adapter targets and modules_to_save; choose one");
        }
        else targets = targets.Where(t => !UnderSave(t.name) && keep(t.name)).ToList();
        if (keep is not null && targets.Count == 0 && saves.Count == 0)
            throw new InvalidDataException("the adapter file holds no tensor for any module its config selects");

        var created = new List<(string path, nn.Module original)>();
        var touched = new List<IAdapterModule>();
        try
        {
            opts.PrepareInjection(this, adapterName, selected, context);
            foreach (var (path, module) in targets)
            {
                if (module is AdapterLayer existing)
                {
                    if (!opts.IsCompatibleLayer(existing))
                        throw new ArgumentException($"module '{path}' already holds a {existing.name}, which {opts.PeftType} adapters cannot join");
                    touched.Add(existing);
                    opts.AddAdapter(existing, adapterName, path, context);
                }
                else
                {
                    var layer = opts.CreateLayer(module);
                    Model.set_submodule(path, layer);
                    created.Add((path, module));
                    opts.AddAdapter(layer, adapterName, path, context);
                }
            }
            foreach (var (path, module) in saves) WrapToSave(path, module, adapterName, created, touched);
        }
        catch
        {
            foreach (var t in touched) t.DeleteAdapter(adapterName);
            foreach (var (path, original) in created) Model.set_submodule(path, original);
            foreach (var (_, m) in _shared) m.DeleteAdapter(adapterName);
            throw;
        }
        _configs[adapterName] = opts;
        _adapterOrder.Add(adapterName);
    }

    private static HashSet<string> UserSaves(LowRankAdapterOptions opts)
    {
        var s = new HashSet<string>(opts.ModulesToSave ?? Array.Empty<string>());
        if (opts.TaskType is "SEQ_CLS" or "TOKEN_CLS") { s.Remove("classifier"); s.Remove("score"); }
        return s;
    }

    private void WrapToSave(string path, nn.Module module, string adapterName, List<(string, nn.Module)> created, List<IAdapterModule> touched)
    {
        if (module is ModulesToSaveWrapper w)
        {
            touched.Add(w);
            w.AddAdapter(adapterName);
            return;
        }
        if (module is nn.Module<Tensor, Tensor> unary && ModulesToSaveWrapper.CanWrap(module))
        {
            var wrapper = new ModulesToSaveWrapper(unary);
            Model.set_submodule(path, wrapper);
            created.Add((path, module));
            wrapper.AddAdapter(adapterName);
            return;
        }
        // A container (e.g. RoBERTa's classification head): wrap each of its parameterised leaves.
        var leaves = module.named_children().ToList();
        if (leaves.Count == 0) throw new NotSupportedException($"modules_to_save cannot copy '{path}' ({module.name})");
        foreach (var (child, m) in leaves) WrapToSave(path + "." + child, m, adapterName, created, touched);
    }

    // ------------------------------------------------------------------ adapter modules, activation, freezing

    /// <summary>Every module holding adapters, with its name in <see cref="Model"/>.</summary>
    /// <returns>(name, module) pairs in model order.</returns>
    public IEnumerable<(string name, IAdapterModule module)> AdapterModules()
    {
        foreach (var (n, m) in Model.named_modules())
            if (m is IAdapterModule a) yield return (n, a);
    }

    /// <summary>Every adapter layer, with its name in <see cref="Model"/>.</summary>
    /// <returns>(name, layer) pairs.</returns>
    public IEnumerable<(string name, AdapterLayer layer)> AdapterLayers()
    {
        foreach (var (n, m) in AdapterModules())
            if (m is AdapterLayer l) yield return (n, l);
    }

    /// <summary>Makes the given adapters the active ones (their weights trainable, every other adapter frozen).</summary>
    /// <param name="adapterNames">One or more adapter names.</param>
    public void SetAdapter(params string[] adapterNames)
    {
        CheckUsable();
        ArgumentNullException.ThrowIfNull(adapterNames);
        if (adapterNames.Length == 0) throw new ArgumentException("name at least one adapter", nameof(adapterNames));
        foreach (var a in adapterNames)
            if (!_configs.ContainsKey(a)) throw new KeyNotFoundException($"no adapter '{a}' (adapters: {string.Join(", ", _adapterOrder)})");
        var previous = _active;
        _active = adapterNames.Distinct().ToList();
        try { ApplyActive(); }
        catch
        {
            _active = previous;
            ApplyActive();
            throw;
        }
    }

    private void ApplyActive()
    {
        foreach (var (_, m) in AdapterModules()) m.SetActiveAdapters(_active);
        RefreshTrainable();
    }

    /// <summary>Sets requires_grad: true exactly for the parameters of active adapters not in inference mode.</summary>
    private void RefreshTrainable()
    {
        foreach (var p in Model.parameters()) p.requires_grad = false;
        foreach (var (_, m) in AdapterModules())
            foreach (var a in _active)
            {
                if (_configs[a].InferenceMode) continue;
                foreach (var (n, p) in m.AdapterParameters(a)) p.requires_grad = _configs[a].IsTrainableParameter(n);
            }
    }

    /// <summary>Removes an adapter everywhere (layers left without adapters are replaced by their base layers). When it
    /// was active, the first remaining adapter becomes active.</summary>
    /// <param name="adapterName">The adapter.</param>
    public void DeleteAdapter(string adapterName)
    {
        CheckUsable();
        if (!_configs.ContainsKey(adapterName)) throw new KeyNotFoundException($"no adapter '{adapterName}' (adapters: {string.Join(", ", _adapterOrder)})");
        RemoveAdapterEverywhere(adapterName);
        _configs.Remove(adapterName);
        _adapterOrder.Remove(adapterName);
        _active.Remove(adapterName);
        if (_active.Count == 0 && _adapterOrder.Count > 0) _active.Add(_adapterOrder[0]);
        ApplyActive();
    }

    private void RemoveAdapterEverywhere(string adapterName)
    {
        foreach (var (_, m) in _shared) m.DeleteAdapter(adapterName);
        foreach (var (path, m) in AdapterModules().ToList())
        {
            m.DeleteAdapter(adapterName);
            if (m.AdapterNames.Count > 0) continue;
            // Put the base module back (not disposed: the model owns it again).
            var original = m switch
            {
                AdapterLayer l => (nn.Module)l.BaseLayer,
                ModulesToSaveWrapper w => w.OriginalModule,
                _ => null,
            };
            if (original is not null) Model.set_submodule(path, original);
        }
    }

    /// <summary>Disables every adapter until the returned scope is disposed (PEFT's disable_adapter context):
    /// forward is the base model's (merged adapters are unmerged first, as in PEFT).</summary>
    /// <returns>The scope; disposing it restores the previous state.</returns>
    public IDisposable DisableAdapter()
    {
        CheckUsable();
        var modules = AdapterModules().Select(m => m.module).ToList();
        var previous = modules.Select(m => m.AdaptersDisabled).ToList();
        foreach (var m in modules) m.AdaptersDisabled = true;
        return new Scope(() => { for (int i = 0; i < modules.Count; i++) modules[i].AdaptersDisabled = previous[i]; });
    }

    private sealed class Scope(Action onDispose) : IDisposable
    {
        private Action? _onDispose = onDispose;

        public void Dispose()
        {
            _onDispose?.Invoke();
            _onDispose = null;
        }
    }

    // ------------------------------------------------------------------ merge / unload

    /// <summary>Merges adapters into the base weights of every adapter layer (default: the active adapters).</summary>
    /// <param name="adapterNames">Adapters to merge, or null for the active ones.</param>
    /// <param name="safeMerge">Check each merged weight for NaN/Inf first.</param>
    public void Merge(IReadOnlyList<string>? adapterNames = null, bool safeMerge = false)
    {
        CheckUsable();
        var names = adapterNames ?? _active;
        foreach (var a in names) if (!_configs.ContainsKey(a)) throw new KeyNotFoundException($"no adapter '{a}'");
        foreach (var (_, l) in AdapterLayers()) l.Merge(names, safeMerge);
    }

    /// <summary>Takes every merged adapter back out of the base weights.</summary>
    public void Unmerge()
    {
        CheckUsable();
        foreach (var (_, l) in AdapterLayers()) l.Unmerge();
    }

    /// <summary>Merges the active adapters into the base weights, removes every adapter layer and modules-to-save
    /// wrapper (a wrapper is replaced by the active adapter's copy), and returns the plain model (PEFT's
    /// merge_and_unload). This object is unusable afterwards and no longer owns the model.</summary>
    /// <param name="safeMerge">Check merged weights for NaN/Inf.</param>
    /// <returns>The model.</returns>
    public PretrainedModel MergeAndUnload(bool safeMerge = false) => UnloadCore(merge: true, safeMerge);

    /// <summary>Removes every adapter layer without merging (a modules-to-save wrapper is replaced by its original
    /// module) and returns the plain model (PEFT's unload). For PiSSA/OLoRA the base weights stay the residual ones.
    /// This object is unusable afterwards and no longer owns the model.</summary>
    /// <returns>The model.</returns>
    public PretrainedModel Unload() => UnloadCore(merge: false, false);

    private PretrainedModel UnloadCore(bool merge, bool safeMerge)
    {
        CheckUsable();
        if (merge) Merge(null, safeMerge);
        else Unmerge();
        foreach (var (path, m) in AdapterModules().ToList())
        {
            switch (m)
            {
                case AdapterLayer l:
                    l.ForgetMerges();
                    foreach (var a in l.AdapterNames.ToList()) l.DeleteAdapter(a);
                    Model.set_submodule(path, l.BaseLayer);
                    break;
                case ModulesToSaveWrapper w:
                    var keep = merge ? w.Current() : w.OriginalModule;
                    Model.set_submodule(path, keep);
                    foreach (var a in w.AdapterNames.ToList())
                        if (!ReferenceEquals(w.Copy(a), keep)) w.DeleteAdapter(a);
                    break;
            }
        }
        foreach (var (_, m) in _shared)
            foreach (var a in m.AdapterNames.ToList()) m.DeleteAdapter(a);
        _unloaded = true;
        return Model;
    }

    /// <summary>The base model's state dict with Hugging Face names (adapter layers and wrappers see-through:
    /// <c>q_proj.base_layer.weight</c> → <c>q_proj.weight</c>, <c>classifier.original_module.weight</c> →
    /// <c>classifier.weight</c>); for PiSSA/OLoRA these are the residual weights. Aliases; the caller disposes them.</summary>
    /// <returns>The state dict.</returns>
    public Dictionary<string, Tensor> GetBaseStateDict()
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var adapterPaths = AdapterModules().Select(m => m.name).ToList();
        foreach (var (k, v) in Model.state_dict())
        {
            string? key = k;
            foreach (var p in adapterPaths)
            {
                if (!k.StartsWith(p + ".", StringComparison.Ordinal)) continue;
                var rest = k[(p.Length + 1)..];
                if (rest.StartsWith("base_layer.", StringComparison.Ordinal)) key = p + "." + rest["base_layer.".Length..];
                else if (rest.StartsWith("original_module.", StringComparison.Ordinal)) key = p + "." + rest["original_module.".Length..];
                else key = null;
                break;
            }
            if (key is null) { v.Dispose(); continue; }
            result[key] = v;
        }
        return result;
    }

    // ------------------------------------------------------------------ forward

    /// <summary>Runs the model with the active adapters, or with one adapter per batch row.</summary>
    /// <param name="inputs">Inputs.</param>
    /// <param name="adapterNames">Per-row adapter names (<see cref="AdapterLayer.BaseAdapterName"/> for none), or null.</param>
    /// <returns>The output.</returns>
    public ModelOutput forward(ModelInputs inputs, IReadOnlyList<string>? adapterNames = null)
    {
        CheckUsable();
        ArgumentNullException.ThrowIfNull(inputs);
        if (adapterNames is null) return Model.forward(inputs);
        using var mixed = UseMixedBatch(adapterNames);
        if (adapterNames.Count != inputs.InputIds.size(0))
            throw new ArgumentException($"{adapterNames.Count} adapter names for a batch of {inputs.InputIds.size(0)} rows", nameof(adapterNames));
        return Model.forward(inputs);
    }

    /// <summary>Makes every forward run until the scope is disposed a mixed-adapter batch: row i uses adapter
    /// <paramref name="adapterNames"/>[i] (e.g. around text generation).</summary>
    /// <param name="adapterNames">One adapter name per row (<see cref="AdapterLayer.BaseAdapterName"/> for none).</param>
    /// <returns>The scope.</returns>
    public IDisposable UseMixedBatch(IReadOnlyList<string> adapterNames)
    {
        CheckUsable();
        ArgumentNullException.ThrowIfNull(adapterNames);
        foreach (var a in adapterNames)
            if (a != AdapterLayer.BaseAdapterName && !_configs.ContainsKey(a))
                throw new KeyNotFoundException($"no adapter '{a}' for the mixed batch (adapters: {string.Join(", ", _adapterOrder)}, or '{AdapterLayer.BaseAdapterName}')");
        var modules = AdapterModules().Select(m => m.module).ToList();
        if (modules.OfType<AdapterLayer>().Any(l => l.Merged)) throw new InvalidOperationException("mixed-adapter batches cannot run while adapters are merged; unmerge first");
        var names = adapterNames.ToArray();
        foreach (var m in modules) m.MixedBatchAdapterNames = names;
        return new Scope(() => { foreach (var m in modules) m.MixedBatchAdapterNames = null; });
    }

    // ------------------------------------------------------------------ parameter accounting

    /// <summary>Trainable and total parameter counts (shared parameters once; works on the meta device). A packed 4-bit
    /// weight (a uint8 parameter of <see cref="QLora.QuantizedLinear"/>) counts two parameters per byte, as PEFT counts
    /// bitsandbytes' Params4bit.</summary>
    /// <returns>(trainable, all).</returns>
    public (long trainable, long all) GetNbTrainableParameters()
    {
        long t = 0, all = 0;
        foreach (var p in parameters())
        {
            var n = p.dtype == ScalarType.Byte ? 2 * p.numel() : p.numel();
            all += n;
            if (p.requires_grad) t += n;
        }
        return (t, all);
    }

    /// <summary>PEFT's print_trainable_parameters line: "trainable params: X || all params: Y || trainable%: Z".</summary>
    /// <returns>The line.</returns>
    public string TrainableParametersSummary()
    {
        var (t, all) = GetNbTrainableParameters();
        var pct = all == 0 ? 0 : 100.0 * t / all;
        return string.Create(CultureInfo.InvariantCulture, $"trainable params: {t:N0} || all params: {all:N0} || trainable%: {pct:F4}");
    }

    /// <summary>Writes <see cref="TrainableParametersSummary"/> to a writer (default: the console).</summary>
    /// <param name="writer">The writer.</param>
    public void PrintTrainableParameters(TextWriter? writer = null) => (writer ?? Console.Out).WriteLine(TrainableParametersSummary());

    /// <summary>Parameter counts in detail: totals, per adapter, and per adapter module.</summary>
    /// <returns>The report.</returns>
    public ParameterReport CountParameters()
    {
        var (t, all) = GetNbTrainableParameters();
        var perAdapter = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var a in _adapterOrder) perAdapter[a] = 0;
        var perModule = new List<ModuleParameterCount>();
        foreach (var (path, m) in AdapterModules())
        {
            foreach (var a in m.AdapterNames) perAdapter[a] = perAdapter.GetValueOrDefault(a) + m.AdapterParameters(a).Sum(p => p.parameter.numel());
            var mod = (nn.Module)m;
            long mt = 0, mall = 0;
            foreach (var p in mod.parameters())
            {
                mall += p.numel();
                if (p.requires_grad) mt += p.numel();
            }
            perModule.Add(new ModuleParameterCount(path, mt, mall));
        }
        return new ParameterReport(t, all, perAdapter, perModule);
    }

    // ------------------------------------------------------------------ disposal

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        // After unloading, the model belongs to the caller.
        if (_unloaded) return;
        base.Dispose(disposing);
    }

    /// <summary>A short description: method, adapters, active set and parameter counts.</summary>
    /// <returns>The text.</returns>
    public string Describe()
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{PeftType} on {Model.name}: adapters [{string.Join(", ", _adapterOrder)}], active [{string.Join(", ", _active)}], ");
        sb.Append(AdapterModules().Count()).Append(" adapter modules; ").Append(TrainableParametersSummary());
        return sb.ToString();
    }
}

/// <summary>Parameter counts of a <see cref="LowRankModel"/>.</summary>
/// <param name="Trainable">Parameters that require gradients.</param>
/// <param name="Total">All parameters (shared ones once).</param>
/// <param name="PerAdapter">Parameters of each adapter (its layers' weights and its modules-to-save copies).</param>
/// <param name="PerModule">Trainable and total parameters of each adapter module (base weights included in the total).</param>
public sealed record ParameterReport(long Trainable, long Total, IReadOnlyDictionary<string, long> PerAdapter, IReadOnlyList<ModuleParameterCount> PerModule);

/// <summary>Parameter counts of one adapter module.</summary>
/// <param name="Path">The module's name in the model.</param>
/// <param name="Trainable">Trainable parameters.</param>
/// <param name="Total">All parameters (base included).</param>
public sealed record ModuleParameterCount(string Path, long Trainable, long Total);
