using System.Runtime.InteropServices;

namespace Microsoft.ML.LowRank.Torch.Native;

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_linear(TensorHandle input, TensorHandle weight, IntPtr bias);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_nn_layer_norm(TensorHandle input, long* shape, int n, IntPtr weight, IntPtr bias, double eps);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_nn_rms_norm(TensorHandle input, long* shape, int n, IntPtr weight, double eps, int hasEps);
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_softmax(TensorHandle input, long dim, int dtype);
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_log_softmax(TensorHandle input, long dim, int dtype);
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_dropout(TensorHandle input, double p, int training, IntPtr generator);
    [LibraryImport(Lib)] internal static partial int lr_nn_dropout_(TensorHandle input, double p, int training, IntPtr generator);
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_embedding(TensorHandle indices, TensorHandle weight, long paddingIdx, int hasPadding, int scaleGradByFreq, int sparse);
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_gelu(TensorHandle input, int approximate);
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_silu(TensorHandle input);
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_relu(TensorHandle input);
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_tanh(TensorHandle input);
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_sigmoid(TensorHandle input);
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_softplus(TensorHandle input, double beta, double threshold);
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_cross_entropy(TensorHandle input, TensorHandle target, IntPtr weight, long reduction, long ignoreIndex, double labelSmoothing);
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_nll_loss(TensorHandle input, TensorHandle target, IntPtr weight, long reduction, long ignoreIndex);
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_mse_loss(TensorHandle input, TensorHandle target, long reduction);
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_binary_cross_entropy_with_logits(TensorHandle input, TensorHandle target, IntPtr weight, IntPtr posWeight, long reduction);
    [LibraryImport(Lib)] internal static partial int lr_nn_sdpa_native();
    [LibraryImport(Lib)] internal static partial IntPtr lr_nn_sdpa(TensorHandle q, TensorHandle k, TensorHandle v, IntPtr mask, double dropoutP, int isCausal, double scale, int hasScale);
}
