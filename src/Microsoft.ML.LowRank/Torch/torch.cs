using System.Runtime.InteropServices;
using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

/// <summary>
/// The libtorch API with TorchSharp's (and PyTorch's) names: tensor factories, operations, autograd modes,
/// random numbers, threads and CUDA queries. Use with <c>using static Microsoft.ML.LowRank.Torch.torch;</c>.
/// </summary>
public static partial class torch
{
    /// <summary>The CPU device.</summary>
    public static Device CPU => Device.CPU;
    /// <summary>The default CUDA device.</summary>
    public static Device CUDA => Device.CUDA;
    /// <summary>The meta device.</summary>
    public static Device META => Device.META;

    /// <summary>float32.</summary>
    public const ScalarType float32 = ScalarType.Float32;
    /// <summary>float64.</summary>
    public const ScalarType float64 = ScalarType.Float64;
    /// <summary>float16.</summary>
    public const ScalarType float16 = ScalarType.Float16;
    /// <summary>bfloat16.</summary>
    public const ScalarType bfloat16 = ScalarType.BFloat16;
    /// <summary>int64.</summary>
    public const ScalarType int64 = ScalarType.Int64;
    /// <summary>int32.</summary>
    public const ScalarType int32 = ScalarType.Int32;
    /// <summary>uint8.</summary>
    public const ScalarType uint8 = ScalarType.Byte;
    /// <summary>bool.</summary>
    public const ScalarType @bool = ScalarType.Bool;

    /// <summary>Parses a device string.</summary>
    /// <param name="spec">"cpu", "cuda", "cuda:N" or "meta".</param>
    /// <returns>The device.</returns>
    public static Device device(string spec) => Device.Parse(spec);

    /// <summary>The libtorch version the shim was built against, e.g. "1.13.1".</summary>
    public static string __version__ => Marshal.PtrToStringUTF8(NativeMethods.lr_core_torch_version()) ?? "?";

    /// <summary>Opens a dispose scope: tensors created on this thread until it is disposed are freed with it.</summary>
    /// <returns>The scope.</returns>
    public static DisposeScope NewDisposeScope() => DisposeScopeManager.Push();

    /// <summary>Number of intra-op threads libtorch uses.</summary>
    /// <returns>The thread count.</returns>
    public static int get_num_threads() => Tensor.Check(NativeMethods.lr_core_get_num_threads());

    /// <summary>Sets the number of intra-op threads.</summary>
    /// <param name="n">Thread count (at least 1).</param>
    public static void set_num_threads(int n)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "thread count must be at least 1");
        Tensor.CheckStatus(NativeMethods.lr_core_set_num_threads(n));
    }

    /// <summary>Number of inter-op threads.</summary>
    /// <returns>The thread count.</returns>
    public static int get_num_interop_threads() => Tensor.Check(NativeMethods.lr_core_get_num_interop_threads());

    /// <summary>libtorch's description of its parallel backends (OpenMP, MKL/OpenBLAS threads).</summary>
    /// <returns>The text.</returns>
    public static string parallel_info() => Marshal.PtrToStringUTF8(NativeMethods.lr_core_parallel_info()) ?? "";

    internal static void ThrowLastError()
    {
        var p = NativeMethods.lr_core_last_error();
        var msg = p == IntPtr.Zero ? "native call failed without a message" : Marshal.PtrToStringUTF8(p) ?? "";
        NativeMethods.lr_core_clear_error();
        throw new TorchException(msg.TrimEnd());
    }

    internal static (int kind, int index) Encode(Device? d)
    {
        if (d is null) return (0, -1);
        return ((int)d.type, d.index);
    }

    internal static ScalarType ScalarTypeOf<T>() where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return ScalarType.Float32;
        if (typeof(T) == typeof(double)) return ScalarType.Float64;
        if (typeof(T) == typeof(long)) return ScalarType.Int64;
        if (typeof(T) == typeof(int)) return ScalarType.Int32;
        if (typeof(T) == typeof(short)) return ScalarType.Int16;
        if (typeof(T) == typeof(byte)) return ScalarType.Byte;
        if (typeof(T) == typeof(sbyte)) return ScalarType.Int8;
        if (typeof(T) == typeof(bool)) return ScalarType.Bool;
        if (typeof(T) == typeof(Half)) return ScalarType.Float16;
        if (typeof(T) == typeof(ushort)) return ScalarType.BFloat16;
        throw new NotSupportedException($"no tensor element type for {typeof(T).Name}");
    }

    internal static long[] ShapeOf(long[]? shape) => shape ?? Array.Empty<long>();
}
