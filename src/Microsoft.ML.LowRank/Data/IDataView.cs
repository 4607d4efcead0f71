namespace Microsoft.ML.LowRank.Data;

/// <summary>Reads the value of one column of the current row into <paramref name="value"/>. A getter may reuse the
/// buffers of the value it is given (see <see cref="VBuffer{T}"/>).</summary>
/// <typeparam name="TValue">The column's raw type.</typeparam>
/// <param name="value">Receives the value.</param>
public delegate void ValueGetter<TValue>(ref TValue value);

/// <summary>
/// A set of rows with a fixed <see cref="Schema"/>, read through cursors. Views are immutable and repeatable:
/// two cursors requested with the same arguments see the same rows in the same order. Computation is lazy:
/// a transformed view computes only the active columns, row by row, as a cursor moves.
/// </summary>
public interface IDataView
{
    /// <summary>Whether <see cref="GetRowCursor"/> honours its <c>rand</c> argument by returning the rows in a random order.</summary>
    bool CanShuffle { get; }

    /// <summary>The columns of every row.</summary>
    DataViewSchema Schema { get; }

    /// <summary>The number of rows when it is known without a pass over the data; otherwise <see langword="null"/>.</summary>
    /// <returns>The row count, or <see langword="null"/>.</returns>
    long? GetRowCount();

    /// <summary>Opens a cursor over the rows.</summary>
    /// <param name="columnsNeeded">The columns whose getters will be requested; only these are computed.</param>
    /// <param name="rand">When given and <see cref="CanShuffle"/> is true, the rows come in an order drawn from it.</param>
    /// <returns>A cursor positioned before the first row.</returns>
    DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null);

    /// <summary>Opens up to <paramref name="n"/> cursors that together cover every row once (for parallel reading).</summary>
    /// <param name="columnsNeeded">The columns whose getters will be requested.</param>
    /// <param name="n">The suggested number of cursors.</param>
    /// <param name="rand">An optional source of randomness for the row order.</param>
    /// <returns>One or more cursors.</returns>
    DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null);
}

/// <summary>A 128-bit row identifier, stable for a row across cursors of the same view.</summary>
/// <param name="Low">The low 64 bits.</param>
/// <param name="High">The high 64 bits.</param>
public readonly record struct DataViewRowId(ulong Low, ulong High)
{
    /// <inheritdoc/>
    public override string ToString() => High == 0 ? Low.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"{High:X16}{Low:X16}";
}

/// <summary>A row of an <see cref="IDataView"/>: the values of its active columns, read through getters.</summary>
public abstract class DataViewRow : IDisposable
{
    /// <summary>The 0-based index of the current row in this cursor's sequence; -1 before the first row.</summary>
    public abstract long Position { get; }

    /// <summary>Which cursor of a cursor set this row comes from (0 for a single cursor).</summary>
    public abstract long Batch { get; }

    /// <summary>The schema of the row.</summary>
    public abstract DataViewSchema Schema { get; }

    /// <summary>Whether <paramref name="column"/> was requested when the cursor was opened (only active columns have getters).</summary>
    /// <param name="column">A column of <see cref="Schema"/>.</param>
    /// <returns><see langword="true"/> when the column is active.</returns>
    public abstract bool IsColumnActive(DataViewSchema.Column column);

    /// <summary>Gets a delegate that reads <paramref name="column"/> of the current row.</summary>
    /// <typeparam name="TValue">The column's raw type (<see cref="DataViewType.RawType"/>); <see cref="string"/> is also accepted for text.</typeparam>
    /// <param name="column">An active column of <see cref="Schema"/>.</param>
    /// <returns>The getter.</returns>
    /// <exception cref="InvalidOperationException">When the column is not active or <typeparamref name="TValue"/> does not match its type.</exception>
    /// <exception cref="ArgumentOutOfRangeException">When the column does not belong to this row's schema.</exception>
    public abstract ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column);

    /// <summary>Gets a delegate that reads the identifier of the current row.</summary>
    /// <returns>The id getter.</returns>
    public abstract ValueGetter<DataViewRowId> GetIdGetter();

    /// <summary>Releases the cursor's resources.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases resources; overridden by cursors that hold any.</summary>
    /// <param name="disposing">True when called from <see cref="Dispose()"/>.</param>
    protected virtual void Dispose(bool disposing)
    {
    }
}

/// <summary>A forward-only cursor over the rows of an <see cref="IDataView"/>. It starts before the first row; call
/// <see cref="MoveNext"/> until it returns <see langword="false"/>. A cursor is meant for one thread.</summary>
public abstract class DataViewRowCursor : DataViewRow
{
    /// <summary>Advances to the next row.</summary>
    /// <returns><see langword="true"/> when there is a current row; <see langword="false"/> at the end (and on every later call).</returns>
    public abstract bool MoveNext();
}
