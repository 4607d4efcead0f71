using System.Runtime.InteropServices;
using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

/// <summary>Owns one native <c>at::Generator</c> handle.</summary>
internal sealed class GeneratorHandle : SafeHandle
{
    public GeneratorHandle() : base(IntPtr.Zero, true) { }
    internal GeneratorHandle(IntPtr p) : base(IntPtr.Zero, true) { SetHandle(p); }
    public override bool IsInvalid => handle == IntPtr.Zero;
    protected override bool ReleaseHandle() { NativeMethods.lr_random_generator_free(handle); return true; }
}

public static partial class torch
{
    /// <summary>
    /// A random number generator. Two generators with the same seed give the same numbers; the state can be
    /// saved and restored (for checkpoint/resume).
    /// </summary>
    public sealed class Generator : IDisposable
    {
        internal GeneratorHandle Handle { get; }

        /// <summary>Creates a generator for a device with a seed.</summary>
        /// <param name="seed">The seed.</param>
        /// <param name="device">Device (default CPU).</param>
        public Generator(ulong seed = 67280421310721UL, Device? device = null)
        {
            var (k, i) = Encode(device);
            var p = NativeMethods.lr_random_generator_new(seed, k, i);
            if (p == IntPtr.Zero) ThrowLastError();
            Handle = new GeneratorHandle(p);
        }

        private Generator(IntPtr p) { Handle = new GeneratorHandle(p); }

        internal static Generator Default(Device? device)
        {
            var (k, i) = Encode(device);
            var p = NativeMethods.lr_random_default_generator(k, i);
            if (p == IntPtr.Zero) ThrowLastError();
            return new Generator(p);
        }

        /// <summary>Reseeds the generator.</summary>
        /// <param name="seed">The seed.</param>
        /// <returns>This generator.</returns>
        public Generator manual_seed(ulong seed)
        {
            Tensor.CheckStatus(NativeMethods.lr_random_generator_manual_seed(Handle, seed));
            return this;
        }

        /// <summary>The seed the generator was last seeded with.</summary>
        /// <returns>The seed.</returns>
        public ulong initial_seed() => NativeMethods.lr_random_generator_initial_seed(Handle);

        /// <summary>The generator's full state as a uint8 tensor.</summary>
        /// <returns>The state.</returns>
        public Tensor get_state() => Tensor.Wrap(NativeMethods.lr_random_generator_get_state(Handle));

        /// <summary>Restores a state from <see cref="get_state"/>.</summary>
        /// <param name="state">The state.</param>
        public void set_state(Tensor state) => Tensor.CheckStatus(NativeMethods.lr_random_generator_set_state(Handle, state.Handle));

        /// <summary>Frees the native generator.</summary>
        public void Dispose() => Handle.Dispose();
    }

    private static IntPtr Gen(Generator? g) => g?.Handle.DangerousGetHandle() ?? IntPtr.Zero;

    /// <summary>Seeds the default generators (CPU and every CUDA device).</summary>
    /// <param name="seed">The seed.</param>
    public static void manual_seed(long seed) => Tensor.CheckStatus(NativeMethods.lr_random_manual_seed(unchecked((ulong)seed)));

    /// <summary>The default CPU generator (a new handle aliasing the process-wide generator).</summary>
    /// <returns>The generator.</returns>
    public static Generator default_generator() => Generator.Default(null);

    /// <summary>Uniform samples from [0, 1).</summary>
    /// <param name="size">The shape.</param>
    /// <param name="dtype">Element type.</param>
    /// <param name="device">Device.</param>
    /// <param name="requires_grad">Record gradients.</param>
    /// <param name="generator">Generator (default: the global one).</param>
    /// <returns>The tensor.</returns>
    public static unsafe Tensor rand(long[] size, ScalarType? dtype = null, Device? device = null, bool requires_grad = false, Generator? generator = null)
    {
        var (k, i) = Encode(device);
        fixed (long* p = size) { var r = NativeMethods.lr_random_rand(p, size.Length, Gen(generator), (int)(dtype ?? s_defaultDtype), k, i, requires_grad ? 1 : 0); GC.KeepAlive(generator); return Tensor.Wrap(r); }
    }

    /// <summary>Uniform samples from [0, 1) of the given shape.</summary>
    /// <param name="size">The shape.</param>
    /// <returns>The tensor.</returns>
    public static Tensor rand(params long[] size) => rand(size, null);

    /// <summary>Standard normal samples.</summary>
    /// <param name="size">The shape.</param>
    /// <param name="dtype">Element type.</param>
    /// <param name="device">Device.</param>
    /// <param name="requires_grad">Record gradients.</param>
    /// <param name="generator">Generator (default: the global one).</param>
    /// <returns>The tensor.</returns>
    public static unsafe Tensor randn(long[] size, ScalarType? dtype = null, Device? device = null, bool requires_grad = false, Generator? generator = null)
    {
        var (k, i) = Encode(device);
        fixed (long* p = size) { var r = NativeMethods.lr_random_randn(p, size.Length, Gen(generator), (int)(dtype ?? s_defaultDtype), k, i, requires_grad ? 1 : 0); GC.KeepAlive(generator); return Tensor.Wrap(r); }
    }

