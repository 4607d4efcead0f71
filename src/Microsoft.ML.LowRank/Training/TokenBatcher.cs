using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Training;

/// <summary>
/// One causal-LM training example: token ids, and either explicit labels or a prompt length. Without explicit labels the
/// labels are the ids themselves (the model shifts them), with the first <see cref="PromptLength"/> positions set to -100
/// so that only the response is learned (instruction tuning).
/// </summary>
public sealed class TokenExample
{
    /// <summary>Creates an example.</summary>
    /// <param name="inputIds">Token ids (at least one).</param>
    /// <param name="promptLength">Leading tokens that get no loss (0: learn every token).</param>
    /// <param name="labels">Explicit labels, same length as the ids (-100: no loss); overrides <paramref name="promptLength"/>.</param>
    public TokenExample(IReadOnlyList<long> inputIds, int promptLength = 0, IReadOnlyList<long>? labels = null)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        if (inputIds.Count == 0) throw new ArgumentException("an example needs at least one token", nameof(inputIds));
        if (promptLength < 0 || promptLength > inputIds.Count)
            throw new ArgumentOutOfRangeException(nameof(promptLength), promptLength, $"must be in [0, {inputIds.Count}] (the number of tokens)");
        if (labels is not null && labels.Count != inputIds.Count)
            throw new ArgumentException($"{labels.Count} labels for {inputIds.Count} tokens", nameof(labels));
        InputIds = inputIds;
        PromptLength = promptLength;
        Labels = labels;
    }

    /// <summary>An instruction example: the prompt's tokens followed by the response's; only the response is learned.</summary>
    /// <param name="prompt">Prompt token ids.</param>
    /// <param name="response">Response token ids.</param>
    /// <returns>The example.</returns>
    public static TokenExample FromPromptAndResponse(IReadOnlyList<long> prompt, IReadOnlyList<long> response)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(response);
        return new TokenExample(prompt.Concat(response).ToArray(), prompt.Count);
    }

    /// <summary>Token ids.</summary>
    public IReadOnlyList<long> InputIds { get; }

    /// <summary>Leading tokens without loss.</summary>
    public int PromptLength { get; }

    /// <summary>Explicit labels, or null.</summary>
    public IReadOnlyList<long>? Labels { get; }
}

/// <summary>
/// Builds padded causal-LM batches from token-id examples: right padding to the longest example of the batch (after
/// truncation to <see cref="MaxLength"/>), attention mask 1/0, labels -100 on padding and (with
/// <see cref="MaskPrompt"/>) on prompt tokens. <see cref="Batch.TargetCount"/> is the number of labels that take part
/// in the loss after the causal shift (position 0 never does).
/// </summary>
public sealed class TokenBatcher : IBatchSource
{
    /// <summary>The label value that the loss ignores.</summary>
    public const long IgnoreIndex = -100;

    private readonly IReadOnlyList<TokenExample> _examples;

    /// <summary>Creates the batcher.</summary>
    /// <param name="examples">The examples.</param>
    /// <param name="padTokenId">Id written at padded positions (masked out, never learned).</param>
    /// <param name="maxLength">Truncate longer examples to this many tokens (keeping the start); null: no truncation.</param>
    /// <param name="maskPrompt">Give prompt tokens the label -100.</param>
    public TokenBatcher(IReadOnlyList<TokenExample> examples, long padTokenId = 0, int? maxLength = null, bool maskPrompt = true)
    {
        _examples = examples ?? throw new ArgumentNullException(nameof(examples));
        for (int i = 0; i < examples.Count; i++)
            if (examples[i] is null) throw new ArgumentException($"example {i} is null", nameof(examples));
        if (maxLength is < 1) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, "must be >= 1");
        PadTokenId = padTokenId;
        MaxLength = maxLength;
        MaskPrompt = maskPrompt;
    }

    /// <summary>Creates a batcher over plain token sequences (every token learned).</summary>
    /// <param name="sequences">The sequences.</param>
    /// <param name="padTokenId">Padding id.</param>
    /// <param name="maxLength">Truncation length.</param>
    /// <returns>The batcher.</returns>
    public static TokenBatcher FromSequences(IEnumerable<IReadOnlyList<long>> sequences, long padTokenId = 0, int? maxLength = null)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        return new TokenBatcher(sequences.Select(s => new TokenExample(s)).ToList(), padTokenId, maxLength);
    }

    /// <summary>The examples.</summary>
    public IReadOnlyList<TokenExample> Examples => _examples;

    /// <summary>Padding id.</summary>
    public long PadTokenId { get; }

    /// <summary>Truncation length, or null.</summary>
    public int? MaxLength { get; }

    /// <summary>Whether prompt tokens get the label -100.</summary>
    public bool MaskPrompt { get; }

    /// <inheritdoc/>
    public int Count => _examples.Count;

    /// <inheritdoc/>
    public Batch GetBatch(IReadOnlyList<int> indices)
    {
        ArgumentNullException.ThrowIfNull(indices);
        if (indices.Count == 0) throw new ArgumentException("a batch needs at least one example", nameof(indices));
        int rows = indices.Count, width = 0;
        foreach (var i in indices)
        {
            if (i < 0 || i >= _examples.Count) throw new ArgumentOutOfRangeException(nameof(indices), i, $"example index out of range [0, {_examples.Count})");
            width = Math.Max(width, Length(_examples[i]));
        }
        var ids = new long[rows * width];
        var mask = new long[rows * width];
        var labels = new long[rows * width];
        long tokens = 0, targets = 0;
        for (int r = 0; r < rows; r++)
        {
            var ex = _examples[indices[r]];
            int n = Length(ex), o = r * width;
            for (int c = 0; c < width; c++)
            {
                if (c < n)
                {
                    ids[o + c] = ex.InputIds[c];
                    mask[o + c] = 1;
                    long y = ex.Labels is { } l ? l[c] : (MaskPrompt && c < ex.PromptLength ? IgnoreIndex : ex.InputIds[c]);
                    labels[o + c] = y;
                    if (c > 0 && y != IgnoreIndex) targets++;
                }
                else
                {
                    ids[o + c] = PadTokenId;
                    labels[o + c] = IgnoreIndex;
                }
            }
            tokens += n;
        }
        var shape = new long[] { rows, width };
        return new Batch(tensor(ids, shape), tensor(mask, shape), tensor(labels, shape))
        {
            TokenCount = tokens,
            TargetCount = targets,
            ExampleIndices = indices.ToArray(),
        };
    }

    private int Length(TokenExample e) => MaxLength is { } m ? Math.Min(m, e.InputIds.Count) : e.InputIds.Count;
}
