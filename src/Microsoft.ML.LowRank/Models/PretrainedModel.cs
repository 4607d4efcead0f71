using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Models;

/// <summary>Base of the architecture backbones (token embeddings through the last hidden state).</summary>
public abstract class TransformerBackbone : nn.Module
{
    /// <summary>Creates the backbone.</summary>
    /// <param name="name">Type name.</param>
    /// <param name="config">Config.</param>
    protected TransformerBackbone(string name, ModelConfig config) : base(name) { Config = config; }

    /// <summary>The config.</summary>
    public ModelConfig Config { get; }

    /// <summary>The token-embedding table (tied to the LM head where the config says so).</summary>
    public abstract Embedding TokenEmbedding { get; }

    /// <summary>Runs the backbone.</summary>
    /// <param name="inputs">Inputs.</param>
    /// <returns>The last hidden state and, when requested, all hidden states.</returns>
    public abstract (Tensor last, List<Tensor>? hidden) Forward(ModelInputs inputs);

    /// <summary>
    /// Gradient checkpointing per transformer block: while gradients are being recorded (and no KV cache is used), each
    /// block runs without keeping its activations and is recomputed in backward (<see cref="torch.utils.checkpoint"/>),
    /// so only the block inputs stay alive between forward and backward. Same gradients (the dropout masks repeat);
    /// about one extra forward of compute. Default false.
    /// </summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>With <see cref="GradientCheckpointing"/>: keep the saved block inputs of a CUDA model in host memory until
    /// backward (no effect on the CPU). Default false.</summary>
    public bool OffloadCheckpoints { get; set; }

    /// <summary>Runs one block, checkpointed when <see cref="GradientCheckpointing"/> applies.</summary>
    /// <param name="block">The block (its trainable parameters are passed to the checkpoint).</param>
    /// <param name="inputs">The tensors the block reads (null entries are passed on as null).</param>
    /// <param name="body">The block's computation from its inputs.</param>
    /// <param name="cached">Whether a KV cache is in use (checkpointing is then off).</param>
    /// <returns>The block output.</returns>
    protected Tensor RunBlock(nn.Module block, Tensor?[] inputs, Func<Tensor?[], Tensor> body, bool cached)
    {
        ArgumentNullException.ThrowIfNull(block);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(body);
        if (!GradientCheckpointing || cached || !is_grad_enabled()) return body(inputs);
        var present = new List<Tensor>(inputs.Length);
        var slots = new int[inputs.Length];
        for (int i = 0; i < inputs.Length; i++)
        {
            slots[i] = inputs[i] is null ? -1 : present.Count;
            if (inputs[i] is { } t) present.Add(t);
        }
        var trainable = new List<Tensor>();
        foreach (var p in block.parameters()) if (p.requires_grad) trainable.Add(p);
        var outs = torch.utils.checkpoint(args =>
        {
            var full = new Tensor?[slots.Length];
            for (int i = 0; i < slots.Length; i++) full[i] = slots[i] < 0 ? null : args[slots[i]];
            return new[] { body(full) };
        }, present, trainable, OffloadCheckpoints, max_outputs: 1);
        return outs[0];
    }

    /// <summary>Moves the result tensors (each once) to the scope enclosing the caller's.</summary>
    /// <param name="last">Last hidden state.</param>
    /// <param name="hidden">All hidden states, or null.</param>
    /// <returns>The same pair.</returns>
    protected internal static (Tensor, List<Tensor>?) Escape(Tensor last, List<Tensor>? hidden)
    {
        var moved = new HashSet<Tensor>(ReferenceEqualityComparer.Instance) { last };
        last.MoveToOuterDisposeScope();
        if (hidden is not null) foreach (var x in hidden) if (moved.Add(x)) x.MoveToOuterDisposeScope();
        return (last, hidden);
    }
}

/// <summary>
/// A Hugging Face-compatible model: a backbone registered under the family's HF name (transformer, model, bert,
/// roberta) and a task head under HF's name (lm_head, score, classifier), so state-dict keys equal checkpoint keys.
/// </summary>
public sealed class PretrainedModel : nn.Module
{
    private static readonly Regex s_ignorable = new(@"(^|\.)attn\.(masked_)?bias$|(^|\.)embeddings\.position_ids$|rotary_emb\.inv_freq$", RegexOptions.CultureInvariant);

