using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    /// <summary>
    /// libtorch's CPU operator profiler (the counterpart of PyTorch's <c>torch.autograd.profiler</c>), reduced to a table:
    /// self and total milliseconds and call counts per operator, optionally split by input shapes. Used by <c>bench/</c>
    /// to break a training step down.
    /// </summary>
    public static class profiler
    {
        /// <summary>Starts recording operators on this thread (and the autograd threads it launches).</summary>
        /// <param name="record_shapes">Whether to split the table by the operators' input shapes.</param>
        public static void start(bool record_shapes = false) => Tensor.CheckStatus(NativeMethods.lr_profiler_start(record_shapes ? 1 : 0));

        /// <summary>
        /// Stops recording and writes the table to <paramref name="path"/>: one line per operator (and shapes), tab-separated
        /// <c>self_ms total_ms calls name shapes</c>, largest self time first.
        /// </summary>
        /// <param name="path">The file to write.</param>
        public static void stop(string path) => Tensor.CheckStatus(NativeMethods.lr_profiler_stop(path));
    }
}
