using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Pipeline;
using Microsoft.ML.LowRank.Tests.Helpers;

namespace Microsoft.ML.LowRank.Tests.Pipeline;

/// <summary>Bad input fails at <c>Fit</c> (or at <c>GetOutputSchema</c>, before any training) with a message naming the
/// column, the file or the option.</summary>
[Collection(SerialCollection.Name)]
public class FitErrorTests
{
    private readonly LowRankContext _ctx = new(seed: 1);

    public sealed class KeyedRow
    {
        [KeyType(3)] public uint Label { get; set; }
        public string Text { get; set; } = "";
        public float Number { get; set; }
    }

    private TextClassificationTrainer Classifier(string? folder = "bert_cls", Action<TextClassificationTrainer.Options>? set = null)
    {
        var o = new TextClassificationTrainer.Options { ModelFolder = folder is null ? null : PipelineFixtures.Model(folder), Sentence1ColumnName = "Text", MaxSteps = 1 };
        set?.Invoke(o);
        return _ctx.MulticlassClassification.Trainers.TextClassification(o);
    }

    private IDataView Keyed(params uint[] labels) =>
        _ctx.Data.LoadFromEnumerable(labels.Select((l, i) => new KeyedRow { Label = l, Text = $"the goal {i}", Number = i }).ToArray());

    [Fact]
    public void WrongColumnNamesAndTypesAreNamed()
    {
        var data = Keyed(1, 2, 3);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Classifier(set: o => o.LabelColumnName = "Nope").Fit(data));
        Assert.Contains("Could not find label column 'Nope'", ex.Message);

        ex = Assert.Throws<ArgumentOutOfRangeException>(() => Classifier(set: o => o.Sentence1ColumnName = "Number").Fit(data));
        Assert.Contains("Schema mismatch for sentence1 column 'Number': expected String, got Single", ex.Message);