    /// <summary>Builds a model from a config (random initialisation, or no storage on the meta device).</summary>
    /// <param name="config">Config.</param>
    /// <param name="task">Task head.</param>
    /// <param name="device">Device (meta: shapes only, for parameter accounting).</param>
    /// <param name="dtype">Element type (default: float32).</param>
    public PretrainedModel(ModelConfig config, ModelTask task = ModelTask.CausalLM, Device? device = null, ScalarType? dtype = null) : base(ArchitectureName(config, task))
    {
        Config = config;
        Task = task;
        var meta = device?.type == DeviceType.META;
        dtype ??= ScalarType.Float32;
        int labels = task == ModelTask.Regression ? 1 : config.NumLabels;
        switch (config.Family)
        {
            case ModelFamily.Gpt2:
                BackboneName = "transformer";
                Backbone = register_module(BackboneName, new Gpt2Model(config, device, dtype));
                break;
            case ModelFamily.Llama:
                BackboneName = "model";
                Backbone = register_module(BackboneName, new LlamaModel(config, device, dtype));
                break;
            default:
                BackboneName = config.Family == ModelFamily.Bert ? "bert" : "roberta";
                var pooler = config.Family == ModelFamily.Bert && task is ModelTask.SequenceClassification or ModelTask.Regression;
                Backbone = register_module(BackboneName, new BertModel(config, pooler, device, dtype));
                break;
        }
        switch (task)
        {
            case ModelTask.CausalLM:
                if (config.Family is ModelFamily.Bert or ModelFamily.Roberta)
                    throw new NotSupportedException($"{config.ModelType} is an encoder: causal LM is not supported (use classification, regression or token classification)");
                var lm = nn.Linear(config.HiddenSize, config.VocabSize, false, device, dtype);
                if (config.TieWordEmbeddings) lm.register_parameter("weight", Backbone.TokenEmbedding.weight);
                else if (!meta) lm.weight.normal_(0, 0.02);
                register_module("lm_head", lm);
                break;
            case ModelTask.SequenceClassification or ModelTask.Regression:
                if (config.Family == ModelFamily.Roberta)
                {
                    var head = register_module("classifier", new Container("RobertaClassificationHead"));
                    head.register_module("dense", BertModel.Init(nn.Linear(config.HiddenSize, config.HiddenSize, true, device, dtype), meta));
                    head.register_module("out_proj", BertModel.Init(nn.Linear(config.HiddenSize, labels, true, device, dtype), meta));
                }
                else if (config.Family == ModelFamily.Bert)
                    register_module("classifier", BertModel.Init(nn.Linear(config.HiddenSize, labels, true, device, dtype), meta));
                else
                    register_module("score", BertModel.Init(nn.Linear(config.HiddenSize, labels, false, device, dtype), meta));
                break;
            case ModelTask.TokenClassification:
                register_module(config.Family == ModelFamily.Llama ? "score" : "classifier",
                    BertModel.Init(nn.Linear(config.HiddenSize, labels, true, device, dtype), meta));
                break;
        }
    }

    /// <summary>The config.</summary>
    public ModelConfig Config { get; }

    /// <summary>The task head.</summary>
    public ModelTask Task { get; }

    /// <summary>The backbone.</summary>
    public TransformerBackbone Backbone { get; }

    /// <summary>HF name of the backbone (transformer, model, bert, roberta).</summary>
    public string BackboneName { get; }

    /// <summary>HF architecture name for the task, e.g. LlamaForCausalLM.</summary>
    /// <param name="c">Config.</param>
    /// <param name="task">Task.</param>
    /// <returns>The name.</returns>
    public static string ArchitectureName(ModelConfig c, ModelTask task)
    {
        var prefix = c.ModelType switch { "gpt2" => "GPT2", "llama" => "Llama", "mistral" => "Mistral", "qwen2" => "Qwen2", "gemma" => "Gemma", "bert" => "Bert", "roberta" => "Roberta", _ => c.ModelType };
        return prefix + task switch
        {
            ModelTask.CausalLM => c.ModelType == "gpt2" ? "LMHeadModel" : "ForCausalLM",
            ModelTask.SequenceClassification or ModelTask.Regression => "ForSequenceClassification",
            ModelTask.TokenClassification => "ForTokenClassification",
            _ => "Model",
        };
    }

