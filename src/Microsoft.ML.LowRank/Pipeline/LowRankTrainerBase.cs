using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Training;

namespace Microsoft.ML.LowRank.Pipeline;

/// <summary>
/// Base of the low-rank task trainers (ML.NET's <c>TorchSharpBaseTrainer</c>): checks the columns, opens and checks the
/// base model folder, reads and tokenizes the training (and validation) rows, loads the base model with the task's
/// head, injects a fresh adapter of the configured method, trains it (progress to <see cref="LowRankContext.Log"/>,
/// cancellation through the context) and returns the transformer. Errors name the column, the file or the option.
/// </summary>
/// <typeparam name="TTransformer">The transformer <see cref="Fit"/> returns.</typeparam>
public abstract class LowRankTrainerBase<TTransformer> : IEstimator<TTransformer>
    where TTransformer : LowRankTransformerBase
{
    private protected LowRankTrainerBase(LowRankContext context, LowRankTrainerOptions options)
    {
        Context = context ?? throw new ArgumentNullException(nameof(context));
        TrainerOptions = options ?? throw new ArgumentNullException(nameof(options));
    }

    private protected LowRankContext Context { get; }

    private protected LowRankTrainerOptions TrainerOptions { get; }

    /// <summary>The name used in log messages.</summary>
    private protected abstract string Source { get; }

    /// <summary>The model head the task needs.</summary>
    private protected abstract ModelTask Task { get; }

    /// <summary>Checks the input columns and returns the output columns it adds.</summary>
    private protected abstract IEnumerable<SchemaShape.Column> OutputColumns(SchemaShape inputSchema);

    /// <summary>Reads and encodes the rows of <paramref name="data"/>; <paramref name="trainingState"/> is null for the
    /// training data and the training data's state for the validation data.</summary>
    private protected abstract PreparedData Prepare(LowRankRuntime runtime, IDataView data, object? trainingState);

    /// <summary>Builds the transformer from the trained runtime.</summary>
    private protected abstract TTransformer CreateTransformer(LowRankRuntime runtime, PreparedData training, TrainingResult result);

    /// <summary>Checks that the base model's architecture can do the task.</summary>
    private protected virtual void CheckArchitecture(BaseModelInfo info)
    {
        if (info.Config.Family is not (ModelFamily.Bert or ModelFamily.Roberta or ModelFamily.Llama or ModelFamily.Gpt2))
            throw new NotSupportedException($"{info.Folder}: model type '{info.Config.ModelType}' is not supported for {Source}");
    }

    /// <summary>Trains on <paramref name="input"/>.</summary>
    /// <param name="input">The training data.</param>
    /// <returns>The trained transformer (dispose it to free the model).</returns>
    /// <exception cref="ArgumentOutOfRangeException">A column is missing or has the wrong type (the message names it).</exception>
    /// <exception cref="ArgumentException">An option is invalid (for example <see cref="LowRankTrainerOptions.ModelFolder"/> is not set, or the
    /// method routes on tasks and <see cref="LowRankTrainerOptions.TaskColumnName"/> is not set).</exception>
    /// <exception cref="FileNotFoundException">The model folder lacks config.json, the weights or a tokenizer (the message names the file).</exception>
    /// <exception cref="InvalidOperationException">The data is empty, the label has fewer than two classes, or the task column has a
    /// missing value or a task id beyond the method's number of tasks (the message names the column and the row).</exception>
    /// <exception cref="OperationCanceledException">The context was cancelled.</exception>
    public TTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var o = TrainerOptions;
        o.Validate();
        GetOutputSchema(SchemaShape.Create(input.Schema));
        if (o.ValidationSet is { } validationSet)
        {
            try
            {
                GetOutputSchema(SchemaShape.Create(validationSet.Schema));
            }
            catch (ArgumentOutOfRangeException e)
            {
                throw new ArgumentOutOfRangeException(nameof(o.ValidationSet), $"ValidationSet: {e.Message}");
            }
        }
        Context.CheckAlive();
        var info = BaseModelInfo.Inspect(o.ModelFolder);
        CheckArchitecture(info);
        var tokenizer = info.LoadTokenizer();
        var routing = TaskRouting.Resolve(o.Method, o.TaskColumnName, o.InstanceColumnName, info.Config.HiddenSize, out var ignored);
        if (ignored is not null) Context.Write(ChannelMessageKind.Warning, Source, ignored);
        if (routing is { } packed && o.PackTrainingSequences && (!packed.TokenMaskOnly || packed.SequencePooling))
            throw new ArgumentException($"PackSequences puts several examples in one row, but method {packed.Method} routes each example on its own " +
                "(a task id, an instance embedding or a pooled sequence): turn PackSequences off", "PackSequences");
        var runtime = new LowRankRuntime(info, tokenizer, o.MaxSequenceLength, Context.ResolveDevice(Source), o.Precision) { Routing = routing };
        try
        {
            var train = Prepare(runtime, input, null);
            if (train.Batches.Count == 0)
                throw new InvalidOperationException($"{Source}: the training data has no usable rows{(train.Skipped > 0 ? $" ({train.Skipped} row(s) skipped for a missing label)" : "")}");
            if (train.Skipped > 0)
                Context.Write(ChannelMessageKind.Warning, Source, $"{train.Skipped} training row(s) skipped: missing label");
            IBatchSource? validation = null;
            RoutingRows? validationRouting = null;
            if (o.ValidationSet is { } v)
            {
                var prepared = Prepare(runtime, v, train.State);
                if (prepared.Batches.Count == 0) throw new InvalidOperationException($"{Source}: the ValidationSet has no usable rows");
                validation = prepared.Batches;
                validationRouting = prepared.Routing;
            }
            int seed = o.Seed ?? Context.NextSeed();
            runtime.CreateForTraining(Task, train.NumLabels, o.Method, seed);
            Func<Batch, Adapters.Mixture.MixtureRoutingInputs>? batchRouting = null;
            if (routing is not null)
            {
                (validation, batchRouting) = routing.ForTraining(runtime.Peft, train.Routing ?? throw new InvalidOperationException($"{Source} read no routing data"),
                    validationRouting, validation, seed);
                if (!routing.TokenMaskOnly) Context.Write(ChannelMessageKind.Info, Source, routing.Describe());
            }
            var result = runtime.Train(Context, Source, o, seed, train.Batches, validation, batchRouting);
            return CreateTransformer(runtime, train, result);
        }
        catch
        {
            runtime.Dispose();
            throw;
        }
    }

    /// <summary>The shape of the data the fitted transformer produces: the input columns plus the task's output columns.</summary>
    /// <param name="inputSchema">The input shape.</param>
    /// <returns>The output shape.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A needed column is missing or has the wrong type.</exception>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var columns = OutputColumns(inputSchema).ToList();
        if (TrainerOptions.TaskColumnName is { Length: > 0 } task) TaskRouting.CheckTaskColumn(inputSchema, task);
        if (TrainerOptions.InstanceColumnName is { Length: > 0 } instance) TaskRouting.CheckInstanceColumn(inputSchema, instance);
        return new SchemaShape(inputSchema.Concat(columns));
    }
}

/// <summary>Encoded rows ready for the trainer, with what the task learned from them (label values).</summary>
/// <param name="Batches">The examples.</param>
/// <param name="State">Task-specific information (label values, ...).</param>
/// <param name="NumLabels">The number of classes of the head, or null.</param>
/// <param name="Skipped">Rows skipped for a missing label.</param>
/// <param name="Routing">The routing data of the examples (mixture-of-experts task ids, instance embeddings), or null.</param>
internal sealed record PreparedData(IBatchSource Batches, object? State, int? NumLabels, int Skipped, RoutingRows? Routing = null);
