namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>
/// A text tokenizer in the Hugging Face tokenizers mould: added tokens are split out of the text first, the rest is
/// normalized, pre-tokenized into words and each word is tokenized by the <see cref="Model"/>; a post-processor adds
/// special tokens. Load one with <see cref="FromFile"/> (tokenizer.json or a .tiktoken file), <see cref="FromJson"/>,
/// <see cref="FromDirectory"/>, <see cref="FromGpt2Files"/> or <see cref="FromTiktoken(string, string)"/>.
/// Instances are immutable and safe to use from several threads.
/// </summary>
public sealed partial class Tokenizer
{
    private readonly AddedToken[] _addedTokens;
    private readonly Dictionary<int, AddedToken> _addedById = new();
    private readonly Dictionary<string, AddedToken> _addedByContent = new(StringComparer.Ordinal);
    private readonly AddedTokenMatcher _rawMatcher;
    private readonly AddedTokenMatcher _normalizedMatcher;

    /// <summary>Creates a tokenizer from its parts.</summary>
    /// <param name="model">The model that tokenizes each pre-tokenized word.</param>
    /// <param name="normalizer">The normalizer, if any.</param>
    /// <param name="preTokenizer">The pre-tokenizer, if any (without one, each normalized text is one word).</param>
    /// <param name="postProcessor">The post-processor that adds special tokens, if any.</param>
    /// <param name="decoder">The decoder, if any (without one, tokens are joined with spaces).</param>
    /// <param name="addedTokens">Tokens matched literally in the text before the model runs.</param>
    public Tokenizer(TokenizerModel model, Normalizer? normalizer = null, PreTokenizer? preTokenizer = null,
        PostProcessor? postProcessor = null, Decoder? decoder = null, IEnumerable<AddedToken>? addedTokens = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = model;
        Normalizer = normalizer;
        PreTokenizer = preTokenizer;
        PostProcessor = postProcessor;
        Decoder = decoder;
        _addedTokens = (addedTokens ?? []).ToArray();
        foreach (var token in _addedTokens)
        {
            _addedById[token.Id] = token;
            _addedByContent[token.Content] = token;
        }
        VocabularySize = Math.Max(Model.MaxId, _addedTokens.Length == 0 ? -1 : _addedTokens.Max(t => t.Id)) + 1;
        _rawMatcher = new AddedTokenMatcher(_addedTokens.Where(t => !t.Normalized).Select(t => (t.Content, t)));
        _normalizedMatcher = new AddedTokenMatcher(_addedTokens.Where(t => t.Normalized)
            .Select(t => (normalizer is null ? t.Content : normalizer.Normalize(t.Content), t)));
    }

    /// <summary>The model.</summary>
    public TokenizerModel Model { get; }

    /// <summary>The normalizer, or <see langword="null"/>.</summary>
    public Normalizer? Normalizer { get; }

    /// <summary>The pre-tokenizer, or <see langword="null"/>.</summary>
    public PreTokenizer? PreTokenizer { get; }

    /// <summary>The post-processor, or <see langword="null"/>.</summary>
    public PostProcessor? PostProcessor { get; }

    /// <summary>The decoder, or <see langword="null"/>.</summary>
    public Decoder? Decoder { get; }

    /// <summary>The added tokens, matched in the text before the model runs.</summary>
    public IReadOnlyList<AddedToken> AddedTokens => _addedTokens;

    /// <summary>The default truncation of <see cref="EncodeBatch(IReadOnlyList{string}, TruncationOptions?, PaddingOptions?, bool)"/> (from tokenizer.json), or <see langword="null"/>.</summary>
    public TruncationOptions? Truncation { get; init; }

    /// <summary>The default padding of the batch methods (from tokenizer.json), or <see langword="null"/>.</summary>
    public PaddingOptions? Padding { get; init; }

    /// <summary>
    /// One more than the largest token id of the model and the added tokens: the number of rows an embedding
    /// matrix needs. (Vocabularies with holes, like tiktoken's, have fewer distinct tokens.)
    /// </summary>
    public int VocabularySize { get; }

