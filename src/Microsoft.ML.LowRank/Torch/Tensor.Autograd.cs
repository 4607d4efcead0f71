using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    public partial class Tensor
    {
        /// <summary>Computes gradients of this tensor with respect to the graph leaves that require them.</summary>
        /// <param name="gradient">Gradient of the final objective with respect to this tensor (required unless it is a scalar).</param>
        /// <param name="retain_graph">Keep the graph so backward can run again.</param>
        /// <param name="create_graph">Record the backward pass for higher-order gradients.</param>
        public void backward(Tensor? gradient = null, bool retain_graph = false, bool create_graph = false)
        {
            var g = gradient?.Handle;
            bool added = false;
            try
            {
                g?.DangerousAddRef(ref added);
                CheckStatus(NativeMethods.lr_autograd_backward(Handle, g?.DangerousGetHandle() ?? IntPtr.Zero, retain_graph ? 1 : 0, create_graph ? 1 : 0));
            }
            finally
            {
                if (added) g!.DangerousRelease();
            }
        }

        /// <summary>The accumulated gradient (a new alias the caller owns), or null when none has been computed.
        /// Setting null clears it (PyTorch's set_to_none).</summary>
        public Tensor? grad
        {
            get
            {
                CheckStatus(NativeMethods.lr_autograd_get_grad(Handle, out var p));
                return p == IntPtr.Zero ? null : new Tensor(p);
            }
            set
            {
                var g = value?.Handle;
                bool added = false;
                try
                {
                    g?.DangerousAddRef(ref added);
                    CheckStatus(NativeMethods.lr_autograd_set_grad(Handle, g?.DangerousGetHandle() ?? IntPtr.Zero));
                }
                finally
                {
                    if (added) g!.DangerousRelease();
                }
            }
        }

        /// <summary>Zeroes the accumulated gradient in place (keeps its storage), if any.</summary>
        public void zero_grad() => CheckStatus(NativeMethods.lr_autograd_zero_grad(Handle));

        /// <summary>Keeps the gradient of this non-leaf tensor after backward.</summary>
        /// <returns>This tensor.</returns>
        public Tensor retain_grad()
        {
            CheckStatus(NativeMethods.lr_autograd_retain_grad(Handle));
            return this;
        }

        /// <summary>A new tensor sharing storage but cut from the autograd graph.</summary>
        public Tensor detach() => Wrap(NativeMethods.lr_autograd_detach(Handle));

        /// <summary>Cuts this tensor from the autograd graph in place.</summary>
        /// <returns>A new alias of this tensor.</returns>
        public Tensor detach_() => Wrap(NativeMethods.lr_autograd_detach_(Handle));
    }

    /// <summary>Restores the previous gradient mode when disposed.</summary>
    public sealed class GradModeScope : IDisposable
    {
        private readonly bool _previous;
        private bool _disposed;

        internal GradModeScope(bool enabled)
        {
            _previous = is_grad_enabled();
            Tensor.CheckStatus(NativeMethods.lr_autograd_set_grad_enabled(enabled ? 1 : 0));
        }

        /// <summary>Restores the gradient mode that was in force when the scope was opened.</summary>
        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            Tensor.CheckStatus(NativeMethods.lr_autograd_set_grad_enabled(_previous ? 1 : 0));
        }
    }

    /// <summary>Whether operations on this thread currently record gradients.</summary>
    /// <returns>The gradient mode.</returns>
    public static bool is_grad_enabled() => Tensor.Check(NativeMethods.lr_autograd_is_grad_enabled()) != 0;

    /// <summary>Disables gradient recording on this thread until the returned scope is disposed.</summary>
    /// <returns>The scope.</returns>
    public static GradModeScope no_grad() => new(false);

    /// <summary>Enables gradient recording on this thread until the returned scope is disposed.</summary>
    /// <returns>The scope.</returns>
    public static GradModeScope enable_grad() => new(true);

    /// <summary>Sets gradient recording on this thread until the returned scope is disposed.</summary>
    /// <param name="enabled">The mode.</param>
    /// <returns>The scope.</returns>
    public static GradModeScope set_grad_enabled(bool enabled) => new(enabled);

    /// <summary>Inference mode; here the same as <see cref="no_grad"/>.</summary>
    /// <returns>The scope.</returns>
    public static GradModeScope inference_mode() => new(false);

    /// <summary>Functional autograd.</summary>
    public static class autograd
    {
        /// <summary>Gradients of sum(outputs · grad_outputs) with respect to each input (null for unused inputs when allowed).</summary>
        /// <param name="outputs">Differentiated tensors.</param>
        /// <param name="inputs">Tensors to differentiate with respect to.</param>
        /// <param name="grad_outputs">Weights for each output (null: ones for scalars).</param>
        /// <param name="retain_graph">Keep the graph (default: same as create_graph).</param>
        /// <param name="create_graph">Record for higher-order gradients.</param>
        /// <param name="allow_unused">Return null rather than failing for inputs the outputs do not depend on.</param>
        /// <returns>One gradient per input.</returns>
        public static unsafe Tensor?[] grad(IList<Tensor> outputs, IList<Tensor> inputs, IList<Tensor?>? grad_outputs = null,
            bool? retain_graph = null, bool create_graph = false, bool allow_unused = false)
        {
            ArgumentNullException.ThrowIfNull(outputs);
            ArgumentNullException.ThrowIfNull(inputs);
            if (grad_outputs is not null && grad_outputs.Count != outputs.Count)
                throw new ArgumentException($"grad_outputs has {grad_outputs.Count} entries but there are {outputs.Count} outputs", nameof(grad_outputs));
            var o = new IntPtr[outputs.Count];
            var go = new IntPtr[outputs.Count];
            var i = new IntPtr[inputs.Count];
            var r = new IntPtr[inputs.Count];
            for (int k = 0; k < o.Length; k++) { o[k] = outputs[k].Handle.DangerousGetHandle(); go[k] = grad_outputs?[k]?.Handle.DangerousGetHandle() ?? IntPtr.Zero; }
            for (int k = 0; k < i.Length; k++) i[k] = inputs[k].Handle.DangerousGetHandle();
            int status;
            fixed (IntPtr* po = o, pgo = go, pi = i, pr = r)
                status = NativeMethods.lr_autograd_grad(po, o.Length, pgo, pi, i.Length, retain_graph is null ? -1 : retain_graph.Value ? 1 : 0,
                    create_graph ? 1 : 0, allow_unused ? 1 : 0, pr);
            GC.KeepAlive(outputs);
            GC.KeepAlive(inputs);
            GC.KeepAlive(grad_outputs);
            Tensor.CheckStatus(status);
            var result = new Tensor?[r.Length];
            for (int k = 0; k < r.Length; k++) result[k] = r[k] == IntPtr.Zero ? null : new Tensor(r[k]);
            return result;
        }
    }
}
