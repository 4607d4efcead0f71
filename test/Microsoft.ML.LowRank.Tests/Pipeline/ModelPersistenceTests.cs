using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Pipeline;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Tests.Pipeline;

/// <summary><c>ctx.Model.Save</c> / <c>Load</c>: the zip layout (PEFT adapter, pipeline description, base hash), identical
/// predictions after loading, and a clear failure against another base model.</summary>
[Collection(SerialCollection.Name)]
public class ModelPersistenceTests
{
    private static string TempZip() => Path.Combine(Path.GetTempPath(), $"lowrank-model-{Guid.NewGuid():N}.zip");

    public sealed class TopicPrediction
    {
        public string PredictedTopic { get; set; } = "";
        public float[] Score { get; set; } = [];
    }

    private static string Sha256OfWeights(string folder)
    {
        // Independent of the library: SHA-256 over "model.safetensors\0" followed by the file's bytes.
        var bytes = System.Text.Encoding.UTF8.GetBytes("model.safetensors\0").Concat(File.ReadAllBytes(Path.Combine(folder, "model.safetensors"))).ToArray();
        return "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));
    }

    [Fact]
    public void ClassificationPipelineRoundTripsThroughTheZipWithIdenticalPredictions()
    {
        var ctx = new LowRankContext(seed: 11);
        var train = ctx.Data.LoadFromEnumerable(PipelineFixtures.Topics(24, seed: 1));
        var test = ctx.Data.LoadFromEnumerable(PipelineFixtures.Topics(12, seed: 2));
        var folder = PipelineFixtures.Model("llama_cls");
        var pipeline = ctx.Transforms.Conversion.MapValueToKey("Label", "Topic")
            .Append(ctx.MulticlassClassification.Trainers.TextClassification(new TextClassificationTrainer.Options
            {
                ModelFolder = folder, Sentence1ColumnName = "Text", MaxSteps = 3, BatchSize = 8, LearningRate = 1e-2,
            }))
            .Append(ctx.Transforms.Conversion.MapKeyToValue("PredictedTopic", "PredictedLabel"));
        var zip = TempZip();
        try
        {
            List<TopicPrediction> before;
            using (var model = pipeline.Fit(train))
            {
                before = ctx.Data.CreateEnumerable<TopicPrediction>(model.Transform(test), reuseRowObject: false).ToList();
                ctx.Model.Save(model, train.Schema, zip);
            }

            using (var archive = ZipFile.OpenRead(zip))
            {
                var names = archive.Entries.Select(e => e.FullName).ToList();
                Assert.Contains("lowrank-model.json", names);
                Assert.Contains("Schema.json", names);
                Assert.Contains("Model/001/adapter/adapter_config.json", names);
                Assert.Contains("Model/001/adapter/adapter_model.safetensors", names);
                Assert.Contains("Model/001/tokenizer/tokenizer.json", names);
                var manifest = JsonNode.Parse(new StreamReader(archive.GetEntry("lowrank-model.json")!.Open()).ReadToEnd())!;
                Assert.Equal(["ValueToKeyMapping", "TextClassification", "KeyToValueMapping"], manifest["transformers"]!.AsArray().Select(t => (string)t!["kind"]!).ToArray());
                var task = JsonNode.Parse(new StreamReader(archive.GetEntry("Model/001/lowrank.json")!.Open()).ReadToEnd())!;
                Assert.Equal(Sha256OfWeights(folder), (string)task["base_weights_sha256"]!);
                Assert.Equal(["sports", "politics", "tech"], task["task"]!["label_key_values"]!["values"]!.AsArray().Select(v => (string)v!).ToArray());
                var adapterConfig = JsonNode.Parse(new StreamReader(archive.GetEntry("Model/001/adapter/adapter_config.json")!.Open()).ReadToEnd())!;
                Assert.Equal("LORA", (string)adapterConfig["peft_type"]!);
                Assert.Equal("SEQ_CLS", (string)adapterConfig["task_type"]!);
                // PEFT's key names in the weights file.
                var weights = Path.Combine(Path.GetTempPath(), $"lowrank-adapter-{Guid.NewGuid():N}.safetensors");
                archive.GetEntry("Model/001/adapter/adapter_model.safetensors")!.ExtractToFile(weights);
                using (var file = SafetensorsFile.Open(weights))
                {
                    Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", file.Names);
                    Assert.Contains("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight", file.Names);
                    Assert.Contains("base_model.model.score.weight", file.Names);
                }
                File.Delete(weights);
            }

            using var loaded = (TransformerChain<ITransformer>)ctx.Model.Load(zip, out var schema);
            Assert.Equal(train.Schema.Select(c => (c.Name, c.Type)), schema.Select(c => (c.Name, c.Type)));
            var after = ctx.Data.CreateEnumerable<TopicPrediction>(loaded.Transform(test), reuseRowObject: false).ToList();
            Assert.Equal(before.Count, after.Count);
            for (int i = 0; i < before.Count; i++)
            {
                Assert.Equal(before[i].PredictedTopic, after[i].PredictedTopic);
                Assert.Equal(before[i].Score, after[i].Score); // bit for bit
            }
            // One object at a time, as ML.NET's PredictionEngine.
            var engine = ctx.Model.CreatePredictionEngine<PipelineFixtures.TopicRow, TopicPrediction>(loaded);
            var one = engine.Predict(PipelineFixtures.Topics(12, seed: 2)[4]);
            Assert.Equal(before[4].PredictedTopic, one.PredictedTopic);
            Assert.Equal(before[4].Score, one.Score);
            // A loaded model keeps working in a new pipeline (the key values travel with the transformer).
            var last = Assert.IsType<TextClassificationTransformer>(loaded.ElementAt(1));
            Assert.Equal(["sports", "politics", "tech"], last.LabelValues);
            Assert.Null(last.TrainingResult);
        }
        finally
        {
            File.Delete(zip);
        }
    }

