namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    public static partial class optim
    {
        /// <summary>
        /// The two factors of one LoRA adapter on one module, paired by module (never by their position in a parameter
        /// list): the down projection <paramref name="A"/> [r, in] (<c>lora_A.weight</c>), the up projection
        /// <paramref name="B"/> [out, r] (<c>lora_B.weight</c>) and the layer's own scaling s (α/r, α/√r with rsLoRA, or
        /// whatever the layer uses), so that the adapter adds s·B·A to the weight. <c>Training.LoraPairs.Find</c> builds
        /// them from an adapted model.
        /// </summary>
        /// <param name="A">The down projection [r, in].</param>
        /// <param name="B">The up projection [out, r].</param>
        /// <param name="Scaling">The layer's scaling s.</param>
        /// <param name="Name">A label for messages (e.g. the module path and adapter name), or null.</param>
        public sealed record LoraPair(nn.Parameter A, nn.Parameter B, double Scaling, string? Name = null)
        {
            /// <summary>The rank r (rows of A).</summary>
            public long Rank => A.size(0);

            /// <inheritdoc/>
            public override string ToString() => Name ?? $"LoRA pair A[{string.Join(", ", A.shape)}] B[{string.Join(", ", B.shape)}]";
        }

        /// <summary>
        /// Base of the optimizers that treat the two factors of each LoRA adapter together (LoRA-FA, LoRA-Pro, LoRA-RITE).
        /// Every parameter of the groups that is not a factor of a known pair (a modules-to-save head, a bias) is updated
        /// by AdamW in the Hugging Face / PEFT form (<see cref="AdamWStep"/>). Pairs whose parameters are in no group are
        /// ignored (for instance the factors of an inactive adapter). A factor is updated with the learning rate and weight
        /// decay of its own group; the pair's other hyper-parameters (β1, β2, ε) are those of the group holding B.
        /// </summary>
        public abstract class LoraPairOptimizer : Optimizer
        {
            private readonly List<LoraPair> _pairs = new();
            private readonly Dictionary<nn.Parameter, ParamGroup> _groupOf = new(ReferenceEqualityComparer.Instance);
            private readonly HashSet<nn.Parameter> _paired = new(ReferenceEqualityComparer.Instance);

            /// <summary>Creates the optimizer and resolves the pairs against the groups.</summary>
            /// <param name="groups">The parameter groups (every trainable parameter, paired or not).</param>
            /// <param name="pairs">The LoRA factor pairs (by module).</param>
            /// <param name="defaults">Defaults for hyper-parameters the groups leave unset.</param>
            /// <param name="trainsA">True when both factors train (LoRA-Pro, LoRA-RITE): a pair must then have both or none of
            /// its factors in the groups. False (LoRA-FA): A is frozen and must not be in any group.</param>
            /// <exception cref="ArgumentException">Malformed pairs (shapes, a parameter in two pairs, a non-finite or zero
            /// scaling), or factors of one pair split between trained and untrained.</exception>
            protected LoraPairOptimizer(IEnumerable<ParamGroup> groups, IEnumerable<LoraPair> pairs, Defaults defaults, bool trainsA)
                : base(groups, defaults)
            {
                ArgumentNullException.ThrowIfNull(pairs);
                foreach (var g in param_groups)
                    foreach (var p in g.Parameters) _groupOf[p] = g;
                var seen = new HashSet<nn.Parameter>(ReferenceEqualityComparer.Instance);
                foreach (var pair in pairs)
                {
                    if (pair is null) throw new ArgumentException("a LoRA pair is null", nameof(pairs));
                    var (a, b) = (pair.A, pair.B);
                    if (a.dim() != 2 || b.dim() != 2 || a.size(0) != b.size(1))
                        throw new ArgumentException($"{pair}: A must be [r, in] and B [out, r] with the same r, got A [{string.Join(", ", a.shape)}] and B [{string.Join(", ", b.shape)}]", nameof(pairs));
                    if (!double.IsFinite(pair.Scaling) || pair.Scaling == 0)
                        throw new ArgumentException($"{pair}: the scaling must be finite and non-zero, got {pair.Scaling}", nameof(pairs));
                    if (!seen.Add(a) || !seen.Add(b))
                        throw new ArgumentException($"{pair}: a parameter belongs to more than one LoRA pair (or A is B)", nameof(pairs));
                    bool hasA = _groupOf.ContainsKey(a), hasB = _groupOf.ContainsKey(b);
                    if (trainsA)
                    {
                        if (hasA != hasB)
                            throw new ArgumentException($"{pair}: {(hasA ? "A" : "B")} is trained but {(hasA ? "B" : "A")} is not; {GetType().Name} updates both factors of a pair together", nameof(pairs));
                        if (!hasA) continue;
                        _paired.Add(a);
                    }
                    else
                    {
                        if (hasA)
                            throw new ArgumentException($"{pair}: A is in a parameter group, but {GetType().Name} keeps A frozen (set requires_grad = false on A and leave it out of the groups)", nameof(pairs));
                        if (!hasB) continue;
                    }
                    _paired.Add(b);
                    _pairs.Add(pair);
                }
            }

            /// <summary>The pairs this optimizer updates (those whose trained factors are in its groups), in the order given.</summary>
            public IReadOnlyList<LoraPair> pairs => _pairs;

            /// <summary>The group of a parameter of this optimizer.</summary>
            /// <param name="parameter">The parameter.</param>
            /// <returns>Its group.</returns>
            protected ParamGroup GroupOf(nn.Parameter parameter) => _groupOf[parameter];

            /// <inheritdoc/>
            protected override void Validate(ParamGroup group)
            {
                base.Validate(group);
                if (!(group.Beta1 >= 0 && group.Beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(group), group.Beta1, "beta1 must be in [0, 1)");
                if (!(group.Beta2 >= 0 && group.Beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(group), group.Beta2, "beta2 must be in [0, 1)");
                if (!(group.Eps >= 0)) throw new ArgumentOutOfRangeException(nameof(group), group.Eps, "eps must be >= 0");
                if (group.AmsGrad) throw new ArgumentException($"{GetType().Name} does not implement AMSGrad", nameof(group));
                if (group.Maximize) throw new ArgumentException($"{GetType().Name} does not implement maximize", nameof(group));
            }

            /// <inheritdoc/>
            public override void step()
            {
                ThrowIfDisposed();
                using var scope = NewDisposeScope();
                using var ng = no_grad();
                StepPairs();
                foreach (var group in param_groups)
                    foreach (var p in group.Parameters)
                    {
                        if (_paired.Contains(p)) continue;
                        var grad = p.grad;
                        if (grad is null) continue;
                        AdamWStep(p, grad, group);
                    }
            }

            /// <summary>Updates every pair (called by <see cref="step"/> inside a dispose scope under no_grad).</summary>
            protected abstract void StepPairs();

            /// <summary>
            /// One AdamW update in the Hugging Face / PEFT form (<c>transformers</c>' AdamW with correct_bias, which PEFT's
            /// LoRA-FA and GaLore's AdamW follow), state <c>exp_avg</c>, <c>exp_avg_sq</c> and <c>step</c> on the parameter:
            /// <code>
            /// t = t + 1;  m = β1·m + (1 − β1)·g;  v = β2·v + (1 − β2)·g²
            /// θ = θ − lr·√(1 − β2^t)/(1 − β1^t) · m / (√v + ε)
            /// θ = θ·(1 − lr·λ)                      (decoupled decay after the step, when λ &gt; 0)
            /// </code>
            /// </summary>
            /// <param name="p">The parameter.</param>
            /// <param name="grad">The (possibly adjusted) gradient.</param>
            /// <param name="group">The parameter's group (lr, λ, β1, β2, ε).</param>
            protected void AdamWStep(nn.Parameter p, Tensor grad, ParamGroup group)
                => HfAdamW(state(p), p, grad, group.LearningRate, group.Beta1, group.Beta2, group.Eps, group.WeightDecay);

            internal static void HfAdamW(ParamState s, Tensor p, Tensor grad, double lr, double beta1, double beta2, double eps, double wd)
            {
                var (direction, stepSize) = HfAdamDirection(s, grad, lr, beta1, beta2, eps, "exp_avg", "exp_avg_sq");
                p.add_(direction, -stepSize);
                if (wd > 0) p.mul_(1 - lr * wd);
            }

            /// <summary>Advances the Hugging Face-form Adam state (moments named <paramref name="mName"/> /
            /// <paramref name="vName"/>, created at the gradient's shape; scalar <c>step</c>) and returns m / (√v + ε) and the
            /// step size lr·√(1 − β2^t)/(1 − β1^t).</summary>
            internal static (Tensor direction, double stepSize) HfAdamDirection(ParamState s, Tensor grad, double lr, double beta1, double beta2,
                double eps, string mName, string vName)
            {
                if (!s.Tensors.TryGetValue(mName, out var m))
                {
                    m = s.Set(mName, zeros_like(grad));
                    s.Set(vName, zeros_like(grad));
                }
                var v = s.Tensors[vName];
                double t = (s.Scalars.TryGetValue("step", out var saved) ? saved : 0) + 1;
                s.Scalars["step"] = t;
                m.mul_(beta1).add_(grad, 1 - beta1);
                v.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
                var direction = m / v.sqrt().add_(eps);
                return (direction, lr * Math.Sqrt(1 - Math.Pow(beta2, t)) / (1 - Math.Pow(beta1, t)));
            }

            /// <summary>The type factor math runs in: float64 for float64 factors, float32 otherwise (half types are promoted,
            /// as the reference implementations do for their inverses and decompositions).</summary>
            /// <param name="t">A factor.</param>
            /// <returns>The computation type.</returns>
            protected static ScalarType ComputeType(Tensor t) => t.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

            /// <summary>pinv(M + δ·I) for a square matrix, the reference implementations' regularised inverse (δ = 1e-8).</summary>
            /// <param name="m">The matrix [r, r].</param>
            /// <param name="delta">δ.</param>
            /// <returns>The pseudo-inverse.</returns>
            protected static Tensor RegularizedPinv(Tensor m, double delta = 1e-8)
                => linalg.pinv(m + eye(m.size(0), dtype: m.dtype, device: m.device) * delta);
        }
    }
}
