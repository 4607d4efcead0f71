namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    public static partial class optim
    {
        /// <summary>LoRA-FA (arXiv 2308.03303, PEFT's <c>LoraFAOptimizer</c>) over parameter groups: A frozen, B trained by
        /// AdamW on its projected gradient (see <see cref="LoraFAOptimizer"/>).</summary>
        /// <param name="groups">The trainable parameters (B factors and any other parameter; never an A factor).</param>
        /// <param name="pairs">The LoRA pairs, matched by module (e.g. <c>Training.LoraPairs.Find(model)</c>).</param>
        /// <param name="lr">Learning rate.</param>
        /// <param name="beta1">First-moment decay.</param>
        /// <param name="beta2">Second-moment decay.</param>
        /// <param name="eps">Denominator term (PEFT's default 1e-6).</param>
        /// <param name="weight_decay">Decoupled weight decay, applied after the step.</param>
        /// <param name="project_gradient">Replace B's gradient by (1/s²)·g_B·(A·Aᵀ + 1e-8·I)⁺ (PEFT); false trains B with its
        /// raw gradient (the 2023 paper's plain LoRA-FA).</param>
        /// <returns>The optimizer.</returns>
        public static LoraFAOptimizer LoraFA(IEnumerable<ParamGroup> groups, IEnumerable<LoraPair> pairs, double lr = 1e-3, double beta1 = 0.9,
            double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0, bool project_gradient = true)
            => new(groups, pairs, lr, beta1, beta2, eps, weight_decay, project_gradient);

        /// <summary>
        /// LoRA-FA: the down projection A of every pair stays frozen (it is not a parameter of this optimizer) and only B
        /// trains. With <see cref="project_gradient"/> (the default, PEFT's version), B's gradient is first replaced by
        /// <code>
        /// g̃_B = (1/s²) · g_B · (A·Aᵀ + 1e-8·I)⁺
        /// </code>
        /// the least-squares B-gradient whose update s·g̃_B·A best matches the full fine-tuning step (PEFT docs); s is the
        /// pair's own scaling (PEFT uses one global α/r). The product is computed in float32 (float64 for float64 factors);
        /// PEFT computes it under bfloat16 autocast when available. Then B takes an AdamW step in the Hugging Face form
        /// (<see cref="LoraPairOptimizer.AdamWStep"/>: bias-corrected step size, ε outside the bias correction, decay after the
        /// step), state <c>exp_avg</c>, <c>exp_avg_sq</c> (B's shape: Adam moments are kept for B only) and <c>step</c>.
        /// Other parameters take the same AdamW step on their raw gradient.
        /// </summary>
        public sealed class LoraFAOptimizer : LoraPairOptimizer
        {
            /// <summary>Creates the optimizer.</summary>
            /// <param name="groups">The trainable parameters (never an A factor).</param>
            /// <param name="pairs">The LoRA pairs, matched by module.</param>
            /// <param name="lr">Learning rate.</param>
            /// <param name="beta1">First-moment decay.</param>
            /// <param name="beta2">Second-moment decay.</param>
            /// <param name="eps">Denominator term.</param>
            /// <param name="weight_decay">Decoupled weight decay.</param>
            /// <param name="project_gradient">Project B's gradient (PEFT's LoRA-FA).</param>
            public LoraFAOptimizer(IEnumerable<ParamGroup> groups, IEnumerable<LoraPair> pairs, double lr = 1e-3, double beta1 = 0.9,
                double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0, bool project_gradient = true)
                : base(groups, pairs, new Defaults(lr, weight_decay, beta1, beta2, eps), trainsA: false)
            {
                this.project_gradient = project_gradient;
            }

            /// <summary>Whether B's gradient is projected by (A·Aᵀ)⁻¹/s² before the AdamW step.</summary>
            public bool project_gradient { get; }

            /// <inheritdoc/>
            protected override void StepPairs()
            {
                foreach (var pair in pairs)
                {
                    var b = pair.B;
                    var grad = b.grad;
                    if (grad is null) continue;
                    if (project_gradient) grad = ProjectedGradient(pair, grad);
                    AdamWStep(b, grad, GroupOf(b));
                }
            }

            /// <summary>(1/s²)·g_B·(A·Aᵀ + 1e-8·I)⁺ in the factor's type.</summary>
            private static Tensor ProjectedGradient(LoraPair pair, Tensor gradB)
            {
                var ct = ComputeType(pair.B);
                var a = pair.A.detach().to_type(ct);
                var gramInv = RegularizedPinv(a.matmul(a.t()));
                var g = gradB.to_type(ct).matmul(gramInv).mul_(1 / (pair.Scaling * pair.Scaling));
                return g.dtype == gradB.dtype ? g : g.to_type(gradB.dtype);
            }
        }
    }
}
