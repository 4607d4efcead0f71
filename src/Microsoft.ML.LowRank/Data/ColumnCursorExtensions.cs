namespace Microsoft.ML.LowRank.Data;

/// <summary>Reads a whole column of a data view, as in ML.NET.</summary>
public static class ColumnCursorExtensions
{
    /// <summary>Enumerates the values of the column named <paramref name="columnName"/>.</summary>
    /// <typeparam name="T">The raw type of the column, or a friendlier equivalent: <see cref="string"/> for text, an array (e.g. <c>float[]</c>) for a vector.</typeparam>
    /// <param name="data">The data.</param>
    /// <param name="columnName">The column name.</param>
    /// <returns>The values, read lazily (each enumeration opens a cursor).</returns>
    /// <exception cref="ArgumentOutOfRangeException">When there is no such column.</exception>
    /// <exception cref="InvalidOperationException">When <typeparamref name="T"/> does not fit the column type.</exception>
    public static IEnumerable<T> GetColumn<T>(this IDataView data, string columnName)
    {
        ArgumentNullException.ThrowIfNull(data);
        return RowObjectReader.GetColumn<T>(data, data.Schema[columnName]);
    }

    /// <summary>Enumerates the values of <paramref name="column"/>.</summary>
    /// <typeparam name="T">The raw type of the column, or <see cref="string"/> for text, or an array for a vector.</typeparam>
    /// <param name="data">The data.</param>
    /// <param name="column">A column of <paramref name="data"/>'s schema.</param>
    /// <returns>The values, read lazily.</returns>
    public static IEnumerable<T> GetColumn<T>(this IDataView data, DataViewSchema.Column column) => RowObjectReader.GetColumn<T>(data, column);
}
