using System.Globalization;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Training;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.Mixture;

/// <summary>Router health over some forward passes: how often each expert was dispatched, the router entropy, and the
/// auxiliary loss.</summary>
/// <param name="Load">Fraction of all dispatches that went to each expert index (routers of every layer added up; a layer
/// with fewer experts contributes to the lower indices only). Sums to 1 when anything was dispatched.</param>
/// <param name="Entropy">Mean over routed rows of the router distribution's entropy divided by log E (0: one-hot,
/// 1: uniform).</param>
/// <param name="AuxiliaryLoss">Mean auxiliary loss (coefficients applied) per micro-batch, NaN when none is configured.</param>
/// <param name="Rows">Routed rows (tokens or examples) counted, over all routers.</param>
public sealed record MixtureRouterStatistics(IReadOnlyList<double> Load, double Entropy, double AuxiliaryLoss, long Rows)
{
    /// <summary>Coefficient of variation (std/mean) of <see cref="Load"/> over the experts: 0 for a perfectly even load.</summary>
    public double LoadCv
    {
        get
        {
            if (Load.Count == 0) return 0;
            double mean = Load.Average();
            if (mean == 0) return 0;
            double v = Load.Sum(x => (x - mean) * (x - mean)) / Load.Count;
            return Math.Sqrt(v) / mean;
        }
    }
}

/// <summary>Accumulates <see cref="MixtureRouterStatistics"/> from router records.</summary>
internal sealed class RouterStatisticsWindow
{
    private double[] _load = Array.Empty<double>();
    private double _entropySum;
    private long _rows;
    private double _auxSum;
    private int _auxCount;

    public void Add(IReadOnlyList<RouterRecord> records, double? aux)
    {
        if (aux is { } a) { _auxSum += a; _auxCount++; }
        if (records.Count == 0) return;
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        int maxE = records.Max(r => r.Experts);
        var load = zeros(new[] { (long)maxE }, ScalarType.Float64);
        var ent = zeros(Array.Empty<long>(), ScalarType.Float64);
        long rows = 0;
        foreach (var r in records)
        {
            var m = r.RowMask?.to_type(ScalarType.Float64) ?? ones(new[] { r.Probs.size(0) }, ScalarType.Float64, r.Probs.device);
            var disp = (r.Dispatched.to_type(ScalarType.Float64) * m.unsqueeze(1)).sum(0).cpu();
            if (r.Experts < maxE) disp = cat(new[] { disp, zeros(new[] { (long)(maxE - r.Experts) }, ScalarType.Float64) }, 0);
            load = load + disp;
            var p = r.Probs.to_type(ScalarType.Float64);
            var h = -(p * p.clamp_min(1e-30).log()).sum(1);
            if (r.Experts > 1) h = h / Math.Log(r.Experts);
            ent = ent + (h * m).sum().cpu();
            rows += (long)m.sum().ToDouble();
        }
        var l = load.ToArray<double>();
        if (_load.Length < l.Length) Array.Resize(ref _load, l.Length);
        for (int i = 0; i < l.Length; i++) _load[i] += l[i];
        _entropySum += ent.ToDouble();
        _rows += rows;
    }

    public MixtureRouterStatistics Snapshot()
    {
        double total = _load.Sum();
        var load = _load.Select(x => total > 0 ? x / total : 0).ToArray();
        return new MixtureRouterStatistics(load, _rows > 0 ? _entropySum / _rows : double.NaN, _auxCount > 0 ? _auxSum / _auxCount : double.NaN, _rows);
    }

    public void Reset()
    {
        _load = Array.Empty<double>();
        _entropySum = 0;
        _rows = 0;
        _auxSum = 0;
        _auxCount = 0;
    }
}

/// <summary>
/// The training hook of a mixture-of-experts adapter (added by <see cref="MixtureOfLoraExpertsOptions.ConfigureTraining"/>):
/// records router decisions during training forward passes, adds the adapter's auxiliary losses to every micro-batch
/// loss, and reports router health in step reports (<c>moe/&lt;adapter&gt;/aux_loss</c>, <c>router_entropy</c>,
/// <c>load_cv</c>, <c>load/&lt;e&gt;</c>).
/// </summary>
internal sealed class MixtureTrainingHook : ITrainingHook
{
    private readonly LowRankModel? _model;
    private readonly string _adapter;
    private readonly MixtureOfLoraExpertsOptions _options;
    private readonly RouterStatisticsWindow _window = new();
    private MixtureRuntime? _runtime;

    public MixtureTrainingHook(LowRankModel model, string adapter, MixtureOfLoraExpertsOptions options)
    {
        _model = model;
        _adapter = adapter;
        _options = options;
    }

    /// <summary>A hook over an explicit runtime (layers used outside a <see cref="LowRankModel"/>).</summary>
    internal MixtureTrainingHook(MixtureRuntime runtime, string adapter, MixtureOfLoraExpertsOptions options)
    {
        _runtime = runtime;
        _adapter = adapter;
        _options = options;
    }

    /// <summary>Router statistics since the last step report.</summary>
    public MixtureRouterStatistics Statistics => _window.Snapshot();

    public void OnTrainBegin(TrainingContext context)
    {
        if (_model is not null) _runtime = MixtureRuntime.Of(_model);
        _runtime!.RecordingCount++;
        _runtime.Clear(_adapter);
    }

    public void BeforeStep(TrainingContext context) => _runtime?.Clear(_adapter);

    public Tensor? AuxiliaryLoss(TrainingContext context)
    {
        if (_runtime is null) return null;
        var records = _runtime.Take(_adapter);
        try
        {
            var aux = MixtureAuxiliaryLosses.Total(_options, records, _runtime.Inputs);
            _window.Add(records, aux?.ToDouble());
            return aux;
        }
        finally
        {
            foreach (var r in records) r.Dispose();
        }
    }

    public void ReportMetrics(TrainingContext context, IDictionary<string, double> metrics)
    {
        var s = _window.Snapshot();
        _window.Reset();
        var prefix = "moe/" + _adapter + "/";
        if (!double.IsNaN(s.AuxiliaryLoss)) metrics[prefix + "aux_loss"] = s.AuxiliaryLoss;
        if (s.Rows == 0) return;
        metrics[prefix + "router_entropy"] = s.Entropy;
        metrics[prefix + "load_cv"] = s.LoadCv;
        for (int e = 0; e < s.Load.Count; e++) metrics[prefix + "load/" + e.ToString(CultureInfo.InvariantCulture)] = s.Load[e];
    }

    public void OnTrainEnd(TrainingContext context)
    {
        if (_runtime is null) return;
        _runtime.RecordingCount = Math.Max(0, _runtime.RecordingCount - 1);
        _runtime.Clear(_adapter);
    }
}
