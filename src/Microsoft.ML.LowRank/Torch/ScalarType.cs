namespace Microsoft.ML.LowRank.Torch;

/// <summary>Element types of tensors. The numeric values are libtorch's <c>c10::ScalarType</c> codes.</summary>
public enum ScalarType
{
    /// <summary>Unsigned 8-bit integer.</summary>
    Byte = 0,
    /// <summary>Signed 8-bit integer.</summary>
    Int8 = 1,
    /// <summary>Signed 16-bit integer.</summary>
    Int16 = 2,
    /// <summary>Signed 32-bit integer.</summary>
    Int32 = 3,
    /// <summary>Signed 64-bit integer.</summary>
    Int64 = 4,
    /// <summary>IEEE half precision.</summary>
    Float16 = 5,
    /// <summary>IEEE single precision.</summary>
    Float32 = 6,
    /// <summary>IEEE double precision.</summary>
    Float64 = 7,
    /// <summary>Boolean.</summary>
    Bool = 11,
    /// <summary>Brain floating point (8-bit exponent, 7-bit mantissa).</summary>
    BFloat16 = 15,
}

/// <summary>Helpers for <see cref="ScalarType"/>.</summary>
public static class ScalarTypeExtensions
{
    /// <summary>Size in bytes of one element of the type.</summary>
    /// <param name="type">The element type.</param>
    /// <returns>The element size in bytes.</returns>
    public static int ElementSize(this ScalarType type) => type switch
    {
        ScalarType.Byte or ScalarType.Int8 or ScalarType.Bool => 1,
        ScalarType.Int16 or ScalarType.Float16 or ScalarType.BFloat16 => 2,
        ScalarType.Int32 or ScalarType.Float32 => 4,
        ScalarType.Int64 or ScalarType.Float64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown scalar type"),
    };

    /// <summary>True for floating-point types.</summary>
    /// <param name="type">The element type.</param>
    /// <returns>Whether the type is a floating-point type.</returns>
    public static bool IsFloatingPoint(this ScalarType type) =>
        type is ScalarType.Float16 or ScalarType.Float32 or ScalarType.Float64 or ScalarType.BFloat16;
}
