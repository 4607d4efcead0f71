using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Pipeline;

namespace Microsoft.ML.LowRank;

/// <summary>The transforms of a context (<c>ctx.Transforms</c>).</summary>
public sealed class TransformsCatalog
{
    internal TransformsCatalog(LowRankContext context)
    {
        Conversion = new ConversionsCatalog();
        LowRank = new LowRankCatalog(context);
    }

    /// <summary>Key mapping: <c>MapValueToKey</c>, <c>MapKeyToValue</c>.</summary>
    public ConversionsCatalog Conversion { get; }

    /// <summary>The shared low-rank catalog: every task estimator, and the adapter method registry.</summary>
    public LowRankCatalog LowRank { get; }
}

/// <summary>
/// The shared low-rank catalog (<c>ctx.Transforms.LowRank</c>): the adapter methods (<see cref="Methods"/>,
/// <see cref="CreateMethod"/>) and one entry point per task, each taking the task's options (any method plugs into any
/// task through <see cref="LowRankTrainerOptions.Method"/>).
/// </summary>
public sealed class LowRankCatalog
{
    private readonly LowRankContext _context;

    internal LowRankCatalog(LowRankContext context)
    {
        _context = context;
    }

    /// <summary>Every adapter method of the library (<see cref="AdapterMethods.Methods"/>).</summary>
    public IReadOnlyList<AdapterMethod> Methods => AdapterMethods.Methods;

    /// <summary>Creates a method's options by name, with settings given by their PEFT config names
    /// (for example <c>CreateMethod("rslora", ("r", "16"), ("lora_alpha", "32"))</c>).</summary>
    /// <param name="name">The method name (see <see cref="Methods"/>).</param>
    /// <param name="settings">PEFT config key and value pairs.</param>
    /// <returns>The options.</returns>
    /// <exception cref="ArgumentException">An unknown method or setting (the message lists the valid ones).</exception>
    public LowRankAdapterOptions CreateMethod(string name, params (string Key, string Value)[] settings)
    {
        var options = AdapterMethods.Create(name);
        return settings is { Length: > 0 }
            ? AdapterMethods.WithSettings(options, settings.Select(s => new KeyValuePair<string, string>(s.Key, s.Value)))
            : options;
    }

    /// <summary>Text (or text-pair) classification; see <see cref="TextClassificationTrainer"/>.</summary>
    /// <param name="options">The options.</param>
    /// <returns>The estimator.</returns>
    public TextClassificationTrainer TextClassification(TextClassificationTrainer.Options options) => new(_context, options ?? throw new ArgumentNullException(nameof(options)));

    /// <summary>Sentence-pair regression; see <see cref="SentenceSimilarityTrainer"/>.</summary>
    /// <param name="options">The options.</param>
    /// <returns>The estimator.</returns>
    public SentenceSimilarityTrainer SentenceSimilarity(SentenceSimilarityTrainer.Options options) => new(_context, options ?? throw new ArgumentNullException(nameof(options)));

    /// <summary>Token classification (named entities with BIO tags); see <see cref="NamedEntityRecognitionTrainer"/>.</summary>
    /// <param name="options">The options.</param>
    /// <returns>The estimator.</returns>
    public NamedEntityRecognitionTrainer NamedEntityRecognition(NamedEntityRecognitionTrainer.Options options) => new(_context, options ?? throw new ArgumentNullException(nameof(options)));

    /// <summary>Causal-LM instruction tuning whose transformer generates completions; see <see cref="CausalLMTrainer"/>.</summary>
    /// <param name="options">The options.</param>
    /// <returns>The estimator.</returns>
    public CausalLMTrainer CausalLM(CausalLMTrainer.Options options) => new(_context, options ?? throw new ArgumentNullException(nameof(options)));
}

/// <summary>Multiclass tasks (<c>ctx.MulticlassClassification</c>): trainers and evaluators.</summary>
public sealed class MulticlassClassificationCatalog
{
    internal MulticlassClassificationCatalog(LowRankContext context)
    {
        Trainers = new MulticlassClassificationTrainers(context);
    }

    /// <summary>The trainers.</summary>
    public MulticlassClassificationTrainers Trainers { get; }

    /// <summary>The multiclass trainers (<c>ctx.MulticlassClassification.Trainers</c>).</summary>
    public sealed class MulticlassClassificationTrainers
    {
        private readonly LowRankContext _context;

        internal MulticlassClassificationTrainers(LowRankContext context)
        {
            _context = context;
        }

