using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Models;

/// <summary>What a task head computes on top of the backbone.</summary>
public enum ModelTask
{
    /// <summary>Next-token logits over the vocabulary (HF *ForCausalLM).</summary>
    CausalLM,
    /// <summary>One label per sequence (HF *ForSequenceClassification).</summary>
    SequenceClassification,
    /// <summary>One real value per sequence (a sequence-classification head with one output and mean-square loss).</summary>
    Regression,
    /// <summary>One label per token (HF *ForTokenClassification).</summary>
    TokenClassification,
    /// <summary>The backbone only: last hidden states.</summary>
    Backbone,
}

/// <summary>Inputs of a forward pass. Tensors are borrowed, not owned.</summary>
public sealed class ModelInputs
{
    /// <summary>Token ids [batch, seq] (int64).</summary>
    public required Tensor InputIds { get; init; }
    /// <summary>1 for real tokens, 0 for padding [batch, past + seq]; null means all ones.</summary>
    public Tensor? AttentionMask { get; init; }
    /// <summary>Positions [batch, seq]; null: past .. past + seq - 1 (RoBERTa: from the padding mask).</summary>
    public Tensor? PositionIds { get; init; }
    /// <summary>Segment ids [batch, seq] (BERT pairs).</summary>
    public Tensor? TokenTypeIds { get; init; }
    /// <summary>Targets: token ids (causal LM, shifted inside, -100 ignored), class ids, token labels, or float values (regression).</summary>
    public Tensor? Labels { get; init; }
    /// <summary>Key/value cache for incremental decoding (updated in place).</summary>
    public KVCache? Cache { get; init; }
    /// <summary>Also return the hidden states after the embeddings and after every block.</summary>
    public bool OutputHiddenStates { get; init; }
    /// <summary>Packed sequences (decoders, no cache): the id of the sequence each token belongs to [batch, seq]; a token
    /// attends only to earlier tokens of its own sequence (a block-diagonal causal mask). Pass <see cref="PositionIds"/>
    /// restarting per sequence. Null: one sequence per row.</summary>
    public Tensor? SequenceIds { get; init; }
}

/// <summary>Outputs of a forward pass; tensors belong to the caller's dispose scope.</summary>
public sealed class ModelOutput
{
    /// <summary>Head output: [batch, seq, vocab] (causal LM), [batch, labels] (sequence tasks), [batch, seq, labels] (token tasks); null for the backbone task.</summary>
    public Tensor? Logits { get; init; }
    /// <summary>The loss when labels were given.</summary>
    public Tensor? Loss { get; init; }
    /// <summary>Final hidden states [batch, seq, hidden] (after the final norm for pre-norm decoders).</summary>
    public required Tensor LastHiddenState { get; init; }
    /// <summary>When requested: embeddings output, then each block's output (the last one after the final norm, as HF does).</summary>
    public IReadOnlyList<Tensor>? HiddenStates { get; init; }
}

/// <summary>Keys and values of past positions, per layer, for incremental decoding. Owns its tensors.</summary>
public sealed class KVCache : IDisposable
{
    private readonly Tensor?[] _keys;
    private readonly Tensor?[] _values;

    /// <summary>Creates an empty cache.</summary>
    /// <param name="layers">Number of layers.</param>
    public KVCache(int layers)
    {
        _keys = new Tensor?[layers];
        _values = new Tensor?[layers];
    }

    /// <summary>Number of cached positions.</summary>
    public long Length => _keys[0]?.size(2) ?? 0;

    /// <summary>Appends this step's keys and values [batch, heads, seq, dim] and returns the full ones (aliases in the caller's scope).</summary>
    /// <param name="layer">Layer index.</param>
    /// <param name="k">New keys.</param>
    /// <param name="v">New values.</param>
    /// <returns>All keys and values so far.</returns>
    public (Tensor k, Tensor v) Update(int layer, Tensor k, Tensor v)
    {
        Tensor nk, nv;
        if (_keys[layer] is null) { nk = k.detach(); nv = v.detach(); }
        else { nk = cat(new[] { _keys[layer]!, k.detach() }, 2); nv = cat(new[] { _values[layer]!, v.detach() }, 2); }
        _keys[layer]?.Dispose();
        _values[layer]?.Dispose();
        _keys[layer] = nk.DetachFromDisposeScope();
        _values[layer] = nv.DetachFromDisposeScope();
        return (nk.alias(), nv.alias());
    }

