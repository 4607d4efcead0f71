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
