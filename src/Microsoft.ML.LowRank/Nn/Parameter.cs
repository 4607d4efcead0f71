namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    public static partial class nn
    {
        /// <summary>
        /// A tensor that is a module's learnable weight: an alias of the given data, detached from every dispose scope
        /// (the module owns it) and requiring gradients unless frozen.
        /// </summary>
        public sealed class Parameter : Tensor
        {
            /// <summary>Wraps <paramref name="data"/> (shares its storage) as a parameter.</summary>
            /// <param name="data">The initial value; stays owned by the caller.</param>
            /// <param name="requires_grad">Whether the parameter is trainable.</param>
            public Parameter(Tensor data, bool requires_grad = true) : base(AliasOf(data), register: false)
            {
                this.requires_grad = requires_grad;
            }

            private static IntPtr AliasOf(Tensor data)
            {
                ArgumentNullException.ThrowIfNull(data);
                // A detached alias: a parameter is always a leaf of the autograd graph.
                var p = Native.NativeMethods.lr_autograd_detach(data.Handle);
                if (p == IntPtr.Zero) ThrowLastError();
                return p;
            }
        }
    }
}

/// <summary>Extension helpers for parameters.</summary>
public static class ParameterExtensions
{
    /// <summary>Wraps a tensor as a <see cref="torch.nn.Parameter"/>.</summary>
    /// <param name="t">The tensor.</param>
    /// <param name="requires_grad">Whether the parameter is trainable.</param>
    /// <returns>The parameter.</returns>
    public static torch.nn.Parameter AsParameter(this torch.Tensor t, bool requires_grad = true) => new(t, requires_grad);
}
