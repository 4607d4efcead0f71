using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters.Mixture;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Training;

namespace Microsoft.ML.LowRank.Pipeline;

/// <summary>
/// Instruction-tunes a causal language model (GPT-2, LLaMA family) with a low-rank adapter on (prompt, response) pairs:
/// each example is the prompt's tokens (with the tokenizer's special tokens) followed by the response's tokens and the
/// end-of-sequence token; only the response and the end token are learned (the prompt's labels are -100) unless
/// <see cref="Options.MaskPromptTokens"/> is false. The transformer generates a completion for each prompt.
/// Made by <see cref="TextGenerationCatalog.TextGenerationTrainers.CausalLM(CausalLMTrainer.Options)"/>.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// | Column | Type | Role |
/// | -- | -- | -- |
/// | `Prompt` | String | the instruction / prompt |
/// | `Response` | String | the wanted answer (training; when present at prediction time, also scored) |
/// | `Completion` | String | output: the generated text (greedy unless `Generation.DoSample`) |
/// | `ResponseLogLoss` | Single | output when `Response` is present: mean negative log-likelihood (nats per token) of the response given the prompt |
/// | `ResponseTokenCount` | Int32 | output when `Response` is present: the number of tokens scored |
/// ]]></format>
/// </remarks>
public sealed class CausalLMTrainer : LowRankTrainerBase<CausalLMTransformer>
{
    /// <summary>Options of <see cref="CausalLMTrainer"/>.</summary>
    public sealed class Options : LowRankTrainerOptions
    {
        /// <summary>The prompt column. Default "Prompt".</summary>
        public string PromptColumnName = DefaultColumnNames.Prompt;

        /// <summary>The response column. Default "Response".</summary>
        public string ResponseColumnName = DefaultColumnNames.Response;

        /// <summary>The generated-text output column. Default "Completion".</summary>
        public string OutputColumnName = DefaultColumnNames.Completion;

        /// <summary>Learn only the response (prompt labels -100); false learns the prompt too. Default true.</summary>
        public bool MaskPromptTokens = true;

        /// <summary>How completions are generated (greedy, 32 new tokens by default; stops at the model's end token).</summary>
        public GenerationOptions Generation = new();

        /// <summary>Pack each training batch's examples end to end into rows of <see cref="LowRankTrainerOptions.MaxSequenceLength"/>
        /// tokens (<see cref="TrainerOptions.PackSequences"/>: positions restart per example, attention stays inside it,
        /// the loss is the same token mean): fewer, fuller rows for short examples. Validation data stays padded.
        /// Default false.</summary>
        public bool PackSequences;

        internal override bool PackTrainingSequences => PackSequences;
    }

    private readonly Options _options;

    internal CausalLMTrainer(LowRankContext context, Options options) : base(context, options)
    {
        _options = options;
    }

    private protected override string Source => nameof(CausalLMTrainer);

    private protected override ModelTask Task => ModelTask.CausalLM;

    private protected override void CheckArchitecture(BaseModelInfo info)
    {
        base.CheckArchitecture(info);
        if (info.Config.Family is ModelFamily.Bert or ModelFamily.Roberta)
            throw new NotSupportedException($"{info.Folder}: '{info.Config.ModelType}' is an encoder and cannot generate text; use a GPT-2 or LLaMA-family model");
    }

    private protected override IEnumerable<SchemaShape.Column> OutputColumns(SchemaShape inputSchema)
    {
        var o = _options;
        Columns.CheckText(inputSchema, "prompt", o.PromptColumnName);
        var columns = new List<SchemaShape.Column> { new(o.OutputColumnName, SchemaShape.Column.VectorKind.Scalar, TextDataViewType.Instance, false) };
        if (inputSchema.TryFindColumn(o.ResponseColumnName, out _))
        {
            Columns.CheckText(inputSchema, "response", o.ResponseColumnName);
            columns.Add(new(CausalLMTransformer.LogLossColumnName, SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.Single, false));
            columns.Add(new(CausalLMTransformer.TokenCountColumnName, SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.Int32, false));
        }
        return columns;
    }

