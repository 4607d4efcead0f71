using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text.Json;
using System.Text.Unicode;
using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

/// <summary>
/// A safetensors file opened for reading through a read-only memory mapping. <see cref="Open"/> validates the
/// whole header (dtypes, shapes, offsets, coverage of the data buffer) before returning, so every entry it
/// exposes can be read safely. Tensors created by <see cref="LoadTensor"/> own a copy of their data and stay
/// valid after the file is disposed; spans and streams over the mapping (<see cref="GetBytes"/>,
/// <see cref="OpenRead"/>) do not.
/// </summary>
/// <remarks>
/// Layout: an 8-byte little-endian unsigned header length N, N bytes of UTF-8 JSON (possibly padded with
/// spaces), then the data buffer. The JSON maps each tensor name to
/// <c>{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}</c>, with offsets relative to the start
/// of the data buffer, and may hold a <c>"__metadata__"</c> object of string values. As the format requires,
/// the tensors must cover the data buffer exactly: no overlaps, no holes, no trailing bytes. Unknown fields
/// inside an entry are ignored. Reading (not disposing) is safe from several threads at once. The file must
/// not be truncated by another process while it is open.
/// </remarks>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>The largest header accepted, in bytes (the limit of the reference implementation).</summary>
    public const long MaxHeaderLength = 100_000_000;

    internal const string MetadataKey = "__metadata__";

    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _base;
    private readonly SafetensorsEntry[] _entries;
    private readonly Dictionary<string, SafetensorsEntry> _byName;
    private readonly Dictionary<string, string> _metadata;

    private SafetensorsFile(string path, long length, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* basePointer)
    {
        FilePath = path;
        FileLength = length;
        _map = map;
        _view = view;
        _base = basePointer;
        (_entries, _metadata, DataStart) = ParseHeader(path, basePointer, length);
        _byName = new Dictionary<string, SafetensorsEntry>(_entries.Length, StringComparer.Ordinal);
        foreach (var e in _entries) _byName.Add(e.Name, e);
    }

    /// <summary>Opens and validates a safetensors file.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The open file; dispose it to release the mapping.</returns>
    /// <exception cref="SafetensorsException">The file is not a valid safetensors file.</exception>
    public static SafetensorsFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = Path.GetFullPath(path);
        var stream = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 1);
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        bool acquired = false;
        try
        {
            long length = stream.Length;
            if (length < 8)
                throw new SafetensorsException(full, null, $"the file is {length} bytes long, shorter than the 8-byte header length prefix");
            map = MemoryMappedFile.CreateFromFile(stream, mapName: null, capacity: 0, MemoryMappedFileAccess.Read,
                HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            acquired = true;
            return new SafetensorsFile(full, length, map, view, p + view.PointerOffset);
        }
        catch
        {
            if (acquired) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            if (map is not null) map.Dispose();
            else stream.Dispose();
            throw;
        }
    }

    /// <summary>The full path of the file.</summary>
    public string FilePath { get; }

    /// <summary>The length of the file in bytes.</summary>
    public long FileLength { get; }

    /// <summary>Offset in the file of the data buffer (8 plus the header length).</summary>
    public long DataStart { get; }

    /// <summary>Length in bytes of the data buffer.</summary>
    public long DataLength => FileLength - DataStart;

    /// <summary>The <c>__metadata__</c> of the header (empty when there is none).</summary>
    public IReadOnlyDictionary<string, string> Metadata => _metadata;

    /// <summary>The tensors of the file, in the order of their data in the file.</summary>
    public IReadOnlyList<SafetensorsEntry> Entries => _entries;

    /// <summary>The tensor names, in the order of their data in the file.</summary>
    public IEnumerable<string> Names => _entries.Select(e => e.Name);

    /// <summary>Whether the file holds a tensor named <paramref name="name"/>.</summary>
    /// <param name="name">The tensor name.</param>
    /// <returns>True when it does.</returns>
    public bool Contains(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _byName.ContainsKey(name);
    }

    /// <summary>The header entry of the tensor named <paramref name="name"/>.</summary>
    /// <param name="name">The tensor name.</param>
    /// <returns>The entry.</returns>
    /// <exception cref="KeyNotFoundException">The file holds no such tensor.</exception>
    public SafetensorsEntry GetEntry(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        ObjectDisposedException.ThrowIf(_base is null, this);
        if (_byName.TryGetValue(name, out var e)) return e;
        throw new KeyNotFoundException($"safetensors file '{FilePath}' holds no tensor named '{name}'");
    }

    /// <summary>
    /// The raw little-endian bytes of a tensor, read directly from the mapping. The span is valid only until the
    /// file is disposed.
    /// </summary>
    /// <param name="name">The tensor name.</param>
    /// <returns>The bytes.</returns>
    /// <exception cref="InvalidOperationException">The tensor is 2 GiB or larger; use <see cref="OpenRead"/>.</exception>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        var e = GetEntry(name);
        if (e.Length > int.MaxValue)
            throw new InvalidOperationException($"tensor '{name}' holds {e.Length} bytes, too many for a span; use OpenRead");
        return new ReadOnlySpan<byte>(DataPointer(e), (int)e.Length);
    }

    /// <summary>A copy of the raw little-endian bytes of a tensor.</summary>
    /// <param name="name">The tensor name.</param>
    /// <returns>The bytes.</returns>
    public byte[] ReadBytes(string name) => GetBytes(name).ToArray();

    /// <summary>
    /// A read-only stream over the raw bytes of a tensor (for tensors of any size). The stream reads the mapping
    /// and must not be used after the file is disposed.
    /// </summary>
    /// <param name="name">The tensor name.</param>
    /// <returns>The stream.</returns>
    public Stream OpenRead(string name)
    {
        var e = GetEntry(name);
        return new UnmanagedMemoryStream(DataPointer(e), e.Length, e.Length, FileAccess.Read);
    }

    /// <summary>
    /// Creates a tensor holding a copy of a stored tensor, optionally converted to another element type and
    /// moved to another device. The tensor belongs to the innermost open <see cref="DisposeScope"/>.
    /// </summary>
    /// <param name="name">The tensor name.</param>
    /// <param name="dtype">Convert to this element type (default: the stored type).</param>
    /// <param name="device">Move to this device (default: CPU).</param>
    /// <returns>The tensor.</returns>
    /// <exception cref="KeyNotFoundException">The file holds no such tensor.</exception>
    /// <exception cref="SafetensorsException">A BOOL tensor holds a byte other than 0 or 1.</exception>
    public torch.Tensor LoadTensor(string name, ScalarType? dtype = null, Device? device = null)
    {
        var e = GetEntry(name);
        EnsureLittleEndian();
        byte* p = DataPointer(e);
        if (e.DType == ScalarType.Bool)
        {
            var bytes = new ReadOnlySpan<byte>(p, checked((int)e.Length));
            int bad = bytes.IndexOfAnyExcept((byte)0, (byte)1);
            if (bad >= 0)
                throw new SafetensorsException(FilePath, name, $"BOOL element {bad} is the byte 0x{bytes[bad]:X2}; only 0 and 1 are valid");
        }
        var shape = e.ShapeNoCopy;
        torch.Tensor t;
        fixed (long* s = shape)
            t = torch.Tensor.Wrap(NativeMethods.lr_tensor_from_data(p, s, shape.Length, (int)e.DType, 0));
        bool convert = dtype.HasValue && dtype.Value != e.DType;
        bool move = device is not null && device.type != DeviceType.CPU;
        if (!convert && !move) return t;
        using (t)
        {
            if (convert && move) return t.to(dtype!.Value, device!);
            return convert ? t.to_type(dtype!.Value) : t.to(device!);
        }
    }

    /// <summary>Loads every tensor of the file (see <see cref="LoadTensor"/>), in the order of their data.</summary>
    /// <param name="dtype">Convert every tensor to this element type (default: the stored types).</param>
    /// <param name="device">Move every tensor to this device (default: CPU).</param>
    /// <returns>The tensors by name.</returns>
    public Dictionary<string, torch.Tensor> LoadAll(ScalarType? dtype = null, Device? device = null)
    {
        var result = new Dictionary<string, torch.Tensor>(_entries.Length, StringComparer.Ordinal);
        try
        {
            foreach (var e in _entries) result.Add(e.Name, LoadTensor(e.Name, dtype, device));
            return result;
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
    }

    /// <summary>Releases the memory mapping.</summary>
    public void Dispose()
    {
        if (_base is null) return;
        _base = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => $"SafetensorsFile('{FilePath}', {_entries.Length} tensors)";

    private byte* DataPointer(SafetensorsEntry e)
    {
        var b = _base;
        ObjectDisposedException.ThrowIf(b is null, this);
        return b + DataStart + e.Offset;
    }

    internal static void EnsureLittleEndian()
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors data is little-endian; big-endian hosts are not supported");
    }

    // ------------------------------------------------------------------ header parsing

    private static (SafetensorsEntry[] entries, Dictionary<string, string> metadata, long dataStart) ParseHeader(
        string path, byte* basePointer, long fileLength)
    {
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(basePointer, 8));
        if (n > (ulong)(fileLength - 8))
            throw new SafetensorsException(path, null,
                $"the header length {n} exceeds the {fileLength - 8} bytes that follow the length prefix (truncated file, or not a safetensors file)");
        if (n > MaxHeaderLength)
            throw new SafetensorsException(path, null, $"the header length {n} exceeds the limit of {MaxHeaderLength} bytes");
        if (n < 2)
            throw new SafetensorsException(path, null, $"the header length {n} is too short to hold a JSON object");

        var header = new ReadOnlySpan<byte>(basePointer + 8, (int)n);
        if (header[0] != (byte)'{')
            throw new SafetensorsException(path, null, $"the header does not start with '{{' (first byte 0x{header[0]:X2}); not a safetensors file");
        if (!Utf8.IsValid(header))
            throw new SafetensorsException(path, null, "the header is not valid UTF-8");

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header.ToArray());
        }
        catch (JsonException ex)
        {
            throw new SafetensorsException(path, null, $"the header is not valid JSON: {ex.Message}", ex);
        }

        long dataStart = 8 + (long)n;
        long dataLength = fileLength - dataStart;
        var entries = new List<SafetensorsEntry>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new SafetensorsException(path, null, $"the header is a JSON {Kind(root)}, not an object");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in root.EnumerateObject())
            {
                var name = prop.Name;
                if (!seen.Add(name))
                    throw new SafetensorsException(path, name, "the name appears more than once in the header (duplicate tensor names)");
                if (name == MetadataKey) ParseMetadata(path, prop.Value, metadata);
                else entries.Add(ParseEntry(path, name, prop.Value));
            }
        }

        // Entries in data order; ties (empty tensors at the same offset) by name, for determinism.
        entries.Sort((a, b) =>
        {
            int c = a.Offset.CompareTo(b.Offset);
            if (c == 0) c = (a.Offset + a.Length).CompareTo(b.Offset + b.Length);
            return c != 0 ? c : string.CompareOrdinal(a.Name, b.Name);
        });
        long covered = 0;
        SafetensorsEntry? previous = null;
        foreach (var e in entries)
        {
            long end = e.Offset + e.Length;
            if (end > dataLength)
                throw new SafetensorsException(path, e.Name,
                    $"data_offsets [{e.Offset}, {end}] extend beyond the data buffer of {dataLength} bytes (truncated file?)");
            if (e.Offset < covered)
                throw new SafetensorsException(path, e.Name,
                    $"data_offsets [{e.Offset}, {end}] overlap tensor '{previous!.Name}' at [{previous.Offset}, {previous.Offset + previous.Length}]");
            if (e.Offset > covered)
                throw new SafetensorsException(path, e.Name,
                    $"data_offsets [{e.Offset}, {end}] leave a hole: bytes [{covered}, {e.Offset}) of the data buffer belong to no tensor");
            covered = end;
            previous = e;
        }
        if (covered != dataLength)
            throw new SafetensorsException(path, null,
                $"the data buffer holds {dataLength} bytes but the tensors cover only {covered}; {dataLength - covered} trailing bytes belong to no tensor");
        return (entries.ToArray(), metadata, dataStart);
    }

    private static void ParseMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafetensorsException(path, null, $"{MetadataKey} is a JSON {Kind(value)}, not an object of strings");
        foreach (var kv in value.EnumerateObject())
        {
            if (kv.Value.ValueKind != JsonValueKind.String)
                throw new SafetensorsException(path, null, $"{MetadataKey} value of key '{kv.Name}' is a JSON {Kind(kv.Value)}, not a string");
            if (!metadata.TryAdd(kv.Name, kv.Value.GetString()!))
                throw new SafetensorsException(path, null, $"{MetadataKey} key '{kv.Name}' appears more than once");
        }
    }

    private static SafetensorsEntry ParseEntry(string path, string name, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafetensorsException(path, name, $"the header entry is a JSON {Kind(value)}, not an object");
        string? dtypeName = null;
        long[]? shape = null;
        long[]? offsets = null;
        foreach (var f in value.EnumerateObject())
        {
            switch (f.Name)
            {
                case "dtype":
                    if (dtypeName is not null) throw Duplicate();
                    if (f.Value.ValueKind != JsonValueKind.String)
                        throw new SafetensorsException(path, name, $"dtype is a JSON {Kind(f.Value)}, not a string");
                    dtypeName = f.Value.GetString()!;
                    break;
                case "shape":
                    if (shape is not null) throw Duplicate();
                    shape = ReadIntegers(path, name, "shape", f.Value);
                    break;
                case "data_offsets":
                    if (offsets is not null) throw Duplicate();
                    offsets = ReadIntegers(path, name, "data_offsets", f.Value);
                    break;
            }

            SafetensorsException Duplicate() => new(path, name, $"the field '{f.Name}' appears more than once");
        }
        if (dtypeName is null) throw new SafetensorsException(path, name, "the entry has no 'dtype'");
        if (shape is null) throw new SafetensorsException(path, name, "the entry has no 'shape'");
        if (offsets is null) throw new SafetensorsException(path, name, "the entry has no 'data_offsets'");

        if (!Safetensors.TryParseDType(dtypeName, out var dtype))
            throw new SafetensorsException(path, name,
                $"unknown or unsupported dtype '{dtypeName}' (supported: {string.Join(", ", Safetensors.SupportedDTypeNames)})");
        foreach (var d in shape)
            if (d < 0) throw new SafetensorsException(path, name, $"negative dimension {d} in shape [{string.Join(", ", shape)}]");
        if (offsets.Length != 2)
            throw new SafetensorsException(path, name, $"data_offsets has {offsets.Length} values, expected [begin, end]");
        long begin = offsets[0], end = offsets[1];
        if (begin < 0 || end < 0)
            throw new SafetensorsException(path, name, $"negative value in data_offsets [{begin}, {end}]");
        if (begin > end)
            throw new SafetensorsException(path, name, $"data_offsets [{begin}, {end}] are out of order: begin is after end");

        long numel = 1, nbytes;
        try
        {
            foreach (var d in shape) numel = checked(numel * d);
            nbytes = checked(numel * dtype.ElementSize());
        }
        catch (OverflowException)
        {
            throw new SafetensorsException(path, name, $"shape [{string.Join(", ", shape)}] of {dtypeName} is too large: its byte size overflows 64 bits");
        }
        if (end - begin != nbytes)
            throw new SafetensorsException(path, name,
                $"data_offsets [{begin}, {end}] span {end - begin} bytes but shape [{string.Join(", ", shape)}] of {dtypeName} needs {numel} x {dtype.ElementSize()} = {nbytes} bytes");
        return new SafetensorsEntry(name, dtype, shape, numel, begin, end - begin);
    }

    private static long[] ReadIntegers(string path, string name, string field, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Array)
            throw new SafetensorsException(path, name, $"{field} is a JSON {Kind(value)}, not an array of integers");
        var result = new long[value.GetArrayLength()];
        int i = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out var v))
                throw new SafetensorsException(path, name, $"{field} element {i} ({item.GetRawText()}) is not a 64-bit integer");
            result[i++] = v;
        }
        return result;
    }

    private static string Kind(JsonElement e) => e.ValueKind.ToString().ToLowerInvariant();
}
