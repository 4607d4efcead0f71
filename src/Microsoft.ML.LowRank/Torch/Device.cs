namespace Microsoft.ML.LowRank.Torch;

/// <summary>The kind of device a tensor lives on.</summary>
public enum DeviceType
{
    /// <summary>Host memory.</summary>
    CPU = 0,
    /// <summary>An NVIDIA GPU.</summary>
    CUDA = 1,
    /// <summary>No storage: shapes and dtypes only (for parameter accounting and planning).</summary>
    META = 2,
}

/// <summary>A device: a type and, for CUDA, an index. Parses "cpu", "cuda", "cuda:1", "meta".</summary>
public sealed record Device(DeviceType type, int index = -1)
{
    /// <summary>The CPU device.</summary>
    public static readonly Device CPU = new(DeviceType.CPU);
    /// <summary>The default CUDA device.</summary>
    public static readonly Device CUDA = new(DeviceType.CUDA, 0);
    /// <summary>The meta device.</summary>
    public static readonly Device META = new(DeviceType.META);

    /// <summary>Parses a device string such as "cpu", "cuda:0" or "meta".</summary>
    /// <param name="spec">The device string.</param>
    /// <returns>The device.</returns>
    public static Device Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var s = spec.Trim().ToLowerInvariant();
        if (s == "cpu") return CPU;
        if (s == "meta") return META;
        if (s == "cuda") return CUDA;
        if (s.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(s.AsSpan(5), out var i) && i >= 0)
            return new Device(DeviceType.CUDA, i);
        throw new ArgumentException($"unknown device '{spec}' (expected cpu, cuda, cuda:N or meta)", nameof(spec));
    }

    /// <summary>Converts a device string to a device.</summary>
    /// <param name="spec">The device string.</param>
    public static implicit operator Device(string spec) => Parse(spec);

    /// <inheritdoc/>
    public override string ToString() => type switch
    {
        DeviceType.CPU => "cpu",
        DeviceType.META => "meta",
        _ => index < 0 ? "cuda" : $"cuda:{index}",
    };
}
