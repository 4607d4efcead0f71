namespace Microsoft.ML.LowRank.Data;

/// <summary>Type conversion transforms (<c>ctx.Transforms.Conversion</c>): value-to-key and key-to-value mapping.</summary>
public sealed class ConversionsCatalog
{
    /// <summary>Creates the catalog (normally reached through the context's <c>Transforms.Conversion</c>).</summary>
    public ConversionsCatalog()
    {
    }

    /// <summary>
    /// Maps the values of a column to keys (1-based <see cref="uint"/>, 0 for missing or unseen values), learning the
    /// dictionary from the training data; typically used to turn a label into a key before a classification trainer.
    /// </summary>
    /// <param name="outputColumnName">The key column to produce.</param>
    /// <param name="inputColumnName">The column to map; <paramref name="outputColumnName"/> when <see langword="null"/>. Text, number or boolean values, or vectors of them.</param>
    /// <param name="maximumNumberOfKeys">The most distinct values to keep; later new values map to 0.</param>
    /// <param name="keyOrdinality">Whether keys follow first occurrence (<see cref="ValueToKeyMappingEstimator.KeyOrdinality.ByOccurrence"/>) or sorted values (<see cref="ValueToKeyMappingEstimator.KeyOrdinality.ByValue"/>).</param>
    /// <param name="addKeyValueAnnotationsAsText">Whether the key values annotation holds the values as text rather than in their own type.</param>
    /// <param name="keyData">A one-column view holding the values to number; when given, the training data is not read.</param>
    /// <returns>The estimator.</returns>
    public ValueToKeyMappingEstimator MapValueToKey(string outputColumnName, string? inputColumnName = null,
        int maximumNumberOfKeys = ValueToKeyMappingEstimator.Defaults.MaximumNumberOfKeys,
        ValueToKeyMappingEstimator.KeyOrdinality keyOrdinality = ValueToKeyMappingEstimator.Defaults.Ordinality,
        bool addKeyValueAnnotationsAsText = ValueToKeyMappingEstimator.Defaults.AddKeyValueAnnotationsAsText,
        IDataView? keyData = null) =>
        new([new InputOutputColumnPair(outputColumnName, inputColumnName)], maximumNumberOfKeys, keyOrdinality, addKeyValueAnnotationsAsText, keyData);

    /// <summary>Maps several columns to keys, each with its own dictionary (see <see cref="MapValueToKey(string, string, int, ValueToKeyMappingEstimator.KeyOrdinality, bool, IDataView)"/>).</summary>
    /// <param name="columns">The (output, input) column pairs.</param>
    /// <param name="maximumNumberOfKeys">The most distinct values to keep per column.</param>
    /// <param name="keyOrdinality">How keys are numbered.</param>
    /// <param name="addKeyValueAnnotationsAsText">Whether the key values annotation holds the values as text.</param>
    /// <param name="keyData">A one-column view holding the values to number, shared by all columns.</param>
    /// <returns>The estimator.</returns>
    public ValueToKeyMappingEstimator MapValueToKey(InputOutputColumnPair[] columns,
        int maximumNumberOfKeys = ValueToKeyMappingEstimator.Defaults.MaximumNumberOfKeys,
        ValueToKeyMappingEstimator.KeyOrdinality keyOrdinality = ValueToKeyMappingEstimator.Defaults.Ordinality,
        bool addKeyValueAnnotationsAsText = ValueToKeyMappingEstimator.Defaults.AddKeyValueAnnotationsAsText,
        IDataView? keyData = null) =>
        new([.. columns ?? throw new ArgumentNullException(nameof(columns))], maximumNumberOfKeys, keyOrdinality, addKeyValueAnnotationsAsText, keyData);

    /// <summary>Maps a key column back to the values behind its keys (its key values annotation).</summary>
    /// <param name="outputColumnName">The value column to produce.</param>
    /// <param name="inputColumnName">The key column; <paramref name="outputColumnName"/> when <see langword="null"/>.</param>
    /// <returns>The estimator.</returns>
    public KeyToValueMappingEstimator MapKeyToValue(string outputColumnName, string? inputColumnName = null) =>
        new([new InputOutputColumnPair(outputColumnName, inputColumnName)]);

    /// <summary>Maps several key columns back to their values.</summary>
    /// <param name="columns">The (output, input) column pairs.</param>
    /// <returns>The estimator.</returns>
    public KeyToValueMappingEstimator MapKeyToValue(InputOutputColumnPair[] columns) =>
        new([.. columns ?? throw new ArgumentNullException(nameof(columns))]);
}