        /// <summary>Classifies a text or a pair of texts with a fine-tuned model (see <see cref="TextClassificationTrainer"/>).</summary>
        /// <param name="labelColumnName">The key-typed label column.</param>
        /// <param name="sentence1ColumnName">The text column.</param>
        /// <param name="sentence2ColumnName">The second text of a pair, or <see langword="null"/>.</param>
        /// <param name="scoreColumnName">The output column of class probabilities.</param>
        /// <param name="predictedLabelColumnName">The output column of the predicted class.</param>
        /// <param name="modelFolder">The base model folder.</param>
        /// <param name="method">The adapter method (default LoRA r = 8, α = 16).</param>
        /// <param name="batchSize">Examples per batch.</param>
        /// <param name="maxEpochs">Passes over the data.</param>
        /// <param name="validationSet">Validation data, or <see langword="null"/>.</param>
        /// <returns>The estimator.</returns>
        public TextClassificationTrainer TextClassification(string labelColumnName = DefaultColumnNames.Label, string sentence1ColumnName = DefaultColumnNames.Sentence1,
            string? sentence2ColumnName = null, string scoreColumnName = DefaultColumnNames.Score, string predictedLabelColumnName = DefaultColumnNames.PredictedLabel,
            string? modelFolder = null, LowRankAdapterOptions? method = null, int batchSize = 16, int maxEpochs = 3, IDataView? validationSet = null)
        {
            var o = new TextClassificationTrainer.Options
            {
                LabelColumnName = labelColumnName,
                Sentence1ColumnName = sentence1ColumnName,
                Sentence2ColumnName = sentence2ColumnName,
                ScoreColumnName = scoreColumnName,
                PredictedLabelColumnName = predictedLabelColumnName,
                ModelFolder = modelFolder,
                BatchSize = batchSize,
                MaxEpochs = maxEpochs,
                ValidationSet = validationSet,
            };
            if (method is not null) o.Method = method;
            return new TextClassificationTrainer(_context, o);
        }

        /// <summary>Classifies a text or a pair of texts with a fine-tuned model (see <see cref="TextClassificationTrainer"/>).</summary>
        /// <param name="options">The options.</param>
        /// <returns>The estimator.</returns>
        public TextClassificationTrainer TextClassification(TextClassificationTrainer.Options options) =>
            new(_context, options ?? throw new ArgumentNullException(nameof(options)));

        /// <summary>Tags the words of sentences (see <see cref="NamedEntityRecognitionTrainer"/>).</summary>
        /// <param name="labelColumnName">The tag column (a vector of keys, one per word).</param>
        /// <param name="sentenceColumnName">The words (text split on spaces, or a text vector).</param>
        /// <param name="predictedLabelColumnName">The output column.</param>
        /// <param name="modelFolder">The base model folder.</param>
        /// <param name="method">The adapter method (default LoRA r = 8, α = 16).</param>
        /// <param name="batchSize">Examples per batch.</param>
        /// <param name="maxEpochs">Passes over the data.</param>
        /// <param name="validationSet">Validation data, or <see langword="null"/>.</param>
        /// <returns>The estimator.</returns>
        public NamedEntityRecognitionTrainer NamedEntityRecognition(string labelColumnName = DefaultColumnNames.Label, string sentenceColumnName = DefaultColumnNames.Sentence,
            string predictedLabelColumnName = DefaultColumnNames.PredictedLabel, string? modelFolder = null, LowRankAdapterOptions? method = null,
            int batchSize = 16, int maxEpochs = 3, IDataView? validationSet = null)
        {
            var o = new NamedEntityRecognitionTrainer.Options
            {
                LabelColumnName = labelColumnName,
                SentenceColumnName = sentenceColumnName,
                PredictedLabelColumnName = predictedLabelColumnName,
                ModelFolder = modelFolder,
                BatchSize = batchSize,
                MaxEpochs = maxEpochs,
                ValidationSet = validationSet,
            };
            if (method is not null) o.Method = method;
            return new NamedEntityRecognitionTrainer(_context, o);
        }

        /// <summary>Tags the words of sentences (see <see cref="NamedEntityRecognitionTrainer"/>).</summary>
        /// <param name="options">The options.</param>
        /// <returns>The estimator.</returns>
        public NamedEntityRecognitionTrainer NamedEntityRecognition(NamedEntityRecognitionTrainer.Options options) =>
            new(_context, options ?? throw new ArgumentNullException(nameof(options)));
    }

