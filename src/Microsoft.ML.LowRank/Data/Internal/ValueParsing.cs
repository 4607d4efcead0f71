using System.Globalization;
using System.Text.Json;

namespace Microsoft.ML.LowRank.Data;

/// <summary>Parses text fields and JSON values into raw column values (invariant culture).</summary>
internal static class ValueParsing
{
    /// <summary>
    /// Parses a text field. An empty field gives the missing value (NaN, empty text, 0, false); keys are the raw
    /// 1-based value (0 is missing). Returns false when the text is not a valid value of the type.
    /// </summary>
    public static bool TryParse<T>(string text, out T value)
    {
        var s = text.AsSpan().Trim();
        if (typeof(T) == typeof(ReadOnlyMemory<char>))
        {
            value = (T)(object)text.AsMemory();
            return true;
        }
        if (s.IsEmpty)
        {
            value = RawTypes.Missing<T>();
            return true;
        }
        if (typeof(T) == typeof(float))
        {
            bool ok = float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out float f) || TryInfinity(s, out f);
            value = (T)(object)f;
            return ok;
        }
        if (typeof(T) == typeof(double))
        {
            bool ok = double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double d);
            if (!ok && TryInfinity(s, out float f))
            {
                d = f;
                ok = true;
            }
            value = (T)(object)d;
            return ok;
        }
        if (typeof(T) == typeof(int))
        {
            bool ok = int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i);
            value = (T)(object)i;
            return ok;
        }
        if (typeof(T) == typeof(long))
        {
            bool ok = long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long l);
            value = (T)(object)l;
            return ok;
        }
        if (typeof(T) == typeof(uint))
        {
            bool ok = uint.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out uint u);
            value = (T)(object)u;
            return ok;
        }
        if (typeof(T) == typeof(bool))
        {
            bool ok = TryParseBool(s, out bool b);
            value = (T)(object)b;
            return ok;
        }
        value = default!;
        return false;
    }

    /// <summary>Booleans: true/false, t/f, yes/no, y/n, 1/0, +1/-1 (any case).</summary>
    public static bool TryParseBool(ReadOnlySpan<char> s, out bool value)
    {
        if (s.Equals("true", StringComparison.OrdinalIgnoreCase) || s.Equals("t", StringComparison.OrdinalIgnoreCase)
            || s.Equals("yes", StringComparison.OrdinalIgnoreCase) || s.Equals("y", StringComparison.OrdinalIgnoreCase)
            || s.SequenceEqual("1") || s.SequenceEqual("+1"))
        {
            value = true;
            return true;
        }
        if (s.Equals("false", StringComparison.OrdinalIgnoreCase) || s.Equals("f", StringComparison.OrdinalIgnoreCase)
            || s.Equals("no", StringComparison.OrdinalIgnoreCase) || s.Equals("n", StringComparison.OrdinalIgnoreCase)
            || s.SequenceEqual("0") || s.SequenceEqual("-1"))
        {
            value = false;
            return true;
        }
        value = false;
        return false;
    }

    private static bool TryInfinity(ReadOnlySpan<char> s, out float value)
    {
        if (s.Equals("inf", StringComparison.OrdinalIgnoreCase) || s.Equals("+inf", StringComparison.OrdinalIgnoreCase))
        {
            value = float.PositiveInfinity;
            return true;
        }
        if (s.Equals("-inf", StringComparison.OrdinalIgnoreCase))
        {
            value = float.NegativeInfinity;
            return true;
        }
        value = 0;
        return false;
    }

    /// <summary>
    /// Reads a JSON value. null gives the missing value; strings are parsed like text fields for non-text columns;
    /// text columns take strings as they are and any other value as its JSON text.
    /// </summary>
    public static bool TryRead<T>(JsonElement e, out T value)
    {
        if (typeof(T) == typeof(ReadOnlyMemory<char>))
        {
            string s = e.ValueKind switch
            {
                JsonValueKind.String => e.GetString() ?? "",
                JsonValueKind.Null => "",
                _ => e.GetRawText(),
            };
            value = (T)(object)s.AsMemory();
            return true;
        }
        switch (e.ValueKind)
        {
            case JsonValueKind.Null:
                value = RawTypes.Missing<T>();
                return true;
            case JsonValueKind.String:
                return TryParse(e.GetString() ?? "", out value);
            case JsonValueKind.True:
            case JsonValueKind.False:
                if (typeof(T) == typeof(bool))
                {
                    value = (T)(object)(e.ValueKind == JsonValueKind.True);
                    return true;
                }
                break;
            case JsonValueKind.Number:
                if (typeof(T) == typeof(float) && e.TryGetDouble(out double f))
                {
                    value = (T)(object)(float)f;
                    return true;
                }
                if (typeof(T) == typeof(double) && e.TryGetDouble(out double d))
                {
                    value = (T)(object)d;
                    return true;
                }
                if (typeof(T) == typeof(int) && e.TryGetInt32(out int i))
                {
                    value = (T)(object)i;
                    return true;
                }
                if (typeof(T) == typeof(long) && e.TryGetInt64(out long l))
                {
                    value = (T)(object)l;
                    return true;
                }
                if (typeof(T) == typeof(uint) && e.TryGetUInt32(out uint u))
                {
                    value = (T)(object)u;
                    return true;
                }
                if (typeof(T) == typeof(bool) && e.TryGetInt32(out int b) && (b == 0 || b == 1))
                {
                    value = (T)(object)(b == 1);
                    return true;
                }
                break;
        }
        value = default!;
        return false;
    }
}
