using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Microsoft.ML.LowRank.Models;

/// <summary>The architecture families this library implements.</summary>
public enum ModelFamily
{
    /// <summary>GPT-2 (learned positions, Conv1D weight layout, tied embeddings).</summary>
    Gpt2,
    /// <summary>The LLaMA family: LLaMA 2/3, Mistral, Qwen2, Gemma (RoPE, RMSNorm, gated MLP, GQA).</summary>
    Llama,
    /// <summary>BERT encoders (token type ids, learned positions, post-norm).</summary>
    Bert,
    /// <summary>RoBERTa encoders (BERT with positions offset by the padding index).</summary>
    Roberta,
}

/// <summary>RoPE frequency scaling, Hugging Face's <c>rope_scaling</c>: "linear" or "llama3" (others are rejected).</summary>
/// <param name="Type">"linear" or "llama3".</param>
/// <param name="Factor">Scaling factor.</param>
/// <param name="LowFreqFactor">llama3: low-frequency factor.</param>
/// <param name="HighFreqFactor">llama3: high-frequency factor.</param>
/// <param name="OriginalMaxPositionEmbeddings">llama3: the pre-training context length.</param>
public sealed record RopeScaling(string Type, double Factor, double LowFreqFactor = 1, double HighFreqFactor = 4, int OriginalMaxPositionEmbeddings = 8192);

/// <summary>
/// A Hugging Face <c>config.json</c>, read with HF's field names for each model type (gpt2, llama, mistral, qwen2, gemma,
/// bert, roberta) into one normalised description. The raw JSON is kept and written back on save, so unknown fields
/// survive a round trip.
/// </summary>
public sealed class ModelConfig
{
    /// <summary>HF <c>model_type</c>.</summary>
    public string ModelType { get; set; } = "llama";
    /// <summary>The implementation family.</summary>
    public ModelFamily Family { get; set; }
    /// <summary>HF <c>architectures</c> (e.g. LlamaForCausalLM).</summary>
    public IReadOnlyList<string> Architectures { get; set; } = Array.Empty<string>();
    /// <summary>Vocabulary size.</summary>
    public long VocabSize { get; set; }
    /// <summary>Model width.</summary>
    public long HiddenSize { get; set; }
    /// <summary>Number of transformer blocks.</summary>
    public int NumHiddenLayers { get; set; }
    /// <summary>Number of query heads.</summary>
    public int NumAttentionHeads { get; set; }
    /// <summary>Number of key/value heads (grouped-query attention when smaller than the query heads).</summary>
    public int NumKeyValueHeads { get; set; }
    /// <summary>Per-head width (Gemma sets it explicitly; otherwise hidden / heads).</summary>
    public long HeadDim { get; set; }
    /// <summary>MLP inner width.</summary>
    public long IntermediateSize { get; set; }
    /// <summary>Activation name (HF <c>hidden_act</c> / <c>activation_function</c> / Gemma's <c>hidden_activation</c>).</summary>
    public string HiddenAct { get; set; } = "silu";
    /// <summary>Normalisation epsilon.</summary>
    public double NormEps { get; set; } = 1e-5;
    /// <summary>RoPE base.</summary>
    public double RopeTheta { get; set; } = 10000;
    /// <summary>RoPE scaling, if any.</summary>
    public RopeScaling? RopeScaling { get; set; }
    /// <summary>Maximum positions.</summary>
    public long MaxPositionEmbeddings { get; set; } = 2048;
    /// <summary>Whether the output head shares the token-embedding matrix.</summary>
    public bool TieWordEmbeddings { get; set; }
    /// <summary>Bias on the q/k/v projections (Qwen2: true; LLaMA's <c>attention_bias</c> puts it on o_proj too).</summary>
    public bool QkvBias { get; set; }
    /// <summary>Bias on the attention output projection.</summary>
    public bool OutputProjBias { get; set; }
    /// <summary>Bias on the MLP projections (LLaMA's <c>mlp_bias</c>).</summary>
    public bool MlpBias { get; set; }
    /// <summary>Token type vocabulary (BERT).</summary>
    public long TypeVocabSize { get; set; }
    /// <summary>Padding token id.</summary>
    public long? PadTokenId { get; set; }
    /// <summary>Beginning-of-sequence token id.</summary>
    public long? BosTokenId { get; set; }
    /// <summary>End-of-sequence token ids.</summary>
    public IReadOnlyList<long> EosTokenIds { get; set; } = Array.Empty<long>();
    /// <summary>Checkpoint dtype name (float32, float16, bfloat16).</summary>
    public string TorchDtype { get; set; } = "float32";
    /// <summary>Number of labels of a classification head.</summary>
    public int NumLabels { get; set; } = 2;
    /// <summary>Label names by id, if given.</summary>
    public IReadOnlyDictionary<int, string> Id2Label { get; set; } = new Dictionary<int, string>();
    /// <summary>Gemma: multiply embeddings by sqrt(hidden).</summary>
    public bool ScaleEmbeddings { get; set; }
    /// <summary>Gemma: RMSNorm scales by (1 + weight).</summary>
    public double NormWeightOffset { get; set; }
    /// <summary>The raw JSON.</summary>
    public JsonObject Raw { get; set; } = new();

