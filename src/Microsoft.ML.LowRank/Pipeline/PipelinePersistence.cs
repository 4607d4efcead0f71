using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Data;

namespace Microsoft.ML.LowRank.Pipeline;

/// <summary>Saving and loading each kind of transformer a pipeline may hold.</summary>
internal static class PipelinePersistence
{
    private const string ValueToKey = "ValueToKeyMapping";
    private const string KeyToValue = "KeyToValueMapping";

    /// <summary>Writes <paramref name="transformer"/>; returns its kind.</summary>
    public static string Save(ITransformer transformer, ModelSaveContext save)
    {
        switch (transformer)
        {
            case LowRankTransformerBase lowRank:
                lowRank.Save(save);
                return lowRank.PersistKind;
            case ValueToKeyMappingTransformer v2k:
            {
                var columns = new JsonArray();
                for (int i = 0; i < v2k.Columns.Count; i++)
                {
                    var map = v2k.Maps[i];
                    columns.Add((JsonNode)new JsonObject
                    {
                        ["output"] = v2k.Columns[i].OutputColumnName,
                        ["input"] = v2k.Columns[i].InputColumnName,
                        ["item_type"] = SchemaCodec.Format(map.ItemType),
                        ["values"] = new JsonArray(map.ValuesAsText().Select(v => (JsonNode?)JsonValue.Create(v)).ToArray()),
                    });
                }
                save.WriteJson("transform.json", new JsonObject { ["kind"] = ValueToKey, ["key_values_as_text"] = v2k.KeyValuesAsText, ["columns"] = columns });
                return ValueToKey;
            }
            case KeyToValueMappingTransformer k2v:
                save.WriteJson("transform.json", new JsonObject
                {
                    ["kind"] = KeyToValue,
                    ["columns"] = new JsonArray(k2v.Columns.Select(c => (JsonNode?)new JsonObject { ["output"] = c.OutputColumnName, ["input"] = c.InputColumnName }).ToArray()),
                });
                return KeyToValue;
            default:
                throw new NotSupportedException($"{transformer.GetType().Name} cannot be saved: only key mappings and low-rank task transformers (and chains of them) can be saved");
        }
    }

    public static ITransformer Load(string kind, ModelLoadContext load)
    {
        switch (kind)
        {
            case ValueToKey:
            {
                var o = load.ReadJson("transform.json");
                var pairs = new List<InputOutputColumnPair>();
                var maps = new List<KeyMap>();
                foreach (var c in o["columns"]?.AsArray() ?? [])
                {
                    pairs.Add(new InputOutputColumnPair((string)c!["output"]!, (string?)c["input"]));
                    var type = SchemaCodec.Parse((string)c["item_type"]!, load.Path);
                    var values = c["values"]!.AsArray().Select(v => (string)v!).ToArray();
                    maps.Add(RawTypes.Visit(type.RawType, new KeyMapReader(values, load)));
                }
                return new ValueToKeyMappingTransformer([.. pairs], [.. maps], o["key_values_as_text"]?.GetValue<bool>() ?? false);
            }
            case KeyToValue:
            {
                var o = load.ReadJson("transform.json");
                var pairs = (o["columns"]?.AsArray() ?? []).Select(c => new InputOutputColumnPair((string)c!["output"]!, (string?)c["input"])).ToArray();
                return new KeyToValueMappingTransformer(pairs);
            }
            default:
                return LowRankTransformerBase.Load(load);
        }
    }

    private sealed class KeyMapReader(string[] values, ModelLoadContext load) : IRawTypeVisitor<KeyMap>
    {
        public KeyMap Visit<T>() where T : struct
        {
            var map = new KeyMap<T>();
            foreach (var v in values)
            {
                if (!ValueParsing.TryParse(v, out T value)) throw load.Corrupt($"key value '{v}' is not a {typeof(T).Name}");
                map.TryAdd(value);
            }
            if (map.Count != values.Length) throw load.Corrupt("a key mapping holds duplicate or missing values");
            return map;
        }
    }
}