    /// <summary>Evaluates multiclass predictions (ML.NET's <c>Evaluate</c>): accuracy, log-loss, confusion matrix.</summary>
    /// <param name="data">Scored data.</param>
    /// <param name="labelColumnName">The key-typed true label.</param>
    /// <param name="scoreColumnName">The class probabilities (Vector&lt;Single&gt;, one per class).</param>
    /// <param name="predictedLabelColumnName">The predicted class (a key).</param>
    /// <param name="topKPredictionCount">Also compute top-k accuracy for this k (0: not computed).</param>
    /// <returns>The metrics.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A column is missing or has the wrong type.</exception>
    public MulticlassClassificationMetrics Evaluate(IDataView data, string labelColumnName = DefaultColumnNames.Label, string scoreColumnName = DefaultColumnNames.Score,
        string predictedLabelColumnName = DefaultColumnNames.PredictedLabel, int topKPredictionCount = 0) =>
        Evaluators.Multiclass(data, labelColumnName, scoreColumnName, predictedLabelColumnName, topKPredictionCount);

    /// <summary>Evaluates word tags at the entity level (conlleval / seqeval rules for BIO tags): precision, recall, F1
    /// overall and per entity type, and word accuracy.</summary>
    /// <param name="data">Tagged data.</param>
    /// <param name="labelColumnName">The true tags (a vector of keys with the tags as key values).</param>
    /// <param name="predictedLabelColumnName">The predicted tags (same shape).</param>
    /// <returns>The metrics.</returns>
    public NamedEntityRecognitionMetrics EvaluateNamedEntityRecognition(IDataView data, string labelColumnName = DefaultColumnNames.Label,
        string predictedLabelColumnName = DefaultColumnNames.PredictedLabel) =>
        Evaluators.NamedEntities(data, labelColumnName, predictedLabelColumnName);
}

/// <summary>Regression tasks (<c>ctx.Regression</c>): trainers and the evaluator.</summary>
public sealed class RegressionCatalog
{
    internal RegressionCatalog(LowRankContext context)
    {
        Trainers = new RegressionTrainers(context);
    }

    /// <summary>The trainers.</summary>
    public RegressionTrainers Trainers { get; }

    /// <summary>The regression trainers (<c>ctx.Regression.Trainers</c>).</summary>
    public sealed class RegressionTrainers
    {
        private readonly LowRankContext _context;

        internal RegressionTrainers(LowRankContext context)
        {
            _context = context;
        }

        /// <summary>Predicts a number (e.g. a similarity) from a pair of texts (see <see cref="SentenceSimilarityTrainer"/>).</summary>
        /// <param name="labelColumnName">The numeric label.</param>
        /// <param name="sentence1ColumnName">The first text.</param>
        /// <param name="sentence2ColumnName">The second text, or <see langword="null"/> for single texts.</param>
        /// <param name="scoreColumnName">The output column.</param>
        /// <param name="modelFolder">The base model folder.</param>
        /// <param name="method">The adapter method (default LoRA r = 8, α = 16).</param>
        /// <param name="batchSize">Examples per batch.</param>
        /// <param name="maxEpochs">Passes over the data.</param>
        /// <param name="validationSet">Validation data, or <see langword="null"/>.</param>
        /// <returns>The estimator.</returns>
        public SentenceSimilarityTrainer SentenceSimilarity(string labelColumnName = DefaultColumnNames.Label, string sentence1ColumnName = DefaultColumnNames.Sentence1,
            string? sentence2ColumnName = DefaultColumnNames.Sentence2, string scoreColumnName = DefaultColumnNames.Score, string? modelFolder = null,
            LowRankAdapterOptions? method = null, int batchSize = 16, int maxEpochs = 3, IDataView? validationSet = null)
        {
            var o = new SentenceSimilarityTrainer.Options
            {
                LabelColumnName = labelColumnName,
                Sentence1ColumnName = sentence1ColumnName,
                Sentence2ColumnName = sentence2ColumnName,
                ScoreColumnName = scoreColumnName,
                ModelFolder = modelFolder,
                BatchSize = batchSize,
                MaxEpochs = maxEpochs,
                ValidationSet = validationSet,
            };
            if (method is not null) o.Method = method;
            return new SentenceSimilarityTrainer(_context, o);
        }

        /// <summary>Predicts a number from a pair of texts (see <see cref="SentenceSimilarityTrainer"/>).</summary>
        /// <param name="options">The options.</param>
        /// <returns>The estimator.</returns>
        public SentenceSimilarityTrainer SentenceSimilarity(SentenceSimilarityTrainer.Options options) =>
            new(_context, options ?? throw new ArgumentNullException(nameof(options)));
    }

