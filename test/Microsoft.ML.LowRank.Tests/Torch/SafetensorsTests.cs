using System.Buffers.Binary;
using System.Text;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Torch;

public sealed class SafetensorsTests : IDisposable
{
    private readonly string _dir;

    public SafetensorsTests()
    {
        _dir = Path.Combine(Path.GetTempPath(), "lowrank-safetensors-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string PathOf(string name) => Path.Combine(_dir, name);

    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", ""));

    /// <summary>A file built by hand: the length prefix, the header text as given, then the data bytes.</summary>
    private string WriteRaw(string name, string header, byte[] data, ulong? declaredLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        return WriteRaw(name, h, data, declaredLength);
    }

    private string WriteRaw(string name, byte[] header, byte[] data, ulong? declaredLength = null)
    {
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        var path = PathOf(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    // ------------------------------------------------------------------ round trips

    public static IEnumerable<object[]> DTypeCases() => new[]
    {
        new object[] { "F64", ScalarType.Float64, new long[] { 2 }, "000000000000F03F 00000000000004C0" },
        new object[] { "F32", ScalarType.Float32, new long[] { 3 }, "0000803F 000060C0 0000803E" },
        new object[] { "F16", ScalarType.Float16, new long[] { 2, 2 }, "003C 00C0 0038 FF7B" },
        new object[] { "BF16", ScalarType.BFloat16, new long[] { 4 }, "803F 00C0 003F 4940" },
        new object[] { "I64", ScalarType.Int64, new long[] { 3 }, "0100000000000000 FFFFFFFFFFFFFFFF FFFFFFFFFFFFFF7F" },
        new object[] { "I32", ScalarType.Int32, new long[] { 3 }, "01000000 FEFFFFFF 00000080" },
        new object[] { "I16", ScalarType.Int16, new long[] { 2 }, "0201 FFFF" },
        new object[] { "I8", ScalarType.Int8, new long[] { 3 }, "80 7F FF" },
        new object[] { "U8", ScalarType.Byte, new long[] { 3 }, "00 C8 FF" },
        new object[] { "BOOL", ScalarType.Bool, new long[] { 3 }, "01 00 01" },
    };

    /// <summary>The tensor whose little-endian bytes are the hand-computed hex of <see cref="DTypeCases"/>.</summary>
    private static Tensor Known(ScalarType type) => type switch
    {
        ScalarType.Float64 => tensor(new[] { 1.0, -2.5 }),
        ScalarType.Float32 => tensor(new[] { 1.0f, -3.5f, 0.25f }),
        ScalarType.Float16 => tensor(new[] { (Half)1.0, (Half)(-2.0), (Half)0.5, Half.MaxValue }, new long[] { 2, 2 }),
        ScalarType.BFloat16 => tensor(new[] { 1.0f, -2.0f, 0.5f, 3.140625f }).to_type(ScalarType.BFloat16),
        ScalarType.Int64 => tensor(new[] { 1L, -1L, long.MaxValue }),
        ScalarType.Int32 => tensor(new[] { 1, -2, int.MinValue }),
        ScalarType.Int16 => tensor(new short[] { 258, -1 }),
        ScalarType.Int8 => tensor(new sbyte[] { -128, 127, -1 }),
        ScalarType.Byte => tensor(new byte[] { 0, 200, 255 }),
        ScalarType.Bool => tensor(new[] { true, false, true }),
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    [Theory]
    [MemberData(nameof(DTypeCases))]
    public void EveryDtypeRoundTripsWithHandComputedBytes(string dtypeName, ScalarType type, long[] shape, string expectedHex)
    {
        using var scope = NewDisposeScope();
        var expected = Hex(expectedHex);
        var original = Known(type);
        var path = PathOf("rt.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["x"] = original });

        using (var file = SafetensorsFile.Open(path))
        {
            var e = Assert.Single(file.Entries);
            Assert.Equal("x", e.Name);
            Assert.Equal(type, e.DType);
            Assert.Equal(shape, e.Shape);
            Assert.Equal(0, e.Offset);
            Assert.Equal(expected.Length, e.Length);
            Assert.Equal(expected, file.GetBytes("x").ToArray());
            Assert.Contains($"\"dtype\":\"{dtypeName}\"", Encoding.UTF8.GetString(File.ReadAllBytes(path), 8, (int)file.DataStart - 8));

            var loaded = file.LoadTensor("x");
            Assert.Equal(type, loaded.dtype);
            Assert.Equal(shape, loaded.shape);
            Assert.Equal(Device.CPU, loaded.device);
            AssertSameElements(original, loaded);
        }

        // Saving the loaded tensor again reproduces the file byte for byte.
        var again = PathOf("rt2.safetensors");
        Safetensors.Save(again, Safetensors.Load(path));
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(again));
    }

    private static void AssertSameElements(Tensor a, Tensor b)
    {
        switch (a.dtype)
        {
            case ScalarType.Float64: Assert.Equal(a.ToArray<double>(), b.ToArray<double>()); break;
            case ScalarType.Float32: Assert.Equal(a.ToArray<float>(), b.ToArray<float>()); break;
            case ScalarType.Float16: Assert.Equal(a.ToArray<Half>(), b.ToArray<Half>()); break;
            case ScalarType.BFloat16: Assert.Equal(a.ToArray<ushort>(), b.ToArray<ushort>()); break;
            case ScalarType.Int64: Assert.Equal(a.ToArray<long>(), b.ToArray<long>()); break;
            case ScalarType.Int32: Assert.Equal(a.ToArray<int>(), b.ToArray<int>()); break;
            case ScalarType.Int16: Assert.Equal(a.ToArray<short>(), b.ToArray<short>()); break;
            case ScalarType.Int8: Assert.Equal(a.ToArray<sbyte>(), b.ToArray<sbyte>()); break;
            case ScalarType.Byte: Assert.Equal(a.ToArray<byte>(), b.ToArray<byte>()); break;
            case ScalarType.Bool: Assert.Equal(a.ToArray<bool>(), b.ToArray<bool>()); break;
            default: throw new ArgumentOutOfRangeException(nameof(a));
        }
    }

    [Fact]
    public void HalfAndBFloat16ValuesMatchTheirBitPatterns()
    {
        using var scope = NewDisposeScope();
        var path = PathOf("halves.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor>
        {
            ["h"] = tensor(new[] { 1.0f, -2.0f, 0.5f, 65504f }).to_type(ScalarType.Float16),
            ["bf"] = tensor(new[] { 1.0f, -2.0f, 0.5f, 3.140625f }).to_type(ScalarType.BFloat16),
        });
        using var file = SafetensorsFile.Open(path);
        var h = file.LoadTensor("h");
        var bf = file.LoadTensor("bf");
        Assert.Equal(new ushort[] { 0x3C00, 0xC000, 0x3800, 0x7BFF }, h.ToArray<Half>().Select(BitConverter.HalfToUInt16Bits).ToArray());
        Assert.Equal(new ushort[] { 0x3F80, 0xC000, 0x3F00, 0x4049 }, bf.ToArray<ushort>());
        Assert.Equal(new float[] { 1, -2, 0.5f, 3.140625f }, file.LoadTensor("bf", ScalarType.Float32).ToArray<float>());
        Assert.Equal(new double[] { 1, -2, 0.5, 65504 }, file.LoadTensor("h", ScalarType.Float64).ToArray<double>());
    }

    // ------------------------------------------------------------------ hand-made files

    [Fact]
    public void ReadsAHandWrittenGoldenFile()
    {
        using var scope = NewDisposeScope();
        // Metadata first, a 2-d F32 and a 0-d I16; three spaces of padding leave the data unaligned (it starts at
        // byte 8 + 145 = 153), which readers must accept.
        const string header = "{\"__metadata__\":{\"format\":\"pt\"},"
            + "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
            + "\"b\":{\"dtype\":\"I16\",\"shape\":[],\"data_offsets\":[16,18]}}   ";
        Assert.Equal(145, header.Length);
        var bytes = Hex(
            "9100000000000000"                          // header length 145, little-endian
            + Convert.ToHexString(Encoding.ASCII.GetBytes(header))
            + "0000803F 00000040 000060C0 0000803E"      // 1.0f, 2.0f, -3.5f, 0.25f
            + "FEFF");                                  // (short)-2
        var path = PathOf("golden.safetensors");
        File.WriteAllBytes(path, bytes);

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(Path.GetFullPath(path), file.FilePath);
        Assert.Equal(153, file.DataStart);
        Assert.Equal(18, file.DataLength);
        Assert.Equal(new Dictionary<string, string> { ["format"] = "pt" }, file.Metadata);
        Assert.Equal(new[] { "w", "b" }, file.Entries.Select(e => e.Name));
        Assert.True(file.Contains("w"));
        Assert.False(file.Contains("W"));

        var w = file.LoadTensor("w");
        Assert.Equal(new long[] { 2, 2 }, w.shape);
        Assert.Equal(ScalarType.Float32, w.dtype);
        Assert.Equal(new[] { 1.0f, 2.0f, -3.5f, 0.25f }, w.ToArray<float>());

        var b = file.LoadTensor("b");
        Assert.Empty(b.shape);
        Assert.Equal(ScalarType.Int16, b.dtype);
        Assert.Equal((short)-2, b.item<short>());
        Assert.Equal(Hex("FEFF"), file.ReadBytes("b"));
    }

    [Fact]
    public void EntriesFollowDataOrderNotJsonOrder()
    {
        using var scope = NewDisposeScope();
        var path = WriteRaw("order.safetensors",
            "{\"z\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]},"
            + "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}",
            new byte[] { 10, 11, 12 });
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(new[] { "a", "z" }, file.Entries.Select(e => e.Name));
        Assert.Equal(new byte[] { 10, 11 }, file.LoadTensor("a").ToArray<byte>());
        Assert.Equal(new byte[] { 12 }, file.LoadTensor("z").ToArray<byte>());
    }

    [Fact]
    public void WriterProducesExactlyTheExpectedBytes()
    {
        using var scope = NewDisposeScope();
        var path = PathOf("writer.safetensors");
        // Given out of order: the writer sorts by name.
        Safetensors.Save(path, new[]
        {
            KeyValuePair.Create("b", tensor(new short[] { 1, -1 })),
            KeyValuePair.Create("a", tensor(new[] { 2.0f })),
        }, new Dictionary<string, string> { ["k"] = "v" });

        const string header = "{\"__metadata__\":{\"k\":\"v\"},"
            + "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            + "\"b\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[4,8]}}    ";
        Assert.Equal(136, header.Length);
        var expected = Hex(
            "8800000000000000"
            + Convert.ToHexString(Encoding.ASCII.GetBytes(header))
            + "00000040"       // 2.0f
            + "0100 FFFF");    // 1, -1
        Assert.Equal(expected, File.ReadAllBytes(path));
    }

    [Fact]
    public void HeaderIsPaddedWithSpacesSoDataStartsAtAMultipleOfEight()
    {
        using var scope = NewDisposeScope();
        for (int len = 1; len <= 17; len++)
        {
            var path = PathOf($"align{len}.safetensors");
            Safetensors.Save(path, new Dictionary<string, Tensor> { [new string('n', len)] = tensor(new[] { 7.0f }) });
            var bytes = File.ReadAllBytes(path);
            var n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            Assert.Equal(0, (8 + n) % 8);
            var header = Encoding.UTF8.GetString(bytes, 8, (int)n);
            var json = header.TrimEnd(' ');
            Assert.EndsWith("}", json);
            Assert.True(header.Length - json.Length < 8, $"padding of {header.Length - json.Length} bytes for a {len}-char name");
            Assert.Equal(8 + n + 4, bytes.Length);
            Assert.Equal(Hex("0000E040"), bytes[(int)(8 + n)..]);   // 7.0f
            using var file = SafetensorsFile.Open(path);
            Assert.Equal(8 + n, file.DataStart);
            Assert.Equal(7.0f, file.LoadTensor(new string('n', len)).item<float>());
        }
    }

    // ------------------------------------------------------------------ shapes

    [Fact]
    public void ZeroDimensionalAndEmptyTensorsRoundTrip()
    {
        using var scope = NewDisposeScope();
        var path = PathOf("shapes.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor>
        {
            ["a_scalar"] = scalar_tensor(3.5, ScalarType.Float64),
            ["b_empty"] = zeros(new long[] { 0 }),
            ["c_empty3d"] = zeros(new long[] { 2, 0, 3 }, ScalarType.Int64),
            ["d_vec"] = tensor(new[] { 5, 6 }),
        });
        using var file = SafetensorsFile.Open(path);
        var e = file.Entries.ToDictionary(x => x.Name);
        Assert.Empty(e["a_scalar"].Shape);
        Assert.Equal(1, e["a_scalar"].NumberOfElements);
        Assert.Equal((0L, 8L), (e["a_scalar"].Offset, e["a_scalar"].Length));
        Assert.Equal((8L, 0L), (e["b_empty"].Offset, e["b_empty"].Length));
        Assert.Equal(new long[] { 2, 0, 3 }, e["c_empty3d"].Shape);
        Assert.Equal((8L, 0L), (e["c_empty3d"].Offset, e["c_empty3d"].Length));
        Assert.Equal((8L, 8L), (e["d_vec"].Offset, e["d_vec"].Length));
        Assert.Equal(16, file.DataLength);

        var all = file.LoadAll();
        Assert.Empty(all["a_scalar"].shape);
        Assert.Equal(3.5, all["a_scalar"].item<double>());
        Assert.Equal(new long[] { 0 }, all["b_empty"].shape);
        Assert.Equal(ScalarType.Float32, all["b_empty"].dtype);
        Assert.Equal(new long[] { 2, 0, 3 }, all["c_empty3d"].shape);
        Assert.Equal(0, all["c_empty3d"].numel());
        Assert.Equal(new[] { 5, 6 }, all["d_vec"].ToArray<int>());
        Assert.True(file.GetBytes("b_empty").IsEmpty);
    }

    [Fact]
    public void FilesWithNoTensorsOrOnlyEmptyOnesAreValid()
    {
        using var scope = NewDisposeScope();
        var none = PathOf("none.safetensors");
        Safetensors.Save(none, Array.Empty<KeyValuePair<string, Tensor>>());
        Assert.Equal(Hex("0800000000000000").Concat(Encoding.ASCII.GetBytes("{}      ")).ToArray(), File.ReadAllBytes(none));
        using (var file = SafetensorsFile.Open(none))
        {
            Assert.Empty(file.Entries);
            Assert.Empty(file.Metadata);
            Assert.Equal(0, file.DataLength);
        }
        Assert.Empty(Safetensors.Load(none));

        var empties = PathOf("empties.safetensors");
        Safetensors.Save(empties, new Dictionary<string, Tensor> { ["x"] = zeros(new long[] { 0, 4 }) });
        using var f2 = SafetensorsFile.Open(empties);
        Assert.Equal(0, f2.DataLength);
        Assert.Equal(new long[] { 0, 4 }, f2.LoadTensor("x").shape);
    }

    // ------------------------------------------------------------------ metadata

    [Fact]
    public void MetadataRoundTripsIncludingEscapesAndUnicode()
    {
        using var scope = NewDisposeScope();
        var meta = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["quote"] = "a \"b\"\n\tc\\d",
            ["unicode"] = "héllo ✓ 日本 😀",
            ["empty"] = "",
            ["ключ"] = "<&>'",
        };
        var path = PathOf("meta.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["t"] = ones(2) }, meta);
        using (var file = SafetensorsFile.Open(path))
        {
            Assert.Equal(meta.OrderBy(k => k.Key, StringComparer.Ordinal), file.Metadata.OrderBy(k => k.Key, StringComparer.Ordinal));
            Assert.Equal(new[] { 1f, 1f }, file.LoadTensor("t").ToArray<float>());
        }

        // No metadata, and empty metadata, both read back as an empty dictionary (no "__metadata__" written).
        foreach (var m in new[] { null, new Dictionary<string, string>() })
        {
            Safetensors.Save(path, new Dictionary<string, Tensor> { ["t"] = ones(2) }, m);
            Assert.DoesNotContain("__metadata__", Encoding.UTF8.GetString(File.ReadAllBytes(path)));
            using var file = SafetensorsFile.Open(path);
            Assert.Empty(file.Metadata);
        }
    }

    // ------------------------------------------------------------------ corruption

    private const string OkEntry = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

    public static IEnumerable<object?[]> CorruptionCases() => new[]
    {
        new object?[] { "empty", null, "the file is 0 bytes long, shorter than the 8-byte header length prefix" },
        new object?[] { "five-bytes", null, "the file is 5 bytes long, shorter than the 8-byte header length prefix" },
        new object?[] { "header-beyond-file", null, "the header length 1000 exceeds the 20 bytes that follow the length prefix" },
        new object?[] { "header-length-huge", null, "the header length 18446744073709551615 exceeds" },
        new object?[] { "invalid-json", null, "the header is not valid JSON" },
        new object?[] { "not-an-object", null, "the header does not start with '{'" },
        new object?[] { "invalid-utf8", null, "the header is not valid UTF-8" },
        new object?[] { "unknown-dtype", "a", "unknown or unsupported dtype 'F8_E4M3'" },
        new object?[] { "size-mismatch", "a", "data_offsets [0, 12] span 12 bytes but shape [2, 2] of F32 needs 4 x 4 = 16 bytes" },
        new object?[] { "truncated", "a", "data_offsets [0, 16] extend beyond the data buffer of 8 bytes (truncated file?)" },
        new object?[] { "overlap", "b", "data_offsets [4, 12] overlap tensor 'a' at [0, 8]" },
        new object?[] { "begin-after-end", "a", "data_offsets [8, 0] are out of order: begin is after end" },
        new object?[] { "hole", "b", "bytes [4, 8) of the data buffer belong to no tensor" },
        new object?[] { "trailing-bytes", null, "the data buffer holds 12 bytes but the tensors cover only 8; 4 trailing bytes" },
        new object?[] { "negative-dim", "a", "negative dimension -1 in shape [-1, 2]" },
        new object?[] { "duplicate-name", "a", "the name appears more than once in the header (duplicate tensor names)" },
        new object?[] { "duplicate-field", "a", "the field 'dtype' appears more than once" },
        new object?[] { "missing-dtype", "a", "the entry has no 'dtype'" },
        new object?[] { "missing-offsets", "a", "the entry has no 'data_offsets'" },
        new object?[] { "offsets-count", "a", "data_offsets has 3 values, expected [begin, end]" },
        new object?[] { "fractional-dim", "a", "shape element 0 (2.5) is not a 64-bit integer" },
        new object?[] { "shape-overflow", "a", "is too large: its byte size overflows 64 bits" },
        new object?[] { "entry-not-object", "a", "the header entry is a JSON array, not an object" },
        new object?[] { "metadata-not-string", null, "__metadata__ value of key 'k' is a JSON number, not a string" },
    };

    private string MakeCorrupt(string kind)
    {
        var d8 = new byte[8];
        return kind switch
        {
            "empty" => WriteBytes(kind, Array.Empty<byte>()),
            "five-bytes" => WriteBytes(kind, new byte[] { 1, 0, 0, 0, 0 }),
            "header-beyond-file" => WriteRaw(kind, "{}", new byte[18], declaredLength: 1000),
            "header-length-huge" => WriteRaw(kind, "{}", d8, declaredLength: ulong.MaxValue),
            "invalid-json" => WriteRaw(kind, "{\"a\":{\"dtype\":\"F32\",", d8),
            "not-an-object" => WriteRaw(kind, "[1, 2]  ", d8),
            "invalid-utf8" => WriteRaw(kind, new byte[] { (byte)'{', (byte)'"', 0xFF, (byte)'"', (byte)':', (byte)'1', (byte)'}' }, d8),
            "unknown-dtype" => WriteRaw(kind, "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[8],\"data_offsets\":[0,8]}}", d8),
            "size-mismatch" => WriteRaw(kind, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", new byte[12]),
            "truncated" => WriteRaw(kind, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d8),
            "overlap" => WriteRaw(kind, "{\"a\":" + OkEntry + ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", new byte[12]),
            "begin-after-end" => WriteRaw(kind, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", d8),
            "hole" => WriteRaw(kind, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", new byte[12]),
            "trailing-bytes" => WriteRaw(kind, "{\"a\":" + OkEntry + "}", new byte[12]),
            "negative-dim" => WriteRaw(kind, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,8]}}", d8),
            "duplicate-name" => WriteRaw(kind, "{\"a\":" + OkEntry + ",\"a\":" + OkEntry + "}", d8),
            "duplicate-field" => WriteRaw(kind, "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", d8),
            "missing-dtype" => WriteRaw(kind, "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", d8),
            "missing-offsets" => WriteRaw(kind, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", d8),
            "offsets-count" => WriteRaw(kind, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", d8),
            "fractional-dim" => WriteRaw(kind, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", d8),
            "shape-overflow" => WriteRaw(kind, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", d8),
            "entry-not-object" => WriteRaw(kind, "{\"a\":[1,2]}", d8),
            "metadata-not-string" => WriteRaw(kind, "{\"__metadata__\":{\"k\":1},\"a\":" + OkEntry + "}", d8),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };

        string WriteBytes(string name, byte[] bytes)
        {
            var p = PathOf(name);
            File.WriteAllBytes(p, bytes);
            return p;
        }
    }

    [Theory]
    [MemberData(nameof(CorruptionCases))]
    public void CorruptFilesThrowSafetensorsExceptionNamingFileTensorAndProblem(string kind, string? tensorName, string problem)
    {
        var path = MakeCorrupt(kind);
        var ex = Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(path));
        Assert.Equal(Path.GetFullPath(path), ex.FilePath);
        Assert.Equal(tensorName, ex.TensorName);
        Assert.Contains(problem, ex.Message);
        Assert.Contains($"'{Path.GetFullPath(path)}'", ex.Message);
        if (tensorName is not null) Assert.Contains($"tensor '{tensorName}'", ex.Message);

        // The static loader reports the same problem, and the file handle was released: the file can be deleted.
        var ex2 = Assert.Throws<SafetensorsException>(() => Safetensors.Load(path));
        Assert.Equal(ex.Message, ex2.Message);
        File.Delete(path);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void InvalidBoolBytesAreReportedOnLoad()
    {
        using var scope = NewDisposeScope();
        var path = WriteRaw("bool.safetensors", "{\"flags\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}", new byte[] { 1, 0, 2 });
        using var file = SafetensorsFile.Open(path);
        var ex = Assert.Throws<SafetensorsException>(() => file.LoadTensor("flags"));
        Assert.Equal("flags", ex.TensorName);
        Assert.Contains("BOOL element 2 is the byte 0x02; only 0 and 1 are valid", ex.Message);
        Assert.Equal(new byte[] { 1, 0, 2 }, file.ReadBytes("flags"));
    }

    [Fact]
    public void MissingFileThrowsFileNotFound()
    {
        Assert.Throws<FileNotFoundException>(() => SafetensorsFile.Open(PathOf("nope.safetensors")));
    }

    // ------------------------------------------------------------------ atomic writes

    private static IEnumerable<KeyValuePair<string, Tensor>> ThrowsMidway(Tensor first)
    {
        yield return KeyValuePair.Create("first", first);
        throw new InvalidOperationException("enumeration failed midway");
    }

    [Fact]
    public void FailedSaveLeavesTheExistingFileIntact()
    {
        using var scope = NewDisposeScope();
        var path = PathOf("model.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["w"] = tensor(new[] { 1f, 2f, 3f }) },
            new Dictionary<string, string> { ["version"] = "1" });
        var before = File.ReadAllBytes(path);

        // 1. The tensor enumeration throws part-way.
        var ex = Assert.Throws<InvalidOperationException>(() => Safetensors.Save(path, ThrowsMidway(ones(4))));
        Assert.Equal("enumeration failed midway", ex.Message);
        Assert.Equal(before, File.ReadAllBytes(path));

        // 2. Writing fails after the header and the first tensor's data are on disk.
        try
        {
            Safetensors.t_beforeTensorData = name =>
            {
                if (name == "b") throw new IOException("simulated disk full");
            };
            var io = Assert.Throws<IOException>(() => Safetensors.Save(path, new Dictionary<string, Tensor>
            {
                ["a"] = ones(1000),
                ["b"] = ones(1000),
            }));
            Assert.Equal("simulated disk full", io.Message);
        }
        finally
        {
            Safetensors.t_beforeTensorData = null;
        }
        Assert.Equal(before, File.ReadAllBytes(path));
        // No temporary files are left behind.
        Assert.Equal(new[] { "model.safetensors" }, Directory.GetFiles(_dir).Select(Path.GetFileName));

        using var file = SafetensorsFile.Open(path);
        Assert.Equal("1", file.Metadata["version"]);
        Assert.Equal(new[] { 1f, 2f, 3f }, file.LoadTensor("w").ToArray<float>());
    }

    [Fact]
    public void SaveReplacesAnExistingFile()
    {
        using var scope = NewDisposeScope();
        var path = PathOf("replace.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["old"] = ones(100) });
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["new"] = tensor(new[] { 9L }) });
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(new[] { "new" }, file.Names);
        Assert.Equal(9L, file.LoadTensor("new").item<long>());
        Assert.Single(Directory.GetFiles(_dir));
    }

    // ------------------------------------------------------------------ API behaviour

    [Fact]
    public void SaveRejectsBadInputsBeforeWritingAnything()
    {
        using var scope = NewDisposeScope();
        var path = PathOf("bad.safetensors");
        var t = ones(2);
        var dup = Assert.Throws<ArgumentException>(() => Safetensors.Save(path, new[] { KeyValuePair.Create("x", t), KeyValuePair.Create("x", t) }));
        Assert.Contains("tensor name 'x' appears more than once", dup.Message);
        var reserved = Assert.Throws<ArgumentException>(() => Safetensors.Save(path, new Dictionary<string, Tensor> { ["__metadata__"] = t }));
        Assert.Contains("reserved", reserved.Message);
        var nul = Assert.Throws<ArgumentException>(() => Safetensors.Save(path, new[] { KeyValuePair.Create("n", (Tensor)null!) }));
        Assert.Contains("tensor 'n' is null", nul.Message);
        var meta = Assert.Throws<ArgumentException>(() => Safetensors.Save(path, new Dictionary<string, Tensor> { ["m"] = zeros(new long[] { 2 }, device: META) }));
        Assert.Contains("meta device", meta.Message);
        var disposed = ones(1);
        disposed.Dispose();
        var dis = Assert.Throws<ArgumentException>(() => Safetensors.Save(path, new Dictionary<string, Tensor> { ["d"] = disposed }));
        Assert.Contains("disposed", dis.Message);
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Fact]
    public void SavesTensorsThatRequireGrad()
    {
        using var scope = NewDisposeScope();
        var path = PathOf("grad.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["p"] = full(new long[] { 2, 3 }, 1.25, requires_grad: true) });
        var loaded = Safetensors.Load(path)["p"];
        Assert.False(loaded.requires_grad);
        Assert.Equal(Enumerable.Repeat(1.25f, 6), loaded.ToArray<float>());
    }

    [Fact]
    public void LoadConvertsAndLoadedTensorsOutliveTheFile()
    {
        using var scope = NewDisposeScope();
        var path = PathOf("convert.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor>
        {
            ["f"] = tensor(new[] { 1.5f, -2.25f }),
            ["i"] = tensor(new[] { 3L, -4L }),
        });
        var all = Safetensors.Load(path, ScalarType.Float64, Device.CPU);
        Assert.Equal(new[] { "f", "i" }, all.Keys);
        Assert.Equal(new[] { 1.5, -2.25 }, all["f"].ToArray<double>());
        Assert.Equal(new[] { 3.0, -4.0 }, all["i"].ToArray<double>());

        Tensor kept;
        var file = SafetensorsFile.Open(path);
        kept = file.LoadTensor("i", ScalarType.Int32);
        Assert.Equal(ScalarType.Int32, kept.dtype);
        using (var s = file.OpenRead("f"))
        {
            var buf = new byte[16];
            Assert.Equal(8, s.Read(buf));
            Assert.Equal(Hex("0000C03F 000010C0"), buf[..8]);   // 1.5f, -2.25f
            Assert.False(s.CanWrite);
        }
        file.Dispose();
        file.Dispose();   // idempotent
        Assert.Equal(new[] { 3, -4 }, kept.ToArray<int>());
        Assert.Throws<ObjectDisposedException>(() => file.LoadTensor("f"));
        Assert.Throws<ObjectDisposedException>(() => file.ReadBytes("f"));
        // The mapping is gone: the file can be replaced.
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["g"] = ones(1) });
    }

    [Fact]
    public void UnknownTensorNameThrowsKeyNotFound()
    {
        using var scope = NewDisposeScope();
        var path = PathOf("k.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["present"] = ones(1) });
        using var file = SafetensorsFile.Open(path);
        var ex = Assert.Throws<KeyNotFoundException>(() => file.LoadTensor("absent"));
        Assert.Contains("'absent'", ex.Message);
        Assert.Contains(Path.GetFullPath(path), ex.Message);
        Assert.Equal("present: F32[1] at 0 (4 bytes)", file.GetEntry("present").ToString());
    }

    [Fact]
    public void DtypeNamesMapBothWays()
    {
        Assert.Equal(new[] { "F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL" }, Safetensors.SupportedDTypeNames);
        foreach (var name in Safetensors.SupportedDTypeNames)
        {
            Assert.True(Safetensors.TryParseDType(name, out var t));
            Assert.Equal(name, Safetensors.DTypeName(t));
        }
        Assert.False(Safetensors.TryParseDType("f32", out _));
        Assert.False(Safetensors.TryParseDType("U16", out _));
    }

    [Fact]
    public void LargerTensorRoundTripsExactly()
    {
        using var scope = NewDisposeScope();
        var data = new float[300_001];
        var rng = new Random(1234);
        for (int i = 0; i < data.Length; i++) data[i] = (float)(rng.NextDouble() * 2 - 1);
        var path = PathOf("large.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor>
        {
            ["big"] = tensor(data, new long[] { 300_001 }),
            ["small"] = tensor(new byte[] { 1, 2, 3 }),   // odd sizes keep the following data unaligned
            ["z"] = tensor(new[] { 0.5 }),
        });
        var all = Safetensors.Load(path);
        Assert.Equal(data, all["big"].ToArray<float>());
        Assert.Equal(new byte[] { 1, 2, 3 }, all["small"].ToArray<byte>());
        Assert.Equal(0.5, all["z"].item<double>());
    }
}
