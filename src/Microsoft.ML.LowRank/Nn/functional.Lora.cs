using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

/// <summary>
/// How the fused LoRA linear evaluates its adapter path (RunLoRA, arXiv 2312.03415). Both orders give the same result up
/// to rounding; they differ in cost.
/// </summary>
public enum LoraComputeOrder
{
    /// <summary>The cheaper of <see cref="Sequential"/> and <see cref="Merged"/> for the shapes, per direction (forward and
    /// the input gradient), by the cost model of <see cref="torch.nn.functional.lora_compute_order"/>.</summary>
    Auto = 0,

    /// <summary>x·W0ᵀ + s·(x·Aᵀ)·Bᵀ forward and dy·W0 + s·(dy·B)·A for the input gradient.</summary>
    Sequential = 1,

    /// <summary>x·(W0 + s·B·A)ᵀ forward and dy·(W0 + s·B·A) for the input gradient. Used only where it is numerically
    /// equivalent (no active dropout, base and adapter of one float32/float64 type, no autocast); otherwise sequential.</summary>
    Merged = 2,
}

public static partial class torch
{
    public static partial class nn
    {
        public static partial class functional
        {
            /// <summary>
            /// The fused LoRA linear: y = x·W0ᵀ + b + s·(drop(x)·Aᵀ)·Bᵀ as one autograd node with a hand-written backward.
            /// The dropout mask is drawn once (from <paramref name="generator"/>, in the element order of
            /// <see cref="dropout"/>) and reused in backward; the node saves the input only when A or W0 trains, the
            /// r-wide z = drop(x)·Aᵀ when B trains, and the 1-byte mask when dropout is active. Types follow PEFT: the base
            /// matmul runs in the weight's type, the adapter path in the adapter's type, and the adapter's contribution is
            /// cast to the base output's type (under autocast both run in the autocast type). Gradients flow to every input
            /// that requires them.
            /// </summary>
            /// <param name="input">[..., in].</param>
            /// <param name="weight">Base weight [out, in] ([in, out] with <paramref name="fan_in_fan_out"/>).</param>
            /// <param name="bias">Base bias [out], or null.</param>
            /// <param name="lora_A">Down projection [r, in].</param>
            /// <param name="lora_B">Up projection [out, r].</param>
            /// <param name="scaling">s (α/r, or α/√r with rsLoRA).</param>
            /// <param name="dropout_p">Dropout probability on the adapter input.</param>
            /// <param name="training">Apply dropout.</param>
            /// <param name="generator">Generator of the dropout mask (null: the default one).</param>
            /// <param name="order">Compute order of the adapter path (merged only where exact).</param>
            /// <param name="fan_in_fan_out">The base weight is stored [in, out] (GPT-2's Conv1D).</param>
            /// <returns>[..., out], in the base weight's type (the autocast type under autocast).</returns>
            public static Tensor lora_linear(Tensor input, Tensor weight, Tensor? bias, Tensor lora_A, Tensor lora_B, double scaling,
                double dropout_p = 0, bool training = false, Generator? generator = null, LoraComputeOrder order = LoraComputeOrder.Auto,
                bool fan_in_fan_out = false)
            {
                ArgumentNullException.ThrowIfNull(input);
                ArgumentNullException.ThrowIfNull(weight);
                ArgumentNullException.ThrowIfNull(lora_A);
                ArgumentNullException.ThrowIfNull(lora_B);
                var r = NativeMethods.lr_fused_lora_linear(input.Handle, weight.Handle, Opt(bias), lora_A.Handle, lora_B.Handle, scaling, dropout_p,
                    training ? 1 : 0, Gen(generator), (int)order, fan_in_fan_out ? 1 : 0);
                GC.KeepAlive(bias);
                GC.KeepAlive(generator);
                return Tensor.Wrap(r);
            }

