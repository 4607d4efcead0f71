using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Native;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Training;

/// <summary>
/// Dynamic loss scaling for float16 training (PyTorch's <c>GradScaler</c>): the loss is multiplied by
/// <see cref="Scale"/> before backward so small gradients survive float16; before the optimizer step the gradients are
/// divided by it and checked. A step whose gradients hold an infinity or a NaN is skipped and the scale multiplied by
/// <see cref="BackoffFactor"/>; after <see cref="GrowthInterval"/> clean steps in a row it is multiplied by
/// <see cref="GrowthFactor"/>.
/// </summary>
public sealed class GradScaler
{
    /// <summary>Creates a scaler.</summary>
    /// <param name="initScale">Initial scale (PyTorch's default 2¹⁶).</param>
    /// <param name="growthFactor">Multiplier after <paramref name="growthInterval"/> clean steps (&gt; 1).</param>
    /// <param name="backoffFactor">Multiplier after an overflow (in (0, 1)).</param>
    /// <param name="growthInterval">Clean steps before growing (&gt;= 1).</param>
    public GradScaler(double initScale = 65536, double growthFactor = 2, double backoffFactor = 0.5, int growthInterval = 2000)
    {
        if (!(initScale > 0) || double.IsInfinity(initScale)) throw new ArgumentOutOfRangeException(nameof(initScale), initScale, "the initial loss scale must be finite and > 0");
        if (!(growthFactor > 1)) throw new ArgumentOutOfRangeException(nameof(growthFactor), growthFactor, "the growth factor must be > 1");
        if (!(backoffFactor > 0 && backoffFactor < 1)) throw new ArgumentOutOfRangeException(nameof(backoffFactor), backoffFactor, "the backoff factor must be in (0, 1)");
        if (growthInterval < 1) throw new ArgumentOutOfRangeException(nameof(growthInterval), growthInterval, "the growth interval must be >= 1");
        Scale = initScale;
        GrowthFactor = growthFactor;
        BackoffFactor = backoffFactor;
        GrowthInterval = growthInterval;
    }

    /// <summary>The current scale.</summary>
    public double Scale { get; set; }

    /// <summary>Multiplier after <see cref="GrowthInterval"/> clean steps.</summary>
    public double GrowthFactor { get; }

    /// <summary>Multiplier after an overflow.</summary>
    public double BackoffFactor { get; }

    /// <summary>Clean steps before the scale grows.</summary>
    public int GrowthInterval { get; }

    /// <summary>Clean steps since the last growth or overflow.</summary>
    public int GrowthTracker { get; set; }

    /// <summary>Steps skipped because of an overflow.</summary>
    public int SkippedSteps { get; private set; }

    /// <summary>Divides every gradient by <see cref="Scale"/> in place (one native call) and reports whether any holds an
    /// infinity or a NaN.</summary>
    /// <param name="parameters">The parameters whose gradients to unscale (those without a gradient are skipped).</param>
    /// <returns>True when the gradients overflowed (the step must be skipped).</returns>
    public unsafe bool Unscale(IReadOnlyList<Tensor> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        using var scope = NewDisposeScope();
        var grads = new Tensor?[parameters.Count];
        var handles = new IntPtr[parameters.Count];
        for (int i = 0; i < grads.Length; i++)
        {
            grads[i] = parameters[i].grad;
            handles[i] = grads[i]?.Handle.DangerousGetHandle() ?? IntPtr.Zero;
        }
        int found;
        fixed (IntPtr* p = handles) Tensor.CheckStatus(NativeMethods.lr_amp_unscale_(p, handles.Length, 1.0 / Scale, out found));
        GC.KeepAlive(grads);
        return found != 0;
    }

    /// <summary>Updates the scale after a step: backs off on an overflow (and counts the skipped step), grows after
    /// <see cref="GrowthInterval"/> clean steps.</summary>
    /// <param name="overflow">Whether <see cref="Unscale"/> found an overflow.</param>
    public void Update(bool overflow)
    {
        if (overflow)
        {
            Scale *= BackoffFactor;
            GrowthTracker = 0;
            SkippedSteps++;
            return;
        }
        if (++GrowthTracker >= GrowthInterval)
        {
            Scale *= GrowthFactor;
            GrowthTracker = 0;
        }
    }
}

/// <summary>
/// Float32 master copies of float16/bfloat16 trainable parameters: the optimizer updates the masters (so small updates
/// are not lost to rounding and its state is float32), and each step copies them back into the model.
/// </summary>
internal sealed class MasterWeights : IDisposable
{
    private readonly List<(nn.Parameter model, nn.Parameter master)> _pairs = new();

    public MasterWeights(IReadOnlyList<(string Name, nn.Parameter Param)> trainable)
    {
        Optimized = new List<(string, nn.Parameter)>(trainable.Count);
        using var ng = no_grad();
        foreach (var (name, p) in trainable)
        {
            if (p.dtype is ScalarType.Float16 or ScalarType.BFloat16)
            {
                using var scope = NewDisposeScope();
                var master = new nn.Parameter(p.to_type(ScalarType.Float32, copy: true), true);
                _pairs.Add((p, master));
                Optimized.Add((name, master));
            }
            else Optimized.Add((name, p));
        }
    }

    /// <summary>What the optimizer updates: the masters in place of low-precision parameters, the others as they are.</summary>
    public List<(string Name, nn.Parameter Param)> Optimized { get; }

    /// <summary>Whether any parameter has a master copy.</summary>
    public bool Any => _pairs.Count > 0;

    /// <summary>Moves the model parameters' gradients (float16/bfloat16) to the masters as float32.</summary>
    public void GradientsToMasters()
    {
        using var scope = NewDisposeScope();
        foreach (var (model, master) in _pairs)
        {
            var g = model.grad;
            master.grad = g?.to_type(ScalarType.Float32);
            model.grad = null;
        }
    }

    /// <summary>Copies the masters into the model parameters (rounded to their type).</summary>
    public void MastersToModel()
    {
        using var ng = no_grad();
        foreach (var (model, master) in _pairs) model.copy_(master);
    }

    /// <summary>Copies the model parameters into the masters (after loading a checkpoint into the model).</summary>
    public void ModelToMasters()
    {
        using var ng = no_grad();
        foreach (var (model, master) in _pairs) master.copy_(model);
    }

    /// <summary>Clears the gradients of the model parameters with masters.</summary>
    public void ZeroModelGrads()
    {
        foreach (var (model, _) in _pairs) model.grad = null;
    }

    public void Dispose()
    {
        foreach (var (_, master) in _pairs) master.Dispose();
        _pairs.Clear();
    }
}
