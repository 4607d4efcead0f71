using System.Diagnostics.CodeAnalysis;
using System.Text;
using System.Text.Json;

namespace Microsoft.ML.LowRank.Data;

/// <summary>One column being read from a file: parses values and stores them.</summary>
internal abstract class LoaderColumn
{
    protected LoaderColumn(string name, DataViewType type)
    {
        Name = name;
        Type = type;
    }

    public string Name { get; }

    public DataViewType Type { get; }

    /// <summary>The field indices to read from a delimited record (set by the text loader).</summary>
    public int[] Fields { get; set; } = [];

    /// <summary>Whether any JSON line had the property (JSON loader).</summary>
    public bool Seen { get; set; }

    /// <summary>Parses the fields of a record; on failure returns the offending field index and text.</summary>
    public abstract bool TryAddFields(List<string> fields, out int badField);

    /// <summary>Reads a JSON value (null element: property absent); on failure returns false.</summary>
    public abstract bool TryAddJson(JsonElement? element);

    public abstract InMemoryColumn Build();

    public static LoaderColumn Create(string name, DataViewType type) =>
        type is VectorDataViewType v
            ? RawTypes.Visit(v.ItemType.RawType, new Factory(name, type, true))
            : RawTypes.Visit(type.RawType, new Factory(name, type, false));

    /// <summary>A short description of the expected value, for error messages.</summary>
    public string Expected => Type switch
    {
        KeyDataViewType k => $"a key (0 to {k.Count})",
        VectorDataViewType { IsKnownSize: true } v => $"a vector of {v.Size} {v.ItemType} values",
        VectorDataViewType v => $"a vector of {v.ItemType} values",
        _ => Type.ToString()!,
    };

    private sealed class Factory(string name, DataViewType type, bool vector) : IRawTypeVisitor<LoaderColumn>
    {
        public LoaderColumn Visit<T>() where T : struct => vector ? new Vector<T>(name, type) : new Scalar<T>(name, type);
    }

    private static bool KeyInRange<T>(DataViewType itemType, in T value) =>
        itemType is not KeyDataViewType key || value is not uint k || k <= key.Count;

    private sealed class Scalar<T>(string name, DataViewType type) : LoaderColumn(name, type)
    {
        private readonly ScalarColumnBuilder<T> _builder = new();

        public override bool TryAddFields(List<string> fields, out int badField)
        {
            badField = Fields[0];
            if (!ValueParsing.TryParse(fields[badField], out T value) || !KeyInRange(Type, value))
                return false;
            _builder.Add(value);
            return true;
        }

        public override bool TryAddJson(JsonElement? element)
        {
            T value = RawTypes.Missing<T>();
            if (element is { } e && (!ValueParsing.TryRead(e, out value) || !KeyInRange(Type, value)))
                return false;
            _builder.Add(value);
            return true;
        }

        public override InMemoryColumn Build() => _builder.Build();
    }

    private sealed class Vector<T>(string name, DataViewType type) : LoaderColumn(name, type)
    {
        private readonly VectorColumnBuilder<T> _builder = new();
        private readonly VectorDataViewType _type = (VectorDataViewType)type;

        public override bool TryAddFields(List<string> fields, out int badField)
        {
            var values = new T[Fields.Length];
            for (int i = 0; i < Fields.Length; i++)
            {
                badField = Fields[i];
                if (!ValueParsing.TryParse(fields[badField], out values[i]) || !KeyInRange(_type.ItemType, values[i]))
                    return false;
            }
            badField = -1;
            _builder.Add(new VBuffer<T>(values.Length, values));
            return true;
        }

        public override bool TryAddJson(JsonElement? element)
        {
            T[] values;
            if (element is not { } e || e.ValueKind == JsonValueKind.Null)
            {
                values = [];
            }
            else if (e.ValueKind == JsonValueKind.Array)
            {
                values = new T[e.GetArrayLength()];
                int i = 0;
                foreach (var item in e.EnumerateArray())
                {
                    if (!ValueParsing.TryRead(item, out values[i]) || !KeyInRange(_type.ItemType, values[i]))
                        return false;
                    i++;
                }
            }
            else
            {
                return false;
            }
            if (_type.IsKnownSize && values.Length != _type.Size)
                return false;
            _builder.Add(new VBuffer<T>(values.Length, values));
            return true;
        }

        public override InMemoryColumn Build() => _builder.Build();
    }
}

