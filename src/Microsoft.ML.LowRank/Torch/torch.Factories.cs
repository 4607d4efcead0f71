using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    private static ScalarType s_defaultDtype = ScalarType.Float32;

    /// <summary>The element type factories use when none is given (float32 unless changed).</summary>
    /// <returns>The default floating-point type.</returns>
    public static ScalarType get_default_dtype() => s_defaultDtype;

    /// <summary>Sets the default floating-point element type of factories.</summary>
    /// <param name="type">A floating-point type.</param>
    public static void set_default_dtype(ScalarType type)
    {
        if (!type.IsFloatingPoint()) throw new ArgumentException($"default dtype must be floating point, got {type}", nameof(type));
        s_defaultDtype = type;
    }


    private static unsafe Tensor Make(long[] size, ScalarType? dtype, Device? device, bool requires_grad,
        delegate*<long*, int, int, int, int, int, IntPtr> fn)
    {
        ArgumentNullException.ThrowIfNull(size);
        var (k, i) = Encode(device);
        fixed (long* p = size)
            return Tensor.Wrap(fn(p, size.Length, (int)(dtype ?? s_defaultDtype), k, i, requires_grad ? 1 : 0));
    }

    /// <summary>A tensor of zeros.</summary>
    /// <param name="size">The shape.</param>
    /// <param name="dtype">Element type (default: <see cref="get_default_dtype"/>).</param>
    /// <param name="device">Device (default: CPU).</param>
    /// <param name="requires_grad">Record gradients.</param>
    /// <returns>The tensor.</returns>
    public static unsafe Tensor zeros(long[] size, ScalarType? dtype = null, Device? device = null, bool requires_grad = false)
        => Make(size, dtype, device, requires_grad, &NativeMethods.lr_tensor_zeros);

    /// <summary>A float tensor of zeros of the given shape.</summary>
    /// <param name="size">The shape.</param>
    /// <returns>The tensor.</returns>
    public static Tensor zeros(params long[] size) => zeros(size, null);

    /// <summary>A tensor of ones.</summary>
    /// <param name="size">The shape.</param>
    /// <param name="dtype">Element type.</param>
    /// <param name="device">Device.</param>
    /// <param name="requires_grad">Record gradients.</param>
    /// <returns>The tensor.</returns>
    public static unsafe Tensor ones(long[] size, ScalarType? dtype = null, Device? device = null, bool requires_grad = false)
        => Make(size, dtype, device, requires_grad, &NativeMethods.lr_tensor_ones);

    /// <summary>A float tensor of ones of the given shape.</summary>
    /// <param name="size">The shape.</param>
    /// <returns>The tensor.</returns>
    public static Tensor ones(params long[] size) => ones(size, null);

    /// <summary>An uninitialised tensor.</summary>
    /// <param name="size">The shape.</param>
    /// <param name="dtype">Element type.</param>
    /// <param name="device">Device.</param>
    /// <param name="requires_grad">Record gradients.</param>
    /// <returns>The tensor.</returns>
    public static unsafe Tensor empty(long[] size, ScalarType? dtype = null, Device? device = null, bool requires_grad = false)
        => Make(size, dtype, device, requires_grad, &NativeMethods.lr_tensor_empty);

    /// <summary>An uninitialised float tensor of the given shape.</summary>
    /// <param name="size">The shape.</param>
    /// <returns>The tensor.</returns>
    public static Tensor empty(params long[] size) => empty(size, null);

    /// <summary>A tensor filled with one value.</summary>
    /// <param name="size">The shape.</param>
    /// <param name="value">The fill value.</param>
    /// <param name="dtype">Element type.</param>
    /// <param name="device">Device.</param>
    /// <param name="requires_grad">Record gradients.</param>
    /// <returns>The tensor.</returns>
    public static unsafe Tensor full(long[] size, double value, ScalarType? dtype = null, Device? device = null, bool requires_grad = false)
    {
        ArgumentNullException.ThrowIfNull(size);
        var (k, i) = Encode(device);
        fixed (long* p = size)
            return Tensor.Wrap(NativeMethods.lr_tensor_full(p, size.Length, value, (int)(dtype ?? s_defaultDtype), k, i, requires_grad ? 1 : 0));
    }

    /// <summary>Values from <paramref name="start"/> (inclusive) to <paramref name="end"/> (exclusive) in steps.</summary>
    /// <param name="start">First value.</param>
    /// <param name="end">Bound (exclusive).</param>
    /// <param name="step">Increment.</param>
    /// <param name="dtype">Element type (default int64).</param>
    /// <param name="device">Device.</param>
    /// <param name="requires_grad">Record gradients.</param>
    /// <returns>The tensor.</returns>
    public static Tensor arange(double start, double end, double step = 1, ScalarType? dtype = null, Device? device = null, bool requires_grad = false)
    {
        var (k, i) = Encode(device);
        return Tensor.Wrap(NativeMethods.lr_tensor_arange(start, end, step, (int)(dtype ?? ScalarType.Int64), k, i, requires_grad ? 1 : 0));
    }

    /// <summary>0, 1, ..., end-1 as int64 (or <paramref name="dtype"/>).</summary>
    /// <param name="end">Bound (exclusive).</param>
    /// <param name="dtype">Element type (default int64).</param>
    /// <param name="device">Device.</param>
    /// <returns>The tensor.</returns>
    public static Tensor arange(long end, ScalarType? dtype = null, Device? device = null) => arange(0, end, 1, dtype, device);

    /// <summary><paramref name="steps"/> evenly spaced values from start to end (inclusive).</summary>
    /// <param name="start">First value.</param>
    /// <param name="end">Last value.</param>
    /// <param name="steps">Number of values.</param>
    /// <param name="dtype">Element type.</param>
    /// <param name="device">Device.</param>
    /// <param name="requires_grad">Record gradients.</param>
    /// <returns>The tensor.</returns>
    public static Tensor linspace(double start, double end, long steps, ScalarType? dtype = null, Device? device = null, bool requires_grad = false)
    {
        var (k, i) = Encode(device);
        return Tensor.Wrap(NativeMethods.lr_tensor_linspace(start, end, steps, (int)(dtype ?? s_defaultDtype), k, i, requires_grad ? 1 : 0));
    }

    /// <summary>An identity matrix of n rows and m columns (m = n by default).</summary>
    /// <param name="n">Rows.</param>
    /// <param name="m">Columns (-1: same as rows).</param>
    /// <param name="dtype">Element type.</param>
    /// <param name="device">Device.</param>
    /// <param name="requires_grad">Record gradients.</param>
    /// <returns>The tensor.</returns>
    public static Tensor eye(long n, long m = -1, ScalarType? dtype = null, Device? device = null, bool requires_grad = false)
    {
        var (k, i) = Encode(device);
        return Tensor.Wrap(NativeMethods.lr_tensor_eye(n, m < 0 ? n : m, (int)(dtype ?? s_defaultDtype), k, i, requires_grad ? 1 : 0));
    }

    /// <summary>Zeros with the shape, type and device of <paramref name="other"/>.</summary>
    /// <param name="other">The template tensor.</param>
    /// <returns>The tensor.</returns>
    public static Tensor zeros_like(Tensor other) => Tensor.Wrap(NativeMethods.lr_tensor_zeros_like(other.Handle));

    /// <summary>Ones with the shape, type and device of <paramref name="other"/>.</summary>
    /// <param name="other">The template tensor.</param>
    /// <returns>The tensor.</returns>
    public static Tensor ones_like(Tensor other) => Tensor.Wrap(NativeMethods.lr_tensor_ones_like(other.Handle));

    /// <summary>Uninitialised, with the shape, type and device of <paramref name="other"/>.</summary>
    /// <param name="other">The template tensor.</param>
    /// <returns>The tensor.</returns>
    public static Tensor empty_like(Tensor other) => Tensor.Wrap(NativeMethods.lr_tensor_empty_like(other.Handle));

    /// <summary>A tensor holding a copy of <paramref name="data"/> with the given shape (default: 1-D).</summary>
    /// <typeparam name="T">float, double, long, int, short, byte, sbyte, bool or Half.</typeparam>
    /// <param name="data">The elements, row-major.</param>
    /// <param name="shape">The shape; its product must equal the data length.</param>
    /// <param name="dtype">Convert to this element type after copying.</param>
    /// <param name="device">Move to this device after copying.</param>
    /// <param name="requires_grad">Record gradients.</param>
    /// <returns>The tensor.</returns>
    public static Tensor tensor<T>(ReadOnlySpan<T> data, long[]? shape = null, ScalarType? dtype = null, Device? device = null, bool requires_grad = false) where T : unmanaged
        => FromSpan(data, shape ?? new long[] { data.Length }, dtype, device, requires_grad);

    /// <summary>A tensor holding a copy of <paramref name="data"/> with the given shape (default: 1-D).</summary>
    /// <typeparam name="T">float, double, long, int, short, byte, sbyte, bool or Half.</typeparam>
    /// <param name="data">The elements, row-major.</param>
    /// <param name="shape">The shape.</param>
    /// <param name="dtype">Convert to this element type after copying.</param>
    /// <param name="device">Move to this device after copying.</param>
    /// <param name="requires_grad">Record gradients.</param>
    /// <returns>The tensor.</returns>
    public static Tensor tensor<T>(T[] data, long[]? shape = null, ScalarType? dtype = null, Device? device = null, bool requires_grad = false) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(data);
        return FromSpan<T>(data, shape ?? new long[] { data.Length }, dtype, device, requires_grad);
    }

    /// <summary>A tensor holding a copy of a rectangular 2-D array.</summary>
    /// <typeparam name="T">The element type.</typeparam>
    /// <param name="data">The elements.</param>
    /// <param name="dtype">Convert to this element type after copying.</param>
    /// <param name="device">Move to this device after copying.</param>
    /// <param name="requires_grad">Record gradients.</param>
    /// <returns>The tensor.</returns>
    public static Tensor tensor<T>(T[,] data, ScalarType? dtype = null, Device? device = null, bool requires_grad = false) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(data);
        var flat = new T[data.Length];
        int r = data.GetLength(0), c = data.GetLength(1);
        for (int a = 0; a < r; a++) for (int b = 0; b < c; b++) flat[a * c + b] = data[a, b];
        return FromSpan<T>(flat, new long[] { r, c }, dtype, device, requires_grad);
    }

    /// <summary>A 0-d tensor holding one value.</summary>
    /// <param name="value">The value.</param>
    /// <param name="dtype">Element type (default: the default float type).</param>
    /// <param name="device">Device.</param>
    /// <param name="requires_grad">Record gradients.</param>
    /// <returns>The tensor.</returns>
    public static Tensor scalar_tensor(double value, ScalarType? dtype = null, Device? device = null, bool requires_grad = false)
        => full(Array.Empty<long>(), value, dtype, device, requires_grad);

    private static unsafe Tensor FromSpan<T>(ReadOnlySpan<T> data, long[] shape, ScalarType? dtype, Device? device, bool requires_grad) where T : unmanaged
    {
        long n = 1;
        foreach (var s in shape)
        {
            if (s < 0) throw new ArgumentException($"negative dimension {s} in shape [{string.Join(", ", shape)}]", nameof(shape));
            n *= s;
        }
        if (n != data.Length)
            throw new ArgumentException($"shape [{string.Join(", ", shape)}] holds {n} elements but {data.Length} were given", nameof(shape));
        var st = ScalarTypeOf<T>();
        Tensor t;
        bool convert = (dtype.HasValue && dtype.Value != st) || (device is not null && device.type != DeviceType.CPU);
        fixed (T* d = data)
        fixed (long* p = shape)
            t = Tensor.Wrap(NativeMethods.lr_tensor_from_data(d, p, shape.Length, (int)st, requires_grad && !convert ? 1 : 0));
        if (!convert) return t;
        using (t)
        {
            var (k, i) = Encode(device);
            var r = Tensor.Wrap(NativeMethods.lr_tensor_to(t.Handle, (int)(dtype ?? st), device is null ? -1 : k, i, 0, 0));
            if (requires_grad) r.requires_grad = true;
            return r;
        }
    }
}
