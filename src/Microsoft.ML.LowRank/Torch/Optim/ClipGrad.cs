namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    public static partial class nn
    {
        /// <summary>Training utilities (PyTorch's <c>torch.nn.utils</c>).</summary>
        public static class utils
        {
            /// <summary>
            /// Rescales gradients in place so that their joint norm is at most <paramref name="max_norm"/>, PyTorch's rule:
            /// total = ‖(‖g₁‖, ‖g₂‖, …)‖ (the p-norm of the per-tensor p-norms; the maximum for p = ∞), every gradient is
            /// multiplied by min(1, max_norm / (total + 1e-6)). Parameters without a gradient are skipped.
            /// </summary>
            /// <param name="parameters">The parameters whose gradients to clip.</param>
            /// <param name="max_norm">The largest allowed norm.</param>
            /// <param name="norm_type">The p of the p-norm (2 by default; <see cref="double.PositiveInfinity"/> for the max norm).</param>
            /// <param name="error_if_nonfinite">Throw when the total norm is NaN or infinite (the gradients are then left unchanged).</param>
            /// <returns>The total norm of the gradients before clipping (0 when no parameter has a gradient).</returns>
            public static double clip_grad_norm_(IEnumerable<Tensor> parameters, double max_norm, double norm_type = 2.0, bool error_if_nonfinite = false)
            {
                ArgumentNullException.ThrowIfNull(parameters);
                if (double.IsNaN(max_norm) || max_norm < 0) throw new ArgumentOutOfRangeException(nameof(max_norm), max_norm, "max_norm must be >= 0");
                if (double.IsNaN(norm_type) || norm_type <= 0) throw new ArgumentOutOfRangeException(nameof(norm_type), norm_type, "norm_type must be > 0");
                using var scope = NewDisposeScope();
                using var ng = no_grad();
                var grads = new List<Tensor>();
                foreach (var p in parameters)
                {
                    if (p is null) continue;
                    var g = p.grad;
                    if (g is not null) grads.Add(g);
                }
                if (grads.Count == 0) return 0.0;
                var device = grads[0].device;
                var firstType = grads[0].dtype;
                bool mixed = false, anyDouble = false;
                foreach (var g in grads)
                {
                    if (g.dtype != firstType) mixed = true;
                    if (g.dtype == ScalarType.Float64) anyDouble = true;
                }
                var normType = mixed ? (anyDouble ? ScalarType.Float64 : ScalarType.Float32) : firstType;
                var norms = new Tensor[grads.Count];
                for (int i = 0; i < grads.Count; i++)
                {
                    var n = grads[i].norm(norm_type);
                    norms[i] = n.dtype == normType && n.device == device ? n : n.to(normType, device);
                }
                var total = norms.Length == 1 ? norms[0] : stack(norms).norm(norm_type);
                double totalValue = total.ToDouble();
                if (error_if_nonfinite && !double.IsFinite(totalValue))
                    throw new ArgumentException($"the total norm of order {norm_type} of the gradients is {totalValue}; gradients cannot be clipped", nameof(parameters));
                var coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
                foreach (var g in grads) g.mul_(g.device == device ? coef : coef.to(g.device));
                return totalValue;
            }
        }
    }
}
