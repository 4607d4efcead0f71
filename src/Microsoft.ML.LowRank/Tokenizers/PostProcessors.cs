using System.Globalization;

namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>
/// Finishes an encoding: adds special tokens (BOS/EOS, [CLS]/[SEP]), sets type ids for pairs, adjusts offsets.
/// The set of post-processors is closed.
/// </summary>
public abstract class PostProcessor
{
    private protected PostProcessor()
    {
    }

    /// <summary>How many tokens the processor adds to a single sequence or a pair.</summary>
    public abstract int AddedTokenCount(bool isPair);

    /// <summary>
    /// Processes the encodings of the sequences (one or two); the result is concatenated by the caller.
    /// </summary>
    internal abstract List<Encoding> Process(List<Encoding> encodings, bool addSpecialTokens);

    /// <summary>Marks the type and sequence ids of the encodings when no special tokens are added.</summary>
    private protected static List<Encoding> Default(List<Encoding> encodings)
    {
        for (int i = 0; i < encodings.Count; i++)
        {
            encodings[i].SetSequenceId(i);
        }
        return encodings;
    }

    private protected static void AddSpecial(Encoding target, int id, string token, int typeId) =>
        target.Add(id, token, (0, 0), typeId, special: true, sequenceId: null);

    private protected static void AddSequence(Encoding target, Encoding source, int typeId, int sequenceId)
    {
        source.SetTypeIds(typeId);
        source.SetSequenceId(sequenceId);
        target.AddFrom(source);
    }
}

/// <summary>
/// Removes leading/trailing byte-level spaces ("Ġ") from token offsets (GPT-2's <c>trim_offsets</c>); adds no tokens.
/// </summary>
public sealed class ByteLevelPostProcessor : PostProcessor
{
    /// <summary>Creates a byte-level post-processor.</summary>
    public ByteLevelPostProcessor(bool trimOffsets = true, bool addPrefixSpace = true)
    {
        TrimOffsets = trimOffsets;
        AddPrefixSpace = addPrefixSpace;
    }

    /// <summary>Whether offsets are trimmed.</summary>
    public bool TrimOffsets { get; }

    /// <summary>Whether the pre-tokenizer added a prefix space (which is then kept in the first offset).</summary>
    public bool AddPrefixSpace { get; }

    /// <inheritdoc/>
    public override int AddedTokenCount(bool isPair) => 0;

    internal override List<Encoding> Process(List<Encoding> encodings, bool addSpecialTokens)
    {
        if (TrimOffsets)
        {
            foreach (var e in encodings)
            {
                TrimByteLevelOffsets(e, AddPrefixSpace);
            }
        }
        return Default(encodings);
    }

    internal static void TrimByteLevelOffsets(Encoding encoding, bool addPrefixSpace)
    {
        char space = ByteLevelAlphabet.ByteToChar[' '];
        for (int i = 0; i < encoding.Length; i++)
        {
            string token = encoding.Tokens[i];
            var (start, end) = encoding.Offsets[i];
            int leading = 0;
            while (leading < token.Length && (token[leading] == space || UnicodeData.IsWhiteSpace(token[leading])))
            {
                leading++;
            }
            int trailing = 0;
            while (trailing < token.Length - leading && (token[token.Length - 1 - trailing] == space || UnicodeData.IsWhiteSpace(token[token.Length - 1 - trailing])))
            {
                trailing++;
            }
            if (leading == 0 && trailing == 0)
            {
                continue;
            }
            if (leading > 0)
            {
                bool isFirst = i == 0 || start == 0;
                if (isFirst && addPrefixSpace && leading == 1)
                {
                    leading = 0; // the space we added ourselves is not in the original text
                }
                start = Math.Min(start + leading, end);
            }
            if (trailing > 0 && end >= trailing)
            {
                end = Math.Max(end - trailing, start);
            }
            encoding.SetOffset(i, (start, end));
        }
    }
}

/// <summary>BERT's post-processor: <c>[CLS] A [SEP]</c> and <c>[CLS] A [SEP] B [SEP]</c>, B having type id 1.</summary>
public sealed class BertPostProcessor : PostProcessor
{
    /// <summary>Creates a BERT post-processor.</summary>
    public BertPostProcessor((string Token, int Id) sep, (string Token, int Id) cls)
    {
        Sep = sep;
        Cls = cls;
    }

