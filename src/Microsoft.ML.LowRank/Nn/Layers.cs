using Microsoft.ML.LowRank.Torch.Modules;

namespace Microsoft.ML.LowRank.Torch
{
    public static partial class torch
    {
        public static partial class nn
        {
            /// <summary>y = x Wᵀ + b, with PyTorch's default init (Kaiming-uniform W with a = √5, uniform bias).</summary>
            /// <param name="in_features">Input size.</param>
            /// <param name="out_features">Output size.</param>
            /// <param name="hasBias">Whether to add a bias.</param>
            /// <param name="device">Device.</param>
            /// <param name="dtype">Element type.</param>
            /// <returns>The layer.</returns>
            public static Linear Linear(long in_features, long out_features, bool hasBias = true, Device? device = null, ScalarType? dtype = null)
                => new(in_features, out_features, hasBias, device, dtype);

            /// <summary>A lookup table of embeddings, initialised N(0, 1) (the padding row zero).</summary>
            /// <param name="num_embeddings">Vocabulary size.</param>
            /// <param name="embedding_dim">Vector size.</param>
            /// <param name="padding_idx">Row that gets no gradient.</param>
            /// <param name="device">Device.</param>
            /// <param name="dtype">Element type.</param>
            /// <returns>The layer.</returns>
            public static Embedding Embedding(long num_embeddings, long embedding_dim, long? padding_idx = null, Device? device = null, ScalarType? dtype = null)
                => new(num_embeddings, embedding_dim, padding_idx, device, dtype);

            /// <summary>Layer normalisation over the last dimensions.</summary>
            /// <param name="normalized_shape">The normalised trailing shape.</param>
            /// <param name="eps">Added to the variance.</param>
            /// <param name="elementwise_affine">Learn weight (and bias).</param>
            /// <param name="bias">Learn a bias.</param>
            /// <param name="device">Device.</param>
            /// <param name="dtype">Element type.</param>
            /// <returns>The layer.</returns>
            public static LayerNorm LayerNorm(long[] normalized_shape, double eps = 1e-5, bool elementwise_affine = true, bool bias = true, Device? device = null, ScalarType? dtype = null)
                => new(normalized_shape, eps, elementwise_affine, bias, device, dtype);

            /// <summary>Layer normalisation over the last dimension.</summary>
            /// <param name="normalized_shape">Size of the last dimension.</param>
            /// <param name="eps">Added to the variance.</param>
            /// <returns>The layer.</returns>
            public static LayerNorm LayerNorm(long normalized_shape, double eps = 1e-5) => new(new[] { normalized_shape }, eps, true, true, null, null);

            /// <summary>Root-mean-square normalisation over the last dimension (LLaMA's; Gemma's with <paramref name="weight_offset"/> = 1).</summary>
            /// <param name="hidden_size">Size of the last dimension.</param>
            /// <param name="eps">Added to the mean square.</param>
            /// <param name="weight_offset">Added to the weight (Gemma: 1, weight initialised to 0).</param>
            /// <param name="device">Device.</param>
            /// <param name="dtype">Element type.</param>
            /// <returns>The layer.</returns>
            public static RMSNorm RMSNorm(long hidden_size, double eps = 1e-6, double weight_offset = 0, Device? device = null, ScalarType? dtype = null)
                => new(hidden_size, eps, weight_offset, device, dtype);

            /// <summary>Dropout: zeroes elements with probability p in training and scales the rest by 1/(1-p).</summary>
            /// <param name="p">Drop probability.</param>
            /// <returns>The layer.</returns>
            public static Dropout Dropout(double p = 0.5) => new(p);

            /// <summary>GELU activation ("none": exact erf form; "tanh": the tanh approximation).</summary>
            /// <param name="approximate">"none" or "tanh".</param>
            /// <returns>The layer.</returns>
            public static Activation GELU(string approximate = "none") => new("GELU", x => functional.gelu(x, approximate));

            /// <summary>SiLU (swish) activation.</summary>
            /// <returns>The layer.</returns>
            public static Activation SiLU() => new("SiLU", x => functional.silu(x));

            /// <summary>ReLU activation.</summary>
            /// <returns>The layer.</returns>
            public static Activation ReLU() => new("ReLU", x => functional.relu(x));

            /// <summary>Tanh activation.</summary>
            /// <returns>The layer.</returns>
            public static Activation Tanh() => new("Tanh", x => functional.tanh(x));

            /// <summary>An activation by Hugging Face's <c>hidden_act</c> name: gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, silu/swish, relu, tanh.</summary>
            /// <param name="name">The name.</param>
            /// <returns>The layer.</returns>
            public static Activation ActivationByName(string name) => name switch
            {
                "gelu" => GELU(),
                "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => GELU("tanh"),
                "silu" or "swish" => SiLU(),
                "relu" => ReLU(),
                "tanh" => Tanh(),
                _ => throw new NotSupportedException($"unsupported activation '{name}' (supported: gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, silu, swish, relu, tanh)"),
            };