    private protected override PreparedData Prepare(LowRankRuntime runtime, IDataView data, object? trainingState)
    {
        var o = _options;
        var prompt = Columns.Text(data.Schema, "prompt", o.PromptColumnName);
        var response = Columns.Text(data.Schema, "response", o.ResponseColumnName);
        var examples = new List<TokenExample>();
        var routing = RoutingRows.Open(runtime, data.Schema, trainingState is null);
        using (var cursor = data.GetRowCursor(routing.With(prompt, response)))
        {
            var p = Columns.TextGetter(cursor, prompt);
            var r = Columns.TextGetter(cursor, response);
            var addRouting = routing.Reader(cursor);
            while (cursor.MoveNext())
            {
                Context.CheckAlive();
                var (ids, promptLength) = CausalLMTransformer.EncodeExample(runtime, p(), r());
                examples.Add(new TokenExample(ids, o.MaskPromptTokens ? promptLength : 0));
                // The instruction is the prompt (Octavius' gate reads the instruction's tokens; MoCLE clusters instructions).
                addRouting(ids.Length > runtime.MaxLength ? ids[..runtime.MaxLength] : ids, promptLength);
            }
        }
        return new PreparedData(new TokenBatcher(examples, runtime.PadId, runtime.MaxLength), null, null, 0, routing);
    }

    private protected override CausalLMTransformer CreateTransformer(LowRankRuntime runtime, PreparedData training, TrainingResult result) =>
        new(Context, runtime, result, _options.PromptColumnName, _options.ResponseColumnName, _options.OutputColumnName, _options.Generation);
}

/// <summary>Generates completions with a model trained by <see cref="CausalLMTrainer"/> (adds the <c>Completion</c> text
/// column) and, when the input has the response column, scores the response (<c>ResponseLogLoss</c>,
/// <c>ResponseTokenCount</c>; see <see cref="TextGenerationCatalog.Evaluate"/>).</summary>
public sealed class CausalLMTransformer : LowRankTransformerBase
{
    internal const string Kind = "CausalLM";

    /// <summary>The name of the per-row response log-loss column.</summary>
    public const string LogLossColumnName = "ResponseLogLoss";

    /// <summary>The name of the per-row scored-token count column.</summary>
    public const string TokenCountColumnName = "ResponseTokenCount";

    private readonly string _prompt;
    private readonly string _response;
    private readonly string _output;
    private readonly GenerationOptions _generation;

    internal CausalLMTransformer(LowRankContext context, LowRankRuntime runtime, TrainingResult? result, string prompt, string response, string output, GenerationOptions generation)
        : base(context, runtime, ModelTask.CausalLM, null, result)
    {
        _prompt = prompt;
        _response = response;
        _output = output;
        _generation = Copy(generation ?? new GenerationOptions());
    }

    /// <summary>A copy of the generation settings.</summary>
    public GenerationOptions Generation => Copy(_generation);

    internal override string PersistKind => Kind;

    private static GenerationOptions Copy(GenerationOptions g) => new()
    {
        MaxNewTokens = g.MaxNewTokens,
        DoSample = g.DoSample,
        Temperature = g.Temperature,
        TopK = g.TopK,
        TopP = g.TopP,
        RepetitionPenalty = g.RepetitionPenalty,
        StopTokenIds = g.StopTokenIds?.ToArray(),
        StopStrings = g.StopStrings.ToArray(),
        UseCache = g.UseCache,
        Seed = g.Seed,
        PadTokenId = g.PadTokenId,
    };

    private protected override void SaveTask(JsonObject o)
    {
        o["prompt"] = _prompt;
        o["response"] = _response;
        o["output"] = _output;
        o["generation"] = new JsonObject
        {
            ["max_new_tokens"] = _generation.MaxNewTokens,
            ["do_sample"] = _generation.DoSample,
            ["temperature"] = _generation.Temperature,
            ["top_k"] = _generation.TopK,
            ["top_p"] = _generation.TopP,
            ["repetition_penalty"] = _generation.RepetitionPenalty,
            ["stop_token_ids"] = _generation.StopTokenIds is null ? null : new JsonArray(_generation.StopTokenIds.Select(i => (JsonNode?)i).ToArray()),
            ["stop_strings"] = new JsonArray(_generation.StopStrings.Select(s => (JsonNode?)s).ToArray()),
            ["seed"] = _generation.Seed,
        };
    }