    /// <summary>The separator token.</summary>
    public (string Token, int Id) Sep { get; }

    /// <summary>The classification token.</summary>
    public (string Token, int Id) Cls { get; }

    /// <inheritdoc/>
    public override int AddedTokenCount(bool isPair) => isPair ? 3 : 2;

    internal override List<Encoding> Process(List<Encoding> encodings, bool addSpecialTokens)
    {
        if (!addSpecialTokens)
        {
            return Default(encodings);
        }
        var result = new Encoding(encodings.Sum(e => e.Length) + 3);
        AddSpecial(result, Cls.Id, Cls.Token, 0);
        AddSequence(result, encodings[0], 0, 0);
        AddSpecial(result, Sep.Id, Sep.Token, 0);
        if (encodings.Count > 1)
        {
            AddSequence(result, encodings[1], 1, 1);
            AddSpecial(result, Sep.Id, Sep.Token, 1);
        }
        return [result];
    }
}

/// <summary>RoBERTa's post-processor: <c>&lt;s&gt; A &lt;/s&gt;</c> and <c>&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;</c>, all type ids 0.</summary>
public sealed class RobertaPostProcessor : PostProcessor
{
    /// <summary>Creates a RoBERTa post-processor.</summary>
    public RobertaPostProcessor((string Token, int Id) sep, (string Token, int Id) cls, bool trimOffsets = true, bool addPrefixSpace = true)
    {
        Sep = sep;
        Cls = cls;
        TrimOffsets = trimOffsets;
        AddPrefixSpace = addPrefixSpace;
    }

    /// <summary>The separator token.</summary>
    public (string Token, int Id) Sep { get; }

    /// <summary>The start token.</summary>
    public (string Token, int Id) Cls { get; }

    /// <summary>Whether byte-level offsets are trimmed.</summary>
    public bool TrimOffsets { get; }

    /// <summary>Whether the pre-tokenizer added a prefix space.</summary>
    public bool AddPrefixSpace { get; }

    /// <inheritdoc/>
    public override int AddedTokenCount(bool isPair) => isPair ? 4 : 2;

    internal override List<Encoding> Process(List<Encoding> encodings, bool addSpecialTokens)
    {
        if (TrimOffsets)
        {
            foreach (var e in encodings)
            {
                ByteLevelPostProcessor.TrimByteLevelOffsets(e, AddPrefixSpace);
            }
        }
        if (!addSpecialTokens)
        {
            return Default(encodings);
        }
        var result = new Encoding(encodings.Sum(e => e.Length) + 4);
        AddSpecial(result, Cls.Id, Cls.Token, 0);
        AddSequence(result, encodings[0], 0, 0);
        AddSpecial(result, Sep.Id, Sep.Token, 0);
        if (encodings.Count > 1)
        {
            AddSpecial(result, Sep.Id, Sep.Token, 0);
            AddSequence(result, encodings[1], 0, 1);
            AddSpecial(result, Sep.Id, Sep.Token, 0);
        }
        return [result];
    }
}

/// <summary>One element of a <see cref="TemplatePostProcessor"/> template.</summary>
/// <param name="IsSequence">Whether this is the input sequence (<c>$A</c>/<c>$B</c>) rather than a special token.</param>
/// <param name="Id">"A" or "B" for sequences; the special token's name otherwise.</param>
/// <param name="TypeId">The type id given to the element's tokens.</param>
public readonly record struct TemplatePiece(bool IsSequence, string Id, int TypeId);

/// <summary>
/// The general template post-processor (tokenizer.json's <c>TemplateProcessing</c>), e.g. single
/// <c>"&lt;s&gt; $A"</c>, pair <c>"&lt;s&gt; $A &lt;s&gt;:1 $B:1"</c>.
/// </summary>
public sealed class TemplatePostProcessor : PostProcessor
{
    private readonly Dictionary<string, (int[] Ids, string[] Tokens)> _specialTokens;

