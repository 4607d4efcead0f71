using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tokenizers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Training;

/// <summary>Settings of <see cref="CausalLMPretrainer"/>: the model shape, the tokenizer and the optimisation.</summary>
public sealed class PretrainingOptions
{
    /// <summary>Tokenizer vocabulary size (special tokens included) and the model's <c>vocab_size</c>. Default 4096.</summary>
    public int VocabularySize { get; set; } = 4096;

    /// <summary>Hidden size. Default 256.</summary>
    public int HiddenSize { get; set; } = 256;

    /// <summary>Decoder layers. Default 4.</summary>
    public int Layers { get; set; } = 4;

    /// <summary>Attention heads (also key/value heads: no grouping). Default 4.</summary>
    public int Heads { get; set; } = 4;

    /// <summary>MLP intermediate size. Default 688 (about 8/3 × 256, a multiple of 16, as LLaMA sizes its SwiGLU MLP).</summary>
    public int IntermediateSize { get; set; } = 688;

    /// <summary>The config's <c>max_position_embeddings</c> (RoPE has no table: longer inputs work but were never
    /// trained). Default 256.</summary>
    public int MaxPositionEmbeddings { get; set; } = 256;

    /// <summary>Tokens per training sequence (the token stream is cut into chunks of this length). Default 128.</summary>
    public int SequenceLength { get; set; } = 128;

    /// <summary>Sequences per optimizer step. Default 16.</summary>
    public int BatchSize { get; set; } = 16;

    /// <summary>Optimizer steps. Default 1500.</summary>
    public int Steps { get; set; } = 1500;

    /// <summary>Peak learning rate of the cosine schedule (AdamW). Default 2e-3.</summary>
    public double LearningRate { get; set; } = 2e-3;

    /// <summary>Linear warmup steps. Default 100.</summary>
    public int WarmupSteps { get; set; } = 100;

    /// <summary>AdamW decoupled weight decay (matrices only, see <see cref="ParameterGroups"/>). Default 0.1.</summary>
    public double WeightDecay { get; set; } = 0.1;

    /// <summary>AdamW β2. Default 0.95.</summary>
    public double Beta2 { get; set; } = 0.95;

    /// <summary>Gradient clipping norm. Default 1.0.</summary>
    public double MaxGradNorm { get; set; } = 1.0;

    /// <summary>Standard deviation of the normal initialisation of matrices (HF's <c>initializer_range</c>). Default 0.02.</summary>
    public double InitializerRange { get; set; } = 0.02;

    /// <summary>Seed of the initialisation and the data order. Default 42.</summary>
    public int Seed { get; set; } = 42;

    /// <summary>Element type of the saved weights. Default bfloat16: half the size of float32, and unlike float16 it has
    /// CPU matmul kernels in libtorch 1.13, so <c>PretrainedModel.Load(folder)</c> without a dtype still runs on the CPU
    /// (see docs/default-model.md).</summary>
    public ScalarType SaveDtype { get; set; } = ScalarType.BFloat16;

    /// <summary>Log a progress line every this many steps. Default 50.</summary>
    public int LoggingSteps { get; set; } = 50;

    /// <summary>Folder for training checkpoints (every <see cref="CheckpointSteps"/> steps, the last 2 kept); a run
    /// started again with the same folder and settings resumes from the latest one and ends exactly as an uninterrupted
    /// run would (the trainer's resume is bit-identical on the CPU). Null disables checkpoints. Default null.</summary>
    public string? CheckpointFolder { get; set; }

    /// <summary>Steps between checkpoints. Default 100.</summary>
    public int CheckpointSteps { get; set; } = 100;

    /// <summary>The <c>_name_or_path</c> written into config.json. Default "lowrank-tiny-llama-en".</summary>
    public string ModelName { get; set; } = "lowrank-tiny-llama-en";

