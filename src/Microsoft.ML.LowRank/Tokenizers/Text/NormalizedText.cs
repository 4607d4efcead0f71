using System.Runtime.CompilerServices;

namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>
/// A piece of (possibly transformed) text that remembers, for each of its UTF-16 chars, which range of the original
/// input it came from. When no transformation moved chars around, the alignment is positional
/// (char <c>i</c> came from original char <c>Offset + i</c>) and no per-char arrays are kept.
/// </summary>
internal sealed class NormalizedText
{
    private readonly int _offset;
    private readonly int[]? _align; // 2 ints per char: original start, original end

    private NormalizedText(string text, int offset, int[]? align, int originalStart, int originalEnd)
    {
        Text = text;
        _offset = offset;
        _align = align;
        OriginalStart = originalStart;
        OriginalEnd = originalEnd;
    }

    /// <summary>The current text.</summary>
    public string Text { get; }

    /// <summary>Start of the original range this text covers.</summary>
    public int OriginalStart { get; }

    /// <summary>End (exclusive) of the original range this text covers.</summary>
    public int OriginalEnd { get; }

    /// <summary>Length of <see cref="Text"/>.</summary>
    public int Length => Text.Length;

    /// <summary>Whether char <c>i</c> maps to original char <c>OriginalStart + i</c>.</summary>
    public bool IsPositional => _align is null;

    /// <summary>Wraps a range of the original input without transformation.</summary>
    public static NormalizedText FromOriginal(string original, int start, int end) =>
        new(start == 0 && end == original.Length ? original : original.Substring(start, end - start), start, null, start, end);

    /// <summary>Creates a text whose chars map positionally onto the original starting at <paramref name="offset"/>.</summary>
    public static NormalizedText Positional(string text, int offset, int originalStart, int originalEnd) =>
        new(text, offset, null, originalStart, originalEnd);

    internal static NormalizedText WithAlignment(string text, int[] align, int originalStart, int originalEnd) =>
        new(text, 0, align, originalStart, originalEnd);

    /// <summary>Original start of char <paramref name="i"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int CharStart(int i) => _align is null ? _offset + i : _align[2 * i];

    /// <summary>Original end of char <paramref name="i"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int CharEnd(int i) => _align is null ? _offset + i + 1 : _align[2 * i + 1];

    /// <summary>Maps a range of <see cref="Text"/> to a range of the original input.</summary>
    public (int Start, int End) MapRange(int start, int end)
    {
        if (end > start)
        {
            int s = CharStart(start);
            int e = CharEnd(end - 1);
            if (_align is not null)
            {
                // Reordering (canonical ordering of marks) can make the ends non-monotonic: widen to cover all.
                for (int i = start; i < end; i++)
                {
                    s = Math.Min(s, _align[2 * i]);
                    e = Math.Max(e, _align[2 * i + 1]);
                }
            }
            return (s, e);
        }
        int p = start < Length ? CharStart(start) : Length > 0 ? CharEnd(Length - 1) : OriginalStart;
        return (p, p);
    }

    /// <summary>A sub-range of this text, keeping the alignment.</summary>
    public NormalizedText Slice(int start, int end)
    {
        if (start == 0 && end == Length)
        {
            return this;
        }
        string text = Text.Substring(start, end - start);
        var (os, oe) = MapRange(start, end);
        if (_align is null)
        {
            return new NormalizedText(text, _offset + start, null, os, oe);
        }
        return new NormalizedText(text, 0, _align.AsSpan(2 * start, 2 * (end - start)).ToArray(), os, oe);
    }

    /// <summary>A copy with the same alignment and a different text of equal length (a char-for-char mapping).</summary>
    public NormalizedText WithSameAlignment(string text)
    {
        if (text.Length != Length)
        {
            throw new ArgumentException("The replacement text must have the same length.", nameof(text));
        }
        return new NormalizedText(text, _offset, _align, OriginalStart, OriginalEnd);
    }

    /// <inheritdoc/>
    public override string ToString() => Text;
}

/// <summary>Builds a <see cref="NormalizedText"/> char by char, each with the original range it came from.</summary>
internal sealed class AlignedTextBuilder
{
    private char[] _chars;
    private int[] _align;
    private int _length;

    public AlignedTextBuilder(int capacity)
    {
        capacity = Math.Max(capacity, 4);
        _chars = new char[capacity];
        _align = new int[2 * capacity];
    }

    public int Length => _length;

    public void Append(char c, int originalStart, int originalEnd)
    {
        if (_length == _chars.Length)
        {
            Array.Resize(ref _chars, _chars.Length * 2);
            Array.Resize(ref _align, _align.Length * 2);
        }
        _chars[_length] = c;
        _align[2 * _length] = originalStart;
        _align[2 * _length + 1] = originalEnd;
        _length++;
    }

    public void Append(ReadOnlySpan<char> s, int originalStart, int originalEnd)
    {
        foreach (char c in s)
        {
            Append(c, originalStart, originalEnd);
        }
    }

    /// <summary>Appends a code point as one or two UTF-16 chars.</summary>
    public void AppendCodePoint(int cp, int originalStart, int originalEnd)
    {
        if (cp < 0x10000)
        {
            Append((char)cp, originalStart, originalEnd);
        }
        else
        {
            cp -= 0x10000;
            Append((char)(0xD800 + (cp >> 10)), originalStart, originalEnd);
            Append((char)(0xDC00 + (cp & 0x3FF)), originalStart, originalEnd);
        }
    }

    public NormalizedText Build(int originalStart, int originalEnd)
    {
        string text = new(_chars, 0, _length);
        bool positional = true;
        int baseOffset = _length > 0 ? _align[0] : originalStart;
        for (int i = 0; i < _length && positional; i++)
        {
            positional = _align[2 * i] == baseOffset + i && _align[2 * i + 1] == baseOffset + i + 1;
        }
        if (positional)
        {
            return NormalizedText.Positional(text, baseOffset, originalStart, originalEnd);
        }
        return NormalizedText.WithAlignment(text, _align.AsSpan(0, 2 * _length).ToArray(), originalStart, originalEnd);
    }
}