    internal static CausalLMTransformer Create(LowRankContext context, LowRankRuntime runtime, ModelTask task, int? numLabels, JsonObject o)
    {
        var g = o["generation"] as JsonObject ?? new JsonObject();
        var generation = new GenerationOptions
        {
            MaxNewTokens = g["max_new_tokens"]?.GetValue<int>() ?? 32,
            DoSample = g["do_sample"]?.GetValue<bool>() ?? false,
            Temperature = g["temperature"]?.GetValue<double>() ?? 1,
            TopK = g["top_k"]?.GetValue<int>() ?? 0,
            TopP = g["top_p"]?.GetValue<double>() ?? 1,
            RepetitionPenalty = g["repetition_penalty"]?.GetValue<double>() ?? 1,
            StopTokenIds = (g["stop_token_ids"] as JsonArray)?.Select(n => n!.GetValue<long>()).ToArray(),
            StopStrings = (g["stop_strings"] as JsonArray)?.Select(n => (string)n!).ToArray() ?? [],
            Seed = g["seed"]?.GetValue<int>() ?? 0,
        };
        return new CausalLMTransformer(context, runtime, null, (string)o["prompt"]!, (string)o["response"]!, (string)o["output"]!, generation);
    }

    /// <summary>The token ids of a training example and the length of its prompt part: the prompt with the tokenizer's
    /// special tokens, then the response without them, then the model's end-of-sequence token.</summary>
    internal static (long[] Ids, int PromptLength) EncodeExample(LowRankRuntime runtime, string prompt, string response)
    {
        var p = runtime.Tokenizer.EncodeToIds(prompt, addSpecialTokens: true).Select(i => (long)i).ToList();
        var r = runtime.Tokenizer.EncodeToIds(response, addSpecialTokens: false).Select(i => (long)i).ToList();
        var eos = runtime.Base.Config.EosTokenIds;
        if (eos.Count > 0) r.Add(eos[0]);
        if (p.Count == 0) p.Add(runtime.FillerId);
        return ([.. p, .. r], p.Count);
    }

    /// <summary>Generates the completion of one prompt. A model whose mixture-of-experts router reads a task column
    /// (<see cref="LowRankTransformerBase.TaskColumnName"/>) needs the row's task: generate through
    /// <see cref="LowRankTransformerBase.Transform"/> on data with that column.</summary>
    /// <param name="prompt">The prompt.</param>
    /// <returns>The completion.</returns>
    public string Generate(string prompt) => Generate(prompt, null);