    /// <summary>Checks the settings.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range (the message names it).</exception>
    public void Validate()
    {
        static void Check(bool ok, string name, object value, string rule)
        {
            if (!ok) throw new ArgumentOutOfRangeException(name, value, $"PretrainingOptions.{name} {rule}");
        }
        Check(VocabularySize >= 259, nameof(VocabularySize), VocabularySize, "must be >= 259 (256 bytes + 3 special tokens)");
        Check(HiddenSize >= 1, nameof(HiddenSize), HiddenSize, "must be >= 1");
        Check(Layers >= 1, nameof(Layers), Layers, "must be >= 1");
        Check(Heads >= 1 && HiddenSize % Heads == 0, nameof(Heads), Heads, "must be >= 1 and divide HiddenSize");
        Check(IntermediateSize >= 1, nameof(IntermediateSize), IntermediateSize, "must be >= 1");
        Check(SequenceLength >= 2, nameof(SequenceLength), SequenceLength, "must be >= 2");
        Check(MaxPositionEmbeddings >= SequenceLength, nameof(MaxPositionEmbeddings), MaxPositionEmbeddings, "must be >= SequenceLength");
        Check(BatchSize >= 1, nameof(BatchSize), BatchSize, "must be >= 1");
        Check(Steps >= 1, nameof(Steps), Steps, "must be >= 1");
        Check(WarmupSteps >= 0, nameof(WarmupSteps), WarmupSteps, "must be >= 0");
        Check(double.IsFinite(LearningRate) && LearningRate > 0, nameof(LearningRate), LearningRate, "must be > 0");
        Check(SaveDtype is ScalarType.Float32 or ScalarType.Float16 or ScalarType.BFloat16, nameof(SaveDtype), SaveDtype, "must be Float32, Float16 or BFloat16");
        Check(LoggingSteps >= 1, nameof(LoggingSteps), LoggingSteps, "must be >= 1");
        Check(CheckpointSteps >= 1, nameof(CheckpointSteps), CheckpointSteps, "must be >= 1");
    }
}

/// <summary>What a pre-training run did and measured.</summary>
public sealed record PretrainingReport
{
    /// <summary>Parameters of the model (tied embeddings counted once).</summary>
    public required long Parameters { get; init; }

    /// <summary>Tokenizer vocabulary size.</summary>
    public required int VocabularySize { get; init; }

    /// <summary>Training documents and tokens (after tokenization, end-of-text separators included).</summary>
    public required int TrainDocuments { get; init; }

    /// <summary>Training tokens.</summary>
    public required long TrainTokens { get; init; }

    /// <summary>Validation documents.</summary>
    public required int ValidationDocuments { get; init; }

    /// <summary>Validation tokens scored (the predicted ones: every token of a chunk but its first).</summary>
    public required long ValidationTokens { get; init; }

    /// <summary>Optimizer steps taken (in total, also when the run resumed from a checkpoint).</summary>
    public required int Steps { get; init; }

    /// <summary>Training tokens seen (steps × batch × sequence length).</summary>
    public required long TokensSeen { get; init; }

    /// <summary>Mean training loss of the last 50 steps.</summary>
    public required double FinalTrainLoss { get; init; }

    /// <summary>Validation perplexity before training (about the vocabulary size; on the first 64 validation chunks).</summary>
    public required double InitialValidationPerplexity { get; init; }

    /// <summary>Validation perplexity of the trained float32 model.</summary>
    public required double ValidationPerplexity { get; init; }

    /// <summary>Validation perplexity of the saved model, reloaded from disk as float32 (after rounding to the save dtype).</summary>
    public required double SavedValidationPerplexity { get; init; }

    /// <summary>Time to train the tokenizer and tokenize the corpus.</summary>
    public required TimeSpan TokenizerTime { get; init; }

    /// <summary>Time of the optimizer steps.</summary>
    public required TimeSpan TrainingTime { get; init; }

    /// <summary>Whole run.</summary>
    public required TimeSpan TotalTime { get; init; }

    /// <summary>Training throughput.</summary>
    public required double TokensPerSecond { get; init; }

    /// <summary>Seed.</summary>
    public required int Seed { get; init; }