    /// <summary>Reads a config.json file.</summary>
    /// <param name="path">The file (or a folder holding config.json).</param>
    /// <returns>The config.</returns>
    /// <exception cref="FileNotFoundException">No config.json.</exception>
    /// <exception cref="InvalidDataException">Malformed or unsupported config; the message names the file and the field.</exception>
    public static ModelConfig FromFile(string path)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, "config.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"model config not found: {path}", path);
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses config.json text.</summary>
    /// <param name="json">The JSON.</param>
    /// <param name="source">Name used in error messages.</param>
    /// <returns>The config.</returns>
    public static ModelConfig Parse(string json, string source = "config.json")
    {
        JsonObject o;
        try
        {
            o = JsonNode.Parse(json) as JsonObject ?? throw new InvalidDataException($"{source}: the top level is not a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: invalid JSON: {e.Message}", e);
        }
        var r = new Reader(o, source);
        var c = new ModelConfig { Raw = o };
        c.ModelType = r.Str("model_type") ?? throw new InvalidDataException($"{source}: missing 'model_type'");
        c.Architectures = o["architectures"] is JsonArray arr ? arr.Select(a => a?.GetValue<string>() ?? "").ToList() : new List<string>();
        c.TorchDtype = r.Str("torch_dtype") ?? r.Str("dtype") ?? "float32";
        c.PadTokenId = r.LongOpt("pad_token_id");
        c.BosTokenId = r.LongOpt("bos_token_id");
        c.EosTokenIds = o["eos_token_id"] switch
        {
            JsonArray a => a.Select(x => x!.GetValue<long>()).ToList(),
            JsonValue v => new List<long> { r.Long("eos_token_id") },
            _ => new List<long>(),
        };
        if (o["id2label"] is JsonObject labels)
        {
            var d = new Dictionary<int, string>();
            foreach (var (k, v) in labels) d[int.Parse(k, CultureInfo.InvariantCulture)] = v?.GetValue<string>() ?? k;
            c.Id2Label = d;
            c.NumLabels = d.Count;
        }
        if (r.LongOpt("num_labels") is { } nl) c.NumLabels = (int)nl;
        switch (c.ModelType)
        {
            case "gpt2":
                c.Family = ModelFamily.Gpt2;
                c.VocabSize = r.Long("vocab_size");
                c.HiddenSize = r.Long("n_embd");
                c.NumHiddenLayers = (int)r.Long("n_layer");
                c.NumAttentionHeads = (int)r.Long("n_head");
                c.NumKeyValueHeads = c.NumAttentionHeads;
                c.IntermediateSize = r.LongOpt("n_inner") ?? 4 * c.HiddenSize;
                c.HiddenAct = r.Str("activation_function") ?? "gelu_new";
                c.NormEps = r.DoubleOpt("layer_norm_epsilon") ?? 1e-5;
                c.MaxPositionEmbeddings = r.LongOpt("n_positions") ?? 1024;
                c.TieWordEmbeddings = r.BoolOpt("tie_word_embeddings") ?? true;
                c.QkvBias = c.OutputProjBias = c.MlpBias = true;
                break;
            case "llama" or "mistral" or "qwen2" or "gemma":
                c.Family = ModelFamily.Llama;
                c.VocabSize = r.Long("vocab_size");
                c.HiddenSize = r.Long("hidden_size");
                c.NumHiddenLayers = (int)r.Long("num_hidden_layers");
                c.NumAttentionHeads = (int)r.Long("num_attention_heads");
                c.NumKeyValueHeads = (int)(r.LongOpt("num_key_value_heads") ?? c.NumAttentionHeads);
                c.IntermediateSize = r.Long("intermediate_size");
                c.HiddenAct = c.ModelType == "gemma" ? r.Str("hidden_activation") ?? "gelu_pytorch_tanh" : r.Str("hidden_act") ?? "silu";
                if (c.ModelType == "gemma" && c.HiddenAct == "gelu") c.HiddenAct = "gelu_pytorch_tanh";
                c.NormEps = r.DoubleOpt("rms_norm_eps") ?? 1e-6;
                c.RopeTheta = r.DoubleOpt("rope_theta") ?? 10000;
                c.MaxPositionEmbeddings = r.LongOpt("max_position_embeddings") ?? 2048;
                c.TieWordEmbeddings = r.BoolOpt("tie_word_embeddings") ?? (c.ModelType == "gemma");
                var attentionBias = r.BoolOpt("attention_bias") ?? false;
                c.QkvBias = c.ModelType == "qwen2" || attentionBias;
                c.OutputProjBias = attentionBias;
                c.MlpBias = r.BoolOpt("mlp_bias") ?? false;
                if (c.ModelType == "gemma") { c.ScaleEmbeddings = true; c.NormWeightOffset = 1; }
                if (o["rope_scaling"] is JsonObject rs)
                {
                    var rr = new Reader(rs, source + ": rope_scaling");
                    var type = rr.Str("rope_type") ?? rr.Str("type") ?? throw new InvalidDataException($"{source}: rope_scaling has no 'rope_type'");
                    if (type is not ("linear" or "llama3" or "default"))
                        throw new InvalidDataException($"{source}: unsupported rope_scaling type '{type}' (supported: linear, llama3)");
                    if (type != "default")
                        c.RopeScaling = new RopeScaling(type, rr.Double("factor"), rr.DoubleOpt("low_freq_factor") ?? 1, rr.DoubleOpt("high_freq_factor") ?? 4,
                            (int)(rr.LongOpt("original_max_position_embeddings") ?? 8192));
                }
                break;
            case "bert" or "roberta":
                c.Family = c.ModelType == "bert" ? ModelFamily.Bert : ModelFamily.Roberta;
                c.VocabSize = r.Long("vocab_size");
                c.HiddenSize = r.Long("hidden_size");
                c.NumHiddenLayers = (int)r.Long("num_hidden_layers");
                c.NumAttentionHeads = (int)r.Long("num_attention_heads");
                c.NumKeyValueHeads = c.NumAttentionHeads;
                c.IntermediateSize = r.Long("intermediate_size");
                c.HiddenAct = r.Str("hidden_act") ?? "gelu";
                c.NormEps = r.DoubleOpt("layer_norm_eps") ?? 1e-12;
                c.MaxPositionEmbeddings = r.LongOpt("max_position_embeddings") ?? 512;
                c.TypeVocabSize = r.LongOpt("type_vocab_size") ?? 2;
                c.QkvBias = c.OutputProjBias = c.MlpBias = true;
                c.PadTokenId ??= c.Family == ModelFamily.Roberta ? 1 : 0;
                var pet = r.Str("position_embedding_type") ?? "absolute";
                if (pet != "absolute") throw new InvalidDataException($"{source}: unsupported position_embedding_type '{pet}' (supported: absolute)");
                break;
            default:
                throw new InvalidDataException($"{source}: unsupported model_type '{c.ModelType}' (supported: gpt2, llama, mistral, qwen2, gemma, bert, roberta)");
        }
        c.HeadDim = r.LongOpt("head_dim") ?? (c.HiddenSize / Math.Max(1, c.NumAttentionHeads));
        if (c.HiddenSize <= 0 || c.NumHiddenLayers <= 0 || c.NumAttentionHeads <= 0 || c.VocabSize <= 0)
            throw new InvalidDataException($"{source}: sizes must be positive (hidden {c.HiddenSize}, layers {c.NumHiddenLayers}, heads {c.NumAttentionHeads}, vocab {c.VocabSize})");
        if (c.NumAttentionHeads % c.NumKeyValueHeads != 0)
            throw new InvalidDataException($"{source}: num_attention_heads ({c.NumAttentionHeads}) must be a multiple of num_key_value_heads ({c.NumKeyValueHeads})");
        if (r.LongOpt("head_dim") is null && c.HiddenSize % c.NumAttentionHeads != 0)
            throw new InvalidDataException($"{source}: hidden size {c.HiddenSize} is not divisible by {c.NumAttentionHeads} heads");
        return c;
    }

