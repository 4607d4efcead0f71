using System.Runtime.InteropServices;

namespace Microsoft.ML.LowRank.Torch.Native;

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial int lr_autograd_backward(TensorHandle t, IntPtr grad, int retainGraph, int createGraph);
    [LibraryImport(Lib)] internal static partial int lr_autograd_get_grad(TensorHandle t, out IntPtr grad);
    [LibraryImport(Lib)] internal static partial int lr_autograd_set_grad(TensorHandle t, IntPtr grad);
    [LibraryImport(Lib)] internal static partial int lr_autograd_zero_grad(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int lr_autograd_retain_grad(TensorHandle t);
    [LibraryImport(Lib)] internal static partial IntPtr lr_autograd_detach(TensorHandle t);
    [LibraryImport(Lib)] internal static partial IntPtr lr_autograd_detach_(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int lr_autograd_is_grad_enabled();
    [LibraryImport(Lib)] internal static partial int lr_autograd_set_grad_enabled(int enabled);
    [LibraryImport(Lib)] internal static unsafe partial int lr_autograd_grad(IntPtr* outputs, int noutputs, IntPtr* gradOutputs, IntPtr* inputs, int ninputs,
        int retainGraph, int createGraph, int allowUnused, IntPtr* results);
}