    /// <summary>The report as indented JSON.</summary>
    /// <returns>The JSON.</returns>
    public string ToJson() => new JsonObject
    {
        ["parameters"] = Parameters,
        ["vocabulary_size"] = VocabularySize,
        ["train_documents"] = TrainDocuments,
        ["train_tokens"] = TrainTokens,
        ["validation_documents"] = ValidationDocuments,
        ["validation_tokens"] = ValidationTokens,
        ["steps"] = Steps,
        ["tokens_seen"] = TokensSeen,
        ["final_train_loss"] = Math.Round(FinalTrainLoss, 4),
        ["initial_validation_perplexity"] = Math.Round(InitialValidationPerplexity, 2),
        ["validation_perplexity"] = Math.Round(ValidationPerplexity, 3),
        ["saved_validation_perplexity"] = Math.Round(SavedValidationPerplexity, 3),
        ["tokenizer_seconds"] = Math.Round(TokenizerTime.TotalSeconds, 1),
        ["training_seconds"] = Math.Round(TrainingTime.TotalSeconds, 1),
        ["total_seconds"] = Math.Round(TotalTime.TotalSeconds, 1),
        ["tokens_per_second"] = Math.Round(TokensPerSecond, 0),
        ["seed"] = Seed,
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}

/// <summary>
/// Pre-trains a small LLaMA-style causal language model from plain text with the library's own parts: a byte-level BPE
/// tokenizer trained on the training documents (<see cref="ByteLevelBpeTrainer"/>), the documents tokenized and joined
/// with <c>&lt;|endoftext|&gt;</c> into one token stream cut into equal chunks, a randomly initialised
/// <see cref="PretrainedModel"/> (tied embeddings), and the <see cref="Trainer"/> (AdamW, warmup then cosine decay,
/// clipping). Writes a Hugging Face folder: <c>config.json</c>, <c>model.safetensors</c>, <c>tokenizer.json</c>,
/// <c>tokenizer_config.json</c>.
/// </summary>
public static class CausalLMPretrainer
{
    /// <summary>The special tokens: end of text (document separator and EOS), padding, beginning of sequence.</summary>
    public static IReadOnlyList<string> SpecialTokens { get; } = ["<|endoftext|>", "<pad>", "<s>"];

