using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json;

namespace Microsoft.ML.LowRank.Torch;

/// <summary>
/// Reads and writes the safetensors format: an 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range, then the raw little-endian tensor data. See <see cref="SafetensorsFile"/>
/// for reading a file lazily.
/// </summary>
public static class Safetensors
{
    private const int WriteChunk = 1 << 30;

    private static readonly (string Name, ScalarType Type)[] s_dtypes =
    {
        ("F64", ScalarType.Float64), ("F32", ScalarType.Float32), ("F16", ScalarType.Float16),
        ("BF16", ScalarType.BFloat16), ("I64", ScalarType.Int64), ("I32", ScalarType.Int32),
        ("I16", ScalarType.Int16), ("I8", ScalarType.Int8), ("U8", ScalarType.Byte), ("BOOL", ScalarType.Bool),
    };

    /// <summary>Test hook: called on the writing thread before each tensor's data is written.</summary>
    [ThreadStatic] internal static Action<string>? t_beforeTensorData;

    /// <summary>The safetensors dtype names this library reads and writes.</summary>
    public static IReadOnlyList<string> SupportedDTypeNames { get; } = s_dtypes.Select(d => d.Name).ToArray();

    /// <summary>The safetensors name of an element type ("F32", "BF16", "BOOL", ...).</summary>
    /// <param name="type">The element type.</param>
    /// <returns>The name.</returns>
    public static string DTypeName(ScalarType type)
    {
        foreach (var (n, t) in s_dtypes) if (t == type) return n;
        throw new ArgumentOutOfRangeException(nameof(type), type, "no safetensors dtype for this element type");
    }

    /// <summary>Parses a safetensors dtype name (case-sensitive, as in the format).</summary>
    /// <param name="name">The name, e.g. "F16".</param>
    /// <param name="type">The element type, when known.</param>
    /// <returns>True when the name is a supported dtype.</returns>
    public static bool TryParseDType(string name, out ScalarType type)
    {
        ArgumentNullException.ThrowIfNull(name);
        foreach (var (n, t) in s_dtypes)
        {
            if (n == name) { type = t; return true; }
        }
        type = default;
        return false;
    }

    /// <summary>Loads every tensor of a safetensors file.</summary>
    /// <param name="path">The file.</param>
    /// <param name="dtype">Convert every tensor to this element type (default: the stored types).</param>
    /// <param name="device">Move every tensor to this device (default: CPU).</param>
    /// <returns>The tensors by name, in the order of their data in the file.</returns>
    /// <exception cref="SafetensorsException">The file is not a valid safetensors file.</exception>
    public static Dictionary<string, torch.Tensor> Load(string path, ScalarType? dtype = null, Device? device = null)
    {
        using var file = SafetensorsFile.Open(path);
        return file.LoadAll(dtype, device);
    }

    /// <summary>
    /// Writes tensors to a safetensors file. Tensors are written in ordinal order of their names, contiguously;
    /// the header is padded with spaces so that the data starts at a multiple of 8 bytes. The file is written to
    /// a temporary file in the same folder that then replaces <paramref name="path"/>, so a failure part-way
    /// leaves any existing file untouched. Tensors on any device are copied to host memory, one at a time.
    /// </summary>
    /// <param name="path">The file to create or replace.</param>
    /// <param name="tensors">Name and tensor pairs; names must be unique and not <c>__metadata__</c>.</param>
    /// <param name="metadata">Optional string metadata, stored as <c>__metadata__</c> (keys in ordinal order).</param>
    /// <exception cref="ArgumentException">A name is duplicated or reserved, a tensor is null or disposed, or
    /// a tensor lives on the meta device.</exception>
    public static void Save(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);
        SafetensorsFile.EnsureLittleEndian();
        var full = Path.GetFullPath(path);

        // Gather and validate everything before touching the disk.
        var items = new List<Item>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in tensors)
        {
            if (name is null) throw new ArgumentException("a tensor name is null", nameof(tensors));
            if (name == SafetensorsFile.MetadataKey)
                throw new ArgumentException($"'{SafetensorsFile.MetadataKey}' is reserved for metadata and cannot name a tensor", nameof(tensors));
            if (tensor is null) throw new ArgumentException($"tensor '{name}' is null", nameof(tensors));
            if (tensor.IsInvalid) throw new ArgumentException($"tensor '{name}' has been disposed", nameof(tensors));
            if (!names.Add(name)) throw new ArgumentException($"tensor name '{name}' appears more than once", nameof(tensors));
            if (tensor.device_type == DeviceType.META)
                throw new ArgumentException($"tensor '{name}' lives on the meta device and has no data to save", nameof(tensors));
            var dtype = tensor.dtype;
            var shape = tensor.shape;
            long numel = 1;
            foreach (var d in shape) numel = checked(numel * d);
            items.Add(new Item(name, tensor, DTypeName(dtype), shape, checked(numel * dtype.ElementSize())));
        }
        items.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        var header = BuildHeader(items, metadata);

        var directory = Path.GetDirectoryName(full) ?? ".";
        var temp = Path.Combine(directory, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 16))
            {
                Span<byte> prefix = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
                stream.Write(prefix);
                stream.Write(header);
                foreach (var item in items)
                {
                    t_beforeTensorData?.Invoke(item.Name);
                    WriteData(stream, item);
                }
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    private sealed record Item(string Name, torch.Tensor Tensor, string DType, long[] Shape, long Bytes);

    private static byte[] BuildHeader(List<Item> items, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject(SafetensorsFile.MetadataKey);
                foreach (var kv in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    if (kv.Value is null) throw new ArgumentException($"metadata value of key '{kv.Key}' is null", nameof(metadata));
                    w.WriteString(kv.Key, kv.Value);
                }
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var item in items)
            {
                w.WriteStartObject(item.Name);
                w.WriteString("dtype", item.DType);
                w.WriteStartArray("shape");
                foreach (var d in item.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + item.Bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += item.Bytes;
            }
            w.WriteEndObject();
        }
        // The 8-byte prefix keeps the alignment, so the data starts at a multiple of 8 when the header length is one.
        int length = buffer.WrittenCount;
        int padded = (length + 7) & ~7;
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(length).Fill((byte)' ');
        return header;
    }

    private static unsafe void WriteData(FileStream stream, Item item)
    {
        if (item.Bytes == 0) return;
        using var host = item.Tensor.to(Device.CPU);
        using var dense = host.contiguous();
        if (dense.numel() * dense.element_size() != item.Bytes)
            throw new InvalidOperationException($"tensor '{item.Name}' changed size while it was being saved");
        byte* p = (byte*)dense.data_ptr();
        if (p is null) throw new InvalidOperationException($"tensor '{item.Name}' has no host data pointer");
        for (long done = 0; done < item.Bytes;)
        {
            int n = (int)Math.Min(WriteChunk, item.Bytes - done);
            stream.Write(new ReadOnlySpan<byte>(p + done, n));
            done += n;
        }
    }
}