        // A text label (not mapped to a key) is a schema mismatch that says how to fix it.
        var topics = _ctx.Data.LoadFromEnumerable(PipelineFixtures.Topics(6, 1));
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => Classifier(set: o => o.LabelColumnName = "Topic").Fit(topics));
        Assert.Contains("label column 'Topic'", ex.Message);
        Assert.Contains("MapValueToKey", ex.Message);

        // The same checks run in GetOutputSchema, so a chain fails before anything trains.
        var chain = _ctx.Transforms.Conversion.MapValueToKey("Label", "Topic").Append(Classifier(set: o => o.Sentence2ColumnName = "Missing"));
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => chain.Fit(topics));
        Assert.Contains("'Missing'", ex.Message);

        // Regression needs a numeric label; NER a vector of keys and one tag per word.
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => _ctx.Regression.Trainers.SentenceSimilarity(new SentenceSimilarityTrainer.Options
        { ModelFolder = PipelineFixtures.Model("bert_cls"), LabelColumnName = "Text", Sentence1ColumnName = "Text", Sentence2ColumnName = null }).Fit(data));
        Assert.Contains("Schema mismatch for label column 'Text': expected Single or Double", ex.Message);
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => _ctx.MulticlassClassification.Trainers.NamedEntityRecognition(
            modelFolder: PipelineFixtures.Model("bert_token_cls"), sentenceColumnName: "Text").Fit(data));
        Assert.Contains("label column 'Label'", ex.Message);
        Assert.Contains("vector of Key", ex.Message);

        // A validation set without the columns is named as such.
        var noText = _ctx.Data.LoadFromEnumerable(PipelineFixtures.Ner(2, 1));
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => Classifier(set: o => o.ValidationSet = noText).Fit(data));
        Assert.Contains("ValidationSet", ex.Message);
    }

    public sealed class TaggedRow
    {
        public string Sentence { get; set; } = "";
        public string[] Tags { get; set; } = [];
    }

    [Fact]
    public void DataProblemsAreNamed()
    {
        // One class.
        var ex = Assert.Throws<InvalidOperationException>(() => Classifier().Fit(Keyed(2, 2, 2)));
        Assert.Contains("label column 'Label' has only one class", ex.Message);
        // No rows, or only missing labels.
        ex = Assert.Throws<InvalidOperationException>(() => Classifier().Fit(Keyed()));
        Assert.Contains("no usable rows", ex.Message);
        ex = Assert.Throws<InvalidOperationException>(() => Classifier().Fit(Keyed(0, 0)));
        Assert.Contains("2 row(s) skipped for a missing label", ex.Message);

        // NER: the number of tags must match the number of words.
        var bad = _ctx.Data.LoadFromEnumerable(new[]
        {
            new TaggedRow { Sentence = "alice visited paris", Tags = ["B-PER", "O", "B-LOC"] },
            new TaggedRow { Sentence = "bob met carol", Tags = ["B-PER", "O"] },
        });
        var ner = _ctx.Transforms.Conversion.MapValueToKey("Label", "Tags")
            .Append(_ctx.MulticlassClassification.Trainers.NamedEntityRecognition(modelFolder: PipelineFixtures.Model("bert_token_cls")));
        ex = Assert.Throws<InvalidOperationException>(() => ner.Fit(bad));
        Assert.Contains("row 1 has 3 word(s) in column 'Sentence' but 2 tag(s) in column 'Label'", ex.Message);
    }

    [Fact]
    public void ModelFolderProblemsNameTheFile()
    {
        var data = Keyed(1, 2, 3);
        var ex = Assert.Throws<ArgumentException>(() => Classifier(folder: null).Fit(data));
        Assert.Contains("ModelFolder is not set", ex.Message);

        var missing = Path.Combine(Path.GetTempPath(), "lowrank-missing-" + Guid.NewGuid().ToString("N"));
        var dirEx = Assert.Throws<DirectoryNotFoundException>(() => Classifier(set: o => o.ModelFolder = missing).Fit(data));
        Assert.Contains(missing, dirEx.Message);

        var empty = Directory.CreateTempSubdirectory("lowrank-empty-").FullName;
        try
        {
            var fileEx = Assert.Throws<FileNotFoundException>(() => Classifier(set: o => o.ModelFolder = empty).Fit(data));
            Assert.Contains(Path.Combine(empty, "config.json"), fileEx.Message);
            Assert.Contains("is not a model folder", fileEx.Message);

            File.Copy(Path.Combine(Repo.Fixture("models", "bert_cls"), "config.json"), Path.Combine(empty, "config.json"));
            fileEx = Assert.Throws<FileNotFoundException>(() => Classifier(set: o => o.ModelFolder = empty).Fit(data));
            Assert.Contains("model.safetensors", fileEx.Message);

            File.WriteAllText(Path.Combine(empty, "config.json"), "{ not json");
            var dataEx = Assert.Throws<InvalidDataException>(() => Classifier(set: o => o.ModelFolder = empty).Fit(data));
            Assert.Contains("config.json", dataEx.Message);
        }
        finally
        {
            Directory.Delete(empty, recursive: true);
        }

        // The raw fixture has weights but no tokenizer.
        var fileEx2 = Assert.Throws<FileNotFoundException>(() => Classifier(set: o => o.ModelFolder = Repo.Fixture("models", "bert_cls")).Fit(data));
        Assert.Contains("has no tokenizer", fileEx2.Message);

        // An encoder cannot be instruction-tuned.
        var prompts = _ctx.Data.LoadFromEnumerable(PipelineFixtures.Instructions());
        var nse = Assert.Throws<NotSupportedException>(() => _ctx.TextGeneration.Trainers.CausalLM(modelFolder: PipelineFixtures.Model("bert_cls")).Fit(prompts));
        Assert.Contains("encoder", nse.Message);
    }

    [Fact]
    public void InvalidOptionsNameTheField()
    {
        var data = Keyed(1, 2, 3);
        Assert.Contains("BatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => Classifier(set: o => o.BatchSize = 0).Fit(data)).Message);
        Assert.Contains("EarlyStopping needs a ValidationSet", Assert.Throws<ArgumentException>(() => Classifier(set: o => o.EarlyStopping = new EarlyStoppingOptions()).Fit(data)).Message);
        Assert.Contains("r must be positive", Assert.Throws<ArgumentException>(() => Classifier(set: o => o.Method = new LoraOptions { R = 0 }).Fit(data)).Message);
        Assert.Contains("unknown adapter method 'nope'", Assert.Throws<ArgumentException>(() => _ctx.Transforms.LowRank.CreateMethod("nope")).Message);
        Assert.Contains("has no setting 'rank'", Assert.Throws<ArgumentException>(() => _ctx.Transforms.LowRank.CreateMethod("lora", ("rank", "4"))).Message);
    }
}
