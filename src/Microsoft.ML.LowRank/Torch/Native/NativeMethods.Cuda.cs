using System.Runtime.InteropServices;

namespace Microsoft.ML.LowRank.Torch.Native;

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial int lr_cuda_is_available();
    [LibraryImport(Lib)] internal static partial int lr_cuda_device_count();
    [LibraryImport(Lib)] internal static partial int lr_cuda_cudnn_is_available();
    [LibraryImport(Lib)] internal static partial int lr_cuda_synchronize(int device);
    [LibraryImport(Lib)] internal static partial int lr_cuda_manual_seed_all(ulong seed);
    [LibraryImport(Lib)] internal static partial long lr_cuda_memory_stat(int device, int kind);
    [LibraryImport(Lib)] internal static partial int lr_cuda_reset_peak_memory_stats(int device);
    [LibraryImport(Lib)] internal static partial int lr_cuda_empty_cache();
    [LibraryImport(Lib)] internal static partial int lr_cuda_has_allocator_stats();
}