    /// <summary>The id of a token (an added token or a model token), or <see langword="null"/>.</summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _addedByContent.TryGetValue(token, out var added) ? added.Id : Model.TokenToId(token);
    }

    /// <summary>The token string of an id, or <see langword="null"/>.</summary>
    public string? IdToToken(int id) => _addedById.TryGetValue(id, out var added) ? added.Content : Model.IdToToken(id);

    /// <summary>Whether an id is a special added token.</summary>
    public bool IsSpecialToken(int id) => _addedById.TryGetValue(id, out var added) && added.Special;

    /// <summary>Encodes a text to token ids.</summary>
    /// <param name="text">The text.</param>
    /// <param name="addSpecialTokens">Whether the post-processor adds its special tokens (BOS, [CLS]...).</param>
    public IReadOnlyList<int> EncodeToIds(string text, bool addSpecialTokens = true) => Encode(text, addSpecialTokens).Ids;

    /// <summary>Counts the tokens of a text.</summary>
    /// <param name="text">The text.</param>
    /// <param name="addSpecialTokens">Whether to count the post-processor's special tokens too.</param>
    public int CountTokens(string text, bool addSpecialTokens = true) => Encode(text, addSpecialTokens).Length;

    /// <summary>Encodes a text.</summary>
    /// <param name="text">The text.</param>
    /// <param name="addSpecialTokens">Whether the post-processor adds its special tokens.</param>
    /// <param name="truncation">Truncation to apply, or <see langword="null"/> for none.</param>
    public Encoding Encode(string text, bool addSpecialTokens = true, TruncationOptions? truncation = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Finish([EncodeSequence(text, 0)], addSpecialTokens, truncation);
    }

    /// <summary>Encodes a pair of texts (a question and a passage, two sentences) as one sequence.</summary>
    /// <param name="first">The first text.</param>
    /// <param name="second">The second text (type id 1 with BERT's post-processor).</param>
    /// <param name="addSpecialTokens">Whether the post-processor adds its special tokens.</param>
    /// <param name="truncation">Truncation to apply, or <see langword="null"/> for none.</param>
    public Encoding EncodePair(string first, string second, bool addSpecialTokens = true, TruncationOptions? truncation = null)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        return Finish([EncodeSequence(first, 0), EncodeSequence(second, 1)], addSpecialTokens, truncation);
    }

    /// <summary>Encodes a batch of texts, truncating and padding them.</summary>
    /// <param name="texts">The texts.</param>
    /// <param name="truncation">Truncation, or <see langword="null"/> for <see cref="Truncation"/>.</param>
    /// <param name="padding">Padding, or <see langword="null"/> for <see cref="Padding"/> (no padding when both are null).</param>
    /// <param name="addSpecialTokens">Whether the post-processor adds its special tokens.</param>
    public BatchEncoding EncodeBatch(IReadOnlyList<string> texts, TruncationOptions? truncation = null, PaddingOptions? padding = null, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(texts);
        truncation ??= Truncation;
        var encodings = new Encoding[texts.Count];
        Run(texts.Count, i => encodings[i] = Encode(texts[i] ?? throw new ArgumentException("A text of the batch is null.", nameof(texts)), addSpecialTokens, truncation));
        return Pad(encodings, padding ?? Padding);
    }

    /// <summary>Encodes a batch of text pairs, truncating and padding them.</summary>
    /// <param name="pairs">The pairs.</param>
    /// <param name="truncation">Truncation, or <see langword="null"/> for <see cref="Truncation"/>.</param>
    /// <param name="padding">Padding, or <see langword="null"/> for <see cref="Padding"/> (no padding when both are null).</param>
    /// <param name="addSpecialTokens">Whether the post-processor adds its special tokens.</param>
    public BatchEncoding EncodePairBatch(IReadOnlyList<(string First, string Second)> pairs, TruncationOptions? truncation = null, PaddingOptions? padding = null, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        truncation ??= Truncation;
        var encodings = new Encoding[pairs.Count];
        Run(pairs.Count, i => encodings[i] = EncodePair(pairs[i].First, pairs[i].Second, addSpecialTokens, truncation));
        return Pad(encodings, padding ?? Padding);
    }

    /// <summary>Decodes ids to text.</summary>
    /// <param name="ids">The ids; unknown ids are ignored.</param>
    /// <param name="skipSpecialTokens">Whether special added tokens (BOS, EOS, [CLS], &lt;|endoftext|&gt;...) are left out.</param>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var tokens = new List<string>();
        foreach (int id in ids)
        {
            if (_addedById.TryGetValue(id, out var added))
            {
                if (!(skipSpecialTokens && added.Special))
                {
                    tokens.Add(added.Content);
                }
                continue;
            }
            string? token = Model.IdToToken(id);
            if (token is not null)
            {
                tokens.Add(token);
            }
        }
        return Decoder is null ? string.Join(" ", tokens) : Decoder.Decode(tokens);
    }

    private static void Run(int count, Action<int> body)
    {
        if (count >= 8)
        {
            Parallel.For(0, count, body);
        }
        else
        {
            for (int i = 0; i < count; i++)
            {
                body(i);
            }
        }
    }

    private static BatchEncoding Pad(Encoding[] encodings, PaddingOptions? padding)
    {
        if (padding is not null && encodings.Length > 0)
        {
            int length = padding.Length ?? encodings.Max(e => e.Length);
            if (padding.PadToMultipleOf is int multiple && multiple > 0 && length % multiple != 0)
            {
                length += multiple - length % multiple;
            }
            foreach (var e in encodings)
            {
                e.Pad(length, padding.PadId, padding.PadToken, padding.PadTypeId, padding.Direction);
            }
        }
        return new BatchEncoding(encodings);
    }

    private Encoding Finish(List<Encoding> encodings, bool addSpecialTokens, TruncationOptions? truncation)
    {
        if (truncation is not null)
        {
            Truncate(encodings, truncation, addSpecialTokens && PostProcessor is not null ? PostProcessor.AddedTokenCount(encodings.Count > 1) : 0);
        }
        if (PostProcessor is not null)
        {
            encodings = PostProcessor.Process(encodings, addSpecialTokens);
        }
        else
        {
            for (int i = 0; i < encodings.Count; i++)
            {
                encodings[i].SetSequenceId(i);
            }
        }
        return Encoding.Merge(encodings);
    }

    private static void Truncate(List<Encoding> encodings, TruncationOptions options, int added)
    {
        int budget = options.MaxLength - added;
        if (budget < 0)
        {
            throw new ArgumentException($"The maximum length {options.MaxLength} is smaller than the {added} special tokens the post-processor adds.", nameof(options));
        }
        var direction = options.Direction;
        if (encodings.Count == 1)
        {
            encodings[0].Truncate(budget, direction);
            return;
        }
        var a = encodings[0];
        var b = encodings[1];
        int n1 = a.Length, n2 = b.Length;
        if (n1 + n2 <= budget)
        {
            return;
        }
        switch (options.Strategy)
        {
            case TruncationStrategy.LongestFirst:
            {
                // Shorten the longer one down to the shorter one, then both alternately.
                int shorter = Math.Min(n1, n2);
                int keepShort, keepLong;
                if (shorter * 2 <= budget)
                {
                    keepShort = shorter;
                    keepLong = budget - shorter;
                }
                else
                {
                    keepShort = budget / 2;
                    keepLong = budget - keepShort;
                }
                if (n1 <= n2)
                {
                    a.Truncate(keepShort, direction);
                    b.Truncate(keepLong, direction);
                }
                else
                {
                    a.Truncate(keepLong, direction);
                    b.Truncate(keepShort, direction);
                }
                break;
            }
            case TruncationStrategy.OnlyFirst:
                if (n2 > budget)
                {
                    throw new ArgumentException("Truncating only the first sequence cannot make the pair fit.", nameof(options));
                }
                a.Truncate(budget - n2, direction);
                break;
            case TruncationStrategy.OnlySecond:
                if (n1 > budget)
                {
                    throw new ArgumentException("Truncating only the second sequence cannot make the pair fit.", nameof(options));
                }
                b.Truncate(budget - n1, direction);
                break;
        }
    }

    /// <summary>Encodes one sequence: added tokens, normalization, pre-tokenization, model.</summary>
    private Encoding EncodeSequence(string text, int typeId)
    {
        var state = new EncodeState(new Encoding(text.Length / 3 + 4), typeId);
        if (_rawMatcher.IsEmpty)
        {
            EncodeRaw(text, 0, text.Length, state);
            return state.Encoding;
        }
        var matches = new List<(int Start, int End, AddedToken Token)>();
        _rawMatcher.FindAll(text, matches);
        int pos = 0;
        foreach (var (start, end, token) in matches)
        {
            if (start > pos)
            {
                EncodeRaw(text, pos, start, state);
            }
            state.Encoding.Add(token.Id, token.Content, (start, end), typeId, special: false, sequenceId: 0);
            pos = end;
        }
        if (pos < text.Length)
        {
            EncodeRaw(text, pos, text.Length, state);
        }
        return state.Encoding;
    }

    private void EncodeRaw(string text, int start, int end, EncodeState state)
    {
        var normalized = NormalizedText.FromOriginal(text, start, end);
        if (Normalizer is not null)
        {
            normalized = Normalizer.Normalize(normalized);
        }
        if (_normalizedMatcher.IsEmpty)
        {
            EncodeNormalized(normalized, state);
            return;
        }
        var matches = new List<(int Start, int End, AddedToken Token)>();
        _normalizedMatcher.FindAll(normalized.Text, matches);
        int pos = 0;
        foreach (var (s, e, token) in matches)
        {
            if (s > pos)
            {
                EncodeNormalized(normalized.Slice(pos, s), state);
            }
            state.Encoding.Add(token.Id, token.Content, normalized.MapRange(s, e), state.TypeId, special: false, sequenceId: 0);
            pos = e;
        }
        if (pos < normalized.Length)
        {
            EncodeNormalized(normalized.Slice(pos, normalized.Length), state);
        }
    }

    private void EncodeNormalized(NormalizedText text, EncodeState state)
    {
        state.Pieces.Clear();
        if (PreTokenizer is null)
        {
            state.Pieces.Add(text);
        }
        else
        {
            PreTokenizer.Split(text, state.Pieces);
        }
        foreach (var piece in state.Pieces)
        {
            if (piece.Length == 0)
            {
                continue;
            }
            state.Tokens.Clear();
            Model.Tokenize(piece.Text, state.Tokens);
            foreach (var t in state.Tokens)
            {
                state.Encoding.Add(t.Id, t.Value, piece.MapRange(t.Start, t.End), state.TypeId, special: false, sequenceId: 0);
            }
        }
    }

    private sealed class EncodeState(Encoding encoding, int typeId)
    {
        public Encoding Encoding { get; } = encoding;

        public int TypeId { get; } = typeId;

        public List<NormalizedText> Pieces { get; } = new();

        public List<Token> Tokens { get; } = new();
    }
}