    /// <summary>Runs the whole pipeline.</summary>
    /// <param name="trainDocuments">Training texts (one per document).</param>
    /// <param name="validationDocuments">Held-out texts for the validation perplexity.</param>
    /// <param name="outputFolder">Where the model folder is written (created).</param>
    /// <param name="options">Settings (default: <see cref="PretrainingOptions"/>' defaults).</param>
    /// <param name="log">Receives progress lines, or null.</param>
    /// <param name="cancellationToken">Stops training (the trainer throws <see cref="OperationCanceledException"/>).</param>
    /// <returns>The report (also written as <c>pretraining_report.json</c> beside the model).</returns>
    public static PretrainingReport Run(IReadOnlyList<string> trainDocuments, IReadOnlyList<string> validationDocuments, string outputFolder,
        PretrainingOptions? options = null, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(trainDocuments);
        ArgumentNullException.ThrowIfNull(validationDocuments);
        ArgumentException.ThrowIfNullOrEmpty(outputFolder);
        if (trainDocuments.Count == 0) throw new ArgumentException("no training documents", nameof(trainDocuments));
        if (validationDocuments.Count == 0) throw new ArgumentException("no validation documents", nameof(validationDocuments));
        var o = options ?? new PretrainingOptions();
        o.Validate();
        log ??= _ => { };
        var total = Stopwatch.StartNew();

        // 1. Tokenizer.
        var trainer = new ByteLevelBpeTrainer(new ByteLevelBpeTrainerOptions { VocabularySize = o.VocabularySize, SpecialTokens = SpecialTokens });
        trainer.Feed(trainDocuments);
        var bpe = trainer.Train();
        var tokenizer = bpe.ToTokenizer();
        log($"tokenizer: {trainer.WordCounts.Count:N0} distinct words, {bpe.Merges.Count:N0} merges, vocabulary {bpe.Vocabulary.Count:N0} ({total.Elapsed.TotalSeconds:F1} s)");
        if (bpe.Vocabulary.Count != o.VocabularySize)
            throw new InvalidOperationException($"the corpus yields only {bpe.Vocabulary.Count} tokens (pairs seen twice or more ran out); ask for VocabularySize <= {bpe.Vocabulary.Count}");
        int eos = tokenizer.TokenToId("<|endoftext|>")!.Value, pad = tokenizer.TokenToId("<pad>")!.Value, bos = tokenizer.TokenToId("<s>")!.Value;
        var trainStream = TokenStream(tokenizer, trainDocuments, eos);
        var validationStream = TokenStream(tokenizer, validationDocuments, eos);
        var trainChunks = Chunk(trainStream, o.SequenceLength);
        var validationChunks = Chunk(validationStream, o.SequenceLength);
        if (trainChunks.Count == 0 || validationChunks.Count == 0)
            throw new ArgumentException($"the documents hold fewer than {o.SequenceLength} tokens (train {trainStream.Count}, validation {validationStream.Count})");
        var tokenizerTime = total.Elapsed;
        log($"corpus: {trainStream.Count:N0} training tokens in {trainChunks.Count:N0} chunks of {o.SequenceLength}, {validationStream.Count:N0} validation tokens ({tokenizerTime.TotalSeconds:F1} s, {(double)trainDocuments.Sum(d => (long)d.Length) / trainStream.Count:F2} chars/token)");

        // 2. Model.
        var config = ModelConfig.Parse(BuildConfigJson(o, eos, pad, bos), "pretraining config");
        manual_seed(o.Seed);
        using var model = new PretrainedModel(config, ModelTask.CausalLM);
        Initialize(model, o);
        long parameters = model.num_parameters();
        double initialPpl = Perplexity(model, validationChunks.Take(64).ToList()); // about the vocabulary size: a sample suffices
        log($"model: LLaMA, {parameters:N0} parameters (hidden {o.HiddenSize}, {o.Layers} layers, {o.Heads} heads, MLP {o.IntermediateSize}, vocab {o.VocabularySize}, tied embeddings); initial validation perplexity {initialPpl:F1}");

        // 3. Training.
        var source = new DelegateBatchSource(trainChunks.Count, idx => ChunkBatch(trainChunks, idx));
        var trainerOptions = new TrainerOptions
        {
            LearningRate = o.LearningRate,
            MaxSteps = o.Steps,
            BatchSize = o.BatchSize,
            Schedule = LearningRateSchedule.Cosine,
            WarmupSteps = o.WarmupSteps,
            WeightDecay = o.WeightDecay,
            Beta2 = o.Beta2,
            MaxGradNorm = o.MaxGradNorm,
            Seed = o.Seed,
            DropLastBatch = true,
            LoggingSteps = o.LoggingSteps,
            CheckpointFolder = o.CheckpointFolder,
            SaveSteps = o.CheckpointFolder is null ? 0 : o.CheckpointSteps,
            KeepLastCheckpoints = 2,
        };
        string? resume = o.CheckpointFolder is { } ck && Directory.Exists(ck) ? Checkpoints.FindLatest(ck) : null;
        if (resume is not null) log($"resuming from {resume}");
        var trainingClock = Stopwatch.StartNew();
        TrainingResult result;
        using (var t = new Trainer(model, trainerOptions))
        {
            t.Progress += (_, p) => log(p.ToString());
            result = t.Train(source, resumeFromCheckpoint: resume, cancellationToken: cancellationToken);
        }
        var trainingTime = trainingClock.Elapsed;
        model.eval();
        double ppl = Perplexity(model, validationChunks);
        var losses = result.StepLosses;
        double finalLoss = losses.Skip(Math.Max(0, losses.Count - 50)).Average();
        log($"trained {result.GlobalStep} steps in {trainingTime.TotalMinutes:F1} min; last-50 train loss {finalLoss:F3}; validation perplexity {ppl:F2}");

        // 4. Save and check the saved copy.
        Directory.CreateDirectory(outputFolder);
        model.Save(outputFolder, o.SaveDtype);
        bpe.Save(outputFolder);
        File.WriteAllText(Path.Combine(outputFolder, "tokenizer_config.json"), TokenizerConfigJson(o));
        double savedPpl;
        using (var reloaded = PretrainedModel.Load(outputFolder, ModelTask.CausalLM, dtype: ScalarType.Float32))
        {
            reloaded.eval();
            savedPpl = Perplexity(reloaded, validationChunks);
        }
        log($"saved {o.SaveDtype} weights to {outputFolder}; reloaded validation perplexity {savedPpl:F2}");
        long seen = (long)result.GlobalStep * o.BatchSize * o.SequenceLength;
        var report = new PretrainingReport
        {
            Parameters = parameters,
            VocabularySize = bpe.Vocabulary.Count,
            TrainDocuments = trainDocuments.Count,
            TrainTokens = trainStream.Count,
            ValidationDocuments = validationDocuments.Count,
            ValidationTokens = validationChunks.Count * (long)(o.SequenceLength - 1),
            Steps = result.GlobalStep,
            TokensSeen = seen,
            FinalTrainLoss = finalLoss,
            InitialValidationPerplexity = initialPpl,
            ValidationPerplexity = ppl,
            SavedValidationPerplexity = savedPpl,
            TokenizerTime = tokenizerTime,
            TrainingTime = trainingTime,
            TotalTime = total.Elapsed,
            TokensPerSecond = seen / Math.Max(1e-9, trainingTime.TotalSeconds),
            Seed = o.Seed,
        };
        File.WriteAllText(Path.Combine(outputFolder, "pretraining_report.json"), report.ToJson());
        return report;
    }

