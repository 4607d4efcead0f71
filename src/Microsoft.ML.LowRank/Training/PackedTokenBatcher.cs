using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Training;

/// <summary>
/// Padding-free packing of short token sequences: the examples of a micro-batch are laid end to end in rows of
/// <see cref="PackedLength"/> tokens (first fit: each example, in order, goes to the first row with room for it), with
/// positions restarting at 0 and a sequence id per token, so attention stays inside each sequence (a block-diagonal
/// causal mask, see <see cref="Models.ModelInputs.SequenceIds"/>) and the linear layers, the MLP and the loss spend no
/// compute on padding except at the ends of rows. The first token of every packed sequence gets the label -100 (nothing
/// predicts it across the boundary), so the causal-LM loss is the same token-weighted mean as with one padded row per
/// example, and a micro-batch holds the same examples as with <see cref="TokenBatcher"/> (only in fewer rows).
/// </summary>
/// <remarks>
/// Decoders only (LLaMA family, GPT-2): encoders ignore sequence ids and would attend across examples, so
/// <see cref="Models.PretrainedModel"/> refuses packed inputs for them. Attention still runs over each packed row as a
/// whole with a dense [rows, 1, L, L] mask (libtorch has no public variable-length attention), so its cost is
/// rows·L² rather than Σ nᵢ²; the saving is in everything else. Use <see cref="TrainerOptions.PackSequences"/> to pack
/// the training data of a <see cref="Trainer"/>.
/// </remarks>
public sealed class PackedTokenBatcher : IBatchSource
{
    private const long IgnoreIndex = -100;
    private readonly IReadOnlyList<TokenExample> _examples;

    /// <summary>Creates the batcher.</summary>
    /// <param name="examples">The examples (each longer than <paramref name="packedLength"/> is truncated to it).</param>
    /// <param name="packedLength">Tokens per packed row.</param>
    /// <param name="padTokenId">Id at the unused end of the last row (masked out, never learned).</param>
    /// <param name="maskPrompt">Give prompt tokens the label -100.</param>
    public PackedTokenBatcher(IReadOnlyList<TokenExample> examples, int packedLength, long padTokenId = 0, bool maskPrompt = true)
    {
        _examples = examples ?? throw new ArgumentNullException(nameof(examples));
        if (packedLength < 2) throw new ArgumentOutOfRangeException(nameof(packedLength), packedLength, "the packed length must be >= 2");
        for (int i = 0; i < examples.Count; i++)
            if (examples[i] is null) throw new ArgumentException($"example {i} is null", nameof(examples));
        PackedLength = packedLength;
        PadTokenId = padTokenId;
        MaskPrompt = maskPrompt;
    }

    /// <summary>Packs the examples of a padding batcher, with its padding id, prompt masking and truncation.</summary>
    /// <param name="source">The padding batcher.</param>
    /// <param name="packedLength">Tokens per packed row; null: the batcher's <see cref="TokenBatcher.MaxLength"/>, or
    /// else its longest example (so every example fits in a row and none is truncated).</param>
    /// <returns>The packing batcher over the same examples.</returns>
    public static PackedTokenBatcher From(TokenBatcher source, int? packedLength = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        int length = packedLength ?? source.MaxLength ?? Math.Max(2, source.Examples.Count == 0 ? 2 : source.Examples.Max(e => e.InputIds.Count));
        var examples = source.MaxLength is { } m && m < length
            ? source.Examples.Select(e => e.InputIds.Count <= m ? e : Truncate(e, m)).ToList()
            : source.Examples;
        return new PackedTokenBatcher(examples, length, source.PadTokenId, source.MaskPrompt);
    }

    private static TokenExample Truncate(TokenExample e, int m) =>
        new(e.InputIds.Take(m).ToArray(), Math.Min(e.PromptLength, m), e.Labels?.Take(m).ToArray());

    /// <summary>Tokens per packed row.</summary>
    public int PackedLength { get; }

    /// <summary>Padding id.</summary>
    public long PadTokenId { get; }

    /// <summary>Whether prompt tokens get the label -100.</summary>
    public bool MaskPrompt { get; }

    /// <inheritdoc/>
    public int Count => _examples.Count;

    /// <inheritdoc/>
    public Batch GetBatch(IReadOnlyList<int> indices)
    {
        ArgumentNullException.ThrowIfNull(indices);
        if (indices.Count == 0) throw new ArgumentException("a batch needs at least one example", nameof(indices));
        // Assign rows first fit: each example (in the given order) goes to the first row with room for it.
        var rowOf = new int[indices.Count];
        var startOf = new int[indices.Count];
        var used = new List<int>();
        for (int k = 0; k < indices.Count; k++)
        {
            int i = indices[k];
            if (i < 0 || i >= _examples.Count) throw new ArgumentOutOfRangeException(nameof(indices), i, $"example index out of range [0, {_examples.Count})");
            int n = Math.Min(PackedLength, _examples[i].InputIds.Count);
            int r = 0;
            while (r < used.Count && used[r] + n > PackedLength) r++;
            if (r == used.Count) used.Add(0);
            rowOf[k] = r;
            startOf[k] = used[r];
            used[r] += n;
        }
        int rows = used.Count;
        int width = PackedLength;
        var ids = new long[rows * width];
        var labels = new long[rows * width];
        var mask = new long[rows * width];
        var pos = new long[rows * width];
        var seq = new long[rows * width];
        Array.Fill(ids, PadTokenId);
        Array.Fill(labels, IgnoreIndex);
        long tokens = 0, targets = 0;
        for (int k = 0; k < indices.Count; k++)
        {
            var ex = _examples[indices[k]];
            int n = Math.Min(PackedLength, ex.InputIds.Count), o = rowOf[k] * width + startOf[k];
            for (int c = 0; c < n; c++)
            {
                ids[o + c] = ex.InputIds[c];
                mask[o + c] = 1;
                pos[o + c] = c;
                seq[o + c] = k + 1;
                long y = c == 0 ? IgnoreIndex : ex.Labels is { } l ? l[c] : (MaskPrompt && c < ex.PromptLength ? IgnoreIndex : ex.InputIds[c]);
                labels[o + c] = y;
                if (y != IgnoreIndex && o + c > rowOf[k] * width) targets++;
            }
            tokens += n;
        }
        var shape = new long[] { rows, width };
        return new Batch(tensor(ids, shape), tensor(mask, shape), tensor(labels, shape))
        {
            PositionIds = tensor(pos, shape),
            SequenceIds = tensor(seq, shape),
            TokenCount = tokens,
            TargetCount = targets,
            ExampleIndices = indices.ToArray(),
        };
    }
}
