namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>The result of encoding one text (or one pair of texts): ids with their tokens, offsets and masks.</summary>
public sealed class Encoding
{
    private readonly List<int> _ids;
    private readonly List<string> _tokens;
    private readonly List<(int Start, int End)> _offsets;
    private readonly List<int> _typeIds;
    private readonly List<int> _attentionMask;
    private readonly List<int> _specialTokensMask;
    private readonly List<int?> _sequenceIds;

    internal Encoding(int capacity = 16)
    {
        _ids = new List<int>(capacity);
        _tokens = new List<string>(capacity);
        _offsets = new List<(int, int)>(capacity);
        _typeIds = new List<int>(capacity);
        _attentionMask = new List<int>(capacity);
        _specialTokensMask = new List<int>(capacity);
        _sequenceIds = new List<int?>(capacity);
    }

    /// <summary>The token ids.</summary>
    public IReadOnlyList<int> Ids => _ids;

    /// <summary>The token strings (as in the vocabulary, e.g. "Ġworld" for byte-level models).</summary>
    public IReadOnlyList<string> Tokens => _tokens;

    /// <summary>
    /// For each token, the (start, end) char range of the input text it covers; (0, 0) for tokens added by the
    /// post-processor and for padding. For a pair, offsets of the second sequence are relative to the second text.
    /// </summary>
    public IReadOnlyList<(int Start, int End)> Offsets => _offsets;

    /// <summary>The token type (segment) ids: 0 for the first sequence, 1 for the second in BERT-style pairs.</summary>
    public IReadOnlyList<int> TypeIds => _typeIds;

    /// <summary>1 for real tokens, 0 for padding.</summary>
    public IReadOnlyList<int> AttentionMask => _attentionMask;

    /// <summary>1 for tokens added by the post-processor (and padding), 0 for tokens of the input.</summary>
    public IReadOnlyList<int> SpecialTokensMask => _specialTokensMask;

    /// <summary>Which input sequence (0 or 1) each token comes from; <see langword="null"/> for added special tokens and padding.</summary>
    public IReadOnlyList<int?> SequenceIds => _sequenceIds;

    /// <summary>The number of tokens.</summary>
    public int Length => _ids.Count;

    internal void Add(int id, string token, (int, int) offset, int typeId, bool special, int? sequenceId, int attention = 1)
    {
        _ids.Add(id);
        _tokens.Add(token);
        _offsets.Add(offset);
        _typeIds.Add(typeId);
        _attentionMask.Add(attention);
        _specialTokensMask.Add(special ? 1 : 0);
        _sequenceIds.Add(sequenceId);
    }

    internal void AddFrom(Encoding other, int? typeIdOverride = null)
    {
        for (int i = 0; i < other.Length; i++)
        {
            Add(other._ids[i], other._tokens[i], other._offsets[i], typeIdOverride ?? other._typeIds[i], other._specialTokensMask[i] == 1,
                other._sequenceIds[i], other._attentionMask[i]);
        }
    }

    internal void SetOffset(int index, (int, int) offset) => _offsets[index] = offset;

    internal void SetTypeIds(int typeId)
    {
        for (int i = 0; i < _typeIds.Count; i++)
        {
            _typeIds[i] = typeId;
        }
    }

    internal void SetSequenceId(int? sequenceId)
    {
        for (int i = 0; i < _sequenceIds.Count; i++)
        {
            _sequenceIds[i] = sequenceId;
        }
    }

    /// <summary>Keeps <paramref name="maxLength"/> tokens, dropping from the end (or the start).</summary>
    internal void Truncate(int maxLength, TruncationDirection direction)
    {
        if (Length <= maxLength)
        {
            return;
        }
        int remove = Length - maxLength;
        int index = direction == TruncationDirection.Right ? maxLength : 0;
        _ids.RemoveRange(index, remove);
        _tokens.RemoveRange(index, remove);
        _offsets.RemoveRange(index, remove);
        _typeIds.RemoveRange(index, remove);
        _attentionMask.RemoveRange(index, remove);
        _specialTokensMask.RemoveRange(index, remove);
        _sequenceIds.RemoveRange(index, remove);
    }

    /// <summary>Pads to <paramref name="length"/> tokens.</summary>
    internal void Pad(int length, int padId, string padToken, int padTypeId, PaddingDirection direction)
    {
        int n = length - Length;
        if (n <= 0)
        {
            return;
        }
        int index = direction == PaddingDirection.Right ? Length : 0;
        _ids.InsertRange(index, Enumerable.Repeat(padId, n));
        _tokens.InsertRange(index, Enumerable.Repeat(padToken, n));
        _offsets.InsertRange(index, Enumerable.Repeat((0, 0), n));
        _typeIds.InsertRange(index, Enumerable.Repeat(padTypeId, n));
        _attentionMask.InsertRange(index, Enumerable.Repeat(0, n));
        _specialTokensMask.InsertRange(index, Enumerable.Repeat(1, n));
        _sequenceIds.InsertRange(index, Enumerable.Repeat<int?>(null, n));
    }

    /// <summary>Concatenates encodings.</summary>
    internal static Encoding Merge(IReadOnlyList<Encoding> encodings)
    {
        if (encodings.Count == 1)
        {
            return encodings[0];
        }
        var merged = new Encoding(encodings.Sum(e => e.Length));
        foreach (var e in encodings)
        {
            merged.AddFrom(e);
        }
        return merged;
    }
}

