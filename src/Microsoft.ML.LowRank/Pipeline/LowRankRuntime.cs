using System.Globalization;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Mixture;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tokenizers;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Training;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Pipeline;

/// <summary>One tokenized input row: token ids and segment ids.</summary>
internal sealed record EncodedText(long[] Ids, long[] TypeIds, Encoding? Encoding = null);

/// <summary>
/// What a fitted (or loaded) low-rank transformer runs on: the adapted model, its tokenizer, device and element type,
/// plus the encoding rules (truncation, padding id). Forward passes are serialised by a lock (cursors may run on
/// several threads) and run under no_grad in evaluation mode.
/// </summary>
internal sealed class LowRankRuntime : IDisposable
{
    private LowRankModel? _peft;
    private bool _disposed;

    public LowRankRuntime(BaseModelInfo baseModel, Tokenizer tokenizer, int maxSequenceLength, Device device, TrainingPrecision precision)
    {
        Base = baseModel;
        Tokenizer = tokenizer;
        Device = device;
        Precision = precision;
        DType = precision switch
        {
            TrainingPrecision.Float32 => ScalarType.Float32,
            TrainingPrecision.BFloat16 => ScalarType.BFloat16,
            TrainingPrecision.Float16 => ScalarType.Float16,
            _ => device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32,
        };
        var config = baseModel.Config;
        long positions = config.Family == ModelFamily.Roberta ? config.MaxPositionEmbeddings - 2 : config.MaxPositionEmbeddings;
        MaxLength = (int)Math.Max(2, Math.Min(maxSequenceLength, positions));
        PadId = config.PadTokenId ?? (config.EosTokenIds.Count > 0 ? config.EosTokenIds[0] : 0);
        FillerId = config.BosTokenId ?? PadId;
    }

    public BaseModelInfo Base { get; }

    public Tokenizer Tokenizer { get; }

    public Device Device { get; }

    public TrainingPrecision Precision { get; }

    public ScalarType DType { get; }

    /// <summary>Longest encoded sequence.</summary>
    public int MaxLength { get; }

    /// <summary>Id written at padded positions.</summary>
    public long PadId { get; }

    /// <summary>The single token an empty text encodes to (models need at least one position).</summary>
    public long FillerId { get; }

    public object Lock { get; } = new();

    /// <summary>What the routing context of a mixture-of-experts adapter gets per batch and per row, or null.</summary>
    public TaskRouting? Routing { get; set; }

    public LowRankModel Peft => _peft ?? throw new InvalidOperationException("the model is not loaded");

    public PretrainedModel Model => Peft.Model;

    public bool UsesTokenTypes => Base.Config.Family == ModelFamily.Bert && Base.Config.TypeVocabSize > 1;

    /// <summary>Encodes one text or a pair, truncated to <see cref="MaxLength"/>.</summary>
    public EncodedText Encode(string first, string? second = null, bool addSpecialTokens = true)
    {
        var truncation = new TruncationOptions { MaxLength = MaxLength };
        var enc = second is null ? Tokenizer.Encode(first, addSpecialTokens, truncation) : Tokenizer.EncodePair(first, second, addSpecialTokens, truncation);
        if (enc.Length == 0) return new EncodedText([FillerId], [0], enc);
        var ids = new long[enc.Length];
        var types = new long[enc.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            ids[i] = enc.Ids[i];
            types[i] = UsesTokenTypes ? enc.TypeIds[i] : 0;
        }
        return new EncodedText(ids, types, enc);
    }

