using System.Runtime.InteropServices;

namespace Microsoft.ML.LowRank.Torch.Native;

/// <summary>P/Invoke declarations of the native shim, one partial file per native area.</summary>
internal static partial class NativeMethods
{
    internal const string Lib = "lowrank_native";

    [LibraryImport(Lib)] internal static partial IntPtr lr_core_last_error();
    [LibraryImport(Lib)] internal static partial void lr_core_clear_error();
    [LibraryImport(Lib)] internal static partial IntPtr lr_core_torch_version();
    [LibraryImport(Lib)] internal static partial int lr_core_get_num_threads();
    [LibraryImport(Lib)] internal static partial int lr_core_set_num_threads(int n);
    [LibraryImport(Lib)] internal static partial int lr_core_get_num_interop_threads();
    [LibraryImport(Lib)] internal static partial IntPtr lr_core_parallel_info();
    [LibraryImport(Lib)] internal static partial int lr_core_throw_test(int kind);
}
