namespace Microsoft.ML.LowRank.Torch;

/// <summary>One tensor described by the header of a safetensors file.</summary>
public sealed class SafetensorsEntry
{
    private readonly long[] _shape;

    internal SafetensorsEntry(string name, ScalarType dtype, long[] shape, long numberOfElements, long offset, long length)
    {
        Name = name;
        DType = dtype;
        _shape = shape;
        NumberOfElements = numberOfElements;
        Offset = offset;
        Length = length;
    }

    /// <summary>The tensor's name (its key in the header).</summary>
    public string Name { get; }

    /// <summary>The element type stored in the file.</summary>
    public ScalarType DType { get; }

    /// <summary>The sizes of each dimension (a fresh copy on every call; empty for a 0-d tensor).</summary>
    public long[] Shape => (long[])_shape.Clone();

    internal long[] ShapeNoCopy => _shape;

    /// <summary>Number of elements (the product of <see cref="Shape"/>; 1 for a 0-d tensor).</summary>
    public long NumberOfElements { get; }

    /// <summary>
    /// Offset in bytes of the tensor's data from the start of the data buffer (the header's
    /// <c>data_offsets[0]</c>); the data buffer starts at <see cref="SafetensorsFile.DataStart"/> in the file.
    /// </summary>
    public long Offset { get; }

    /// <summary>Length in bytes of the tensor's data (<c>data_offsets[1] - data_offsets[0]</c>).</summary>
    public long Length { get; }

    /// <inheritdoc/>
    public override string ToString() =>
        $"{Name}: {Safetensors.DTypeName(DType)}[{string.Join(", ", _shape)}] at {Offset} ({Length} bytes)";
}