            /// <summary>
            /// LoRA-FA's linear (arXiv 2308.03303): <see cref="lora_linear"/> with A frozen. Only z = drop(x)·Aᵀ ([..., r]) and,
            /// with dropout, the 1-byte mask are saved for backward, not the input: ∂B = s·dyᵀ·z and ∂x = dy·W0 + s·(dy·B)·A need
            /// neither x nor anything of width in (the memory claim of the method). Always evaluates sequentially (z is
            /// needed for ∂B).
            /// </summary>
            /// <param name="input">[..., in].</param>
            /// <param name="weight">Base weight [out, in] ([in, out] with <paramref name="fan_in_fan_out"/>).</param>
            /// <param name="bias">Base bias, or null.</param>
            /// <param name="lora_A">Frozen down projection [r, in] (must not require grad).</param>
            /// <param name="lora_B">Up projection [out, r].</param>
            /// <param name="scaling">s.</param>
            /// <param name="dropout_p">Dropout probability on the adapter input.</param>
            /// <param name="training">Apply dropout.</param>
            /// <param name="generator">Generator of the dropout mask (null: the default one).</param>
            /// <param name="fan_in_fan_out">The base weight is stored [in, out].</param>
            /// <returns>[..., out].</returns>
            /// <exception cref="ArgumentException"><paramref name="lora_A"/> requires grad.</exception>
            public static Tensor lora_fa_linear(Tensor input, Tensor weight, Tensor? bias, Tensor lora_A, Tensor lora_B, double scaling,
                double dropout_p = 0, bool training = false, Generator? generator = null, bool fan_in_fan_out = false)
            {
                ArgumentNullException.ThrowIfNull(lora_A);
                if (lora_A.requires_grad)
                    throw new ArgumentException("lora_fa_linear: LoRA-FA freezes lora_A; it requires grad (set requires_grad = false, or use lora_linear)", nameof(lora_A));
                return lora_linear(input, weight, bias, lora_A, lora_B, scaling, dropout_p, training, generator, LoraComputeOrder.Sequential, fan_in_fan_out);
            }

            /// <summary>
            /// Up to three LoRA linears of one shared input (q/k/v, or gate/up) in one autograd node: the base matmuls run
            /// per projection, the adapter down-projections as one matmul with the stacked A's, and the input gradient is
            /// accumulated in one buffer (no separate sums of per-projection gradients). No dropout (use
            /// <see cref="lora_linear"/> per projection when dropout is active). Every projection needs the same base type
            /// and the same adapter type.
            /// </summary>
            /// <param name="input">[..., in].</param>
            /// <param name="projections">1 to 3 projections: base weight, bias (or null), A, B, scaling.</param>
            /// <param name="fan_in_fan_out">The base weights are stored [in, out].</param>
            /// <returns>One output per projection.</returns>
            public static unsafe Tensor[] lora_linear_shared(Tensor input, IReadOnlyList<(Tensor weight, Tensor? bias, Tensor lora_A, Tensor lora_B, double scaling)> projections,
                bool fan_in_fan_out = false)
            {
                ArgumentNullException.ThrowIfNull(input);
                ArgumentNullException.ThrowIfNull(projections);
                int k = projections.Count;
                if (k < 1 || k > 3) throw new ArgumentException($"lora_linear_shared takes 1 to 3 projections, got {k}", nameof(projections));
                IntPtr* w = stackalloc IntPtr[3], b = stackalloc IntPtr[3], a = stackalloc IntPtr[3], bb = stackalloc IntPtr[3], outs = stackalloc IntPtr[3];
                double* s = stackalloc double[3];
                for (int i = 0; i < k; i++)
                {
                    var p = projections[i];
                    w[i] = (p.weight ?? throw new ArgumentNullException(nameof(projections), $"projection {i} has no weight")).Handle.DangerousGetHandle();
                    b[i] = Opt(p.bias);
                    a[i] = (p.lora_A ?? throw new ArgumentNullException(nameof(projections), $"projection {i} has no lora_A")).Handle.DangerousGetHandle();
                    bb[i] = (p.lora_B ?? throw new ArgumentNullException(nameof(projections), $"projection {i} has no lora_B")).Handle.DangerousGetHandle();
                    s[i] = p.scaling;
                }
                var status = NativeMethods.lr_fused_lora_linear_shared(input.Handle, k, w, b, a, bb, s, fan_in_fan_out ? 1 : 0, outs);
                GC.KeepAlive(projections);
                Tensor.CheckStatus(status);
                var result = new Tensor[k];
                for (int i = 0; i < k; i++) result[i] = new Tensor(outs[i]);
                return result;
            }