    /// <summary>The config.json of the model the options describe (LLaMA, tied embeddings, float32 weights).</summary>
    /// <param name="o">Settings.</param>
    /// <param name="eos">End-of-text id.</param>
    /// <param name="pad">Padding id.</param>
    /// <param name="bos">Beginning-of-sequence id.</param>
    /// <returns>The JSON.</returns>
    public static string BuildConfigJson(PretrainingOptions o, int eos, int pad, int bos)
    {
        ArgumentNullException.ThrowIfNull(o);
        return new JsonObject
        {
            ["_name_or_path"] = o.ModelName,
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["vocab_size"] = o.VocabularySize,
            ["hidden_size"] = o.HiddenSize,
            ["intermediate_size"] = o.IntermediateSize,
            ["num_hidden_layers"] = o.Layers,
            ["num_attention_heads"] = o.Heads,
            ["num_key_value_heads"] = o.Heads,
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = o.MaxPositionEmbeddings,
            ["initializer_range"] = o.InitializerRange,
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = 10000.0,
            ["attention_bias"] = false,
            ["mlp_bias"] = false,
            ["tie_word_embeddings"] = true,
            ["bos_token_id"] = bos,
            ["eos_token_id"] = eos,
            ["pad_token_id"] = pad,
            ["torch_dtype"] = "float32",
            ["use_cache"] = true,
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static string TokenizerConfigJson(PretrainingOptions o) => new JsonObject
    {
        ["tokenizer_class"] = "PreTrainedTokenizerFast",
        ["bos_token"] = "<s>",
        ["eos_token"] = "<|endoftext|>",
        ["pad_token"] = "<pad>",
        ["unk_token"] = null,
        ["add_bos_token"] = false,
        ["add_eos_token"] = false,
        ["clean_up_tokenization_spaces"] = false,
        ["model_max_length"] = o.MaxPositionEmbeddings,
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });

    /// <summary>
    /// GPT-2/LLaMA-style initialisation: every matrix (embeddings included) ~ N(0, <see cref="PretrainingOptions.InitializerRange"/>),
    /// the residual output projections (<c>o_proj</c>, <c>down_proj</c>) scaled by 1/sqrt(2 × layers) as in GPT-2, norm
    /// weights 1, biases 0. Draws from the default generator (seeded by the caller).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="o">Settings.</param>
    public static void Initialize(PretrainedModel model, PretrainingOptions o)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(o);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        double residual = o.InitializerRange / Math.Sqrt(2.0 * model.Config.NumHiddenLayers);
        foreach (var (name, p) in model.named_parameters())
        {
            if (p.dim() >= 2) p.normal_(0, name.EndsWith("o_proj.weight", StringComparison.Ordinal) || name.EndsWith("down_proj.weight", StringComparison.Ordinal) ? residual : o.InitializerRange);
            else if (name.EndsWith("norm.weight", StringComparison.Ordinal)) p.fill_(1);
            else p.zero_();
        }
    }