/// <summary>Reads delimited text files (TSV/CSV) into memory, with RFC 4180 quoting when allowed.</summary>
internal static class TextFileLoader
{
    public static InMemoryDataView Load<[DynamicallyAccessedMembers(SchemaDefinition.Members)] TInput>(
        string path, char separator, bool hasHeader, bool allowQuoting, bool trimWhitespace)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (separator == '"' || separator == '\r' || separator == '\n')
            throw new ArgumentException($"'{separator}' cannot be a separator.", nameof(separator));
        var definition = SchemaDefinition.Create<TInput>(SchemaDefinition.Direction.Read);
        using var reader = new StreamReader(path, Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        var records = new RecordReader(reader, path, separator, allowQuoting, trimWhitespace);

        var fields = new List<string>();
        List<string>? header = null;
        int headerLine = 0;
        if (hasHeader)
        {
            if (records.Read(fields, out headerLine))
                header = [.. fields.Select(f => f.Trim())];
            else
                header = [];
        }

        var columns = new LoaderColumn[definition.Count];
        int maxField = -1;
        for (int i = 0; i < definition.Count; i++)
        {
            var def = definition[i];
            var column = LoaderColumn.Create(def.ColumnName, def.ColumnType);
            if (def.LoadColumn is { } lc)
            {
                column.Fields = [.. lc.FieldIndices];
            }
            else if (header is not null)
            {
                if (def.ColumnType is VectorDataViewType)
                    throw new InvalidOperationException($"Vector column '{def.ColumnName}' needs [LoadColumn(start, end)] to say which fields of '{path}' it reads.");
                int index = header.FindIndex(h => string.Equals(h, def.ColumnName, StringComparison.OrdinalIgnoreCase));
                if (index < 0)
                    index = header.FindIndex(h => string.Equals(h, def.MemberName, StringComparison.OrdinalIgnoreCase));
                if (index < 0)
                    throw new InvalidOperationException(
                        $"Column '{def.ColumnName}' is not in the header of '{path}' (line {headerLine}: {string.Join(", ", header.Select(h => $"'{h}'"))}); add [LoadColumn(index)] or rename it with [ColumnName].");
                column.Fields = [index];
            }
            else
            {
                throw new InvalidOperationException(
                    $"Member '{def.MemberName}' of {typeof(TInput).Name} has no [LoadColumn] attribute and '{path}' is read without a header, so its field is unknown.");
            }
            if (column.Type is VectorDataViewType { IsKnownSize: true } vt && vt.Size != column.Fields.Length)
                throw new InvalidOperationException($"Column '{def.ColumnName}' is a vector of size {vt.Size} but reads {column.Fields.Length} fields.");
            maxField = Math.Max(maxField, column.Fields.Max());
            columns[i] = column;
        }

        int rows = 0;
        while (records.Read(fields, out int line))
        {
            if (fields.Count <= maxField)
            {
                var short_ = columns.First(c => c.Fields.Max() >= fields.Count);
                throw new FormatException(
                    $"{path}, line {line}: the record has {fields.Count} field(s), but column '{short_.Name}' reads field {short_.Fields.Max() + 1}.");
            }
            foreach (var c in columns)
            {
                if (!c.TryAddFields(fields, out int bad))
                    throw new FormatException(
                        $"{path}, line {line}, field {bad + 1}: cannot parse '{Shorten(fields[bad])}' as {c.Expected} for column '{c.Name}'.");
            }
            rows++;
        }

        var builder = new DataViewSchema.Builder();
        foreach (var c in columns)
            builder.AddColumn(c.Name, c.Type);
        return new InMemoryDataView(builder.ToSchema(), [.. columns.Select(c => c.Build())], rows);
    }

    internal static string Shorten(string s) => s.Length <= 60 ? s : string.Concat(s.AsSpan(0, 57), "...");

    /// <summary>Splits a character stream into records of fields.</summary>
    internal sealed class RecordReader(TextReader reader, string path, char separator, bool allowQuoting, bool trimWhitespace)
    {
        private readonly StringBuilder _field = new();
        private int _line = 1;

        /// <summary>Reads the next non-empty record; <paramref name="startLine"/> is the 1-based line it starts on.</summary>
        public bool Read(List<string> fields, out int startLine)
        {
            while (true)
            {
                fields.Clear();
                startLine = _line;
                bool any = ReadRecord(fields, out bool blank);
                if (!any)
                    return false;
                if (!blank)
                    return true;
            }
        }

