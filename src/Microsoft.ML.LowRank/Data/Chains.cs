using System.Collections;
using Microsoft.ML.LowRank.Data;

namespace Microsoft.ML.LowRank;

/// <summary>
/// A sequence of estimators trained one after another: <see cref="Fit"/> fits the first on the input, transforms the
/// input with the result, fits the second on that, and so on. Built with <c>Append</c>.
/// </summary>
/// <typeparam name="TLastTransformer">The transformer type of the last estimator.</typeparam>
public sealed class EstimatorChain<TLastTransformer> : IEstimator<TransformerChain<TLastTransformer>>
    where TLastTransformer : class, ITransformer
{
    private readonly IEstimator<ITransformer>[] _estimators;

    /// <summary>Creates an empty chain (append estimators to it).</summary>
    public EstimatorChain()
    {
        _estimators = [];
    }

    private EstimatorChain(IEstimator<ITransformer>[] estimators)
    {
        _estimators = estimators;
    }

    /// <summary>The estimators, in order.</summary>
    public IReadOnlyList<IEstimator<ITransformer>> Estimators => _estimators;

    /// <summary>The last estimator, or <see langword="null"/> for an empty chain.</summary>
    public IEstimator<TLastTransformer>? LastEstimator => _estimators.Length == 0 ? null : (IEstimator<TLastTransformer>)_estimators[^1];

    /// <summary>Returns a new chain with <paramref name="estimator"/> added at the end (this chain is unchanged).</summary>
    /// <typeparam name="TNewTrans">The transformer type of the new estimator.</typeparam>
    /// <param name="estimator">The estimator to append.</param>
    /// <returns>The longer chain.</returns>
    public EstimatorChain<TNewTrans> Append<TNewTrans>(IEstimator<TNewTrans> estimator)
        where TNewTrans : class, ITransformer
    {
        ArgumentNullException.ThrowIfNull(estimator);
        return new EstimatorChain<TNewTrans>([.. _estimators, estimator]);
    }

    /// <summary>Checks the whole chain against the input schema, then fits each estimator in order.</summary>
    /// <param name="input">The training data.</param>
    /// <returns>The chain of fitted transformers.</returns>
    public TransformerChain<TLastTransformer> Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        // Fail early (before any training) when a later step cannot accept what earlier steps produce.
        GetOutputSchema(SchemaShape.Create(input.Schema));
        var transformers = new List<ITransformer>(_estimators.Length);
        var current = input;
        try
        {
            for (int i = 0; i < _estimators.Length; i++)
            {
                var transformer = _estimators[i].Fit(current);
                transformers.Add(transformer);
                if (i < _estimators.Length - 1)
                    current = transformer.Transform(current);
            }
        }
        catch
        {
            foreach (var t in transformers)
                (t as IDisposable)?.Dispose();
            throw;
        }
        return new TransformerChain<TLastTransformer>(transformers);
    }

    /// <summary>Propagates the shape through every estimator.</summary>
    /// <param name="inputSchema">The input shape.</param>
    /// <returns>The output shape of the last estimator.</returns>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var shape = inputSchema;
        foreach (var e in _estimators)
            shape = e.GetOutputSchema(shape);
        return shape;
    }
}

