namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    public static partial class optim
    {
        /// <summary>Stochastic gradient descent over one parameter group.</summary>
        /// <param name="parameters">The parameters.</param>
        /// <param name="lr">Learning rate.</param>
        /// <param name="momentum">Momentum factor (0: none).</param>
        /// <param name="dampening">Dampening of the momentum update.</param>
        /// <param name="weight_decay">L2 penalty added to the gradient.</param>
        /// <param name="nesterov">Nesterov momentum (needs momentum &gt; 0 and dampening 0).</param>
        /// <param name="maximize">Maximise the objective.</param>
        /// <returns>The optimizer.</returns>
        public static SGDOptimizer SGD(IEnumerable<nn.Parameter> parameters, double lr, double momentum = 0, double dampening = 0,
            double weight_decay = 0, bool nesterov = false, bool maximize = false)
            => new(parameters, lr, momentum, dampening, weight_decay, nesterov, maximize);

        /// <summary>Stochastic gradient descent over parameter groups; values a group leaves unset take these defaults.</summary>
        /// <param name="groups">The groups.</param>
        /// <param name="lr">Learning rate.</param>
        /// <param name="momentum">Momentum factor.</param>
        /// <param name="dampening">Dampening.</param>
        /// <param name="weight_decay">L2 penalty.</param>
        /// <param name="nesterov">Nesterov momentum.</param>
        /// <param name="maximize">Maximise the objective.</param>
        /// <returns>The optimizer.</returns>
        public static SGDOptimizer SGD(IEnumerable<ParamGroup> groups, double lr, double momentum = 0, double dampening = 0,
            double weight_decay = 0, bool nesterov = false, bool maximize = false)
            => new(groups, lr, momentum, dampening, weight_decay, nesterov, maximize);

        /// <summary>
        /// Stochastic gradient descent with optional momentum, PyTorch's algorithm:
        /// <code>
        /// d = maximize ? -g : g
        /// d = d + λ·θ                                    (weight decay, when λ ≠ 0)
        /// b = first step ? d : μ·b + (1 − dampening)·d   (momentum buffer, when μ ≠ 0)
        /// d = nesterov ? d + μ·b : b
        /// θ = θ − lr·d
        /// </code>
        /// State: <c>momentum_buffer</c> (when momentum is used).
        /// </summary>
        public sealed class SGDOptimizer : Optimizer
        {
            /// <summary>Creates the optimizer over one group.</summary>
            /// <param name="parameters">The parameters.</param>
            /// <param name="lr">Learning rate.</param>
            /// <param name="momentum">Momentum factor.</param>
            /// <param name="dampening">Dampening.</param>
            /// <param name="weight_decay">L2 penalty.</param>
            /// <param name="nesterov">Nesterov momentum.</param>
            /// <param name="maximize">Maximise the objective.</param>
            public SGDOptimizer(IEnumerable<nn.Parameter> parameters, double lr, double momentum = 0, double dampening = 0,
                double weight_decay = 0, bool nesterov = false, bool maximize = false)
                : this(Single(parameters), lr, momentum, dampening, weight_decay, nesterov, maximize) { }

            /// <summary>Creates the optimizer over parameter groups.</summary>
            /// <param name="groups">The groups.</param>
            /// <param name="lr">Learning rate.</param>
            /// <param name="momentum">Momentum factor.</param>
            /// <param name="dampening">Dampening.</param>
            /// <param name="weight_decay">L2 penalty.</param>
            /// <param name="nesterov">Nesterov momentum.</param>
            /// <param name="maximize">Maximise the objective.</param>
            public SGDOptimizer(IEnumerable<ParamGroup> groups, double lr, double momentum = 0, double dampening = 0,
                double weight_decay = 0, bool nesterov = false, bool maximize = false)
                : base(groups, new Defaults(lr, weight_decay, maximize: maximize, momentum: momentum, dampening: dampening, nesterov: nesterov)) { }

            /// <inheritdoc/>
            protected override void Validate(ParamGroup group)
            {
                base.Validate(group);
                if (!(group.Momentum >= 0)) throw new ArgumentOutOfRangeException(nameof(group), group.Momentum, "momentum must be >= 0");
                if (group.Nesterov && (group.Momentum <= 0 || group.Dampening != 0))
                    throw new ArgumentException("Nesterov momentum requires a momentum > 0 and zero dampening", nameof(group));
            }

            /// <inheritdoc/>
            public override void step()
            {
                ThrowIfDisposed();
                using var scope = NewDisposeScope();
                using var ng = no_grad();
                foreach (var group in param_groups)
                {
                    double lr = group.LearningRate, wd = group.WeightDecay, momentum = group.Momentum, dampening = group.Dampening;
                    bool nesterov = group.Nesterov, maximize = group.Maximize;
                    foreach (var p in group.Parameters)
                    {
                        var d = p.grad;
                        if (d is null) continue;
                        if (maximize) d = d.neg();
                        if (wd != 0) d = d.add(p, wd);
                        if (momentum != 0)
                        {
                            var s = state(p);
                            if (!s.Tensors.TryGetValue("momentum_buffer", out var buf))
                                buf = s.Set("momentum_buffer", d.clone().detach());
                            else
                                buf.mul_(momentum).add_(d, 1 - dampening);
                            d = nesterov ? d.add(buf, momentum) : buf;
                        }
                        p.add_(d, -lr);
                    }
                }
            }
        }
    }
}