        private bool ReadRecord(List<string> fields, out bool blank)
        {
            _field.Clear();
            blank = false;
            bool quoted = false;      // the current field started with a quote
            bool inQuotes = false;    // inside the quoted part
            bool afterQuote = false;  // the closing quote was seen
            int quoteLine = 0;
            bool readAnything = false;
            while (true)
            {
                int c = reader.Read();
                if (c < 0)
                {
                    if (inQuotes)
                        throw new FormatException($"{path}, line {quoteLine}: a quoted field is not closed before the end of the file.");
                    if (!readAnything)
                        return false;
                    EndField(fields, quoted);
                    blank = fields.Count == 1 && fields[0].Length == 0 && !quoted;
                    return true;
                }
                readAnything = true;
                char ch = (char)c;
                if (inQuotes)
                {
                    if (ch == '"')
                    {
                        if (reader.Peek() == '"')
                        {
                            reader.Read();
                            _field.Append('"');
                        }
                        else
                        {
                            inQuotes = false;
                            afterQuote = true;
                        }
                    }
                    else
                    {
                        if (ch == '\n' || (ch == '\r' && reader.Peek() != '\n'))
                            _line++;
                        _field.Append(ch);
                    }
                    continue;
                }
                if (ch == separator)
                {
                    EndField(fields, quoted);
                    quoted = afterQuote = false;
                    continue;
                }
                if (ch == '\r' || ch == '\n')
                {
                    if (ch == '\r' && reader.Peek() == '\n')
                        reader.Read();
                    _line++;
                    EndField(fields, quoted);
                    blank = fields.Count == 1 && fields[0].Length == 0 && !quoted;
                    return true;
                }
                if (afterQuote)
                {
                    if (trimWhitespace && (ch == ' ' || ch == '\t'))
                        continue;
                    throw new FormatException(
                        $"{path}, line {_line}, field {fields.Count + 1}: unexpected character '{ch}' after the closing quote of a quoted field (use \"\" for a quote inside quotes).");
                }
                if (ch == '"' && allowQuoting && !quoted && (_field.Length == 0 || (trimWhitespace && IsBlank(_field))))
                {
                    _field.Clear();
                    quoted = inQuotes = true;
                    quoteLine = _line;
                    continue;
                }
                _field.Append(ch);
            }
        }

        private void EndField(List<string> fields, bool quoted)
        {
            string value = _field.ToString();
            if (trimWhitespace && !quoted)
                value = value.Trim(' ', '\t');
            fields.Add(value);
            _field.Clear();
        }

        private static bool IsBlank(StringBuilder sb)
        {
            for (int i = 0; i < sb.Length; i++)
            {
                if (sb[i] != ' ' && sb[i] != '\t')
                    return false;
            }
            return true;
        }
    }
}

/// <summary>Reads JSON Lines files (one object per line) into memory.</summary>
internal static class JsonLinesLoader
{
    public static InMemoryDataView Load<[DynamicallyAccessedMembers(SchemaDefinition.Members)] TInput>(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var definition = SchemaDefinition.Create<TInput>(SchemaDefinition.Direction.Read);
        var columns = definition.Select(d => LoaderColumn.Create(d.ColumnName, d.ColumnType)).ToArray();
        var memberNames = definition.Select(d => d.MemberName).ToArray();
        var properties = new Dictionary<string, JsonElement>(StringComparer.OrdinalIgnoreCase);
        int rows = 0;
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
                continue;
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(line);
            }
            catch (JsonException ex)
            {
                throw new FormatException($"{path}, line {lineNumber}: invalid JSON: {ex.Message}", ex);
            }
            using (doc)
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                    throw new FormatException($"{path}, line {lineNumber}: expected a JSON object but found {doc.RootElement.ValueKind}.");
                properties.Clear();
                foreach (var p in doc.RootElement.EnumerateObject())
                    properties[p.Name] = p.Value;
                for (int i = 0; i < columns.Length; i++)
                {
                    var c = columns[i];
                    JsonElement? value = null;
                    if (properties.TryGetValue(c.Name, out var e) || properties.TryGetValue(memberNames[i], out e))
                    {
                        value = e;
                        c.Seen = true;
                    }
                    if (!c.TryAddJson(value))
                        throw new FormatException(
                            $"{path}, line {lineNumber}: cannot read {TextFileLoader.Shorten(value!.Value.GetRawText())} as {c.Expected} for column '{c.Name}'.");
                }
            }
            rows++;
        }
        if (rows > 0 && columns.FirstOrDefault(c => !c.Seen) is { } missing)
            throw new InvalidOperationException($"Column '{missing.Name}' is not a property of any object in '{path}'.");

        var builder = new DataViewSchema.Builder();
        foreach (var c in columns)
            builder.AddColumn(c.Name, c.Type);
        return new InMemoryDataView(builder.ToSchema(), [.. columns.Select(c => c.Build())], rows);
    }
}