    /// <summary>Generates the completion of one prompt with its routing data.</summary>
    internal string Generate(string prompt, Func<int, RowRouting?>? routing)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var ids = Runtime.Tokenizer.EncodeToIds(prompt, addSpecialTokens: true).Select(i => (long)i).ToList();
        if (ids.Count == 0) ids.Add(Runtime.FillerId);
        if (ids.Count > Runtime.MaxLength) ids = ids.Skip(ids.Count - Runtime.MaxLength).ToList();
        List<long[]> output;
        var options = Copy(_generation);
        int room = (int)Runtime.Base.Config.MaxPositionEmbeddings - ids.Count;
        options.MaxNewTokens = Math.Max(0, Math.Min(options.MaxNewTokens, room));
        if (options.MaxNewTokens == 0) return "";
        options.Decoder ??= t => Runtime.Tokenizer.Decode(t.Select(i => (int)i));
        lock (Runtime.Lock)
        {
            using var scope = Torch.torch.NewDisposeScope();
            var promptIds = ids.ToArray();
            // The routing context (task id, instance embedding of the prompt) holds for every generated token.
            using var routed = Runtime.Routing is { } r ? Runtime.Peft.UseRouting(r.RowInputs(Runtime.Peft, promptIds, routing?.Invoke(promptIds.Length))) : null;
            output = TextGenerator.Generate(Runtime.Model, [promptIds], options);
        }
        var stops = new HashSet<long>(options.StopTokenIds ?? Runtime.Base.Config.EosTokenIds);
        var generated = output[0].AsEnumerable();
        if (output[0].Length > 0 && stops.Contains(output[0][^1])) generated = output[0][..^1];
        return Runtime.Tokenizer.Decode(generated.Select(i => (int)i)).Trim();
    }

    /// <summary>The mean negative log-likelihood (nats per token) of <paramref name="response"/> after <paramref name="prompt"/>
    /// (response tokens and the end token, teacher-forced), and the number of tokens scored.</summary>
    /// <remarks>A model whose mixture-of-experts router reads a task column needs the row's task: score through
    /// <see cref="LowRankTransformerBase.Transform"/> on data with that column.</remarks>
    public (double LogLoss, int TokenCount) ScoreResponse(string prompt, string response) => ScoreResponse(prompt, response, null);

    /// <summary>Scores a response with the row's routing data.</summary>
    internal (double LogLoss, int TokenCount) ScoreResponse(string prompt, string response, Func<int, RowRouting?>? routing)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(response);
        var (ids, promptLength) = EncodeExample(Runtime, prompt, response);
        if (ids.Length > Runtime.MaxLength) ids = ids[..Runtime.MaxLength];
        var labels = new long[ids.Length];
        for (int i = 0; i < ids.Length; i++) labels[i] = i < promptLength ? TokenBatcher.IgnoreIndex : ids[i];
        int count = labels.Skip(1).Count(l => l != TokenBatcher.IgnoreIndex);
        if (count == 0) return (double.NaN, 0);
        var (_, loss) = Runtime.Run(new EncodedText(ids, new long[ids.Length]), labels, routing?.Invoke(promptLength));
        return (loss ?? double.NaN, count);
    }

    private protected override List<MappedColumn> MakeColumns(DataViewSchema inputSchema)
    {
        var prompt = Columns.Text(inputSchema, "prompt", _prompt);
        var routing = RowRouting(inputSchema);
        var columns = new List<MappedColumn>
        {
            new(new DataViewSchema.DetachedColumn(_output, TextDataViewType.Instance), routing.Dependencies(prompt.Index), row =>
            {
                var p = Columns.TextGetter(row, row.Schema[prompt.Index]);
                var route = routing.For(row);
                var cache = new RowCache<string>(Context, row, () => Generate(p(), route));
                return (ValueGetter<ReadOnlyMemory<char>>)((ref ReadOnlyMemory<char> dst) => dst = cache.Get().AsMemory());
            }),
        };
        if (inputSchema.GetColumnOrNull(_response) is { } response)
        {
            Columns.Text(inputSchema, "response", _response);
            var caches = new RowCaches<Tuple<double, int>>(row =>
            {
                var p = Columns.TextGetter(row, row.Schema[prompt.Index]);
                var r = Columns.TextGetter(row, row.Schema[response.Index]);
                var route = routing.For(row);
                return new RowCache<Tuple<double, int>>(Context, row, () => ScoreResponse(p(), r(), route).ToTuple());
            });
            var scoreDeps = routing.Dependencies(prompt.Index, response.Index);
            columns.Add(new(new DataViewSchema.DetachedColumn(LogLossColumnName, NumberDataViewType.Single), scoreDeps, row =>
            {
                var cache = caches.For(row);
                return (ValueGetter<float>)((ref float dst) => dst = (float)cache.Get().Item1);
            }));
            columns.Add(new(new DataViewSchema.DetachedColumn(TokenCountColumnName, NumberDataViewType.Int32), scoreDeps, row =>
            {
                var cache = caches.For(row);
                return (ValueGetter<int>)((ref int dst) => dst = cache.Get().Item2);
            }));
        }
        return columns;
    }
}
