namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    public static partial class optim
    {
        /// <summary>AdamW over one parameter group (TorchSharp's factory; weight decay defaults to 0 as in TorchSharp, PyTorch uses 0.01).</summary>
        /// <param name="parameters">The parameters.</param>
        /// <param name="lr">Learning rate.</param>
        /// <param name="beta1">First-moment decay.</param>
        /// <param name="beta2">Second-moment decay.</param>
        /// <param name="eps">Denominator term.</param>
        /// <param name="weight_decay">Decoupled weight decay.</param>
        /// <param name="amsgrad">AMSGrad.</param>
        /// <param name="maximize">Maximise the objective.</param>
        /// <param name="fused">Update all parameters of a group in one native call (see <see cref="AdamWOptimizer.fused"/>).</param>
        /// <returns>The optimizer.</returns>
        public static AdamWOptimizer AdamW(IEnumerable<nn.Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
            double eps = 1e-8, double weight_decay = 0, bool amsgrad = false, bool maximize = false, bool fused = true)
            => new(parameters, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, fused);

        /// <summary>AdamW over parameter groups; values a group leaves unset take these defaults.</summary>
        /// <param name="groups">The groups.</param>
        /// <param name="lr">Learning rate.</param>
        /// <param name="beta1">First-moment decay.</param>
        /// <param name="beta2">Second-moment decay.</param>
        /// <param name="eps">Denominator term.</param>
        /// <param name="weight_decay">Decoupled weight decay.</param>
        /// <param name="amsgrad">AMSGrad.</param>
        /// <param name="maximize">Maximise the objective.</param>
        /// <param name="fused">Update all parameters of a group in one native call (see <see cref="AdamWOptimizer.fused"/>).</param>
        /// <returns>The optimizer.</returns>
        public static AdamWOptimizer AdamW(IEnumerable<ParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
            double eps = 1e-8, double weight_decay = 0, bool amsgrad = false, bool maximize = false, bool fused = true)
            => new(groups, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, fused);

        /// <summary>
        /// Adam with decoupled weight decay (Loshchilov &amp; Hutter), PyTorch's single-tensor algorithm. For each parameter
        /// with gradient g at step t (per-parameter count, starting at 1):
        /// <code>
        /// g      = maximize ? -g : g
        /// θ      = θ · (1 − lr·λ)                       (decoupled weight decay, skipped when λ = 0)
        /// m      = m + (1 − β1)·(g − m)                 (lerp)
        /// v      = β2·v + (1 − β2)·g²
        /// v̂max   = max(v̂max, v)                         (AMSGrad only; then v below is v̂max)
        /// θ      = θ − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
        /// </code>
        /// State: <c>exp_avg</c>, <c>exp_avg_sq</c>, <c>max_exp_avg_sq</c> (AMSGrad) and the scalar <c>step</c>.
        /// Create one with <see cref="AdamW(IEnumerable{nn.Parameter}, double, double, double, double, double, bool, bool, bool)"/>.
        /// </summary>
        public sealed class AdamWOptimizer : Optimizer
        {
            /// <summary>Creates the optimizer over one group.</summary>
            /// <param name="parameters">The parameters.</param>
            /// <param name="lr">Learning rate.</param>
            /// <param name="beta1">First-moment decay.</param>
            /// <param name="beta2">Second-moment decay.</param>
            /// <param name="eps">Denominator term.</param>
            /// <param name="weight_decay">Decoupled weight decay λ.</param>
            /// <param name="amsgrad">Use the running maximum of the second moment.</param>
            /// <param name="maximize">Maximise the objective.</param>
            /// <param name="fused">Update all parameters of a group in one native call.</param>
            public AdamWOptimizer(IEnumerable<nn.Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
                double weight_decay = 0, bool amsgrad = false, bool maximize = false, bool fused = true)
                : this(Single(parameters), lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, fused) { }

            /// <summary>Creates the optimizer over parameter groups; unset group values take these defaults.</summary>
            /// <param name="groups">The groups.</param>
            /// <param name="lr">Learning rate.</param>
            /// <param name="beta1">First-moment decay.</param>
            /// <param name="beta2">Second-moment decay.</param>
            /// <param name="eps">Denominator term.</param>
            /// <param name="weight_decay">Decoupled weight decay λ.</param>
            /// <param name="amsgrad">Use the running maximum of the second moment.</param>
            /// <param name="maximize">Maximise the objective.</param>
            /// <param name="fused">Update all parameters of a group in one native call.</param>
            public AdamWOptimizer(IEnumerable<ParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
                double weight_decay = 0, bool amsgrad = false, bool maximize = false, bool fused = true)
                : base(groups, new Defaults(lr, weight_decay, beta1, beta2, eps, amsgrad, maximize))
            {
                this.fused = fused;
            }

            /// <summary>
            /// Whether each group is updated by one native call. For contiguous float32/float64 CPU tensors it makes a single
            /// pass per element (the same formula; results agree with the op-by-op path to rounding, and do not depend on the
            /// thread count); other tensors (CUDA, half types, strided) run the op-by-op sequence natively. False runs the
            /// op-by-op sequence from C#, one native call per operation.
            /// </summary>
            public bool fused { get; }

            /// <inheritdoc/>
            protected override void Validate(ParamGroup group)
            {
                base.Validate(group);
                if (!(group.Beta1 >= 0 && group.Beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(group), group.Beta1, "beta1 must be in [0, 1)");
                if (!(group.Beta2 >= 0 && group.Beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(group), group.Beta2, "beta2 must be in [0, 1)");
                if (!(group.Eps >= 0)) throw new ArgumentOutOfRangeException(nameof(group), group.Eps, "eps must be >= 0");
            }

            /// <inheritdoc/>
            public override void step()
            {
                ThrowIfDisposed();
                using var scope = NewDisposeScope();
                using var ng = no_grad();
                foreach (var group in param_groups)
                {
                    if (fused) StepFused(group);
                    else StepOpByOp(group);
                }
            }

            /// <summary>Creates the moments on first use, advances the step count, and returns (grad, state, t).</summary>
            private (Tensor grad, ParamState state, double t)? Prepare(nn.Parameter p, bool amsgrad)
            {
                var grad = p.grad;
                if (grad is null) return null;
                var s = state(p);
                if (!s.Tensors.ContainsKey("exp_avg"))
                {
                    s.Scalars["step"] = 0;
                    s.Set("exp_avg", zeros_like(p));
                    s.Set("exp_avg_sq", zeros_like(p));
                }
                if (amsgrad && !s.Tensors.ContainsKey("max_exp_avg_sq")) s.Set("max_exp_avg_sq", zeros_like(p));
                double t = s.Scalars["step"] + 1;
                s.Scalars["step"] = t;
                return (grad, s, t);
            }

            private unsafe void StepFused(ParamGroup group)
            {
                var ps = group.Parameters;
                int count = ps.Count;
                var handles = new IntPtr[5 * count];
                var steps = new double[count];
                var alive = new Tensor[4 * count];
                int n = 0;
                bool amsgrad = group.AmsGrad;
                foreach (var p in ps)
                {
                    if (Prepare(p, amsgrad) is not var (grad, s, t)) continue;
                    var m = s.Tensors["exp_avg"];
                    var v = s.Tensors["exp_avg_sq"];
                    var vmax = amsgrad ? s.Tensors["max_exp_avg_sq"] : null;
                    handles[n] = p.Handle.DangerousGetHandle();
                    handles[count + n] = grad.Handle.DangerousGetHandle();
                    handles[2 * count + n] = m.Handle.DangerousGetHandle();
                    handles[3 * count + n] = v.Handle.DangerousGetHandle();
                    handles[4 * count + n] = vmax?.Handle.DangerousGetHandle() ?? IntPtr.Zero;
                    alive[4 * n] = grad; alive[4 * n + 1] = m; alive[4 * n + 2] = v; alive[4 * n + 3] = vmax ?? grad;
                    steps[n] = t;
                    n++;
                }
                if (n == 0) return;
                int status;
                fixed (IntPtr* h = handles)
                fixed (double* st = steps)
                    status = Native.NativeMethods.lr_optim_adamw_(h, h + count, h + 2 * count, h + 3 * count, amsgrad ? h + 4 * count : null, st, n,
                        group.LearningRate, group.Beta1, group.Beta2, group.Eps, group.WeightDecay, amsgrad ? 1 : 0, group.Maximize ? 1 : 0);
                GC.KeepAlive(alive);
                GC.KeepAlive(ps);
                Tensor.CheckStatus(status);
            }

            private void StepOpByOp(ParamGroup group)
            {
                double lr = group.LearningRate, wd = group.WeightDecay, beta1 = group.Beta1, beta2 = group.Beta2, eps = group.Eps;
                bool amsgrad = group.AmsGrad, maximize = group.Maximize;
                foreach (var p in group.Parameters)
                {
                    if (Prepare(p, amsgrad) is not var (grad, s, t)) continue;
                    if (maximize) grad = grad.neg();
                    var expAvg = s.Tensors["exp_avg"];
                    var expAvgSq = s.Tensors["exp_avg_sq"];

                    if (wd != 0) p.mul_(1 - lr * wd);
                    expAvg.lerp_(grad, 1 - beta1);
                    expAvgSq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);

                    double biasCorrection1 = 1 - Math.Pow(beta1, t);
                    double biasCorrection2 = 1 - Math.Pow(beta2, t);
                    double stepSize = lr / biasCorrection1;
                    double biasCorrection2Sqrt = Math.Sqrt(biasCorrection2);

                    Tensor denom;
                    if (amsgrad)
                    {
                        var maxSq = s.Tensors["max_exp_avg_sq"];
                        maxSq.copy_(maxSq.maximum(expAvgSq));
                        denom = maxSq.sqrt().div_(biasCorrection2Sqrt).add_(eps);
                    }
                    else
                    {
                        denom = expAvgSq.sqrt().div_(biasCorrection2Sqrt).add_(eps);
                    }
                    p.addcdiv_(expAvg, denom, -stepSize);
                }
            }
        }
    }
}
