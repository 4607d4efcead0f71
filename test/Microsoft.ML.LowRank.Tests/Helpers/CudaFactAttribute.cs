using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Helpers;

/// <summary>A fact that runs only where CUDA is available, and is reported as skipped (with the reason) elsewhere.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    public CudaFactAttribute()
    {
        bool available;
        try { available = cuda.is_available(); }
        catch (Exception e) { Skip = $"CUDA check failed: {e.Message}"; return; }
        if (!available) Skip = $"CUDA is not available (libtorch {__version__} reports no CUDA device)";
    }
}