            /// <summary>An ordered list of child modules named "0", "1", ... (PyTorch's ModuleList).</summary>
            /// <param name="modules">The children.</param>
            /// <returns>The list.</returns>
            public static ModuleList<T> ModuleList<T>(params T[] modules) where T : Module => new(modules);
        }
    }
}

namespace Microsoft.ML.LowRank.Torch.Modules
{
    using static Microsoft.ML.LowRank.Torch.torch;

    /// <summary>y = x Wᵀ + b. W has shape [out_features, in_features] as in PyTorch and Hugging Face checkpoints.</summary>
    public sealed class Linear : nn.Module<Tensor, Tensor>
    {
        /// <summary>Creates the layer with PyTorch's default initialisation.</summary>
        /// <param name="in_features">Input size.</param>
        /// <param name="out_features">Output size.</param>
        /// <param name="hasBias">Whether to add a bias.</param>
        /// <param name="device">Device (meta: no storage).</param>
        /// <param name="dtype">Element type.</param>
        public Linear(long in_features, long out_features, bool hasBias = true, Device? device = null, ScalarType? dtype = null) : base(nameof(Linear))
        {
            this.in_features = in_features;
            this.out_features = out_features;
            using var scope = NewDisposeScope();
            var w = empty(new[] { out_features, in_features }, dtype, device);
            var onMeta = device?.type == DeviceType.META;
            if (!onMeta) nn.init.kaiming_uniform_(w, Math.Sqrt(5));
            register_parameter("weight", new nn.Parameter(w));
            if (hasBias)
            {
                var b = empty(new[] { out_features }, dtype, device);
                if (!onMeta)
                {
                    var bound = in_features > 0 ? 1 / Math.Sqrt(in_features) : 0;
                    b.uniform_(-bound, bound);
                }
                register_parameter("bias", new nn.Parameter(b));
            }
        }

        /// <summary>Input size.</summary>
        public long in_features { get; }

        /// <summary>Output size.</summary>
        public long out_features { get; }

        /// <summary>The weight [out_features, in_features].</summary>
        public nn.Parameter weight => get_parameter("weight");

        /// <summary>The bias [out_features], or null.</summary>
        public nn.Parameter? bias => named_parameters(false).Where(p => p.name == "bias").Select(p => p.parameter).FirstOrDefault();

        /// <inheritdoc/>
        public override Tensor forward(Tensor input) => nn.functional.linear(input, weight, bias);
    }

    /// <summary>An embedding table [num_embeddings, embedding_dim].</summary>
    public sealed class Embedding : nn.Module<Tensor, Tensor>
    {
        /// <summary>Creates the table, initialised N(0, 1) with a zero padding row.</summary>
        /// <param name="num_embeddings">Vocabulary size.</param>
        /// <param name="embedding_dim">Vector size.</param>
        /// <param name="padding_idx">Row that gets no gradient.</param>
        /// <param name="device">Device.</param>
        /// <param name="dtype">Element type.</param>
        public Embedding(long num_embeddings, long embedding_dim, long? padding_idx = null, Device? device = null, ScalarType? dtype = null) : base(nameof(Embedding))
        {
            this.padding_idx = padding_idx;
            using var scope = NewDisposeScope();
            var w = empty(new[] { num_embeddings, embedding_dim }, dtype, device);
            if (device?.type != DeviceType.META)
            {
                w.normal_();
                if (padding_idx is { } p)
                {
                    using var ng = no_grad();
                    w[p].fill_(0);
                }
            }
            register_parameter("weight", new nn.Parameter(w));
        }

        /// <summary>Row that gets no gradient, if any.</summary>
        public long? padding_idx { get; }

        /// <summary>The table.</summary>
        public nn.Parameter weight => get_parameter("weight");

        /// <inheritdoc/>
        public override Tensor forward(Tensor input) => nn.functional.embedding(input, weight, padding_idx);
    }

    /// <summary>Layer normalisation.</summary>
    public sealed class LayerNorm : nn.Module<Tensor, Tensor>
    {
        private readonly long[] _shape;
        private readonly double _eps;

        /// <summary>Creates the layer (weight ones, bias zeros).</summary>
        /// <param name="normalized_shape">The normalised trailing shape.</param>
        /// <param name="eps">Added to the variance.</param>
        /// <param name="elementwise_affine">Learn weight (and bias).</param>
        /// <param name="bias">Learn a bias.</param>
        /// <param name="device">Device.</param>
        /// <param name="dtype">Element type.</param>
        public LayerNorm(long[] normalized_shape, double eps, bool elementwise_affine, bool bias, Device? device, ScalarType? dtype) : base(nameof(LayerNorm))
        {
            _shape = normalized_shape;
            _eps = eps;
            if (!elementwise_affine) return;
            using var scope = NewDisposeScope();
            register_parameter("weight", new nn.Parameter(ones(normalized_shape, dtype, device)));
            if (bias) register_parameter("bias", new nn.Parameter(zeros(normalized_shape, dtype, device)));
        }