    /// <summary>Loads the base model for <paramref name="task"/> and injects a fresh adapter (seeded).</summary>
    public void CreateForTraining(ModelTask task, int? numLabels, LowRankAdapterOptions method, int seed)
    {
        manual_seed(seed);
        var model = PretrainedModel.Load(Base.Folder, task, Device, DType, numLabels);
        try
        {
            var options = method.Clone();
            options.BaseModelNameOrPath ??= Base.Folder;
            _peft = LowRankModel.Create(model, options);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Loads the base model for <paramref name="task"/> and a saved PEFT adapter folder (frozen).</summary>
    public void LoadAdapter(ModelTask task, int? numLabels, string adapterFolder)
    {
        var model = PretrainedModel.Load(Base.Folder, task, Device, DType, numLabels);
        try
        {
            _peft = LowRankModel.Load(model, adapterFolder);
            _peft.eval();
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Trains the adapter; progress goes to the context's log and the metrics callback.</summary>
    public TrainingResult Train(LowRankContext ctx, string source, LowRankTrainerOptions o, int seed, IBatchSource train, IBatchSource? validation,
        Func<Batch, MixtureRoutingInputs>? routing = null)
    {
        var peft = Peft;
        var (trainable, total) = peft.GetNbTrainableParameters();
        ctx.Write(ChannelMessageKind.Info, source, string.Create(CultureInfo.InvariantCulture,
            $"training {peft.PeftConfig[peft.ActiveAdapter].PeftType} on {Base.Config.ModelType} ({Path.GetFileName(Base.Folder)}): {train.Count} examples, " +
            $"{trainable:N0} trainable of {total:N0} parameters ({100.0 * trainable / total:F3}%), device {Device}, {DType}"));
        Func<Batch, Tensor> loss = b => peft.forward(b.ToModelInputs()).Loss ?? throw new TrainingException("the model returned no loss");
        // Mixture-of-experts routing: each micro-batch's inputs stay set on the model until the next one replaces them, so
        // the auxiliary losses (taken after the loss function returns) see them too.
        var mixture = routing is null ? null : MixtureRuntime.Of(peft);
        var previousRouting = mixture?.Inputs;
        OwnedRoutingInputs? current = null;
        if (routing is not null)
        {
            var plain = loss;
            loss = b =>
            {
                OwnedRoutingInputs next;
                using (NewDisposeScope()) next = new OwnedRoutingInputs(routing(b));
                current?.Dispose();
                current = next;
                mixture!.Inputs = next.Inputs;
                return plain(b);
            };
        }
        using var trainer = new Trainer(peft, loss, o.ToTrainerOptions(seed));
        trainer.Progress += (_, p) =>
        {
            if (p.Kind is TrainingProgressKind.Step or TrainingProgressKind.Evaluation)
            {
                ctx.Write(ChannelMessageKind.Info, source, FormatProgress(p), p);
                o.MetricsCallback?.Invoke(new LowRankTrainingMetrics
                {
                    Kind = p.Kind,
                    Step = p.Step,
                    TotalSteps = p.TotalSteps,
                    Epoch = p.Epoch,
                    TrainingLoss = p.Loss,
                    ValidationLoss = p.EvalLoss,
                    LearningRate = p.LearningRate,
                    TokensPerSecond = p.TokensPerSecond,
                    Elapsed = p.Elapsed,
                    Eta = p.Eta,
                });
            }
            else
            {
                ctx.Write(p.Kind == TrainingProgressKind.SkippedStep ? ChannelMessageKind.Warning : ChannelMessageKind.Trace, source, p.ToString(), p);
            }
        };
        var token = ctx.CreateLinkedToken(out var registration);
        try
        {
            ctx.CheckAlive();
            var result = trainer.Train(train, validation, cancellationToken: token);
            double last = result.StepLosses.Count > 0 ? result.StepLosses[^1] : double.NaN;
            string best = result.BestEvalLoss is { } b ? string.Create(CultureInfo.InvariantCulture, $", best validation loss {b:F4} at step {result.BestStep}") : "";
            ctx.Write(ChannelMessageKind.Info, source, string.Create(CultureInfo.InvariantCulture,
                $"done: {result.GlobalStep} steps in {result.Elapsed.TotalSeconds:F1} s, final loss {last:F4}{best} ({result.StopReason})"));
            return result;
        }
        finally
        {
            registration?.Dispose();
            if (mixture is not null) mixture.Inputs = previousRouting;
            current?.Dispose();
            peft.eval();
        }
    }

    internal static string FormatProgress(TrainingProgress p) => p.Kind == TrainingProgressKind.Evaluation
        ? string.Create(CultureInfo.InvariantCulture, $"step {p.Step}/{p.TotalSteps} epoch {p.Epoch:F2} validation loss {p.EvalLoss:F4}")
        : string.Create(CultureInfo.InvariantCulture,
            $"step {p.Step}/{p.TotalSteps} epoch {p.Epoch:F2} loss {p.Loss:F4} lr {p.LearningRate:E2} {p.TokensPerSecond:F0} tok/s ETA {(p.Eta is { } eta ? eta.ToString(@"hh\:mm\:ss", CultureInfo.InvariantCulture) : "--:--:--")}");

    /// <summary>Runs the model on one encoded row (evaluation mode, no_grad) and returns its logits as float32 on the CPU,
    /// with their shape (the batch dimension removed).</summary>
    public (float[] Values, long[] Shape) Logits(EncodedText row, long[]? labels = null, RowRouting? routing = null) => Run(row, labels, routing).Logits;

    /// <summary>Runs the model on one row; with <paramref name="labels"/> also returns the loss. A mixture-of-experts
    /// adapter's routing context is set from <paramref name="routing"/> (see <see cref="Routing"/>).</summary>
    public ((float[] Values, long[] Shape) Logits, double? Loss) Run(EncodedText row, long[]? labels = null, RowRouting? routing = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        lock (Lock)
        {
            using var scope = NewDisposeScope();
            using var ng = no_grad();
            long n = row.Ids.Length;
            var ids = tensor(row.Ids, new[] { 1L, n }).to(Device);
            var inputs = new ModelInputs
            {
                InputIds = ids,
                AttentionMask = ones(new[] { 1L, n }, ScalarType.Int64, Device),
                TokenTypeIds = UsesTokenTypes ? tensor(row.TypeIds, new[] { 1L, n }).to(Device) : null,
                Labels = labels is null ? null : tensor(labels, new[] { 1L, labels.Length }).to(Device),
            };
            using var routed = Routing is { } r ? Peft.UseRouting(r.RowInputs(Peft, row.Ids, routing)) : null;
            var output = Peft.forward(inputs);
            var logits = output.Logits ?? throw new InvalidOperationException("the model returned no logits");
            var cpu = logits.squeeze(0).to_type(ScalarType.Float32).cpu().contiguous();
            return ((cpu.ToArray<float>(), cpu.shape), output.Loss?.ToDouble());
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Routing?.Dispose();
        _peft?.Dispose();
    }
}

/// <summary>A supervised example: encoded text and its target (class, value or per-token classes).</summary>
internal sealed record LabeledExample(EncodedText Text, long ClassLabel = 0, float Value = 0, long[]? TokenLabels = null);

/// <summary>What the targets of a <see cref="ExampleBatchSource"/> are.</summary>
internal enum TargetKind
{
    Class,
    Value,
    Tokens,
}

/// <summary>Pads encoded examples into batches (right padding, attention mask, segment ids, labels).</summary>
internal sealed class ExampleBatchSource(IReadOnlyList<LabeledExample> examples, TargetKind kind, long padId, bool tokenTypes) : IBatchSource
{
    public int Count => examples.Count;

    public Batch GetBatch(IReadOnlyList<int> indices)
    {
        int rows = indices.Count, width = 0;
        foreach (var i in indices) width = Math.Max(width, examples[i].Text.Ids.Length);
        var ids = new long[rows * width];
        var mask = new long[rows * width];
        var types = new long[rows * width];
        var tokenLabels = kind == TargetKind.Tokens ? new long[rows * width] : null;
        var classes = kind == TargetKind.Class ? new long[rows] : null;
        var values = kind == TargetKind.Value ? new float[rows] : null;
        long tokens = 0;
        for (int r = 0; r < rows; r++)
        {
            var ex = examples[indices[r]];
            int n = ex.Text.Ids.Length, o = r * width;
            Array.Fill(ids, padId, o, width);
            Array.Copy(ex.Text.Ids, 0, ids, o, n);
            Array.Copy(ex.Text.TypeIds, 0, types, o, n);
            Array.Fill(mask, 1L, o, n);
            tokens += n;
            if (tokenLabels is not null)
            {
                Array.Fill(tokenLabels, TokenBatcher.IgnoreIndex, o, width);
                Array.Copy(ex.TokenLabels!, 0, tokenLabels, o, n);
            }
            if (classes is not null) classes[r] = ex.ClassLabel;
            if (values is not null) values[r] = ex.Value;
        }
        var shape = new long[] { rows, width };
        Tensor labels = kind switch
        {
            TargetKind.Class => tensor(classes!, new long[] { rows }),
            TargetKind.Value => tensor(values!, new long[] { rows }),
            _ => tensor(tokenLabels!, shape),
        };
        return new Batch(tensor(ids, shape), tensor(mask, shape), labels)
        {
            TokenTypeIds = tokenTypes ? tensor(types, shape) : null,
            TokenCount = tokens,
            ExampleIndices = indices.ToArray(),
        };
    }
}