    [Fact]
    public void LoadingAgainstAnotherBaseModelFailsNamingBothHashes()
    {
        var ctx = new LowRankContext(seed: 12);
        var data = ctx.Data.LoadFromEnumerable(PipelineFixtures.Pairs(16, seed: 1, allowBoth: true));
        var zip = TempZip();
        var other = PipelineFixtures.PerturbedCopy("bert_cls");
        try
        {
            using (var model = ctx.Regression.Trainers.SentenceSimilarity(new SentenceSimilarityTrainer.Options
            {
                ModelFolder = PipelineFixtures.Model("bert_cls"), LabelColumnName = "Similarity", MaxSteps = 2, BatchSize = 8,
            }).Fit(data))
            {
                ctx.Model.Save(model, data.Schema, zip);
            }
            var ex = Assert.Throws<InvalidDataException>(() => ctx.Model.Load(zip, out _, baseModelFolder: other));
            Assert.Contains(Sha256OfWeights(other), ex.Message);
            Assert.Contains(Sha256OfWeights(PipelineFixtures.Model("bert_cls")), ex.Message);
            Assert.Contains("differ", ex.Message);

            // The right base model, given explicitly, loads.
            using var ok = (IDisposable)ctx.Model.Load(zip, out _, baseModelFolder: PipelineFixtures.Model("bert_cls"));

            // A missing base model folder is named.
            var missing = Path.Combine(Path.GetTempPath(), "no-such-model-" + Guid.NewGuid().ToString("N"));
            var ex2 = Assert.Throws<FileNotFoundException>(() => ctx.Model.Load(zip, out _, baseModelFolder: missing));
            Assert.Contains(missing, ex2.Message);

            // Not a model file.
            File.WriteAllText(zip, "not a zip");
            Assert.Contains("not a model file", Assert.Throws<InvalidDataException>(() => ctx.Model.Load(zip, out _)).Message);
        }
        finally
        {
            File.Delete(zip);
            Directory.Delete(other, recursive: true);
        }
    }

    public sealed class TagPrediction
    {
        public string[] PredictedTags { get; set; } = [];
    }