/// <summary>Writes and reads schemas and column types as JSON ("String", "Single", "Key&lt;UInt32, 3&gt;",
/// "Vector&lt;Single, 3&gt;", "VarVector&lt;String&gt;"), with key values.</summary>
internal static class SchemaCodec
{
    public static JsonObject Write(DataViewSchema schema)
    {
        var columns = new JsonArray();
        foreach (var c in schema)
        {
            if (c.IsHidden) continue;
            var o = new JsonObject { ["name"] = c.Name, ["type"] = Format(c.Type) };
            if (KeyValueSet.FromColumn(c) is { } kv)
                o["key_values"] = new JsonObject { ["type"] = Format(kv.ItemType), ["values"] = new JsonArray(kv.Values.Select(v => (JsonNode?)JsonValue.Create(v)).ToArray()) };
            columns.Add((JsonNode)o);
        }
        return new JsonObject { ["columns"] = columns };
    }

    public static DataViewSchema Read(JsonObject o, string source)
    {
        var builder = new DataViewSchema.Builder();
        foreach (var c in o["columns"]?.AsArray() ?? [])
        {
            var type = Parse((string?)c?["type"] ?? "", source);
            DataViewSchema.Annotations? annotations = null;
            if (c?["key_values"] is JsonObject kv)
            {
                var item = (PrimitiveDataViewType)Parse((string)kv["type"]!, source);
                annotations = new KeyValueSet(item, kv["values"]!.AsArray().Select(v => (string)v!).ToArray()).ToAnnotations();
            }
            builder.AddColumn((string)c!["name"]!, type, annotations);
        }
        return builder.ToSchema();
    }

    public static string Format(DataViewType type) => type switch
    {
        KeyDataViewType k => string.Create(CultureInfo.InvariantCulture, $"Key<UInt32, {k.Count}>"),
        VectorDataViewType { IsKnownSize: true } v => $"Vector<{Format(v.ItemType)}, {string.Join(", ", v.Dimensions)}>",
        VectorDataViewType v => $"VarVector<{Format(v.ItemType)}>",
        _ => type.ToString()!,
    };

    public static DataViewType Parse(string text, string source)
    {
        var s = text.Trim();
        if (s.StartsWith("Key<UInt32,", StringComparison.Ordinal) && s.EndsWith('>'))
            return new KeyDataViewType(ulong.Parse(s["Key<UInt32,".Length..^1], CultureInfo.InvariantCulture));
        if (s.StartsWith("VarVector<", StringComparison.Ordinal) && s.EndsWith('>'))
            return new VectorDataViewType((PrimitiveDataViewType)Parse(s["VarVector<".Length..^1], source));
        if (s.StartsWith("Vector<", StringComparison.Ordinal) && s.EndsWith('>'))
        {
            var inner = s["Vector<".Length..^1];
            // The item type may itself hold a comma (a key type): the dimensions are the trailing integers.
            var parts = inner.Split(',').Select(p => p.Trim()).ToList();
            var dims = new List<int>();
            while (parts.Count > 1 && int.TryParse(parts[^1], NumberStyles.None, CultureInfo.InvariantCulture, out int d) && !parts[^1].EndsWith('>'))
            {
                dims.Insert(0, d);
                parts.RemoveAt(parts.Count - 1);
            }
            return new VectorDataViewType((PrimitiveDataViewType)Parse(string.Join(", ", parts), source), [.. dims]);
        }
        return s switch
        {
            "String" => TextDataViewType.Instance,
            "Boolean" => BooleanDataViewType.Instance,
            "Single" => NumberDataViewType.Single,
            "Double" => NumberDataViewType.Double,
            "Int32" => NumberDataViewType.Int32,
            "Int64" => NumberDataViewType.Int64,
            "UInt32" => NumberDataViewType.UInt32,
            _ => throw new InvalidDataException($"{source}: unknown column type '{text}'"),
        };
    }
}
