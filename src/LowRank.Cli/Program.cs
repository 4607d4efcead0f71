using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Cli;

/// <summary>The <c>lowrank</c> command line.</summary>
public static class Program
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
                "--help" or "-h" or "help" => Help(),
                _ => Unknown(command),
            };
        }
        catch (Exception e) when (e is TorchException or DllNotFoundException or ArgumentException or IOException or InvalidOperationException or SafetensorsException)
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

    private static string? Option(string[] args, string name)
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
