using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Helpers;

/// <summary>The process-wide live tensor-handle count after collecting garbage (for leak tests in the serial collection).</summary>
public static class LiveTensors
{
    public static long Count()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return Tensor.TotalCount;
    }
}
