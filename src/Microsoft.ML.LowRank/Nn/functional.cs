using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    /// <summary>Neural-network building blocks (PyTorch's <c>torch.nn</c>).</summary>
    public static partial class nn
    {
        /// <summary>
        /// Stateless neural-network functions (PyTorch's <c>torch.nn.functional</c>): linear layers, normalisation,
        /// activations, dropout, embeddings, losses and attention. All are differentiable where PyTorch's are.
        /// </summary>
        public static partial class functional
        {
            private static IntPtr Opt(Tensor? t) => t is null ? IntPtr.Zero : t.Handle.DangerousGetHandle();

            private static long ReductionCode(string reduction) => reduction switch
            {
                "none" => 0,
                "mean" => 1,
                "sum" => 2,
                _ => throw new ArgumentException($"reduction must be \"none\", \"mean\" or \"sum\", got \"{reduction}\"", nameof(reduction)),
            };

            // ---------------- linear and normalisation ----------------

            /// <summary>y = x Wᵀ + b.</summary>
            /// <param name="input">Input of shape [..., in_features].</param>
            /// <param name="weight">Weight of shape [out_features, in_features].</param>
            /// <param name="bias">Optional bias of shape [out_features].</param>
            /// <returns>Output of shape [..., out_features].</returns>
            public static Tensor linear(Tensor input, Tensor weight, Tensor? bias = null)
            {
                var r = NativeMethods.lr_nn_linear(input.Handle, weight.Handle, Opt(bias));
                GC.KeepAlive(bias);
                return Tensor.Wrap(r);
            }

            /// <summary>Layer normalisation over the trailing <paramref name="normalized_shape"/> dimensions:
            /// (x - mean) / sqrt(var + eps) * weight + bias, with the biased variance.</summary>
            /// <param name="input">The input.</param>
            /// <param name="normalized_shape">The trailing dimensions to normalise over.</param>
            /// <param name="weight">Optional scale of shape <paramref name="normalized_shape"/>.</param>
            /// <param name="bias">Optional shift of shape <paramref name="normalized_shape"/>.</param>
            /// <param name="eps">Added to the variance.</param>
            /// <returns>The normalised tensor.</returns>
            public static unsafe Tensor layer_norm(Tensor input, long[] normalized_shape, Tensor? weight = null, Tensor? bias = null, double eps = 1e-5)
            {
                ArgumentNullException.ThrowIfNull(normalized_shape);
                IntPtr r;
                fixed (long* p = normalized_shape)
                    r = NativeMethods.lr_nn_layer_norm(input.Handle, p, normalized_shape.Length, Opt(weight), Opt(bias), eps);
                GC.KeepAlive(weight);
                GC.KeepAlive(bias);
                return Tensor.Wrap(r);
            }

            /// <summary>Root-mean-square normalisation over the trailing <paramref name="normalized_shape"/> dimensions:
            /// x * rsqrt(mean(x²) + eps) * weight. float16 and bfloat16 inputs are normalised in float32 and cast back
            /// before the weight is applied (as Hugging Face's LLaMA RMSNorm). The same formula runs on every libtorch version.</summary>
            /// <param name="input">The input (floating point).</param>
            /// <param name="normalized_shape">The trailing dimensions to normalise over.</param>
            /// <param name="weight">Optional scale of shape <paramref name="normalized_shape"/>.</param>
            /// <param name="eps">Added to the mean square; null: the machine epsilon of the computation type (float32 unless the input is float64).</param>
            /// <returns>The normalised tensor.</returns>
            public static unsafe Tensor rms_norm(Tensor input, long[] normalized_shape, Tensor? weight = null, double? eps = null)
            {
                ArgumentNullException.ThrowIfNull(normalized_shape);
                IntPtr r;
                fixed (long* p = normalized_shape)
                    r = NativeMethods.lr_nn_rms_norm(input.Handle, p, normalized_shape.Length, Opt(weight), eps ?? 0, eps.HasValue ? 1 : 0);
                GC.KeepAlive(weight);
                return Tensor.Wrap(r);
            }

            // ---------------- softmax ----------------

            /// <summary>Softmax along <paramref name="dim"/>: exp(x) / sum(exp(x)).</summary>
            /// <param name="input">The input.</param>
            /// <param name="dim">The dimension to normalise (negative counts from the end).</param>
            /// <param name="dtype">Convert the input to this type first (null: keep).</param>
            /// <returns>The probabilities.</returns>
            public static Tensor softmax(Tensor input, long dim, ScalarType? dtype = null)
                => Tensor.Wrap(NativeMethods.lr_nn_softmax(input.Handle, dim, dtype.HasValue ? (int)dtype.Value : -1));

            /// <summary>Log of the softmax along <paramref name="dim"/>, computed stably.</summary>
            /// <param name="input">The input.</param>
            /// <param name="dim">The dimension to normalise (negative counts from the end).</param>
            /// <param name="dtype">Convert the input to this type first (null: keep).</param>
            /// <returns>The log-probabilities.</returns>
            public static Tensor log_softmax(Tensor input, long dim, ScalarType? dtype = null)
                => Tensor.Wrap(NativeMethods.lr_nn_log_softmax(input.Handle, dim, dtype.HasValue ? (int)dtype.Value : -1));

            // ---------------- dropout ----------------

            /// <summary>Zeroes each element with probability <paramref name="p"/> and scales the kept ones by 1 / (1 - p)
            /// while <paramref name="training"/>; otherwise returns the input unchanged.</summary>
            /// <param name="input">The input.</param>
            /// <param name="p">Probability of zeroing an element, in [0, 1].</param>
            /// <param name="training">Apply dropout (false: identity).</param>
            /// <param name="inplace">Modify <paramref name="input"/> in place and return it.</param>
            /// <param name="generator">Generator for the mask (null: the default one).</param>
            /// <returns>The result (the input itself when <paramref name="inplace"/>).</returns>
            public static Tensor dropout(Tensor input, double p = 0.5, bool training = true, bool inplace = false, Generator? generator = null)
            {
                if (inplace)
                {
                    var s = NativeMethods.lr_nn_dropout_(input.Handle, p, training ? 1 : 0, Gen(generator));
                    GC.KeepAlive(generator);
                    Tensor.CheckStatus(s);
                    return input;
                }
                var r = NativeMethods.lr_nn_dropout(input.Handle, p, training ? 1 : 0, Gen(generator));
                GC.KeepAlive(generator);
                return Tensor.Wrap(r);
            }

            // ---------------- embedding ----------------

            /// <summary>Looks up rows of <paramref name="weight"/>: out[..., :] = weight[input[...], :].</summary>
            /// <param name="input">int64 or int32 indices of any shape.</param>
            /// <param name="weight">The table, [num_embeddings, embedding_dim].</param>
            /// <param name="padding_idx">Row whose gradient is always zero (negative counts from the end); null: none.</param>
            /// <param name="scale_grad_by_freq">Scale gradients by the inverse frequency of each index in the batch.</param>
            /// <param name="sparse">Produce a sparse gradient for <paramref name="weight"/>.</param>
            /// <returns>Embeddings of shape [*input.shape, embedding_dim].</returns>
            public static Tensor embedding(Tensor input, Tensor weight, long? padding_idx = null, bool scale_grad_by_freq = false, bool sparse = false)
                => Tensor.Wrap(NativeMethods.lr_nn_embedding(input.Handle, weight.Handle, padding_idx ?? 0, padding_idx.HasValue ? 1 : 0,
                    scale_grad_by_freq ? 1 : 0, sparse ? 1 : 0));

            // ---------------- activations ----------------

            /// <summary>Gaussian error linear unit: x Φ(x), exactly (erf) or with the tanh approximation.</summary>
            /// <param name="input">The input.</param>
            /// <param name="approximate">"none" (erf) or "tanh".</param>
            /// <returns>The activation.</returns>
            public static Tensor gelu(Tensor input, string approximate = "none")
            {
                int code = approximate switch
                {
                    "none" => 0,
                    "tanh" => 1,
                    _ => throw new ArgumentException($"approximate must be \"none\" or \"tanh\", got \"{approximate}\"", nameof(approximate)),
                };
                return Tensor.Wrap(NativeMethods.lr_nn_gelu(input.Handle, code));
            }

            /// <summary>SiLU (swish): x * sigmoid(x).</summary>
            /// <param name="input">The input.</param>
            /// <returns>The activation.</returns>
            public static Tensor silu(Tensor input) => Tensor.Wrap(NativeMethods.lr_nn_silu(input.Handle));

            /// <summary>max(x, 0).</summary>
            /// <param name="input">The input.</param>
            /// <returns>The activation.</returns>
            public static Tensor relu(Tensor input) => Tensor.Wrap(NativeMethods.lr_nn_relu(input.Handle));

            /// <summary>Hyperbolic tangent.</summary>
            /// <param name="input">The input.</param>
            /// <returns>The activation.</returns>
            public static Tensor tanh(Tensor input) => Tensor.Wrap(NativeMethods.lr_nn_tanh(input.Handle));

            /// <summary>Logistic sigmoid 1 / (1 + exp(-x)).</summary>
            /// <param name="input">The input.</param>
            /// <returns>The activation.</returns>
            public static Tensor sigmoid(Tensor input) => Tensor.Wrap(NativeMethods.lr_nn_sigmoid(input.Handle));

            /// <summary>Softplus: log(1 + exp(beta x)) / beta, and x itself where beta x &gt; threshold.</summary>
            /// <param name="input">The input.</param>
            /// <param name="beta">Sharpness.</param>
            /// <param name="threshold">Above this value of beta x the function is linear.</param>
            /// <returns>The activation.</returns>
            public static Tensor softplus(Tensor input, double beta = 1, double threshold = 20)
                => Tensor.Wrap(NativeMethods.lr_nn_softplus(input.Handle, beta, threshold));

            // ---------------- losses ----------------

            /// <summary>Cross entropy between logits and class indices (or class probabilities).</summary>
            /// <param name="input">Logits, [N, C] or [N, C, d1, ...] (or [C]).</param>
            /// <param name="target">int64 class indices [N] / [N, d1, ...], or probabilities of the input's shape.</param>
            /// <param name="weight">Optional per-class weight [C].</param>
            /// <param name="ignore_index">Targets equal to this contribute nothing (nor to the mean's denominator).</param>
            /// <param name="reduction">"mean", "sum" or "none".</param>
            /// <param name="label_smoothing">Mixes the target with the uniform distribution: (1 - s) one-hot + s / C.</param>
            /// <returns>The loss.</returns>
            public static Tensor cross_entropy(Tensor input, Tensor target, Tensor? weight = null, long ignore_index = -100, string reduction = "mean", double label_smoothing = 0)
            {
                var r = NativeMethods.lr_nn_cross_entropy(input.Handle, target.Handle, Opt(weight), ReductionCode(reduction), ignore_index, label_smoothing);
                GC.KeepAlive(weight);
                return Tensor.Wrap(r);
            }

            /// <summary>Negative log-likelihood: -input[n, target[n]] (weighted), from log-probabilities.</summary>
            /// <param name="input">Log-probabilities, [N, C] or [N, C, d1, ...].</param>
            /// <param name="target">int64 class indices.</param>
            /// <param name="weight">Optional per-class weight [C].</param>
            /// <param name="ignore_index">Targets equal to this contribute nothing.</param>
            /// <param name="reduction">"mean", "sum" or "none".</param>
            /// <returns>The loss.</returns>
            public static Tensor nll_loss(Tensor input, Tensor target, Tensor? weight = null, long ignore_index = -100, string reduction = "mean")
            {
                var r = NativeMethods.lr_nn_nll_loss(input.Handle, target.Handle, Opt(weight), ReductionCode(reduction), ignore_index);
                GC.KeepAlive(weight);
                return Tensor.Wrap(r);
            }

            /// <summary>Mean squared error (x - y)².</summary>
            /// <param name="input">Predictions.</param>
            /// <param name="target">Targets of the same shape.</param>
            /// <param name="reduction">"mean", "sum" or "none".</param>
            /// <returns>The loss.</returns>
            public static Tensor mse_loss(Tensor input, Tensor target, string reduction = "mean")
                => Tensor.Wrap(NativeMethods.lr_nn_mse_loss(input.Handle, target.Handle, ReductionCode(reduction)));

            /// <summary>Binary cross entropy of sigmoid(input) against targets in [0, 1], computed stably from logits.</summary>
            /// <param name="input">Logits.</param>
            /// <param name="target">Targets of the same shape.</param>
            /// <param name="weight">Optional rescaling weight, broadcast to the input.</param>
            /// <param name="reduction">"mean", "sum" or "none".</param>
            /// <param name="pos_weight">Optional weight of positive examples, broadcast along the last dimension.</param>
            /// <returns>The loss.</returns>
            public static Tensor binary_cross_entropy_with_logits(Tensor input, Tensor target, Tensor? weight = null, string reduction = "mean", Tensor? pos_weight = null)
            {
                var r = NativeMethods.lr_nn_binary_cross_entropy_with_logits(input.Handle, target.Handle, Opt(weight), Opt(pos_weight), ReductionCode(reduction));
                GC.KeepAlive(weight);
                GC.KeepAlive(pos_weight);
                return Tensor.Wrap(r);
            }

            // ---------------- attention ----------------

            /// <summary>
            /// True when <see cref="scaled_dot_product_attention"/> calls libtorch's own <c>at::scaled_dot_product_attention</c>
            /// (libtorch 2.x; it picks a fused flash / memory-efficient kernel where one applies). False on libtorch 1.13,
            /// where the reference formula runs as separate kernels. (On libtorch 2.0 an explicit scale also uses the formula.)
            /// </summary>
            public static bool sdpa_uses_fused_kernel => NativeMethods.lr_nn_sdpa_native() != 0;

            /// <summary>
            /// Rotary position embedding in the rotate-half form (LLaMA, GPT-NeoX, Qwen, Mistral, Gemma):
            /// <c>x·cos + [−x₂, x₁]·sin</c> with x₁, x₂ the halves of the last dimension, as one autograd node (no
            /// rotated copy of x is made in forward or backward). Equals the composed formula to rounding.
            /// </summary>
            /// <param name="x">[..., D], D even.</param>
            /// <param name="cos">Broadcastable to <paramref name="x"/>, without gradient.</param>
            /// <param name="sin">Broadcastable to <paramref name="x"/>, without gradient.</param>
            /// <returns>Same shape and type as <paramref name="x"/>.</returns>
            public static Tensor rotary_embedding(Tensor x, Tensor cos, Tensor sin) => Tensor.Wrap(NativeMethods.lr_nn_rope(x.Handle, cos.Handle, sin.Handle));

            /// <summary>
            /// On libtorch 1.13 (no native scaled_dot_product_attention): whether <see cref="scaled_dot_product_attention"/>
            /// runs float32/float64 CPU attention of shape [B,H,L,E] (no dropout, no autocast) through the shim's attention
            /// node (default true): each (batch, head) computes its products on one core with the scale, mask and softmax
            /// applied in cache, causal masks skip the products of the masked triangle, and backward saves only the
            /// attention weights. False runs the composed formula (matmul, mask, softmax, matmul) everywhere; the two agree
            /// to float rounding. Process-wide; has no effect on libtorch 2.x, which uses its own kernels.
            /// </summary>
            public static bool cpu_attention_kernel
            {
                get => NativeMethods.lr_nn_attention_cpu_kernel(-1) == 1;
                set => NativeMethods.lr_nn_attention_cpu_kernel(value ? 1 : 0);
            }

            /// <summary>
            /// Attention: softmax(q kᵀ · scale + mask) v, with dropout on the attention weights. A bool mask keeps the
            /// positions that are true; a float mask is added to the scores. <paramref name="is_causal"/> keeps the lower
            /// triangle (top-left aligned); it cannot be combined with a mask.
            /// </summary>
            /// <param name="query">[..., L, E].</param>
            /// <param name="key">[..., S, E].</param>
            /// <param name="value">[..., S, Ev].</param>
            /// <param name="attn_mask">Optional mask broadcastable to [..., L, S].</param>
            /// <param name="dropout_p">Dropout probability on the attention weights (pass 0 when not training).</param>
            /// <param name="is_causal">Apply a causal mask.</param>
            /// <param name="scale">Score scale; null: 1 / sqrt(E).</param>
            /// <returns>[..., L, Ev].</returns>
            public static Tensor scaled_dot_product_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask = null,
                double dropout_p = 0, bool is_causal = false, double? scale = null)
            {
                var r = NativeMethods.lr_nn_sdpa(query.Handle, key.Handle, value.Handle, Opt(attn_mask), dropout_p, is_causal ? 1 : 0,
                    scale ?? 0, scale.HasValue ? 1 : 0);
                GC.KeepAlive(attn_mask);
                return Tensor.Wrap(r);
            }
        }
    }
}
