using Microsoft.ML.LowRank.Data;

namespace Microsoft.ML.LowRank;

/// <summary>
/// Something that learns a transformation from data: <see cref="Fit"/> trains on a data view and returns the
/// <see cref="ITransformer"/> that applies it. Estimators are chained with
/// <see cref="LearningPipelineExtensions.Append{TTrans}(IEstimator{ITransformer}, IEstimator{TTrans})"/>.
/// </summary>
/// <typeparam name="TTransformer">The type of transformer <see cref="Fit"/> returns.</typeparam>
public interface IEstimator<out TTransformer>
    where TTransformer : ITransformer
{
    /// <summary>Trains on <paramref name="input"/>.</summary>
    /// <param name="input">The training data.</param>
    /// <returns>The trained transformer.</returns>
    TTransformer Fit(IDataView input);

    /// <summary>
    /// Describes the columns the fitted transformer will produce for input columns shaped like
    /// <paramref name="inputSchema"/>, without training. Throws when the input does not fit (a column is missing
    /// or has the wrong type), so a pipeline can be checked before it is trained.
    /// </summary>
    /// <param name="inputSchema">The shape of the input columns.</param>
    /// <returns>The shape of the output columns.</returns>
    SchemaShape GetOutputSchema(SchemaShape inputSchema);
}

/// <summary>
/// A trained transformation of data views. <see cref="Transform"/> is lazy: it checks the schema and returns a view
/// whose rows are computed when a cursor reads them.
/// </summary>
public interface ITransformer
{
    /// <summary>Whether the transformer maps each input row to one output row on its own (no look at other rows).</summary>
    bool IsRowToRowMapper { get; }

    /// <summary>The schema <see cref="Transform"/> would produce for an input with <paramref name="inputSchema"/>.</summary>
    /// <param name="inputSchema">The input schema.</param>
    /// <returns>The output schema.</returns>
    DataViewSchema GetOutputSchema(DataViewSchema inputSchema);

    /// <summary>Applies the transformation (lazily).</summary>
    /// <param name="input">The input data.</param>
    /// <returns>The transformed data.</returns>
    IDataView Transform(IDataView input);
}

/// <summary>An output column name with the input column it is computed from, for multi-column transforms.</summary>
public sealed class InputOutputColumnPair
{
    /// <summary>Creates a pair.</summary>
    /// <param name="outputColumnName">The name of the produced column.</param>
    /// <param name="inputColumnName">The name of the source column; <paramref name="outputColumnName"/> when <see langword="null"/>.</param>
    public InputOutputColumnPair(string outputColumnName, string? inputColumnName = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(outputColumnName);
        OutputColumnName = outputColumnName;
        InputColumnName = inputColumnName ?? outputColumnName;
    }

    /// <summary>The name of the produced column.</summary>
    public string OutputColumnName { get; }

    /// <summary>The name of the source column.</summary>
    public string InputColumnName { get; }
}