    /// <summary>Keeps only the given batch rows (for batched generation that drops finished rows).</summary>
    /// <param name="rows">Row indices (int64).</param>
    public void SelectRows(Tensor rows)
    {
        for (int i = 0; i < _keys.Length; i++)
        {
            if (_keys[i] is null) continue;
            var k = _keys[i]!.index_select(0, rows).DetachFromDisposeScope();
            var v = _values[i]!.index_select(0, rows).DetachFromDisposeScope();
            _keys[i]!.Dispose(); _values[i]!.Dispose();
            _keys[i] = k; _values[i] = v;
        }
    }

    /// <summary>Frees the cached tensors.</summary>
    public void Dispose()
    {
        for (int i = 0; i < _keys.Length; i++) { _keys[i]?.Dispose(); _values[i]?.Dispose(); _keys[i] = _values[i] = null; }
    }
}

/// <summary>Shared attention helpers: masks, rotary embeddings, grouped-query expansion.</summary>
public static class AttentionUtils
{
    /// <summary>The most negative finite value of a floating type (what HF adds at masked positions).</summary>
    /// <param name="type">A floating type.</param>
    /// <returns>The value.</returns>
    public static double MinValue(ScalarType type) => type switch
    {
        ScalarType.Float16 => -65504.0,
        ScalarType.BFloat16 => -3.3895313892515355e38,
        ScalarType.Float64 => double.MinValue,
        _ => float.MinValue,
    };

    /// <summary>
    /// Additive mask [batch, 1, q, past + q]: 0 where query i (absolute position past + i) may attend key j (causal: j ≤ past + i;
    /// and key j is not padding), the dtype's most negative value elsewhere.
    /// </summary>
    /// <param name="attentionMask">[batch, past + q] of 0/1, or null.</param>
    /// <param name="batch">Batch size.</param>
    /// <param name="q">Query length.</param>
    /// <param name="past">Cached length.</param>
    /// <param name="causal">Apply the causal rule.</param>
    /// <param name="dtype">Score dtype.</param>
    /// <param name="device">Device.</param>
    /// <param name="sequenceIds">Packed sequences [batch, q] (no cache): also require query and key in the same sequence.</param>
    /// <returns>The mask, or null when nothing is masked (no padding, not causal).</returns>
    public static Tensor? AdditiveMask(Tensor? attentionMask, long batch, long q, long past, bool causal, ScalarType dtype, Device device, Tensor? sequenceIds = null)
    {
        if (!causal && attentionMask is null) return null;
        using var scope = NewDisposeScope();
        long kLen = past + q;
        Tensor keep;
        if (causal)
        {
            var qi = arange(past, past + q, 1, ScalarType.Int64, device).unsqueeze(1);
            var kj = arange(0, kLen, 1, ScalarType.Int64, device).unsqueeze(0);
            keep = kj.le(qi).unsqueeze(0).unsqueeze(0); // [1,1,q,k]
            if (attentionMask is not null) keep = keep.logical_and(attentionMask.to(device).ne(0).unsqueeze(1).unsqueeze(1));
        }
        else
        {
            keep = attentionMask!.to(device).ne(0).unsqueeze(1).unsqueeze(1); // [b,1,1,k]
        }
        if (sequenceIds is not null)
        {
            if (past != 0) throw new ArgumentException("packed sequences (SequenceIds) cannot be combined with a KV cache");
            var sid = sequenceIds.to(device);
            keep = keep.logical_and(sid.unsqueeze(2).eq(sid.unsqueeze(1)).unsqueeze(1)); // [b,1,q,k]
        }
        var zero = zeros(new long[] { 1 }, dtype, device);
        var mask = zero.masked_fill(keep.logical_not(), MinValue(dtype));
        if (mask.dim() == 4 && mask.size(0) == 1 && batch > 1) mask = mask.expand(batch, 1, mask.size(2), mask.size(3));
        return mask.MoveToOuterDisposeScope();
    }