    /// <summary>Evaluates regression predictions: R², RMSE, MAE, and Pearson and Spearman correlations.</summary>
    /// <param name="data">Scored data.</param>
    /// <param name="labelColumnName">The true value (Single or Double).</param>
    /// <param name="scoreColumnName">The prediction (Single or Double).</param>
    /// <returns>The metrics.</returns>
    public RegressionMetrics Evaluate(IDataView data, string labelColumnName = DefaultColumnNames.Label, string scoreColumnName = DefaultColumnNames.Score) =>
        Evaluators.Regression(data, labelColumnName, scoreColumnName);
}

/// <summary>Causal-LM tasks (<c>ctx.TextGeneration</c>): instruction tuning and its evaluator.</summary>
public sealed class TextGenerationCatalog
{
    internal TextGenerationCatalog(LowRankContext context)
    {
        Trainers = new TextGenerationTrainers(context);
    }

    /// <summary>The trainers.</summary>
    public TextGenerationTrainers Trainers { get; }

    /// <summary>The causal-LM trainers (<c>ctx.TextGeneration.Trainers</c>).</summary>
    public sealed class TextGenerationTrainers
    {
        private readonly LowRankContext _context;

        internal TextGenerationTrainers(LowRankContext context)
        {
            _context = context;
        }

        /// <summary>Instruction-tunes a causal LM on (prompt, response) pairs (see <see cref="CausalLMTrainer"/>).</summary>
        /// <param name="promptColumnName">The prompt column.</param>
        /// <param name="responseColumnName">The response column.</param>
        /// <param name="outputColumnName">The generated-text column.</param>
        /// <param name="modelFolder">The base model folder.</param>
        /// <param name="method">The adapter method (default LoRA r = 8, α = 16).</param>
        /// <param name="batchSize">Examples per batch.</param>
        /// <param name="maxEpochs">Passes over the data.</param>
        /// <param name="validationSet">Validation data, or <see langword="null"/>.</param>
        /// <returns>The estimator.</returns>
        public CausalLMTrainer CausalLM(string promptColumnName = DefaultColumnNames.Prompt, string responseColumnName = DefaultColumnNames.Response,
            string outputColumnName = DefaultColumnNames.Completion, string? modelFolder = null, LowRankAdapterOptions? method = null,
            int batchSize = 16, int maxEpochs = 3, IDataView? validationSet = null)
        {
            var o = new CausalLMTrainer.Options
            {
                PromptColumnName = promptColumnName,
                ResponseColumnName = responseColumnName,
                OutputColumnName = outputColumnName,
                ModelFolder = modelFolder,
                BatchSize = batchSize,
                MaxEpochs = maxEpochs,
                ValidationSet = validationSet,
            };
            if (method is not null) o.Method = method;
            return new CausalLMTrainer(_context, o);
        }

        /// <summary>Instruction-tunes a causal LM (see <see cref="CausalLMTrainer"/>).</summary>
        /// <param name="options">The options.</param>
        /// <returns>The estimator.</returns>
        public CausalLMTrainer CausalLM(CausalLMTrainer.Options options) => new(_context, options ?? throw new ArgumentNullException(nameof(options)));
    }

    /// <summary>Evaluates a causal LM on data transformed by a <see cref="CausalLMTransformer"/> with the response column
    /// present: the token-weighted mean log-loss of the responses, the perplexity, and (when
    /// <paramref name="completionColumnName"/> is given, which generates a completion per row) the exact-match rate.</summary>
    /// <param name="data">Transformed data.</param>
    /// <param name="responseColumnName">The reference response.</param>
    /// <param name="completionColumnName">The generated completion, or <see langword="null"/> to skip generation.</param>
    /// <param name="logLossColumnName">The per-row log-loss column.</param>
    /// <param name="tokenCountColumnName">The per-row token count column.</param>
    /// <returns>The metrics.</returns>
    public CausalLMMetrics Evaluate(IDataView data, string responseColumnName = DefaultColumnNames.Response, string? completionColumnName = null,
        string logLossColumnName = CausalLMTransformer.LogLossColumnName, string tokenCountColumnName = CausalLMTransformer.TokenCountColumnName) =>
        Evaluators.CausalLM(data, responseColumnName, completionColumnName, logLossColumnName, tokenCountColumnName);
}