    /// <summary>The config as JSON (the raw fields, updated with the label maps).</summary>
    /// <returns>Indented JSON.</returns>
    public string ToJson()
    {
        var o = (JsonObject)Raw.DeepClone();
        if (Id2Label.Count > 0)
        {
            var id2 = new JsonObject();
            var l2i = new JsonObject();
            foreach (var (k, v) in Id2Label.OrderBy(p => p.Key))
            {
                id2[k.ToString(CultureInfo.InvariantCulture)] = v;
                l2i[v] = k;
            }
            o["id2label"] = id2;
            o["label2id"] = l2i;
        }
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private readonly struct Reader
    {
        private readonly JsonObject _o;
        private readonly string _src;
        public Reader(JsonObject o, string src) { _o = o; _src = src; }

        private JsonValue? Get(string k) => _o[k] is JsonValue v && v.GetValueKind() != JsonValueKind.Null ? v : null;

        public string? Str(string k)
        {
            var v = Get(k);
            if (v is null) return null;
            if (v.GetValueKind() != JsonValueKind.String) throw new InvalidDataException($"{_src}: '{k}' must be a string");
            return v.GetValue<string>();
        }

        public long Long(string k) => LongOpt(k) ?? throw new InvalidDataException($"{_src}: missing required field '{k}'");

        public long? LongOpt(string k)
        {
            var v = Get(k);
            if (v is null) return null;
            if (v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue<long>(out var l))
            {
                if (v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<double>(out var d) && d == Math.Floor(d)) return (long)d;
                throw new InvalidDataException($"{_src}: '{k}' must be an integer");
            }
            return l;
        }

        public double Double(string k) => DoubleOpt(k) ?? throw new InvalidDataException($"{_src}: missing required field '{k}'");

        public double? DoubleOpt(string k)
        {
            var v = Get(k);
            if (v is null) return null;
            if (v.GetValueKind() != JsonValueKind.Number) throw new InvalidDataException($"{_src}: '{k}' must be a number");
            return v.GetValue<double>();
        }

        public bool? BoolOpt(string k)
        {
            var v = Get(k);
            if (v is null) return null;
            return v.GetValueKind() switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new InvalidDataException($"{_src}: '{k}' must be true or false"),
            };
        }
    }
}