        /// <inheritdoc/>
        public override Tensor forward(Tensor input)
        {
            nn.Parameter? w = null, b = null;
            foreach (var (n, p) in named_parameters(false)) { if (n == "weight") w = p; else if (n == "bias") b = p; }
            return nn.functional.layer_norm(input, _shape, w, b, _eps);
        }
    }

    /// <summary>
    /// RMS normalisation as in Hugging Face's LLaMA (and Gemma with weight_offset 1): computed in float32,
    /// y = (x / sqrt(mean(x²) + eps)) cast back to x's type, times (weight + offset).
    /// </summary>
    public sealed class RMSNorm : nn.Module<Tensor, Tensor>
    {
        /// <summary>Creates the layer (weight ones; zeros when weight_offset is 1, so the initial scale is 1).</summary>
        /// <param name="hidden_size">Size of the last dimension.</param>
        /// <param name="eps">Added to the mean square.</param>
        /// <param name="weight_offset">Added to the weight.</param>
        /// <param name="device">Device.</param>
        /// <param name="dtype">Element type.</param>
        public RMSNorm(long hidden_size, double eps, double weight_offset, Device? device, ScalarType? dtype) : base(nameof(RMSNorm))
        {
            this.eps = eps;
            this.weight_offset = weight_offset;
            using var scope = NewDisposeScope();
            var w = weight_offset == 0 ? ones(new[] { hidden_size }, dtype, device) : zeros(new[] { hidden_size }, dtype, device);
            register_parameter("weight", new nn.Parameter(w));
        }

        /// <summary>Added to the mean square.</summary>
        public double eps { get; }

        /// <summary>Added to the weight (Gemma: 1).</summary>
        public double weight_offset { get; }

        /// <summary>The scale.</summary>
        public nn.Parameter weight => get_parameter("weight");

        /// <inheritdoc/>
        public override Tensor forward(Tensor input)
        {
            // Without an offset this is exactly functional.rms_norm (one native node that keeps only x and the row scale for backward).
            if (weight_offset == 0) return nn.functional.rms_norm(input, new[] { input.size(-1) }, weight, eps);
            using var scope = NewDisposeScope();
            var x = input.to_type(ScalarType.Float32);
            var normed = x * (x.square().mean(new long[] { -1 }, keepdim: true) + eps).rsqrt();
            Tensor result;
            if (weight_offset == 0)
                result = weight * normed.to_type(input.dtype);
            else
                result = (normed * (weight.to_type(ScalarType.Float32) + weight_offset)).to_type(input.dtype);
            return result.MoveToOuterDisposeScope();
        }
    }

    /// <summary>Dropout.</summary>
    public sealed class Dropout : nn.Module<Tensor, Tensor>
    {
        /// <summary>Creates the layer.</summary>
        /// <param name="p">Drop probability in [0, 1).</param>
        public Dropout(double p) : base(nameof(Dropout))
        {
            if (p < 0 || p >= 1) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must be in [0, 1)");
            this.p = p;
        }

        /// <summary>Drop probability.</summary>
        public double p { get; }

        /// <inheritdoc/>
        public override Tensor forward(Tensor input) => p == 0 || !training ? input.alias() : nn.functional.dropout(input, p, training);
    }

    /// <summary>A parameter-free elementwise activation.</summary>
    public sealed class Activation : nn.Module<Tensor, Tensor>
    {
        private readonly Func<Tensor, Tensor> _fn;

        /// <summary>Creates the activation.</summary>
        /// <param name="name">Name.</param>
        /// <param name="fn">The function.</param>
        public Activation(string name, Func<Tensor, Tensor> fn) : base(name) { _fn = fn; }

        /// <inheritdoc/>
        public override Tensor forward(Tensor input) => _fn(input);
    }

    /// <summary>An ordered list of children registered as "0", "1", ....</summary>
    /// <typeparam name="T">Child type.</typeparam>
    public sealed class ModuleList<T> : nn.Module, IReadOnlyList<T> where T : nn.Module
    {
        private readonly List<T> _items = new();

        /// <summary>Creates the list.</summary>
        /// <param name="modules">Initial children.</param>
        public ModuleList(IEnumerable<T> modules) : base(nameof(ModuleList<T>))
        {
            foreach (var m in modules) Add(m);
        }

        /// <summary>Appends a child.</summary>
        /// <param name="module">The child.</param>
        public void Add(T module)
        {
            register_module(_items.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), module);
            _items.Add(module);
        }

        /// <inheritdoc/>
        public T this[int index] => _items[index];

        /// <inheritdoc/>
        public int Count => _items.Count;

        /// <inheritdoc/>
        public IEnumerator<T> GetEnumerator() => _items.GetEnumerator();

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