    /// <summary>Tokenizes documents into one stream, each followed by the end-of-text token.</summary>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <param name="documents">The documents.</param>
    /// <param name="eos">End-of-text id.</param>
    /// <returns>The ids.</returns>
    public static List<long> TokenStream(Tokenizer tokenizer, IReadOnlyList<string> documents, int eos)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(documents);
        var encoded = new IReadOnlyList<int>[documents.Count];
        Parallel.For(0, documents.Count, i => encoded[i] = tokenizer.EncodeToIds(documents[i], addSpecialTokens: false));
        var stream = new List<long>(encoded.Sum(e => e.Count + 1));
        foreach (var e in encoded)
        {
            foreach (int id in e) stream.Add(id);
            stream.Add(eos);
        }
        return stream;
    }

    /// <summary>Cuts a token stream into consecutive chunks of a fixed length (the remainder is dropped).</summary>
    /// <param name="stream">The ids.</param>
    /// <param name="length">Chunk length.</param>
    /// <returns>The chunks.</returns>
    public static List<long[]> Chunk(IReadOnlyList<long> stream, int length)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (length < 1) throw new ArgumentOutOfRangeException(nameof(length), length, "must be >= 1");
        var chunks = new List<long[]>(stream.Count / length);
        for (int start = 0; start + length <= stream.Count; start += length)
        {
            var c = new long[length];
            for (int i = 0; i < length; i++) c[i] = stream[start + i];
            chunks.Add(c);
        }
        return chunks;
    }

    private static Batch ChunkBatch(IReadOnlyList<long[]> chunks, IReadOnlyList<int> indices)
    {
        int t = chunks[indices[0]].Length;
        var ids = new long[indices.Count * t];
        for (int r = 0; r < indices.Count; r++) Array.Copy(chunks[indices[r]], 0, ids, r * t, t);
        var x = tensor(ids, new long[] { indices.Count, t });
        // No attention mask: every position is real, so the model takes the plain causal path. Labels = inputs (shifted inside).
        return new Batch(x, null, x.alias()) { TargetCount = (long)indices.Count * (t - 1), ExampleIndices = indices.ToArray() };
    }

    /// <summary>
    /// Perplexity of a causal LM on equal-length chunks: exp of the mean negative log-likelihood of every token of every
    /// chunk but its first (computed in float32 under <c>no_grad</c>, in eval mode, batches of 32).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="chunks">Token chunks of one length (at least 2).</param>
    /// <returns>The perplexity.</returns>
    public static double Perplexity(PretrainedModel model, IReadOnlyList<long[]> chunks)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(chunks);
        if (chunks.Count == 0) throw new ArgumentException("no chunks to score", nameof(chunks));
        bool wasTraining = model.training;
        model.eval();
        double nll = 0;
        long count = 0;
        try
        {
            using var _ = no_grad();
            for (int start = 0; start < chunks.Count; start += 32)
            {
                using var scope = NewDisposeScope();
                int n = Math.Min(32, chunks.Count - start);
                int t = chunks[start].Length;
                var ids = new long[n * t];
                for (int r = 0; r < n; r++)
                {
                    if (chunks[start + r].Length != t) throw new ArgumentException("chunks must all have the same length", nameof(chunks));
                    Array.Copy(chunks[start + r], 0, ids, r * t, t);
                }
                var x = tensor(ids, new long[] { n, t });
                var loss = model.forward(new ModelInputs { InputIds = x, Labels = x }).Loss!;
                nll += loss.item<float>() * (double)n * (t - 1);
                count += (long)n * (t - 1);
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return Math.Exp(nll / count);
    }
}