    /// <summary>Creates a template post-processor.</summary>
    /// <param name="single">The template of a single sequence.</param>
    /// <param name="pair">The template of a pair (<see langword="null"/>: the single template followed by <c>$B:1</c>).</param>
    /// <param name="specialTokens">The ids and tokens of each special token name used in the templates.</param>
    public TemplatePostProcessor(IReadOnlyList<TemplatePiece> single, IReadOnlyList<TemplatePiece>? pair, IReadOnlyDictionary<string, (int[] Ids, string[] Tokens)> specialTokens)
    {
        ArgumentNullException.ThrowIfNull(single);
        ArgumentNullException.ThrowIfNull(specialTokens);
        Single = single.ToArray();
        Pair = (pair ?? single.Append(new TemplatePiece(true, "B", 1))).ToArray();
        _specialTokens = specialTokens.ToDictionary(kv => kv.Key, kv => kv.Value);
        foreach (var piece in Single.Concat(Pair))
        {
            if (!piece.IsSequence && !_specialTokens.ContainsKey(piece.Id))
            {
                throw new ArgumentException($"The template uses the special token '{piece.Id}', which has no ids.", nameof(specialTokens));
            }
        }
    }

    /// <summary>Creates a template post-processor from template strings such as <c>"[CLS] $A [SEP]"</c> and <c>"[CLS] $A [SEP] $B:1 [SEP]:1"</c>.</summary>
    public static TemplatePostProcessor Parse(string single, string? pair, IReadOnlyDictionary<string, int> specialTokens)
    {
        ArgumentNullException.ThrowIfNull(specialTokens);
        return new TemplatePostProcessor(ParseTemplate(single), pair is null ? null : ParseTemplate(pair),
            specialTokens.ToDictionary(kv => kv.Key, kv => (new[] { kv.Value }, new[] { kv.Key })));
    }

    /// <summary>The template of a single sequence.</summary>
    public IReadOnlyList<TemplatePiece> Single { get; }

    /// <summary>The template of a pair.</summary>
    public IReadOnlyList<TemplatePiece> Pair { get; }

    private static TemplatePiece[] ParseTemplate(string template)
    {
        var pieces = new List<TemplatePiece>();
        foreach (string part in template.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            string name = part;
            int typeId = 0;
            int colon = part.LastIndexOf(':');
            if (colon > 0 && int.TryParse(part.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int t))
            {
                name = part.Substring(0, colon);
                typeId = t;
            }
            pieces.Add(name switch
            {
                "$" or "$A" or "$a" => new TemplatePiece(true, "A", typeId),
                "$B" or "$b" => new TemplatePiece(true, "B", typeId),
                _ when name.StartsWith('$') && int.TryParse(name.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out int tid) => new TemplatePiece(true, "A", tid),
                _ => new TemplatePiece(false, name, typeId),
            });
        }
        return pieces.ToArray();
    }

    /// <inheritdoc/>
    public override int AddedTokenCount(bool isPair) =>
        (isPair ? Pair : Single).Where(p => !p.IsSequence).Sum(p => _specialTokens[p.Id].Ids.Length);

    internal override List<Encoding> Process(List<Encoding> encodings, bool addSpecialTokens)
    {
        var template = encodings.Count > 1 ? Pair : Single;
        var result = new Encoding(encodings.Sum(e => e.Length) + 8);
        foreach (var piece in template)
        {
            if (piece.IsSequence)
            {
                int index = piece.Id == "A" ? 0 : 1;
                if (index < encodings.Count)
                {
                    AddSequence(result, encodings[index], piece.TypeId, index);
                }
            }
            else if (addSpecialTokens)
            {
                var (ids, tokens) = _specialTokens[piece.Id];
                for (int i = 0; i < ids.Length; i++)
                {
                    AddSpecial(result, ids[i], tokens[i], piece.TypeId);
                }
            }
        }
        return [result];
    }
}

/// <summary>Applies several post-processors in order.</summary>
public sealed class SequencePostProcessor : PostProcessor
{
    /// <summary>Creates a sequence of post-processors.</summary>
    public SequencePostProcessor(IEnumerable<PostProcessor> processors)
    {
        ArgumentNullException.ThrowIfNull(processors);
        Processors = processors.ToArray();
    }

    /// <summary>The processors, applied in order.</summary>
    public IReadOnlyList<PostProcessor> Processors { get; }

    /// <inheritdoc/>
    public override int AddedTokenCount(bool isPair) => Processors.Sum(p => p.AddedTokenCount(isPair));

    internal override List<Encoding> Process(List<Encoding> encodings, bool addSpecialTokens)
    {
        foreach (var p in Processors)
        {
            encodings = p.Process(encodings, addSpecialTokens);
        }
        return encodings;
    }
}
