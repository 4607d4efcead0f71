using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    /// <summary>CUDA queries. On a CPU-only libtorch, <see cref="is_available"/> is false and memory queries return 0.</summary>
    public static class cuda
    {
        /// <summary>Whether a CUDA device can be used.</summary>
        /// <returns>True when CUDA is usable.</returns>
        public static bool is_available() => Tensor.Check(NativeMethods.lr_cuda_is_available()) != 0;

        /// <summary>Number of CUDA devices.</summary>
        /// <returns>The count.</returns>
        public static int device_count() => Tensor.Check(NativeMethods.lr_cuda_device_count());

        /// <summary>Whether cuDNN is usable.</summary>
        /// <returns>True when cuDNN is usable.</returns>
        public static bool cudnn_is_available() => Tensor.Check(NativeMethods.lr_cuda_cudnn_is_available()) != 0;

        /// <summary>Waits for all work on a device to finish.</summary>
        /// <param name="device">Device index (-1: current).</param>
        public static void synchronize(int device = -1) => Tensor.CheckStatus(NativeMethods.lr_cuda_synchronize(device));

        /// <summary>Seeds every CUDA device's default generator.</summary>
        /// <param name="seed">The seed.</param>
        public static void manual_seed_all(long seed) => Tensor.CheckStatus(NativeMethods.lr_cuda_manual_seed_all(unchecked((ulong)seed)));

        /// <summary>Bytes currently allocated by tensors on the device.</summary>
        /// <param name="device">Device index.</param>
        /// <returns>Bytes.</returns>
        public static long memory_allocated(int device = 0) => Stat(device, 0);

        /// <summary>Peak bytes allocated since the last reset.</summary>
        /// <param name="device">Device index.</param>
        /// <returns>Bytes.</returns>
        public static long max_memory_allocated(int device = 0) => Stat(device, 1);

        /// <summary>Bytes reserved by the caching allocator.</summary>
        /// <param name="device">Device index.</param>
        /// <returns>Bytes.</returns>
        public static long memory_reserved(int device = 0) => Stat(device, 2);

        /// <summary>Peak bytes reserved by the caching allocator.</summary>
        /// <param name="device">Device index.</param>
        /// <returns>Bytes.</returns>
        public static long max_memory_reserved(int device = 0) => Stat(device, 3);

        /// <summary>Resets the peak statistics.</summary>
        /// <param name="device">Device index.</param>
        public static void reset_peak_memory_stats(int device = 0) => Tensor.CheckStatus(NativeMethods.lr_cuda_reset_peak_memory_stats(device));

        /// <summary>Returns cached, unused memory to the driver.</summary>
        public static void empty_cache() => Tensor.CheckStatus(NativeMethods.lr_cuda_empty_cache());

        private static long Stat(int device, int kind)
        {
            var v = NativeMethods.lr_cuda_memory_stat(device, kind);
            if (v < 0) ThrowLastError();
            return v;
        }
    }
}
