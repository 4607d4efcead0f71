namespace Microsoft.ML.LowRank.Torch;

/// <summary>
/// A safetensors file is malformed: its header cannot be parsed, or it describes tensors that do not fit the
/// data that follows it. The message names the file and, where the problem concerns one tensor, the tensor.
/// </summary>
public sealed class SafetensorsException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="filePath">The file that is malformed.</param>
    /// <param name="tensorName">The tensor (header entry) the problem concerns, or null for the file as a whole.</param>
    /// <param name="problem">What is wrong, without the file and tensor names.</param>
    /// <param name="inner">The exception that revealed the problem, if any.</param>
    public SafetensorsException(string filePath, string? tensorName, string problem, Exception? inner = null)
        : base(Format(filePath, tensorName, problem), inner)
    {
        FilePath = filePath;
        TensorName = tensorName;
        Problem = problem;
    }

    /// <summary>The file that is malformed.</summary>
    public string FilePath { get; }

    /// <summary>The tensor (header entry) the problem concerns, or null when it concerns the file as a whole.</summary>
    public string? TensorName { get; }

    /// <summary>What is wrong, without the file and tensor names.</summary>
    public string Problem { get; }

    private static string Format(string filePath, string? tensorName, string problem) =>
        tensorName is null
            ? $"invalid safetensors file '{filePath}': {problem}"
            : $"invalid safetensors file '{filePath}', tensor '{tensorName}': {problem}";
}
