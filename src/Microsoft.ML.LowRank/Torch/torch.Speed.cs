using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    /// <summary>Host-memory accounting of libtorch's CPU allocator (the CPU counterpart of <see cref="cuda.memory_allocated"/>).</summary>
    public static class cpu
    {
        /// <summary>
        /// Routes CPU tensor allocations through a counting wrapper of libtorch's allocator (true; resets the counters) or
        /// restores the plain allocator (false). Only allocations made while tracking are counted; tensors stay valid
        /// either way.
        /// </summary>
        /// <param name="enable">Whether to count.</param>
        public static void track_memory(bool enable) => Tensor.CheckStatus(NativeMethods.lr_memory_track_cpu(enable ? 1 : 0));

        /// <summary>Whether <see cref="track_memory"/> is on.</summary>
        public static bool is_tracking_memory => NativeMethods.lr_memory_cpu_stat(3) == 1;

        /// <summary>Bytes of CPU tensors allocated while tracking and still alive.</summary>
        /// <returns>Bytes.</returns>
        public static long memory_allocated() => Tensor.CheckLong(NativeMethods.lr_memory_cpu_stat(0));

        /// <summary>Peak of <see cref="memory_allocated"/> since tracking started or <see cref="reset_peak_memory_stats"/>.</summary>
        /// <returns>Bytes.</returns>
        public static long max_memory_allocated() => Tensor.CheckLong(NativeMethods.lr_memory_cpu_stat(1));

        /// <summary>Number of allocations counted since tracking started.</summary>
        /// <returns>The count.</returns>
        public static long allocation_count() => Tensor.CheckLong(NativeMethods.lr_memory_cpu_stat(2));

        /// <summary>Sets the peak to the bytes alive now.</summary>
        public static void reset_peak_memory_stats() => NativeMethods.lr_memory_reset_cpu_peak();

        /// <summary>
        /// Turns the caching CPU allocator on or off (the CPU counterpart of the CUDA caching allocator). When on, CPU
        /// buffers of 256 KiB or more are kept after they are freed and reused for the next request of the same size
        /// class (sizes round up by at most 1/8), so a training step does not fault in and zero fresh pages for every
        /// activation; at most <paramref name="limit_bytes"/> of free blocks stay cached. The library turns it on when it
        /// loads (limit: a quarter of the memory available to the process) unless <c>LOWRANK_CPU_CACHE=0</c>;
        /// <c>LOWRANK_CPU_CACHE_LIMIT_MB</c> sets the limit. Turning it off releases the cached blocks.
        /// </summary>
        /// <param name="enable">Whether to cache.</param>
        /// <param name="limit_bytes">Most free bytes kept; must be positive when enabling.</param>
        /// <exception cref="ArgumentOutOfRangeException"><paramref name="limit_bytes"/> is not positive while enabling.</exception>
        public static void set_caching_allocator(bool enable, long limit_bytes = 1L << 30)
        {
            if (enable && limit_bytes <= 0) throw new ArgumentOutOfRangeException(nameof(limit_bytes), limit_bytes, "the cache limit must be a positive number of bytes");
            Tensor.CheckStatus(NativeMethods.lr_memory_cpu_cache(enable ? 1 : 0, limit_bytes));
        }

        /// <summary>Whether the caching CPU allocator is on (<see cref="set_caching_allocator"/>).</summary>
        public static bool is_caching => NativeMethods.lr_memory_cpu_cache_stat(3, 0) == 1;

        /// <summary>Releases every cached free CPU block to the system (PyTorch's <c>empty_cache</c>).</summary>
        public static void empty_cache() => Tensor.CheckStatus(NativeMethods.lr_memory_cpu_cache_empty());

        /// <summary>Bytes of free CPU blocks the caching allocator holds.</summary>
        /// <returns>Bytes.</returns>
        public static long memory_cached() => Tensor.CheckLong(NativeMethods.lr_memory_cpu_cache_stat(0, 0));

        /// <summary>Requests served from the cache, and requests that needed a new block, since the process started.</summary>
        /// <returns>The two counts.</returns>
        public static (long hits, long misses) cache_counts() =>
            (Tensor.CheckLong(NativeMethods.lr_memory_cpu_cache_stat(1, 0)), Tensor.CheckLong(NativeMethods.lr_memory_cpu_cache_stat(2, 0)));

        /// <summary>The block size the cache hands out for a request of <paramref name="bytes"/> (0: below the 256 KiB
        /// threshold, served directly).</summary>
        /// <param name="bytes">The requested size.</param>
        /// <returns>The size class in bytes.</returns>
        public static long cache_size_class(long bytes) => Tensor.CheckLong(NativeMethods.lr_memory_cpu_cache_stat(4, bytes));
    }

    /// <summary>
    /// Enters an autocast region on a device's type (PyTorch's <c>torch.autocast</c>): matmul-like ops (linear, matmul, bmm,
    /// addmm, the fused LoRA ops) run in <paramref name="dtype"/>, precision-sensitive ones (softmax, losses, norms) in
    /// float32, following libtorch's own autocast lists. Gradients flow back in each parameter's own type. Dispose to leave
    /// (the previous state is restored; the cast cache is cleared when the outermost region ends). Regions are per thread.
    /// </summary>
    /// <param name="device">The device whose type is autocast (CPU or CUDA).</param>
    /// <param name="dtype">BFloat16 (CPU and CUDA) or Float16 (CUDA).</param>
    /// <returns>The region; dispose it to leave.</returns>
    public static AutocastScope autocast(Device device, ScalarType dtype = ScalarType.BFloat16)
    {
        int kind = AutocastKind(device);
        Tensor.CheckStatus(NativeMethods.lr_amp_autocast_enter(kind, (int)dtype, out var prevEnabled, out var prevDtype));
        return new AutocastScope(kind, prevEnabled, prevDtype);
    }

    /// <summary>Whether autocast is on for the device's type on this thread.</summary>
    /// <param name="device">CPU or CUDA.</param>
    /// <returns>True inside an autocast region.</returns>
    public static bool is_autocast_enabled(Device device) => Tensor.Check(NativeMethods.lr_amp_is_autocast_enabled(AutocastKind(device))) != 0;

    private static int AutocastKind(Device device) => device.type switch
    {
        DeviceType.CPU => 0,
        DeviceType.CUDA => 1,
        _ => throw new ArgumentException($"autocast supports CPU and CUDA devices, not {device}", nameof(device)),
    };

    /// <summary>An autocast region (<see cref="autocast"/>); disposing restores the previous state.</summary>
    public sealed class AutocastScope : IDisposable
    {
        private readonly int _kind, _prevEnabled, _prevDtype;
        private bool _disposed;

        internal AutocastScope(int kind, int prevEnabled, int prevDtype)
        {
            _kind = kind;
            _prevEnabled = prevEnabled;
            _prevDtype = prevDtype;
        }

        /// <summary>Leaves the region.</summary>
        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            Tensor.CheckStatus(NativeMethods.lr_amp_autocast_exit(_kind, _prevEnabled, _prevDtype));
        }
    }

    /// <summary>Utilities (PyTorch's <c>torch.utils</c>).</summary>
    public static class utils
    {
        private sealed class CheckpointState(Func<Tensor[], Tensor[]> function)
        {
            public Func<Tensor[], Tensor[]> Function { get; } = function;
        }

        /// <summary>
        /// Activation checkpointing (PyTorch's <c>torch.utils.checkpoint</c>, reentrant form with explicit parameters): runs
        /// <paramref name="function"/> without recording a graph and returns its outputs through one autograd node that keeps
        /// only <paramref name="inputs"/>. In backward the node re-runs the function with the default generators' states of the
        /// first run (so dropout masks repeat) and back-propagates through the recomputed graph. The trainable
        /// <paramref name="parameters"/> the function uses must be listed: their gradients come back through the node (so the
        /// function is recomputed even when no input requires grad, as for the first transformer block).
        /// </summary>
        /// <param name="function">The computation; it receives aliases of the inputs (owned by the call) and returns its outputs.</param>
        /// <param name="inputs">The activation inputs (at least one).</param>
        /// <param name="parameters">Trainable parameters used by <paramref name="function"/> (null: none).</param>
        /// <param name="offload_to_host">Keep CUDA inputs in host memory until backward (no effect on CPU tensors).</param>
        /// <param name="max_outputs">The most outputs the function returns.</param>
        /// <returns>The outputs.</returns>
        public static unsafe Tensor[] checkpoint(Func<Tensor[], Tensor[]> function, IReadOnlyList<Tensor> inputs, IReadOnlyList<Tensor>? parameters = null,
            bool offload_to_host = false, int max_outputs = 4)
        {
            ArgumentNullException.ThrowIfNull(function);
            ArgumentNullException.ThrowIfNull(inputs);
            if (inputs.Count == 0) throw new ArgumentException("checkpoint needs at least one input", nameof(inputs));
            if (max_outputs < 1) throw new ArgumentOutOfRangeException(nameof(max_outputs), max_outputs, "must be >= 1");
            int nAct = inputs.Count, n = nAct + (parameters?.Count ?? 0);
            var ins = new IntPtr[n];
            for (int i = 0; i < nAct; i++) ins[i] = (inputs[i] ?? throw new ArgumentNullException(nameof(inputs), $"input {i} is null")).Handle.DangerousGetHandle();
            for (int i = nAct; i < n; i++) ins[i] = (parameters![i - nAct] ?? throw new ArgumentNullException(nameof(parameters), $"parameter {i - nAct} is null")).Handle.DangerousGetHandle();
            FreeReleasedCheckpoints();
            var outs = new IntPtr[max_outputs];
            var handle = GCHandle.Alloc(new CheckpointState(function));
            int status;
            fixed (IntPtr* pi = ins)
            fixed (IntPtr* po = outs)
                status = NativeMethods.lr_checkpoint(&CheckpointCallback, GCHandle.ToIntPtr(handle), pi, n, nAct, offload_to_host ? 1 : 0, po, max_outputs);
            GC.KeepAlive(inputs);
            GC.KeepAlive(parameters);
            Tensor.CheckStatus(status);
            int k = 0;
            while (k < max_outputs && outs[k] != IntPtr.Zero) k++;
            var result = new Tensor[k];
            for (int i = 0; i < k; i++) result[i] = new Tensor(outs[i]);
            return result;
        }

        [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
        private static unsafe int CheckpointCallback(IntPtr state, IntPtr* inputs, int n, IntPtr* outputs, int maxOut)
        {
            var args = new Tensor?[n];
            try
            {
                for (int i = 0; i < n; i++) args[i] = new Tensor(inputs[i], register: false);
                var st = (CheckpointState)GCHandle.FromIntPtr(state).Target!;
                using var scope = NewDisposeScope();
                var outs = st.Function(args!);
                if (outs is null || outs.Length == 0) throw new InvalidOperationException("the checkpointed function returned no output");
                if (outs.Length > maxOut) throw new InvalidOperationException($"the checkpointed function returned {outs.Length} outputs; at most {maxOut} were declared");
                for (int i = 0; i < outs.Length; i++)
                {
                    var p = NativeMethods.lr_tensor_alias(outs[i].Handle);
                    if (p == IntPtr.Zero) throw new InvalidOperationException("could not alias an output of the checkpointed function");
                    outputs[i] = p;
                }
                return outs.Length;
            }
            catch (Exception e)
            {
                NativeMethods.lr_checkpoint_set_error($"checkpointed function failed: {e.GetType().Name}: {e.Message}");
                return -1;
            }
            finally
            {
                foreach (var a in args) a?.Dispose();
            }
        }

        /// <summary>Frees the managed state of checkpoint nodes that no longer exist (the shim queues them; done at every
        /// <see cref="checkpoint"/> call). Returns how many were freed.</summary>
        /// <returns>The count.</returns>
        public static unsafe int FreeReleasedCheckpoints()
        {
            int total = 0;
            IntPtr* buf = stackalloc IntPtr[64];
            int k;
            while ((k = NativeMethods.lr_checkpoint_take_released(buf, 64)) > 0)
            {
                for (int i = 0; i < k; i++) GCHandle.FromIntPtr(buf[i]).Free();
                total += k;
            }
            return total;
        }
    }

    public static partial class nn
    {
        public static partial class functional
        {
            /// <summary>
            /// Cross entropy of the logits h·Wᵀ + b against class indices, computed in row chunks without materialising
            /// the [N, V] logits: each chunk's logits (in the weight's type, or the autocast type, then float32) give its
            /// log-sum-exp and, when a gradient is needed, its gradient (softmax − one-hot)·W at once, so backward only
            /// scales stored gradients. Equals <c>cross_entropy(linear(h, W, b).float(), target, ignore_index)</c>.
            /// </summary>
            /// <param name="hidden">[N, H].</param>
            /// <param name="weight">[V, H] (the LM head).</param>
            /// <param name="target">[N] int64 class indices.</param>
            /// <param name="bias">[V] or null.</param>
            /// <param name="ignore_index">Targets equal to this contribute nothing (nor to the mean's denominator).</param>
            /// <param name="reduction">"mean" or "sum".</param>
            /// <param name="chunk_size">Rows per chunk; 0: about 2²⁴/V rows (a 64 MiB float32 logits block).</param>
            /// <returns>The scalar float32 loss.</returns>
            public static Tensor linear_cross_entropy(Tensor hidden, Tensor weight, Tensor target, Tensor? bias = null, long ignore_index = -100,
                string reduction = "mean", long chunk_size = 0)
            {
                ArgumentNullException.ThrowIfNull(hidden);
                ArgumentNullException.ThrowIfNull(weight);
                ArgumentNullException.ThrowIfNull(target);
                long code = reduction switch
                {
                    "mean" => 1,
                    "sum" => 2,
                    _ => throw new ArgumentException($"linear_cross_entropy: reduction must be \"mean\" or \"sum\", got \"{reduction}\"", nameof(reduction)),
                };
                if (chunk_size < 0) throw new ArgumentOutOfRangeException(nameof(chunk_size), chunk_size, "must be >= 0");
                var r = NativeMethods.lr_fused_linear_cross_entropy(hidden.Handle, weight.Handle, Opt(bias), target.Handle, ignore_index, chunk_size, code);
                GC.KeepAlive(bias);
                return Tensor.Wrap(r);
            }
        }
    }
}
