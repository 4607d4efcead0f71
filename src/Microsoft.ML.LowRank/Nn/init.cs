namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    public static partial class nn
    {
        /// <summary>In-place parameter initialisers (no autograd history), with PyTorch's formulas.</summary>
        public static class init
        {
            /// <summary>(fan_in, fan_out) of a weight: dims 1 and 0 times the receptive field (product of dims 2..).</summary>
            /// <param name="tensor">A weight of at least 2 dimensions.</param>
            /// <returns>The fans.</returns>
            public static (long fan_in, long fan_out) calculate_fan_in_and_fan_out(Tensor tensor)
            {
                var s = tensor.shape;
                if (s.Length < 2) throw new ArgumentException($"fan in/out need a tensor with at least 2 dimensions, got {s.Length}");
                long field = 1;
                for (int i = 2; i < s.Length; i++) field *= s[i];
                return (s[1] * field, s[0] * field);
            }

            /// <summary>The recommended gain of a nonlinearity ("linear", "relu", "leaky_relu", "tanh", "sigmoid", "selu").</summary>
            /// <param name="nonlinearity">The nonlinearity.</param>
            /// <param name="param">Negative slope for leaky_relu (default 0.01).</param>
            /// <returns>The gain.</returns>
            public static double calculate_gain(string nonlinearity, double? param = null) => nonlinearity switch
            {
                "linear" or "conv1d" or "conv2d" or "sigmoid" => 1.0,
                "tanh" => 5.0 / 3,
                "relu" => Math.Sqrt(2.0),
                "leaky_relu" => Math.Sqrt(2.0 / (1 + Math.Pow(param ?? 0.01, 2))),
                "selu" => 3.0 / 4,
                _ => throw new ArgumentException($"unknown nonlinearity '{nonlinearity}'", nameof(nonlinearity)),
            };

            /// <summary>Fills with U(a, b).</summary>
            /// <param name="tensor">Target.</param>
            /// <param name="a">Lower bound.</param>
            /// <param name="b">Upper bound.</param>
            /// <param name="generator">Generator.</param>
            /// <returns>The target.</returns>
            public static Tensor uniform_(Tensor tensor, double a = 0, double b = 1, Generator? generator = null) => tensor.uniform_(a, b, generator);

            /// <summary>Fills with N(mean, std²).</summary>
            /// <param name="tensor">Target.</param>
            /// <param name="mean">Mean.</param>
            /// <param name="std">Standard deviation.</param>
            /// <param name="generator">Generator.</param>
            /// <returns>The target.</returns>
            public static Tensor normal_(Tensor tensor, double mean = 0, double std = 1, Generator? generator = null) => tensor.normal_(mean, std, generator);

            /// <summary>Fills with a constant.</summary>
            /// <param name="tensor">Target.</param>
            /// <param name="value">Value.</param>
            /// <returns>The target.</returns>
            public static Tensor constant_(Tensor tensor, double value)
            {
                using var ng = no_grad();
                return tensor.fill_(value);
            }

            /// <summary>Fills with zeros.</summary>
            /// <param name="tensor">Target.</param>
            /// <returns>The target.</returns>
            public static Tensor zeros_(Tensor tensor) => constant_(tensor, 0);

            /// <summary>Fills with ones.</summary>
            /// <param name="tensor">Target.</param>
            /// <returns>The target.</returns>
            public static Tensor ones_(Tensor tensor) => constant_(tensor, 1);

            /// <summary>He (Kaiming) uniform: U(-b, b) with b = gain·sqrt(3 / fan), gain from the nonlinearity and slope a.
            /// PyTorch's Linear and PEFT's LoRA A use a = sqrt(5), giving b = 1/sqrt(fan_in).</summary>
            /// <param name="tensor">Target (at least 2-D).</param>
            /// <param name="a">Negative slope of the leaky ReLU.</param>
            /// <param name="mode">"fan_in" or "fan_out".</param>
            /// <param name="nonlinearity">"leaky_relu" (default) or "relu".</param>
            /// <param name="generator">Generator.</param>
            /// <returns>The target.</returns>
            public static Tensor kaiming_uniform_(Tensor tensor, double a = 0, string mode = "fan_in", string nonlinearity = "leaky_relu", Generator? generator = null)
            {
                var (fin, fout) = calculate_fan_in_and_fan_out(tensor);
                var fan = mode switch { "fan_in" => fin, "fan_out" => fout, _ => throw new ArgumentException($"mode must be fan_in or fan_out, got '{mode}'", nameof(mode)) };
                var gain = calculate_gain(nonlinearity, a);
                var bound = gain * Math.Sqrt(3.0 / fan);
                return tensor.uniform_(-bound, bound, generator);
            }

            /// <summary>He (Kaiming) normal: N(0, std²) with std = gain / sqrt(fan).</summary>
            /// <param name="tensor">Target.</param>
            /// <param name="a">Negative slope of the leaky ReLU.</param>
            /// <param name="mode">"fan_in" or "fan_out".</param>
            /// <param name="nonlinearity">The nonlinearity.</param>
            /// <param name="generator">Generator.</param>
            /// <returns>The target.</returns>
            public static Tensor kaiming_normal_(Tensor tensor, double a = 0, string mode = "fan_in", string nonlinearity = "leaky_relu", Generator? generator = null)
            {
                var (fin, fout) = calculate_fan_in_and_fan_out(tensor);
                var fan = mode == "fan_in" ? fin : fout;
                return tensor.normal_(0, calculate_gain(nonlinearity, a) / Math.Sqrt(fan), generator);
            }

            /// <summary>Glorot (Xavier) uniform: U(-b, b) with b = gain·sqrt(6 / (fan_in + fan_out)).</summary>
            /// <param name="tensor">Target.</param>
            /// <param name="gain">Gain.</param>
            /// <param name="generator">Generator.</param>
            /// <returns>The target.</returns>
            public static Tensor xavier_uniform_(Tensor tensor, double gain = 1, Generator? generator = null)
            {
                var (fin, fout) = calculate_fan_in_and_fan_out(tensor);
                var b = gain * Math.Sqrt(6.0 / (fin + fout));
                return tensor.uniform_(-b, b, generator);
            }

            /// <summary>Glorot (Xavier) normal: N(0, std²) with std = gain·sqrt(2 / (fan_in + fan_out)).</summary>
            /// <param name="tensor">Target.</param>
            /// <param name="gain">Gain.</param>
            /// <param name="generator">Generator.</param>
            /// <returns>The target.</returns>
            public static Tensor xavier_normal_(Tensor tensor, double gain = 1, Generator? generator = null)
            {
                var (fin, fout) = calculate_fan_in_and_fan_out(tensor);
                return tensor.normal_(0, gain * Math.Sqrt(2.0 / (fin + fout)), generator);
            }
        }
    }
}
