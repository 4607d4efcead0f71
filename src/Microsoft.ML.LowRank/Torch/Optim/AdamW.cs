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
        /// <returns>The optimizer.</returns>
        public static AdamWOptimizer AdamW(IEnumerable<nn.Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
            double eps = 1e-8, double weight_decay = 0, bool amsgrad = false, bool maximize = false)
            => new(parameters, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize);

        /// <summary>AdamW over parameter groups; values a group leaves unset take these defaults.</summary>
        /// <param name="groups">The groups.</param>
        /// <param name="lr">Learning rate.</param>
        /// <param name="beta1">First-moment decay.</param>
        /// <param name="beta2">Second-moment decay.</param>
        /// <param name="eps">Denominator term.</param>
        /// <param name="weight_decay">Decoupled weight decay.</param>
        /// <param name="amsgrad">AMSGrad.</param>
        /// <param name="maximize">Maximise the objective.</param>
        /// <returns>The optimizer.</returns>
        public static AdamWOptimizer AdamW(IEnumerable<ParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
            double eps = 1e-8, double weight_decay = 0, bool amsgrad = false, bool maximize = false)
            => new(groups, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize);

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
        /// Create one with <see cref="AdamW(IEnumerable{nn.Parameter}, double, double, double, double, double, bool, bool)"/>.
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
            public AdamWOptimizer(IEnumerable<nn.Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
                double weight_decay = 0, bool amsgrad = false, bool maximize = false)
                : this(Single(parameters), lr, beta1, beta2, eps, weight_decay, amsgrad, maximize) { }

            /// <summary>Creates the optimizer over parameter groups; unset group values take these defaults.</summary>
            /// <param name="groups">The groups.</param>
            /// <param name="lr">Learning rate.</param>
            /// <param name="beta1">First-moment decay.</param>
            /// <param name="beta2">Second-moment decay.</param>
            /// <param name="eps">Denominator term.</param>
            /// <param name="weight_decay">Decoupled weight decay λ.</param>
            /// <param name="amsgrad">Use the running maximum of the second moment.</param>
            /// <param name="maximize">Maximise the objective.</param>
            public AdamWOptimizer(IEnumerable<ParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
                double weight_decay = 0, bool amsgrad = false, bool maximize = false)
                : base(groups, new Defaults(lr, weight_decay, beta1, beta2, eps, amsgrad, maximize)) { }

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
                    double lr = group.LearningRate, wd = group.WeightDecay, beta1 = group.Beta1, beta2 = group.Beta2, eps = group.Eps;
                    bool amsgrad = group.AmsGrad, maximize = group.Maximize;
                    foreach (var p in group.Parameters)
                    {
                        var grad = p.grad;
                        if (grad is null) continue;
                        if (maximize) grad = grad.neg();
                        var s = state(p);
                        if (!s.Tensors.TryGetValue("exp_avg", out var expAvg))
                        {
                            s.Scalars["step"] = 0;
                            expAvg = s.Set("exp_avg", zeros_like(p));
                            s.Set("exp_avg_sq", zeros_like(p));
                            if (amsgrad) s.Set("max_exp_avg_sq", zeros_like(p));
                        }
                        var expAvgSq = s.Tensors["exp_avg_sq"];
                        double t = s.Scalars["step"] + 1;
                        s.Scalars["step"] = t;

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
                            if (!s.Tensors.TryGetValue("max_exp_avg_sq", out var maxSq)) maxSq = s.Set("max_exp_avg_sq", zeros_like(p));
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
}