    [Fact]
    public void EveryTaskPredictsTheSameAfterLoading()
    {
        var ctx = new LowRankContext(seed: 13);
        var zip = TempZip();
        try
        {
            // Sentence similarity (regression head, single output).
            var pairs = ctx.Data.LoadFromEnumerable(PipelineFixtures.Pairs(16, seed: 2, allowBoth: true));
            float[] regBefore;
            using (var model = ctx.Regression.Trainers.SentenceSimilarity(new SentenceSimilarityTrainer.Options
            { ModelFolder = PipelineFixtures.Model("bert_cls"), LabelColumnName = "Similarity", MaxSteps = 2, BatchSize = 8, LearningRate = 1e-2 }).Fit(pairs))
            {
                regBefore = model.Transform(pairs).GetColumn<float>("Score").ToArray();
                ctx.Model.Save(model, pairs.Schema, zip);
            }
            using (var loaded = Assert.IsType<SentenceSimilarityTransformer>(ctx.Model.Load(zip, out _)))
                Assert.Equal(regBefore, loaded.Transform(pairs).GetColumn<float>("Score").ToArray());

            // Named entities, with the tags mapped back to text.
            var ner = ctx.Data.LoadFromEnumerable(PipelineFixtures.Ner(16, seed: 3));
            string[][] tagsBefore;
            using (var model = ctx.Transforms.Conversion.MapValueToKey("Label", "Tags")
                .Append(ctx.MulticlassClassification.Trainers.NamedEntityRecognition(new NamedEntityRecognitionTrainer.Options
                { ModelFolder = PipelineFixtures.Model("bert_token_cls"), MaxSteps = 2, BatchSize = 8, LearningRate = 1e-2 }))
                .Append(ctx.Transforms.Conversion.MapKeyToValue("PredictedTags", "PredictedLabel")).Fit(ner))
            {
                tagsBefore = ctx.Data.CreateEnumerable<TagPrediction>(model.Transform(ner), false).Select(p => p.PredictedTags).ToArray();
                ctx.Model.Save(model, ner.Schema, zip);
            }
            using (var loaded = (IDisposable)ctx.Model.Load(zip, out _))
            {
                var tagsAfter = ctx.Data.CreateEnumerable<TagPrediction>(((ITransformer)loaded).Transform(ner), false).Select(p => p.PredictedTags).ToArray();
                Assert.Equal(tagsBefore, tagsAfter);
                Assert.All(tagsAfter.Zip(PipelineFixtures.Ner(16, seed: 3)), p => Assert.Equal(p.Second.Tags.Length, p.First.Length));
            }

            // Causal LM on GPT-2: the completions and the response scores.
            var instructions = ctx.Data.LoadFromEnumerable(PipelineFixtures.Instructions().Take(4).ToArray());
            string[] completionsBefore;
            float[] lossBefore;
            using (var model = ctx.TextGeneration.Trainers.CausalLM(new CausalLMTrainer.Options
            {
                ModelFolder = PipelineFixtures.Model("gpt2"), MaxSteps = 2, BatchSize = 4, LearningRate = 1e-2,
                Generation = new Microsoft.ML.LowRank.Models.GenerationOptions { MaxNewTokens = 4 },
            }).Fit(instructions))
            {
                var scored = model.Transform(instructions);
                completionsBefore = scored.GetColumn<string>("Completion").ToArray();
                lossBefore = scored.GetColumn<float>(CausalLMTransformer.LogLossColumnName).ToArray();
                ctx.Model.Save(model, instructions.Schema, zip);
            }
            using (var loaded = (IDisposable)ctx.Model.Load(zip, out _))
            {
                var scored = ((ITransformer)loaded).Transform(instructions);
                Assert.Equal(completionsBefore, scored.GetColumn<string>("Completion").ToArray());
                Assert.Equal(lossBefore, scored.GetColumn<float>(CausalLMTransformer.LogLossColumnName).ToArray());
            }
        }
        finally
        {
            File.Delete(zip);
        }
    }
}
