using System.Diagnostics.CodeAnalysis;
using Microsoft.ML.LowRank.Data;

namespace Microsoft.ML.LowRank;

/// <summary>
/// Runs a trained pipeline on one object at a time (ML.NET's <c>PredictionEngine</c>): the example becomes a one-row data
/// view, the pipeline transforms it, and the output columns are read into a new <typeparamref name="TDst"/> (members
/// without a matching column keep their defaults). Made by <see cref="ModelOperationsCatalog.CreatePredictionEngine{TSrc, TDst}"/>.
/// Not thread-safe: use one engine per thread.
/// </summary>
/// <typeparam name="TSrc">The input class (its members are the input columns).</typeparam>
/// <typeparam name="TDst">The output class (its members are read from the output columns).</typeparam>
public sealed class PredictionEngine<[DynamicallyAccessedMembers(SchemaDefinition.Members)] TSrc, [DynamicallyAccessedMembers(SchemaDefinition.MembersAndConstructor)] TDst>
    where TSrc : class
    where TDst : class, new()
{
    private readonly DataOperationsCatalog _data;

    internal PredictionEngine(DataOperationsCatalog data, ITransformer transformer)
    {
        _data = data;
        Transformer = transformer ?? throw new ArgumentNullException(nameof(transformer));
    }

    /// <summary>The pipeline.</summary>
    public ITransformer Transformer { get; }

    /// <summary>Predicts for one example.</summary>
    /// <param name="example">The input.</param>
    /// <returns>The output.</returns>
    public TDst Predict(TSrc example)
    {
        ArgumentNullException.ThrowIfNull(example);
        var view = _data.LoadFromEnumerable(new[] { example });
        return _data.CreateEnumerable<TDst>(Transformer.Transform(view), reuseRowObject: false, ignoreMissingColumns: true).First();
    }
}
