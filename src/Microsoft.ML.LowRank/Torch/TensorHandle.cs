using System.Runtime.InteropServices;
using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

/// <summary>
/// Owns one native tensor handle (a heap-allocated <c>at::Tensor</c>). Released exactly once, by
/// <see cref="SafeHandle.Dispose()"/> or by the finalizer; the native free is thread-safe.
/// </summary>
internal sealed class TensorHandle : SafeHandle
{
    private static long s_live;

    /// <summary>Number of native tensor handles currently alive in this process.</summary>
    internal static long LiveCount => Interlocked.Read(ref s_live);

    public TensorHandle() : base(IntPtr.Zero, ownsHandle: true) { }

    internal TensorHandle(IntPtr ptr) : base(IntPtr.Zero, ownsHandle: true)
    {
        SetHandle(ptr);
        Interlocked.Increment(ref s_live);
    }

    public override bool IsInvalid => handle == IntPtr.Zero;

    protected override bool ReleaseHandle()
    {
        NativeMethods.lr_tensor_free(handle);
        Interlocked.Decrement(ref s_live);
        return true;
    }
}