/// <summary>Which end of a sequence truncation removes tokens from.</summary>
public enum TruncationDirection
{
    /// <summary>Remove tokens at the end.</summary>
    Right,

    /// <summary>Remove tokens at the start.</summary>
    Left,
}

/// <summary>How a pair of sequences is shortened.</summary>
public enum TruncationStrategy
{
    /// <summary>Remove tokens from the longer sequence until the pair fits (both end up about half of the budget).</summary>
    LongestFirst,

    /// <summary>Only truncate the first sequence.</summary>
    OnlyFirst,

    /// <summary>Only truncate the second sequence.</summary>
    OnlySecond,
}

/// <summary>Truncation settings.</summary>
public sealed record TruncationOptions
{
    /// <summary>The maximum number of tokens, special tokens included.</summary>
    public required int MaxLength { get; init; }

    /// <summary>How pairs are truncated.</summary>
    public TruncationStrategy Strategy { get; init; } = TruncationStrategy.LongestFirst;

    /// <summary>Which end tokens are removed from.</summary>
    public TruncationDirection Direction { get; init; } = TruncationDirection.Right;
}

/// <summary>Which side padding is added to.</summary>
public enum PaddingDirection
{
    /// <summary>After the tokens.</summary>
    Right,

    /// <summary>Before the tokens (as decoder-only models want for generation).</summary>
    Left,
}

/// <summary>Padding settings.</summary>
public sealed record PaddingOptions
{
    /// <summary>Pad to this many tokens; <see langword="null"/> pads to the longest sequence of the batch.</summary>
    public int? Length { get; init; }

    /// <summary>Round the padded length up to a multiple of this (e.g. 8), when set.</summary>
    public int? PadToMultipleOf { get; init; }

    /// <summary>Which side the padding goes to.</summary>
    public PaddingDirection Direction { get; init; } = PaddingDirection.Right;

    /// <summary>The id of the padding token.</summary>
    public int PadId { get; init; }

    /// <summary>The padding token string.</summary>
    public string PadToken { get; init; } = "[PAD]";

    /// <summary>The type id of padding tokens.</summary>
    public int PadTypeId { get; init; }
}

/// <summary>A padded batch of encodings, with its ids and masks as rectangular matrices.</summary>
public sealed class BatchEncoding
{
    internal BatchEncoding(IReadOnlyList<Encoding> encodings)
    {
        Encodings = encodings;
        SequenceLength = encodings.Count == 0 ? 0 : encodings.Max(e => e.Length);
        IsRectangular = encodings.All(e => e.Length == SequenceLength);
    }

    /// <summary>The encodings, one per input.</summary>
    public IReadOnlyList<Encoding> Encodings { get; }

    /// <summary>The number of inputs.</summary>
    public int BatchSize => Encodings.Count;

    /// <summary>The length of the longest encoding (the matrix width).</summary>
    public int SequenceLength { get; }

    /// <summary>Whether all encodings have the same length (always true when padding was requested).</summary>
    public bool IsRectangular { get; }

    /// <summary>The ids as a [batch, sequence] matrix.</summary>
    /// <exception cref="InvalidOperationException">The encodings have different lengths (no padding was requested).</exception>
    public int[,] InputIds => ToMatrix(e => e.Ids);

    /// <summary>The attention masks as a [batch, sequence] matrix.</summary>
    /// <exception cref="InvalidOperationException">The encodings have different lengths (no padding was requested).</exception>
    public int[,] AttentionMask => ToMatrix(e => e.AttentionMask);

    /// <summary>The type ids as a [batch, sequence] matrix.</summary>
    /// <exception cref="InvalidOperationException">The encodings have different lengths (no padding was requested).</exception>
    public int[,] TypeIds => ToMatrix(e => e.TypeIds);

    /// <summary>The ids flattened row by row as 64-bit integers (ready for a [batch, sequence] tensor).</summary>
    public long[] InputIdsFlat() => Flatten(e => e.Ids);

    /// <summary>The attention masks flattened row by row as 64-bit integers.</summary>
    public long[] AttentionMaskFlat() => Flatten(e => e.AttentionMask);

    private int[,] ToMatrix(Func<Encoding, IReadOnlyList<int>> select)
    {
        EnsureRectangular();
        var m = new int[BatchSize, SequenceLength];
        for (int b = 0; b < BatchSize; b++)
        {
            var row = select(Encodings[b]);
            for (int t = 0; t < SequenceLength; t++)
            {
                m[b, t] = row[t];
            }
        }
        return m;
    }

    private long[] Flatten(Func<Encoding, IReadOnlyList<int>> select)
    {
        EnsureRectangular();
        var flat = new long[BatchSize * SequenceLength];
        for (int b = 0; b < BatchSize; b++)
        {
            var row = select(Encodings[b]);
            for (int t = 0; t < SequenceLength; t++)
            {
                flat[b * SequenceLength + t] = row[t];
            }
        }
        return flat;
    }

    private void EnsureRectangular()
    {
        if (!IsRectangular)
        {
            throw new InvalidOperationException("The encodings of the batch have different lengths; encode the batch with padding to get matrices.");
        }
    }
}
