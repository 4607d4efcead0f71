using System.Runtime.InteropServices;
using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    /// <summary>
    /// A tensor: a managed alias of one native <c>at::Tensor</c>. Every operation returns a new alias that the
    /// caller owns. Disposing frees the alias (the storage is freed when its last alias goes); the innermost
    /// open <see cref="DisposeScope"/> disposes it automatically, and a finalizer is the last resort.
    /// </summary>
    public partial class Tensor : IDisposable
    {
        private readonly TensorHandle _handle;

        internal Tensor(IntPtr ptr, bool register)
        {
            _handle = new TensorHandle(ptr);
            if (register) DisposeScopeManager.Register(this);
        }

        internal Tensor(IntPtr ptr)
        {
            _handle = new TensorHandle(ptr);
            DisposeScopeManager.Register(this);
        }

        internal TensorHandle Handle
        {
            get
            {
                if (_handle.IsClosed) throw new ObjectDisposedException(nameof(Tensor), "the tensor has been disposed");
                return _handle;
            }
        }

        internal DisposeScope? OwningScope { get; set; }

        /// <summary>Number of native tensor handles alive in the process (for leak checks).</summary>
        public static long TotalCount => TensorHandle.LiveCount;

        /// <summary>True once the tensor has been disposed.</summary>
        public bool IsInvalid => _handle.IsClosed;

        /// <summary>Frees the native alias now.</summary>
        public void Dispose() => _handle.Dispose();

        /// <summary>Moves this tensor to the scope enclosing its current one (or detaches it).</summary>
        /// <returns>This tensor.</returns>
        public Tensor MoveToOuterDisposeScope()
        {
            var s = OwningScope;
            if (s is null) return this;
            s.Remove(this);
            var outer = s.Outer;
            while (outer is not null && outer.IsDisposed) outer = outer.Outer;
            if (outer is null) DisposeScopeManager.Statistics.DetachedFromScopeCount++;
            else outer.Add(this);
            return this;
        }

        /// <summary>Removes this tensor from every dispose scope: the caller must dispose it.</summary>
        /// <returns>This tensor.</returns>
        public Tensor DetachFromDisposeScope()
        {
            if (OwningScope is { } s)
            {
                s.Remove(this);
                DisposeScopeManager.Statistics.DetachedFromScopeCount++;
            }
            return this;
        }

        // ---------------- properties ----------------

        /// <summary>Number of dimensions.</summary>
        public long Dimensions => Check(NativeMethods.lr_tensor_ndim(Handle));

        /// <summary>Number of dimensions (PyTorch name).</summary>
        public long dim() => Dimensions;

        /// <summary>The sizes of each dimension.</summary>
        public unsafe long[] shape
        {
            get
            {
                var n = (int)Dimensions;
                var s = new long[n];
                fixed (long* p = s) CheckStatus(NativeMethods.lr_tensor_shape(Handle, p, n));
                return s;
            }
        }

        /// <summary>The strides of each dimension, in elements.</summary>
        public unsafe long[] stride()
        {
            var n = (int)Dimensions;
            var s = new long[n];
            fixed (long* p = s) CheckStatus(NativeMethods.lr_tensor_strides(Handle, p, n));
            return s;
        }

        /// <summary>The size of dimension <paramref name="dim"/> (negative counts from the end).</summary>
        /// <param name="dim">The dimension.</param>
        /// <returns>The size.</returns>
        public long size(int dim)
        {
            var s = shape;
            var d = dim < 0 ? dim + s.Length : dim;
            if (d < 0 || d >= s.Length) throw new ArgumentOutOfRangeException(nameof(dim), $"dimension {dim} out of range for a {s.Length}-d tensor");
            return s[d];
        }

        /// <summary>Total number of elements.</summary>
        public long numel() => CheckLong(NativeMethods.lr_tensor_numel(Handle));

        /// <summary>Total number of elements.</summary>
        public long NumberOfElements => numel();

        /// <summary>The element type.</summary>
        public ScalarType dtype => (ScalarType)Check(NativeMethods.lr_tensor_dtype(Handle));

        /// <summary>The device holding the data.</summary>
        public Device device
        {
            get
            {
                CheckStatus(NativeMethods.lr_tensor_device(Handle, out var kind, out var index));
                return kind switch
                {
                    0 => Device.CPU,
                    1 => new Device(DeviceType.CUDA, index < 0 ? 0 : index),
                    2 => Device.META,
                    _ => throw new NotSupportedException("tensor lives on a device type this binding does not model"),
                };
            }
        }

        /// <summary>The device type.</summary>
        public DeviceType device_type => device.type;

        /// <summary>Whether the elements are laid out contiguously in row-major order.</summary>
        public bool is_contiguous() => Check(NativeMethods.lr_tensor_is_contiguous(Handle)) != 0;

        /// <summary>Whether gradients are recorded for this tensor.</summary>
        public bool requires_grad
        {
            get => Check(NativeMethods.lr_tensor_requires_grad(Handle)) != 0;
            set => CheckStatus(NativeMethods.lr_tensor_set_requires_grad(Handle, value ? 1 : 0));
        }

        /// <summary>Sets <see cref="requires_grad"/> in place and returns this tensor.</summary>
        /// <param name="requires_grad">The new flag.</param>
        /// <returns>This tensor.</returns>
        public Tensor requires_grad_(bool requires_grad = true)
        {
            this.requires_grad = requires_grad;
            return this;
        }

        /// <summary>Whether this tensor is a leaf of the autograd graph.</summary>
        public bool is_leaf => Check(NativeMethods.lr_tensor_is_leaf(Handle)) != 0;

        /// <summary>Size of one element in bytes.</summary>
        public long element_size() => CheckLong(NativeMethods.lr_tensor_element_size(Handle));

        /// <summary>Address of the first element (for interop; valid while the tensor lives).</summary>
        public IntPtr data_ptr() => new(NativeMethods.lr_tensor_data_ptr(Handle));

        /// <summary>Replaces this tensor's data (shape, dtype, device, storage) with <paramref name="source"/>'s, keeping its
        /// identity (used to move or convert parameters in place).</summary>
        /// <param name="source">The new data.</param>
        public void set_data(Tensor source) => CheckStatus(NativeMethods.lr_tensor_set_data(Handle, source.Handle));

        /// <summary>Whether <paramref name="other"/> is an alias of the very same tensor.</summary>
        /// <param name="other">Another tensor.</param>
        /// <returns>True when both alias one tensor.</returns>
        public bool is_same(Tensor other) => Check(NativeMethods.lr_tensor_is_same(Handle, other.Handle)) != 0;

        /// <summary>A new alias of the same tensor (same storage, same autograd identity).</summary>
        public Tensor alias() => Wrap(NativeMethods.lr_tensor_alias(Handle));

        // ---------------- data transfer ----------------

        /// <summary>The single element as a double.</summary>
        public double ToDouble()
        {
            var v = NativeMethods.lr_tensor_item(Handle);
            CheckLastError();
            return v;
        }

        /// <summary>The single element as a single.</summary>
        public float ToSingle() => (float)ToDouble();

        /// <summary>The single element as a long.</summary>
        public long ToInt64() => (long)ToDouble();

        /// <summary>The single element, converted to <typeparamref name="T"/>.</summary>
        /// <typeparam name="T">A numeric type.</typeparam>
        /// <returns>The value.</returns>
        public T item<T>() where T : unmanaged => ToArray<T>() is { Length: 1 } a ? a[0]
            : throw new InvalidOperationException($"item() needs a one-element tensor; this one has {numel()} elements");

        /// <summary>Copies all elements (row-major) into a new array. <typeparamref name="T"/> must match the dtype.</summary>
        /// <typeparam name="T">float, double, long, int, short, byte, sbyte, bool or Half.</typeparam>
        /// <returns>The elements.</returns>
        public unsafe T[] ToArray<T>() where T : unmanaged
        {
            var dt = dtype;
            var expected = torch.ScalarTypeOf<T>();
            if (expected != dt && !(dt == ScalarType.BFloat16 && typeof(T) == typeof(ushort)))
                throw new ArgumentException($"ToArray<{typeof(T).Name}> does not match the tensor's dtype {dt}; convert with to_type first");
            var n = numel();
            var result = new T[n];
            fixed (T* p = result) CheckStatus(NativeMethods.lr_tensor_copy_to(Handle, p, n * sizeof(T)));
            return result;
        }

        /// <summary>Copies all elements into <paramref name="destination"/>, whose length must equal numel().</summary>
        /// <typeparam name="T">The element type matching the dtype.</typeparam>
        /// <param name="destination">Target span.</param>
        public unsafe void CopyTo<T>(Span<T> destination) where T : unmanaged
        {
            if (torch.ScalarTypeOf<T>() != dtype) throw new ArgumentException($"CopyTo<{typeof(T).Name}> does not match the tensor's dtype {dtype}");
            fixed (T* p = destination) CheckStatus(NativeMethods.lr_tensor_copy_to(Handle, p, (long)destination.Length * sizeof(T)));
        }

        /// <summary>All elements converted to float64, row-major.</summary>
        public double[] ToDoubleArray()
        {
            using var d = to_type(ScalarType.Float64);
            return d.ToArray<double>();
        }

        /// <summary>All elements converted to float32, row-major.</summary>
        public float[] ToSingleArray()
        {
            using var d = to_type(ScalarType.Float32);
            return d.ToArray<float>();
        }

        // ---------------- moves ----------------

        /// <summary>Converts to another element type (a new tensor unless the type already matches).</summary>
        /// <param name="type">The target element type.</param>
        /// <param name="copy">Always copy.</param>
        /// <returns>The converted tensor.</returns>
        public Tensor to_type(ScalarType type, bool copy = false) => Wrap(NativeMethods.lr_tensor_to(Handle, (int)type, -1, -1, copy ? 1 : 0, 0));

        /// <summary>Moves to a device.</summary>
        /// <param name="device">The target device.</param>
        /// <param name="copy">Always copy.</param>
        /// <param name="non_blocking">Asynchronous copy where possible.</param>
        /// <returns>The moved tensor.</returns>
        public Tensor to(Device device, bool copy = false, bool non_blocking = false)
        {
            var (k, i) = torch.Encode(device);
            return Wrap(NativeMethods.lr_tensor_to(Handle, -1, k, i, copy ? 1 : 0, non_blocking ? 1 : 0));
        }

        /// <summary>Moves to a device and converts the element type.</summary>
        /// <param name="type">The target element type.</param>
        /// <param name="device">The target device.</param>
        /// <returns>The converted tensor.</returns>
        public Tensor to(ScalarType type, Device device)
        {
            var (k, i) = torch.Encode(device);
            return Wrap(NativeMethods.lr_tensor_to(Handle, (int)type, k, i, 0, 0));
        }

        /// <summary>Converts the element type (same as <see cref="to_type"/>).</summary>
        /// <param name="type">The target element type.</param>
        /// <returns>The converted tensor.</returns>
        public Tensor to(ScalarType type) => to_type(type);

        /// <summary>Moves to the CPU.</summary>
        public Tensor cpu() => to(Device.CPU);

        /// <summary>Moves to the default CUDA device.</summary>
        public Tensor cuda() => to(Device.CUDA);

        /// <summary>Converts to float32.</summary>
        public Tensor @float() => to_type(ScalarType.Float32);

        /// <summary>Converts to float64.</summary>
        public Tensor @double() => to_type(ScalarType.Float64);

        /// <summary>Converts to float16.</summary>
        public Tensor half() => to_type(ScalarType.Float16);

        /// <summary>Converts to bfloat16.</summary>
        public Tensor bfloat16() => to_type(ScalarType.BFloat16);

        /// <summary>Converts to int64.</summary>
        public Tensor @long() => to_type(ScalarType.Int64);

        /// <summary>A copy with its own storage.</summary>
        public Tensor clone() => Wrap(NativeMethods.lr_tensor_clone(Handle));

        /// <summary>A contiguous tensor with the same elements (an alias when already contiguous).</summary>
        public Tensor contiguous() => Wrap(NativeMethods.lr_tensor_contiguous(Handle));

        /// <summary>libtorch's printed form of the tensor.</summary>
        public override string ToString()
        {
            if (IsInvalid) return "Tensor(disposed)";
            var p = NativeMethods.lr_tensor_to_string(Handle);
            if (p == IntPtr.Zero) return "Tensor(?)";
            return Marshal.PtrToStringUTF8(p) ?? "";
        }

        // ---------------- helpers ----------------

        internal static Tensor Wrap(IntPtr p)
        {
            if (p == IntPtr.Zero) torch.ThrowLastError();
            return new Tensor(p);
        }

        internal static int Check(int v)
        {
            if (v < 0) torch.ThrowLastError();
            return v;
        }

        internal static long CheckLong(long v)
        {
            if (v < 0) torch.ThrowLastError();
            return v;
        }

        internal static void CheckStatus(int status)
        {
            if (status != 0) torch.ThrowLastError();
        }

        internal static void CheckLastError()
        {
            if (NativeMethods.lr_core_last_error() != IntPtr.Zero) torch.ThrowLastError();
        }
    }
}