    /// <summary>State-dict keys that alias another key (tied weights); not stored in checkpoints.</summary>
    public IReadOnlyList<string> TiedKeys => Task == ModelTask.CausalLM && Config.TieWordEmbeddings ? new[] { "lm_head.weight" } : Array.Empty<string>();

    /// <summary>Number of parameters (shared ones once), optionally only trainable ones. Works on the meta device.</summary>
    /// <param name="onlyTrainable">Count only parameters that require gradients.</param>
    /// <returns>The count.</returns>
    public long num_parameters(bool onlyTrainable = false)
    {
        long n = 0;
        foreach (var p in parameters()) if (!onlyTrainable || p.requires_grad) n += p.numel();
        return n;
    }

    // ---------------------------------------------------------------- forward

    /// <summary>Runs the model.</summary>
    /// <param name="inputs">Inputs.</param>
    /// <returns>Logits, loss (when labels are given) and hidden states.</returns>
    public ModelOutput forward(ModelInputs inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        var ids = inputs.InputIds;
        if (ids.dim() != 2) throw new ArgumentException($"input_ids must be [batch, seq], got [{string.Join(", ", ids.shape)}]");
        if (ids.dtype != ScalarType.Int64) throw new ArgumentException($"input_ids must be int64, got {ids.dtype}");
        if (inputs.SequenceIds is not null && Config.Family is not (ModelFamily.Llama or ModelFamily.Gpt2))
            throw new ArgumentException($"packed sequences (SequenceIds) need a decoder (LLaMA family or GPT-2); this model is {Config.Family}");
        using var scope = NewDisposeScope();
        var (last, hidden) = Backbone.Forward(inputs);
        Tensor? logits = null, loss = null;
        switch (Task)
        {
            case ModelTask.CausalLM:
                if (inputs.Labels is { } yc && ChunkedCrossEntropy && get_submodule("lm_head") is Linear lmHead)
                {
                    // No [batch, seq, vocab] logits: the loss is computed chunk by chunk from the hidden states.
                    long tc = last.size(1);
                    var hs = last.narrow(1, 0, tc - 1).reshape(-1, last.size(2));
                    loss = nn.functional.linear_cross_entropy(hs, lmHead.weight, yc.narrow(1, 1, tc - 1).reshape(-1), lmHead.bias, -100,
                        chunk_size: CrossEntropyChunkRows);
                    break;
                }
                logits = Head("lm_head").call(last);
                if (inputs.Labels is { } y)
                {
                    long t = logits.size(1);
                    var shifted = logits.narrow(1, 0, t - 1).reshape(-1, logits.size(2)).to_type(ScalarType.Float32);
                    var target = y.narrow(1, 1, t - 1).reshape(-1);
                    loss = nn.functional.cross_entropy(shifted, target, ignore_index: -100);
                }
                break;
            case ModelTask.SequenceClassification or ModelTask.Regression:
                Tensor pooled;
                if (Config.Family == ModelFamily.Bert) pooled = Head("classifier").call(((BertModel)Backbone).Pool(last));
                else if (Config.Family == ModelFamily.Roberta)
                {
                    var head = get_submodule("classifier");
                    pooled = ((nn.Module<Tensor, Tensor>)head.get_submodule("out_proj")).call(((nn.Module<Tensor, Tensor>)head.get_submodule("dense")).call(last.select(1, 0)).tanh());
                }
                else
                {
                    var all = Head("score").call(last);
                    var idx = LastTokenIndex(ids, inputs.AttentionMask);
                    var gatherIdx = idx.view(-1, 1, 1).expand(all.size(0), 1, all.size(2));
                    pooled = all.gather(1, gatherIdx).squeeze(1);
                }
                logits = pooled;
                if (inputs.Labels is { } yl)
                    loss = Task == ModelTask.Regression || logits.size(1) == 1
                        ? nn.functional.mse_loss(logits.squeeze(-1).to_type(ScalarType.Float32), yl.to_type(ScalarType.Float32))
                        : nn.functional.cross_entropy(logits.to_type(ScalarType.Float32), yl);
                break;
            case ModelTask.TokenClassification:
                logits = Head(Config.Family == ModelFamily.Llama ? "score" : "classifier").call(last);
                if (inputs.Labels is { } yt)
                    loss = nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).to_type(ScalarType.Float32), yt.reshape(-1), ignore_index: -100);
                break;
        }
        logits?.MoveToOuterDisposeScope();
        loss?.MoveToOuterDisposeScope();
        TransformerBackbone.Escape(last, hidden);
        return new ModelOutput { Logits = logits, Loss = loss, LastHiddenState = last, HiddenStates = hidden };
    }

    /// <summary>
    /// Causal LM with labels: compute the loss with <see cref="torch.nn.functional.linear_cross_entropy"/> in row chunks
    /// instead of materialising [batch, seq, vocab] logits (the output's <see cref="ModelOutput.Logits"/> is then null).
    /// Used only when the LM head is a plain Linear (not an adapter layer). Same loss and gradients. Default false.
    /// </summary>
    public bool ChunkedCrossEntropy { get; set; }

    /// <summary>Rows per chunk of <see cref="ChunkedCrossEntropy"/>; 0 picks about 2²⁴/vocab rows. Default 0.</summary>
    public long CrossEntropyChunkRows { get; set; }

    /// <summary>Index of the last non-padding token of each row (HF's rule for decoder classification heads):
    /// by pad_token_id when the config has one, else by the attention mask, else the last position.</summary>
    /// <param name="ids">[batch, seq] ids.</param>
    /// <param name="mask">Attention mask or null.</param>
    /// <returns>[batch] int64.</returns>
    public Tensor LastTokenIndex(Tensor ids, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        long b = ids.size(0), t = ids.size(1);
        Tensor nonPad;
        if (Config.PadTokenId is { } pad) nonPad = ids.ne(pad).to_type(ScalarType.Int64);
        else if (mask is not null) nonPad = mask.ne(0).to_type(ScalarType.Int64);
        else return full(new[] { b }, t - 1, ScalarType.Int64, ids.device).MoveToOuterDisposeScope();
        var positions = arange(0, t, 1, ScalarType.Int64, ids.device).unsqueeze(0);
        return (positions * nonPad).argmax(1).MoveToOuterDisposeScope();
    }

    private nn.Module<Tensor, Tensor> Head(string name) => (nn.Module<Tensor, Tensor>)get_submodule(name);

    // ---------------------------------------------------------------- checkpoints

    /// <summary>
    /// Loads a Hugging Face model folder: config.json plus model.safetensors or a sharded model.safetensors.index.json.
    /// The model is built on the meta device and its tensors are taken from the checkpoint (converted to
    /// <paramref name="dtype"/>, default the checkpoint's); a head the checkpoint lacks (a new classification head) is
    /// initialised and reported in <see cref="LoadReport"/>.
    /// </summary>
    /// <param name="folder">The model folder.</param>
    /// <param name="task">Task head (default: the config's architecture, else causal LM for decoders, classification for encoders).</param>
    /// <param name="device">Device.</param>
    /// <param name="dtype">Element type (default: the checkpoint's).</param>
    /// <param name="numLabels">Number of labels for a new classification head.</param>
    /// <returns>The model.</returns>
    public static PretrainedModel Load(string folder, ModelTask? task = null, Device? device = null, ScalarType? dtype = null, int? numLabels = null)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"model folder not found: {folder}");
        var config = ModelConfig.FromFile(folder);
        if (numLabels is { } nl) config.NumLabels = nl;
        var t = task ?? TaskFromArchitectures(config);
        using var tensors = CheckpointReader.Open(folder);
        var dt = dtype ?? tensors.DominantType ?? ScalarType.Float32;
        var model = new PretrainedModel(config, t, Device.META, dt);
        try
        {
            model.LoadFromCheckpoint(tensors, device ?? Device.CPU, dt);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    /// <summary>What loading did beyond a plain copy: keys initialised fresh, checkpoint keys ignored.</summary>
    public LoadReport LoadReport { get; private set; } = new(Array.Empty<string>(), Array.Empty<string>());

    private static ModelTask TaskFromArchitectures(ModelConfig c)
    {
        foreach (var a in c.Architectures)
        {
            if (a.EndsWith("ForSequenceClassification", StringComparison.Ordinal)) return c.NumLabels == 1 ? ModelTask.Regression : ModelTask.SequenceClassification;
            if (a.EndsWith("ForTokenClassification", StringComparison.Ordinal)) return ModelTask.TokenClassification;
            if (a.EndsWith("ForCausalLM", StringComparison.Ordinal) || a.EndsWith("LMHeadModel", StringComparison.Ordinal)) return ModelTask.CausalLM;
        }
        return c.Family is ModelFamily.Bert or ModelFamily.Roberta ? ModelTask.SequenceClassification : ModelTask.CausalLM;
    }

    private void LoadFromCheckpoint(CheckpointReader ckpt, Device device, ScalarType dtype)
    {
        var tied = new HashSet<string>(TiedKeys);
        var targets = new Dictionary<string, nn.Parameter>();
        foreach (var (prefix, m) in named_modules())
        {
            foreach (var (n, p) in m.named_parameters(false)) targets.TryAdd(prefix.Length == 0 ? n : prefix + "." + n, p);
        }
        var fresh = new List<string>();
        using (no_grad())
        {
            foreach (var (key, param) in targets)
            {
                if (tied.Contains(key)) continue;
                var name = ckpt.Contains(key) ? key : ckpt.Contains(StripBackbone(key)) ? StripBackbone(key) : null;
                if (name is null)
                {
                    fresh.Add(key);
                    continue;
                }
                var shape = ckpt.Shape(name);
                if (!shape.SequenceEqual(param.shape) && !key.StartsWith(BackboneName + ".", StringComparison.Ordinal))
                {
                    // A head of another size (e.g. 3 labels in the checkpoint, 1 for regression): initialise it fresh
                    // and report it, like transformers' ignore_mismatched_sizes.
                    fresh.Add(key);
                    continue;
                }
                if (!shape.SequenceEqual(param.shape))
                    throw new InvalidDataException($"{ckpt.FileOf(name)}: tensor '{name}' has shape [{string.Join(", ", shape)}] but the model expects [{string.Join(", ", param.shape)}]");
                using var scope = NewDisposeScope();
                swap_parameter(param, new nn.Parameter(ckpt.Load(name, dtype, device), param.requires_grad));
            }
            // Backbone tensors must all be present; only head tensors may be initialised fresh.
            var missingBackbone = fresh.Where(k => k.StartsWith(BackboneName + ".", StringComparison.Ordinal)).ToList();
            if (missingBackbone.Count > 0)
                throw new InvalidDataException($"{ckpt.Folder}: checkpoint is missing {missingBackbone.Count} tensor(s): {string.Join(", ", missingBackbone.Take(10))}");
            foreach (var key in fresh)
            {
                var p = get_parameter(key);
                using var scope = NewDisposeScope();
                var init = empty(p.shape, dtype, device);
                if (p.dim() >= 2) init.normal_(0, 0.02); else init.zero_();
                swap_parameter(p, new nn.Parameter(init, p.requires_grad));
            }
            // Non-persistent buffers (RoPE tables) are rebuilt on the target device.
            if (Backbone is LlamaModel)
                Backbone.register_buffer("inv_freq", tensor(AttentionUtils.RopeInvFreq(Config.HeadDim, Config.RopeTheta, Config.RopeScaling), device: device), persistent: false);
        }
        var used = new HashSet<string>(targets.Keys.Concat(targets.Keys.Select(StripBackbone)));
        var ignored = ckpt.Names.Where(n => !used.Contains(n) && !s_ignorable.IsMatch(n)).ToList();
        LoadReport = new LoadReport(fresh, ignored);
    }

    private string StripBackbone(string key) => key.StartsWith(BackboneName + ".", StringComparison.Ordinal) ? key[(BackboneName.Length + 1)..] : BackboneName + "." + key;

    /// <summary>Saves config.json and model.safetensors (tied weights stored once, as HF does).</summary>
    /// <param name="folder">Target folder (created).</param>
    /// <param name="dtype">Store in this type (default: as is).</param>
    public void Save(string folder, ScalarType? dtype = null)
    {
        Directory.CreateDirectory(folder);
        using var scope = NewDisposeScope();
        var sd = state_dict();
        foreach (var k in TiedKeys) sd.Remove(k);
        var list = sd.Select(kv => new KeyValuePair<string, Tensor>(kv.Key, dtype is { } d ? kv.Value.to_type(d) : kv.Value)).ToList();
        var stored = dtype ?? (list.Count > 0 ? list[0].Value.dtype : ScalarType.Float32);
        Config.Raw["torch_dtype"] = stored switch { ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", ScalarType.Float64 => "float64", _ => "float32" };
        Config.Raw["architectures"] = new JsonArray(ArchitectureName(Config, Task));
        if (Task is ModelTask.SequenceClassification or ModelTask.TokenClassification) Config.Raw["num_labels"] = Config.NumLabels;
        File.WriteAllText(Path.Combine(folder, "config.json"), Config.ToJson());
        Safetensors.Save(Path.Combine(folder, "model.safetensors"), list, new Dictionary<string, string> { ["format"] = "pt" });
    }
}

/// <summary>What a checkpoint load did beyond copying.</summary>
/// <param name="InitializedKeys">Model tensors absent from the checkpoint and initialised fresh (a new head).</param>
/// <param name="IgnoredKeys">Checkpoint tensors the model does not use.</param>
public sealed record LoadReport(IReadOnlyList<string> InitializedKeys, IReadOnlyList<string> IgnoredKeys);

/// <summary>Reads a single-file or sharded safetensors checkpoint.</summary>
internal sealed class CheckpointReader : IDisposable
{
    private readonly Dictionary<string, SafetensorsFile> _byName = new();
    private readonly List<SafetensorsFile> _files = new();

    public string Folder { get; }

    private CheckpointReader(string folder) { Folder = folder; }

    public static CheckpointReader Open(string folder)
    {
        var r = new CheckpointReader(folder);
        try
        {
            var index = Path.Combine(folder, "model.safetensors.index.json");
            var single = Path.Combine(folder, "model.safetensors");
            if (File.Exists(index))
            {
                JsonObject o;
                try { o = JsonNode.Parse(File.ReadAllText(index)) as JsonObject ?? throw new InvalidDataException($"{index}: not a JSON object"); }
                catch (JsonException e) { throw new InvalidDataException($"{index}: invalid JSON: {e.Message}", e); }
                if (o["weight_map"] is not JsonObject map) throw new InvalidDataException($"{index}: missing 'weight_map'");
                var opened = new Dictionary<string, SafetensorsFile>();
                foreach (var (name, fileNode) in map)
                {
                    var file = fileNode?.GetValue<string>() ?? throw new InvalidDataException($"{index}: no file for tensor '{name}'");
                    if (!opened.TryGetValue(file, out var f))
                    {
                        var path = Path.Combine(folder, file);
                        if (!File.Exists(path)) throw new FileNotFoundException($"{index}: shard '{file}' (holding '{name}') not found", path);
                        f = SafetensorsFile.Open(path);
                        opened[file] = f;
                        r._files.Add(f);
                    }
                    if (!f.Contains(name)) throw new InvalidDataException($"{index}: tensor '{name}' is mapped to '{file}' but that shard does not contain it");
                    r._byName[name] = f;
                }
            }
            else if (File.Exists(single))
            {
                var f = SafetensorsFile.Open(single);
                r._files.Add(f);
                foreach (var e in f.Entries) r._byName[e.Name] = f;
            }
            else throw new FileNotFoundException($"no model.safetensors or model.safetensors.index.json in {folder}");
            return r;
        }
        catch
        {
            r.Dispose();
            throw;
        }
    }

    public IEnumerable<string> Names => _byName.Keys;

    public bool Contains(string name) => _byName.ContainsKey(name);

    public long[] Shape(string name) => _byName[name].GetEntry(name).Shape;

    public string FileOf(string name) => _byName[name].FilePath;

    public ScalarType? DominantType => _files.SelectMany(f => f.Entries).Where(e => e.DType.IsFloatingPoint())
        .GroupBy(e => e.DType).OrderByDescending(g => g.Sum(e => e.NumberOfElements)).Select(g => (ScalarType?)g.Key).FirstOrDefault();

    public Tensor Load(string name, ScalarType dtype, Device device)
    {
        var f = _byName[name];
        var e = f.GetEntry(name);
        return f.LoadTensor(name, e.DType.IsFloatingPoint() ? dtype : null, device);
    }

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
