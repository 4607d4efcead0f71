using System.Runtime.InteropServices;

namespace Microsoft.ML.LowRank.Torch.Native;

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial IntPtr lr_fused_lora_linear(TensorHandle x, TensorHandle weight, IntPtr bias, TensorHandle loraA, TensorHandle loraB,
        double scaling, double dropoutP, int training, IntPtr generator, int order, int fanInFanOut);
    [LibraryImport(Lib)] internal static unsafe partial int lr_fused_lora_linear_shared(TensorHandle x, int k, IntPtr* weights, IntPtr* biases, IntPtr* loraA, IntPtr* loraB,
        double* scalings, int fanInFanOut, IntPtr* outputs);
    [LibraryImport(Lib)] internal static partial int lr_fused_lora_choose_order(long tokens, long inFeatures, long outFeatures, long r, int order, int exact, int bTrains);
}

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial IntPtr lr_fused_linear_cross_entropy(TensorHandle hidden, TensorHandle weight, IntPtr bias, TensorHandle target,
        long ignoreIndex, long chunk, long reduction);
    [LibraryImport(Lib)] internal static unsafe partial int lr_checkpoint(delegate* unmanaged[Cdecl]<IntPtr, IntPtr*, int, IntPtr*, int, int> fn, IntPtr state,
        IntPtr* inputs, int n, int nAct, int offload, IntPtr* outputs, int maxOut);
    [LibraryImport(Lib)] internal static unsafe partial int lr_checkpoint_take_released(IntPtr* states, int cap);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial void lr_checkpoint_set_error(string message);
    [LibraryImport(Lib)] internal static partial int lr_memory_track_cpu(int enable);
    [LibraryImport(Lib)] internal static partial long lr_memory_cpu_stat(int kind);
    [LibraryImport(Lib)] internal static partial void lr_memory_reset_cpu_peak();
}

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial int lr_amp_autocast_enter(int deviceKind, int dtype, out int prevEnabled, out int prevDtype);
    [LibraryImport(Lib)] internal static partial int lr_amp_autocast_exit(int deviceKind, int prevEnabled, int prevDtype);
    [LibraryImport(Lib)] internal static partial int lr_amp_is_autocast_enabled(int deviceKind);
    [LibraryImport(Lib)] internal static partial int lr_amp_autocast_dtype(int deviceKind);
    [LibraryImport(Lib)] internal static unsafe partial int lr_amp_unscale_(IntPtr* grads, int n, double invScale, out int foundInf);
}

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial long lr_cuda_total_memory(int device);
}

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial IntPtr lr_fused_dora_linear(TensorHandle x, TensorHandle weight, IntPtr bias, TensorHandle loraA, TensorHandle loraB,
        TensorHandle magnitude, double scaling, double dropoutP, int training, IntPtr generator, int fanInFanOut);
    [LibraryImport(Lib)] internal static partial IntPtr lr_fused_dora_weight_norm(TensorHandle weight, TensorHandle loraA, TensorHandle loraB, double scaling, int fanInFanOut);
}

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial int lr_profiler_start(int recordShapes);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] internal static partial int lr_profiler_stop(string path);
}

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial int lr_memory_cpu_cache(int enable, long limitBytes);
    [LibraryImport(Lib)] internal static partial int lr_memory_cpu_cache_empty();
    [LibraryImport(Lib)] internal static partial long lr_memory_cpu_cache_stat(int kind, long n);
}

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial int lr_nn_attention_cpu_kernel(int enable);
}

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_rope(TensorHandle x, TensorHandle cos, TensorHandle sin);
}
