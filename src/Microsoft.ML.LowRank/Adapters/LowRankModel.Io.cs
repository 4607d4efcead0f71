using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters;

/// <summary>How <see cref="LowRankModel.Save"/> writes adapters.</summary>
public sealed class AdapterSaveOptions
{
    /// <summary>Adapters to save (null: all). "default" goes to the folder itself, any other adapter to a subfolder
    /// named after it, as PEFT does.</summary>
    public IReadOnlyList<string>? SelectedAdapters { get; init; }

    /// <summary>
    /// PEFT's <c>path_initial_model_for_weight_conversion</c>: the folder of the adapter as it was saved right after a
    /// PiSSA/OLoRA initialisation. When set, each saved adapter is converted into a plain LoRA of twice the rank that
    /// applies to the ORIGINAL base weights: A' = [A; A₀], B' = [B, −B₀], r' = 2r, α' = 2α (√2·α with rsLoRA), so
    /// s'·B'A' = s·(BA − B₀A₀) = the change made by training; init_lora_weights becomes true. Null: save as is (the
    /// adapter then applies to the residual base weights, see <see cref="LowRankModel.GetBaseStateDict"/>).
    /// </summary>
    public string? PathInitialModelForWeightConversion { get; init; }
}

public sealed partial class LowRankModel
{
    /// <summary>An adapter's tensors under PEFT's file keys: <c>base_model.model.&lt;module&gt;.lora_A.weight</c> (the adapter
    /// name removed), for modules to save <c>base_model.model.&lt;module&gt;.weight</c>, and for tensors a method shares
    /// across layers <c>base_model.&lt;name&gt;</c> (VeRA's <c>base_model.vera_A</c>). Aliases of the model's storage; the
    /// caller disposes them.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>Key-to-tensor map in model order.</returns>
    public Dictionary<string, Tensor> GetAdapterStateDict(string adapterName)
    {
        CheckUsable();
        if (!_configs.ContainsKey(adapterName)) throw new KeyNotFoundException($"no adapter '{adapterName}' (adapters: {string.Join(", ", _adapterOrder)})");
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (path, m) in AdapterModules())
            foreach (var (k, t) in m.AdapterStateDict(adapterName))
                d[AdapterFiles.KeyPrefix + path + "." + k] = t;
        foreach (var (name, m) in _shared)
            foreach (var (k, t) in m.AdapterStateDict(adapterName))
                d["base_model." + name + (k.Length == 0 ? "" : "." + k)] = t;
        return d;
    }

    /// <summary>
    /// Saves adapters in PEFT's layout: <c>adapter_config.json</c> (PEFT's field names, inference_mode true) and
    /// <c>adapter_model.safetensors</c> (PEFT's keys, metadata format=pt), "default" in <paramref name="folder"/> and
    /// every other adapter in <c>folder/&lt;name&gt;</c>.
    /// </summary>
    /// <param name="folder">The folder (created).</param>
    /// <param name="options">Which adapters, and the PiSSA/OLoRA conversion (null: all adapters, as they are).</param>
    public void Save(string folder, AdapterSaveOptions? options = null)
    {
        CheckUsable();
        ArgumentException.ThrowIfNullOrEmpty(folder);
        var names = options?.SelectedAdapters ?? _adapterOrder;
        foreach (var n in names) if (!_configs.ContainsKey(n)) throw new KeyNotFoundException($"no adapter '{n}' to save (adapters: {string.Join(", ", _adapterOrder)})");
        foreach (var name in names)
        {
            var dir = name == "default" ? folder : Path.Combine(folder, name);
            Directory.CreateDirectory(dir);
            using var scope = NewDisposeScope();
            IReadOnlyDictionary<string, Tensor> sd = GetAdapterStateDict(name);
            var cfg = _configs[name].Clone();
            cfg.InferenceMode = true;
            if (options?.PathInitialModelForWeightConversion is { } init)
                (sd, cfg) = ConvertMutatedToLora(sd, cfg, init);
            Safetensors.Save(Path.Combine(dir, AdapterFiles.WeightsName), sd, new Dictionary<string, string> { ["format"] = "pt" });
            File.WriteAllText(Path.Combine(dir, AdapterFiles.ConfigName), cfg.ToJson());
        }
    }

    /// <summary>
    /// PEFT's conversion of a trained PiSSA/OLoRA adapter into a plain LoRA on the original base weights (see
    /// <see cref="AdapterSaveOptions.PathInitialModelForWeightConversion"/>).
    /// </summary>
    /// <param name="trained">The trained adapter's tensors (PEFT keys).</param>
    /// <param name="config">Its options (a LoRA config).</param>
    /// <param name="initialAdapterFolder">The folder holding the adapter saved right after initialisation.</param>
    /// <returns>New tensors (in the caller's dispose scope) and the converted options.</returns>
    public static (Dictionary<string, Tensor> tensors, LowRankAdapterOptions options) ConvertMutatedToLora(
        IReadOnlyDictionary<string, Tensor> trained, LowRankAdapterOptions config, string initialAdapterFolder)
    {
        ArgumentNullException.ThrowIfNull(trained);
        ArgumentNullException.ThrowIfNull(config);
        if (config is not LoraOptions lora) throw new NotSupportedException($"only LoRA adapters can be converted, not {config.PeftType}");
        if (lora.UseRsLora && (lora.RankPattern.Count > 0 || lora.AlphaPattern.Count > 0))
            throw new NotSupportedException("converting an adapter that uses rsLoRA together with rank_pattern or alpha_pattern is not supported (as in PEFT)");
        var initFile = Path.Combine(initialAdapterFolder, AdapterFiles.WeightsName);
        if (!File.Exists(initFile)) throw new FileNotFoundException($"initial adapter not found: no {AdapterFiles.WeightsName} in {initialAdapterFolder}", initFile);
        using var init = SafetensorsFile.Open(initFile);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (k, t) in trained)
        {
            bool isA = k.EndsWith(".lora_A.weight", StringComparison.Ordinal), isB = k.EndsWith(".lora_B.weight", StringComparison.Ordinal);
            if (!isA && !isB) { result[k] = t.alias(); continue; }
            if (!init.Contains(k)) throw new InvalidDataException($"{initFile}: the initial adapter has no tensor '{k}'");
            var t0 = init.LoadTensor(k, t.dtype, t.device);
            if (isA && t0.size(1) != t.size(1) || isB && t0.size(0) != t.size(0))
                throw new InvalidDataException($"{initFile}: tensor '{k}' has shape [{string.Join(", ", t0.shape)}], incompatible with the trained [{string.Join(", ", t.shape)}]");
            result[k] = isA ? cat(new[] { t, t0 }, 0) : cat(new[] { t, -t0 }, 1);
        }
        var c = (LoraOptions)lora.Clone();
        c.LoraAlpha = lora.UseRsLora ? lora.LoraAlpha * Math.Sqrt(2) : lora.LoraAlpha * 2;
        c.R = lora.R * 2;
        c.RankPattern = lora.RankPattern.ToDictionary(kv => kv.Key, kv => kv.Value * 2);
        c.AlphaPattern = lora.AlphaPattern.ToDictionary(kv => kv.Key, kv => kv.Value * 2);
        c.InitLoraWeights = LoraInitialization.Default;
        c.PissaNiter = null;
        return (result, c);
    }

    /// <summary>
    /// Loads a PEFT adapter folder into a model (PEFT's PeftModel.from_pretrained). The config's rules select the
    /// modules; the file must then hold exactly the tensors those modules need, with the model's shapes; otherwise
    /// the model is left as it was and the error names the tensors (missing file, unknown keys, missing keys, shape
    /// mismatches — e.g. an adapter for another architecture). Weights are never initialised from data on load (a
    /// PiSSA/OLoRA adapter saved without conversion applies to the residual base model it was trained on).
    /// </summary>
    /// <param name="model">The base model; changed in place and owned by the result.</param>
    /// <param name="folder">The adapter folder (adapter_config.json + adapter_model.safetensors).</param>
    /// <param name="adapterName">The name to give the adapter.</param>
    /// <param name="isTrainable">Keep the adapter trainable (default: inference mode, frozen, as in PEFT).</param>
    /// <param name="context">Creation settings (adapter dtype).</param>
    /// <returns>The adapted model.</returns>
    public static LowRankModel Load(PretrainedModel model, string folder, string adapterName = "default", bool isTrainable = false, AdapterCreationContext? context = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.named_modules().Any(m => m.module is IAdapterModule))
            throw new ArgumentException("the model already holds adapters; use LoadAdapter on its LowRankModel", nameof(model));
        var lm = new LowRankModel(model);
        lm.LoadAdapter(folder, adapterName, isTrainable, context);
        lm.SetAdapter(adapterName);
        return lm;
    }

    /// <summary>Loads another PEFT adapter folder into this model (PEFT's load_adapter; not activated unless it is the
    /// first adapter). Checks as in <see cref="Load"/>.</summary>
    /// <param name="folder">The adapter folder.</param>
    /// <param name="adapterName">The name to give the adapter.</param>
    /// <param name="isTrainable">Keep the adapter trainable (default: frozen).</param>
    /// <param name="context">Creation settings (adapter dtype).</param>
    public void LoadAdapter(string folder, string adapterName, bool isTrainable = false, AdapterCreationContext? context = null)
    {
        CheckUsable();
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"adapter folder not found: {folder}");
        var weights = Path.Combine(folder, AdapterFiles.WeightsName);
        if (!File.Exists(weights))
        {
            if (File.Exists(Path.Combine(folder, "adapter_model.bin")))
                throw new NotSupportedException($"{folder} holds adapter_model.bin (PyTorch pickle), which cannot be read; save the adapter as safetensors");
            throw new FileNotFoundException($"no {AdapterFiles.WeightsName} in {folder}", weights);
        }
        var fileOptions = LowRankAdapterOptions.Load(folder);
        fileOptions.InferenceMode = !isTrainable;
        var opts = PrepareOptions(adapterName, fileOptions);
        using var file = SafetensorsFile.Open(weights);
        var fileKeys = new HashSet<string>(file.Names, StringComparer.Ordinal);
        var ctx = new AdapterCreationContext { Initialize = false, AutocastAdapterDtype = context?.AutocastAdapterDtype ?? true };
        bool HasKeys(string path)
        {
            var prefix = AdapterFiles.KeyPrefix + path + ".";
            foreach (var k in fileKeys) if (k.StartsWith(prefix, StringComparison.Ordinal)) return true;
            return false;
        }
        Inject(adapterName, opts, ctx, HasKeys);
        try
        {
            using var scope = NewDisposeScope();
            var expected = GetAdapterStateDict(adapterName);
            var unknown = fileKeys.Where(k => !expected.ContainsKey(k)).ToList();
            var missing = expected.Keys.Where(k => !fileKeys.Contains(k)).ToList();
            if (unknown.Count > 0 || missing.Count > 0)
                throw new InvalidDataException(KeyReport(weights, unknown, missing));
            var mismatched = new List<string>();
            foreach (var (k, dst) in expected)
            {
                var shape = file.GetEntry(k).Shape;
                if (!shape.SequenceEqual(dst.shape))
                    mismatched.Add($"'{k}': file [{string.Join(", ", shape)}], model [{string.Join(", ", dst.shape)}]");
            }
            if (mismatched.Count > 0)
                throw new InvalidDataException($"{weights}: tensor shapes do not fit {Model.name} (an adapter for another base model?):\n  " + string.Join("\n  ", mismatched));
            using var ng = no_grad();
            foreach (var (k, dst) in expected)
            {
                if (dst.device.type == DeviceType.META) continue;
                dst.copy_(file.LoadTensor(k, dst.dtype, dst.device));
            }
        }
        catch
        {
            RemoveAdapterEverywhere(adapterName);
            _configs.Remove(adapterName);
            _adapterOrder.Remove(adapterName);
            throw;
        }
        if (_active.Count == 0) _active = new List<string> { adapterName };
        ApplyActive();
    }

    private string KeyReport(string file, List<string> unknown, List<string> missing)
    {
        var lines = new List<string> { $"{file}: the adapter's tensors do not match {Model.name}:" };
        if (unknown.Count > 0)
        {
            lines.Add($"  unexpected tensors ({unknown.Count}): {string.Join(", ", unknown.Take(10))}{(unknown.Count > 10 ? ", ..." : "")}");
            var modules = new HashSet<string>(Model.named_modules().Select(m => m.name));
            var absent = unknown.Select(k => k.StartsWith(AdapterFiles.KeyPrefix, StringComparison.Ordinal) ? k[AdapterFiles.KeyPrefix.Length..] : k)
                .Select(k => k.Contains(".lora_", StringComparison.Ordinal) ? k[..k.IndexOf(".lora_", StringComparison.Ordinal)] : k[..Math.Max(0, k.LastIndexOf('.'))])
                .Where(p => !modules.Contains(p)).Distinct().Take(5).ToList();
            if (absent.Count > 0) lines.Add($"  module(s) {string.Join(", ", absent)} do not exist in {Model.name} (an adapter for another architecture?)");
        }
        if (missing.Count > 0) lines.Add($"  missing tensors ({missing.Count}): {string.Join(", ", missing.Take(10))}{(missing.Count > 10 ? ", ..." : "")}");
        return string.Join("\n", lines);
    }
}