    /// <summary>Repeats each key/value head n times along dim 1 (grouped-query attention), as HF's repeat_kv.</summary>
    /// <param name="x">[batch, kv_heads, seq, dim].</param>
    /// <param name="n">Repeats.</param>
    /// <returns>[batch, kv_heads * n, seq, dim].</returns>
    public static Tensor RepeatKv(Tensor x, long n) => n == 1 ? x.alias() : x.repeat_interleave(n, 1);

    /// <summary>RoPE inverse frequencies 1/θ^(2i/d), with linear or llama3 scaling, in float32.</summary>
    /// <param name="dim">Rotary dimension (head dim).</param>
    /// <param name="theta">Base.</param>
    /// <param name="scaling">Scaling, or null.</param>
    /// <returns>The [dim/2] values.</returns>
    public static float[] RopeInvFreq(long dim, double theta, RopeScaling? scaling)
    {
        var n = (int)(dim / 2);
        var inv = new double[n];
        for (int i = 0; i < n; i++) inv[i] = 1.0 / Math.Pow(theta, (2.0 * i) / dim);
        if (scaling is { Type: "linear" })
            for (int i = 0; i < n; i++) inv[i] /= scaling.Factor;
        else if (scaling is { Type: "llama3" } s)
        {
            double lowWave = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor, highWave = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
            for (int i = 0; i < n; i++)
            {
                var wave = 2 * Math.PI / inv[i];
                if (wave > lowWave) inv[i] /= s.Factor;
                else if (wave >= highWave)
                {
                    var smooth = (s.OriginalMaxPositionEmbeddings / wave - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    inv[i] = (1 - smooth) * inv[i] / s.Factor + smooth * inv[i];
                }
            }
        }
        var f = new float[n];
        for (int i = 0; i < n; i++) f[i] = (float)inv[i];
        return f;
    }

    /// <summary>cos and sin tables [batch, seq, dim] for positions (computed in float32, cast to <paramref name="dtype"/>).</summary>
    /// <param name="invFreq">[dim/2] float32 buffer.</param>
    /// <param name="positionIds">[batch, seq] int64.</param>
    /// <param name="dtype">Output dtype.</param>
    /// <returns>(cos, sin).</returns>
    public static (Tensor cos, Tensor sin) RopeCosSin(Tensor invFreq, Tensor positionIds, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var freqs = positionIds.to_type(ScalarType.Float32).unsqueeze(-1) * invFreq.to(positionIds.device).unsqueeze(0).unsqueeze(0);
        var emb = cat(new[] { freqs, freqs }, -1);
        var cos = emb.cos().to_type(dtype).MoveToOuterDisposeScope();
        var sin = emb.sin().to_type(dtype).MoveToOuterDisposeScope();
        return (cos, sin);
    }

    /// <summary>Applies rotary embeddings with HF's rotate_half convention: x·cos + rotate_half(x)·sin.</summary>
    /// <param name="x">[batch, heads, seq, dim].</param>
    /// <param name="cos">[batch, seq, dim].</param>
    /// <param name="sin">[batch, seq, dim].</param>
    /// <returns>The rotated tensor.</returns>
    public static Tensor ApplyRope(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        var c = cos.unsqueeze(1);
        var s = sin.unsqueeze(1);
        // one autograd node where cos/sin are constants (always, for the tables the models build)
        if (!cos.requires_grad && !sin.requires_grad && cos.dtype == x.dtype && sin.dtype == x.dtype && x.size(-1) % 2 == 0)
            return nn.functional.rotary_embedding(x, c, s).MoveToOuterDisposeScope();
        var half = x.size(-1) / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        var rotated = cat(new[] { x2.neg(), x1 }, -1);
        return (x * c + rotated * s).MoveToOuterDisposeScope();
    }

    /// <summary>Default positions: past .. past+seq-1 for every row.</summary>
    /// <param name="batch">Batch size.</param>
    /// <param name="seq">Sequence length.</param>
    /// <param name="past">Cached length.</param>
    /// <param name="device">Device.</param>
    /// <returns>[batch, seq] int64.</returns>
    public static Tensor DefaultPositions(long batch, long seq, long past, Device device)
    {
        using var scope = NewDisposeScope();
        return arange(past, past + seq, 1, ScalarType.Int64, device).unsqueeze(0).expand(batch, seq).MoveToOuterDisposeScope();
    }
}