/// <summary>
/// A sequence of transformers applied one after another. Disposing the chain disposes the transformers that are
/// <see cref="IDisposable"/> (for example ones that hold a model).
/// </summary>
/// <typeparam name="TLastTransformer">The type of the last transformer.</typeparam>
public sealed class TransformerChain<TLastTransformer> : ITransformer, IEnumerable<ITransformer>, IDisposable
    where TLastTransformer : class, ITransformer
{
    private readonly ITransformer[] _transformers;

    /// <summary>Creates a chain.</summary>
    /// <param name="transformers">The transformers, in order; the last must be a <typeparamref name="TLastTransformer"/>.</param>
    /// <exception cref="ArgumentException">When the last transformer has the wrong type.</exception>
    public TransformerChain(IEnumerable<ITransformer> transformers)
    {
        ArgumentNullException.ThrowIfNull(transformers);
        _transformers = [.. transformers];
        foreach (var t in _transformers)
            ArgumentNullException.ThrowIfNull(t, nameof(transformers));
        if (_transformers.Length > 0 && _transformers[^1] is not TLastTransformer)
            throw new ArgumentException($"The last transformer is a {_transformers[^1].GetType().Name}, not a {typeof(TLastTransformer).Name}.", nameof(transformers));
    }

    /// <summary>Creates a chain.</summary>
    /// <param name="transformers">The transformers, in order.</param>
    public TransformerChain(params ITransformer[] transformers) : this((IEnumerable<ITransformer>)transformers)
    {
    }

    /// <summary>The last transformer (for example the trained model at the end of a pipeline).</summary>
    /// <exception cref="InvalidOperationException">When the chain is empty.</exception>
    public TLastTransformer LastTransformer => _transformers.Length == 0
        ? throw new InvalidOperationException("The transformer chain is empty.")
        : (TLastTransformer)_transformers[^1];

    /// <summary>Whether every transformer maps rows one to one.</summary>
    public bool IsRowToRowMapper => _transformers.All(t => t.IsRowToRowMapper);

    /// <summary>Returns a new chain with <paramref name="transformer"/> added at the end.</summary>
    /// <typeparam name="TNewLast">The type of the new last transformer.</typeparam>
    /// <param name="transformer">The transformer to append.</param>
    /// <returns>The longer chain.</returns>
    public TransformerChain<TNewLast> Append<TNewLast>(TNewLast transformer)
        where TNewLast : class, ITransformer
    {
        ArgumentNullException.ThrowIfNull(transformer);
        return new TransformerChain<TNewLast>([.. _transformers, transformer]);
    }

    /// <summary>Propagates the schema through every transformer.</summary>
    /// <param name="inputSchema">The input schema.</param>
    /// <returns>The output schema.</returns>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var schema = inputSchema;
        foreach (var t in _transformers)
            schema = t.GetOutputSchema(schema);
        return schema;
    }

    /// <summary>Applies every transformer in order (lazily).</summary>
    /// <param name="input">The input data.</param>
    /// <returns>The transformed data.</returns>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        // Check the whole chain first so a bad input fails before any view is built.
        GetOutputSchema(input.Schema);
        var data = input;
        foreach (var t in _transformers)
            data = t.Transform(data);
        return data;
    }

    /// <inheritdoc/>
    public IEnumerator<ITransformer> GetEnumerator() => ((IEnumerable<ITransformer>)_transformers).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Disposes the transformers that are disposable.</summary>
    public void Dispose()
    {
        foreach (var t in _transformers)
            (t as IDisposable)?.Dispose();
    }
}

/// <summary>The <c>Append</c> extensions that start pipelines, as in ML.NET.</summary>
public static class LearningPipelineExtensions
{
    /// <summary>Chains two estimators: <c>a.Append(b)</c>.</summary>
    /// <typeparam name="TTrans">The transformer type of <paramref name="estimator"/>.</typeparam>
    /// <param name="start">The first estimator.</param>
    /// <param name="estimator">The estimator that follows.</param>
    /// <returns>A chain of the two.</returns>
    public static EstimatorChain<TTrans> Append<TTrans>(this IEstimator<ITransformer> start, IEstimator<TTrans> estimator)
        where TTrans : class, ITransformer
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(estimator);
        return new EstimatorChain<ITransformer>().Append(start).Append(estimator);
    }

    /// <summary>Chains two transformers: <c>a.Append(b)</c>.</summary>
    /// <typeparam name="TTrans">The type of <paramref name="transformer"/>.</typeparam>
    /// <param name="start">The first transformer.</param>
    /// <param name="transformer">The transformer that follows.</param>
    /// <returns>A chain of the two.</returns>
    public static TransformerChain<TTrans> Append<TTrans>(this ITransformer start, TTrans transformer)
        where TTrans : class, ITransformer
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(transformer);
        return new TransformerChain<TTrans>(start, transformer);
    }
}
