namespace Microsoft.ML.LowRank.Torch;

/// <summary>
/// An error raised by libtorch (or by the native shim) and carried back to .NET. The message is libtorch's own
/// message, without its C++ backtrace.
/// </summary>
public sealed class TorchException : Exception
{
    /// <summary>Creates the exception with libtorch's message.</summary>
    /// <param name="message">The message reported by the native side.</param>
    public TorchException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    /// <param name="message">The message.</param>
    /// <param name="inner">The cause.</param>
    public TorchException(string message, Exception inner) : base(message, inner) { }
}