            /// <summary>
            /// The fused DoRA linear (arXiv 2402.09353, PEFT's form): with W' = W0 + s·B·A, n = ‖W'‖ per output row
            /// (detached) and k = m / n, y = x·W0ᵀ + b + (k − 1) ⊙ (x̃·W0ᵀ) + k ⊙ s·(x̃·Aᵀ)·Bᵀ where x̃ is the dropped-out input
            /// (without dropout: y = k ⊙ (x·W'ᵀ) + b). The norm is computed in float32 (float64 for float64 weights) from
            /// ‖W0_i‖² + 2s·⟨W0_i·Aᵀ, B_i⟩ + s²·B_i·(A·Aᵀ)·B_iᵀ, without forming the out×in W'. One autograd node; the base weight
            /// must be frozen; gradients flow to x, b, A, B and m.
            /// </summary>
            /// <param name="input">[..., in].</param>
            /// <param name="weight">Frozen base weight [out, in] ([in, out] with <paramref name="fan_in_fan_out"/>).</param>
            /// <param name="bias">Base bias [out], or null (never scaled by k).</param>
            /// <param name="lora_A">Down projection [r, in].</param>
            /// <param name="lora_B">Up projection [out, r].</param>
            /// <param name="magnitude">m [out].</param>
            /// <param name="scaling">s.</param>
            /// <param name="dropout_p">Dropout probability on the adapter input (the DoRA term then sees the dropped input, as in PEFT).</param>
            /// <param name="training">Apply dropout.</param>
            /// <param name="generator">Generator of the dropout mask (null: the default one).</param>
            /// <param name="fan_in_fan_out">The base weight is stored [in, out].</param>
            /// <returns>[..., out] in the base weight's type.</returns>
            public static Tensor dora_linear(Tensor input, Tensor weight, Tensor? bias, Tensor lora_A, Tensor lora_B, Tensor magnitude, double scaling,
                double dropout_p = 0, bool training = false, Generator? generator = null, bool fan_in_fan_out = false)
            {
                ArgumentNullException.ThrowIfNull(input);
                ArgumentNullException.ThrowIfNull(weight);
                ArgumentNullException.ThrowIfNull(lora_A);
                ArgumentNullException.ThrowIfNull(lora_B);
                ArgumentNullException.ThrowIfNull(magnitude);
                var r = NativeMethods.lr_fused_dora_linear(input.Handle, weight.Handle, Opt(bias), lora_A.Handle, lora_B.Handle, magnitude.Handle, scaling,
                    dropout_p, training ? 1 : 0, Gen(generator), fan_in_fan_out ? 1 : 0);
                GC.KeepAlive(bias);
                GC.KeepAlive(generator);
                return Tensor.Wrap(r);
            }

            /// <summary>DoRA's detached row norm ‖W0 + s·B·A‖ (one value per output row, float32 or float64), computed without
            /// forming W0 + s·B·A (see <see cref="dora_linear"/>); e.g. to initialise the magnitude (B = 0 gives ‖W0‖).</summary>
            /// <param name="weight">Base weight [out, in] ([in, out] with <paramref name="fan_in_fan_out"/>).</param>
            /// <param name="lora_A">[r, in].</param>
            /// <param name="lora_B">[out, r].</param>
            /// <param name="scaling">s.</param>
            /// <param name="fan_in_fan_out">The base weight is stored [in, out].</param>
            /// <returns>[out].</returns>
            public static Tensor dora_weight_norm(Tensor weight, Tensor lora_A, Tensor lora_B, double scaling, bool fan_in_fan_out = false)
                => Tensor.Wrap(NativeMethods.lr_fused_dora_weight_norm(weight.Handle, lora_A.Handle, lora_B.Handle, scaling, fan_in_fan_out ? 1 : 0));

            /// <summary>
            /// The compute order <see cref="lora_linear"/> uses for given shapes (RunLoRA's chooser). Cost model, in
            /// multiply-adds, with a pass over an out×in matrix counted as 8 per element: forward sequential N·r·(in+out),
            /// merged out·in·r + 8·out·in (+ N·in·r for z when B trains); input gradient sequential N·r·in, merged
            /// out·in·r + 8·out·in. Merged is chosen when cheaper and allowed (<paramref name="exact"/>).
            /// </summary>
            /// <param name="tokens">N, the number of input rows.</param>
            /// <param name="in_features">in.</param>
            /// <param name="out_features">out.</param>
            /// <param name="r">Rank.</param>
            /// <param name="requested">The requested order (Auto chooses).</param>
            /// <param name="exact">Whether the merged order is numerically equivalent here (no dropout, one float32/float64
            /// type, no autocast).</param>
            /// <param name="b_trains">Whether B trains (z is then needed).</param>
            /// <returns>The orders of the forward and of the input gradient.</returns>
            public static (LoraComputeOrder forward, LoraComputeOrder backward) lora_compute_order(long tokens, long in_features, long out_features, long r,
                LoraComputeOrder requested = LoraComputeOrder.Auto, bool exact = true, bool b_trains = true)
            {
                var code = Tensor.Check(NativeMethods.lr_fused_lora_choose_order(tokens, in_features, out_features, r, (int)requested, exact ? 1 : 0, b_trains ? 1 : 0));
                return ((LoraComputeOrder)(code & 3), (LoraComputeOrder)((code >> 2) & 3));
            }
        }
    }
}