    /// <summary>Standard normal samples of the given shape.</summary>
    /// <param name="size">The shape.</param>
    /// <returns>The tensor.</returns>
    public static Tensor randn(params long[] size) => randn(size, null);

    /// <summary>Integers uniformly drawn from [low, high).</summary>
    /// <param name="low">Lowest value.</param>
    /// <param name="high">Bound (exclusive).</param>
    /// <param name="size">The shape.</param>
    /// <param name="dtype">Element type (default int64).</param>
    /// <param name="device">Device.</param>
    /// <param name="generator">Generator.</param>
    /// <returns>The tensor.</returns>
    public static unsafe Tensor randint(long low, long high, long[] size, ScalarType? dtype = null, Device? device = null, Generator? generator = null)
    {
        var (k, i) = Encode(device);
        fixed (long* p = size) { var r = NativeMethods.lr_random_randint(low, high, p, size.Length, Gen(generator), (int)(dtype ?? ScalarType.Int64), k, i); GC.KeepAlive(generator); return Tensor.Wrap(r); }
    }

    /// <summary>A random permutation of 0..n-1.</summary>
    /// <param name="n">Length.</param>
    /// <param name="dtype">Element type (default int64).</param>
    /// <param name="device">Device.</param>
    /// <param name="generator">Generator.</param>
    /// <returns>The tensor.</returns>
    public static Tensor randperm(long n, ScalarType? dtype = null, Device? device = null, Generator? generator = null)
    {
        var (k, i) = Encode(device);
        var r = NativeMethods.lr_random_randperm(n, Gen(generator), (int)(dtype ?? ScalarType.Int64), k, i);
        GC.KeepAlive(generator);
        return Tensor.Wrap(r);
    }

    /// <summary>Samples indices from the rows of a probability (or weight) tensor.</summary>
    /// <param name="input">Non-negative weights, 1-D or 2-D.</param>
    /// <param name="num_samples">Samples per row.</param>
    /// <param name="replacement">Draw with replacement.</param>
    /// <param name="generator">Generator.</param>
    /// <returns>int64 indices.</returns>
    public static Tensor multinomial(Tensor input, long num_samples, bool replacement = false, Generator? generator = null)
    {
        var r = NativeMethods.lr_random_multinomial(input.Handle, num_samples, replacement ? 1 : 0, Gen(generator));
        GC.KeepAlive(generator);
        return Tensor.Wrap(r);
    }

    /// <summary>Bernoulli samples with per-element probabilities.</summary>
    /// <param name="input">Probabilities.</param>
    /// <param name="generator">Generator.</param>
    /// <returns>0/1 samples of the input's type.</returns>
    public static Tensor bernoulli(Tensor input, Generator? generator = null)
    {
        var r = NativeMethods.lr_random_bernoulli(input.Handle, Gen(generator));
        GC.KeepAlive(generator);
        return Tensor.Wrap(r);
    }

    public partial class Tensor
    {
        /// <summary>Fills in place with normal samples (no autograd history).</summary>
        /// <param name="mean">Mean.</param>
        /// <param name="std">Standard deviation.</param>
        /// <param name="generator">Generator.</param>
        /// <returns>This tensor.</returns>
        public Tensor normal_(double mean = 0, double std = 1, Generator? generator = null)
        {
            CheckStatus(NativeMethods.lr_random_normal_(Handle, mean, std, Gen(generator)));
            GC.KeepAlive(generator);
            return this;
        }

        /// <summary>Fills in place with uniform samples from [from, to) (no autograd history).</summary>
        /// <param name="from">Lower bound.</param>
        /// <param name="to">Upper bound.</param>
        /// <param name="generator">Generator.</param>
        /// <returns>This tensor.</returns>
        public Tensor uniform_(double from = 0, double to = 1, Generator? generator = null)
        {
            CheckStatus(NativeMethods.lr_random_uniform_(Handle, from, to, Gen(generator)));
            GC.KeepAlive(generator);
            return this;
        }

        /// <summary>Fills in place with Bernoulli(p) samples (no autograd history).</summary>
        /// <param name="p">Probability of 1.</param>
        /// <param name="generator">Generator.</param>
        /// <returns>This tensor.</returns>
        public Tensor bernoulli_(double p = 0.5, Generator? generator = null)
        {
            CheckStatus(NativeMethods.lr_random_bernoulli_(Handle, p, Gen(generator)));
            GC.KeepAlive(generator);
            return this;
        }
    }
}
