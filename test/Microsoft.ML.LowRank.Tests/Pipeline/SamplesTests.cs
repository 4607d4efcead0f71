using System.Reflection;
using System.Text.Json.Nodes;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Scripting;
using Microsoft.CodeAnalysis.Scripting;
using Microsoft.ML.LowRank.Tests.Helpers;
using Xunit.Abstractions;

namespace Microsoft.ML.LowRank.Tests.Pipeline;

/// <summary>
/// The console samples (samples/*/Program.cs) are compiled with Roslyn against the built library (warnings are errors,
/// as in the repository's build) and run on the tiny fixture models for one epoch; the Polyglot notebooks
/// (samples/notebooks/*.ipynb) run cell by cell with C# scripting, as .NET Interactive runs them (the <c>#r</c> of the
/// library is checked and replaced by a reference to the loaded assembly).
/// </summary>
[Collection(SerialCollection.Name)] // redirects Console and sets process environment variables
public class SamplesTests(ITestOutputHelper output)
{
    private static string Samples(params string[] parts) => Path.Combine([Repo.Root, "samples", .. parts]);

    public static TheoryData<string, string> SampleModels => new()
    {
        { "TextClassification", "bert_cls" },
        { "SentenceSimilarity", "llama_cls" },
        { "NamedEntityRecognition", "bert_token_cls" },
        { "InstructionTuning", "gpt2" },
    };

    private static readonly string[] GlobalUsings =
        ["System", "System.Collections.Generic", "System.IO", "System.Linq", "System.Net.Http", "System.Threading", "System.Threading.Tasks"];

    private static IEnumerable<MetadataReference> References()
    {
        var tpa = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator);
        var framework = tpa.Where(p => p.Contains("Microsoft.NETCore.App", StringComparison.Ordinal));
        return framework.Append(typeof(LowRankContext).Assembly.Location).Select(p => MetadataReference.CreateFromFile(p));
    }

    [Theory]
    [MemberData(nameof(SampleModels))]
    public void ConsoleSampleCompilesAndRuns(string sample, string fixture)
    {
        var program = Samples(sample, "Program.cs");
        Assert.True(File.Exists(Samples(sample, sample + ".csproj")), "each sample has a project to dotnet run");
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        var trees = new[]
        {
            CSharpSyntaxTree.ParseText(File.ReadAllText(program), parse, program),
            CSharpSyntaxTree.ParseText(string.Join("\n", GlobalUsings.Select(u => $"global using global::{u};")), parse, "GlobalUsings.g.cs"),
        };
        var compilation = CSharpCompilation.Create(sample, trees, References(),
            new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable));
        using var pe = new MemoryStream();
        var emit = compilation.Emit(pe);
        var problems = emit.Diagnostics.Where(d => d.Severity >= DiagnosticSeverity.Warning).ToList();
        Assert.True(emit.Success && problems.Count == 0, string.Join("\n", problems));

        var assembly = Assembly.Load(pe.ToArray());
        var (text, exception) = Capture(() => assembly.EntryPoint!.Invoke(null, [new[] { PipelineFixtures.Model(fixture), "1" }]));
        output.WriteLine(text);
        Assert.Null(exception);
        Assert.Contains(sample switch
        {
            "TextClassification" => "Micro accuracy",
            "SentenceSimilarity" => "Pearson",
            "NamedEntityRecognition" => "entity F1",
            _ => "perplexity",
        }, text);
    }

    public static TheoryData<string, string> NotebookModels => new()
    {
        { "TextClassification.ipynb", "bert_cls" },
        { "SentenceSimilarity.ipynb", "bert_cls" },
        { "NamedEntityRecognition.ipynb", "bert_token_cls" },
        { "InstructionTuning.ipynb", "llama" },
    };

    [Theory]
    [MemberData(nameof(NotebookModels))]
    public async Task NotebookCellsRun(string notebook, string fixture)
    {
        var nb = JsonNode.Parse(File.ReadAllText(Samples("notebooks", notebook)))!;
        Assert.Equal(".net-csharp", (string)nb["metadata"]!["kernelspec"]!["name"]!);
        var cells = nb["cells"]!.AsArray()
            .Where(c => (string)c!["cell_type"]! == "code")
            .Select(c => string.Concat(c!["source"]!.AsArray().Select(l => (string)l!)))
            .ToList();
        // The first cell references the library built from this repository.
        var reference = cells[0].Trim();
        Assert.StartsWith("#r \"", reference);
        var dll = Path.GetFullPath(Path.Combine(Samples("notebooks"), reference[4..^1]));
        Assert.Equal(Path.Combine(Repo.Root, "src", "Microsoft.ML.LowRank", "bin", "Debug", "net10.0", "Microsoft.ML.LowRank.dll"), dll);

        var options = ScriptOptions.Default
            .WithReferences(typeof(LowRankContext).Assembly)
            .WithImports("System", "System.IO", "System.Linq", "System.Collections.Generic")
            .WithLanguageVersion(LanguageVersion.Latest);
        var oldModel = Environment.GetEnvironmentVariable("LOWRANK_MODEL");
        var oldEpochs = Environment.GetEnvironmentVariable("LOWRANK_EPOCHS");
        Environment.SetEnvironmentVariable("LOWRANK_MODEL", PipelineFixtures.Model(fixture));
        Environment.SetEnvironmentVariable("LOWRANK_EPOCHS", "1");
        try
        {
            ScriptState<object>? state = null;
            string log = "";
            foreach (var cell in cells.Skip(1))
            {
                var (text, exception) = await CaptureAsync(async () =>
                    state = state is null ? await CSharpScript.RunAsync(cell, options) : await state.ContinueWithAsync(cell, options));
                log += text;
                Assert.True(exception is null, $"cell failed:\n{cell}\n{exception}");
            }
            output.WriteLine(log);
            Assert.NotNull(state!.ReturnValue); // the last cell shows a result
            output.WriteLine($"last cell: {state.ReturnValue}");
        }
        finally
        {
            Environment.SetEnvironmentVariable("LOWRANK_MODEL", oldModel);
            Environment.SetEnvironmentVariable("LOWRANK_EPOCHS", oldEpochs);
        }
    }

    private static (string Output, Exception? Error) Capture(Action action)
    {
        var old = Console.Out;
        var writer = new StringWriter();
        Console.SetOut(writer);
        try
        {
            action();
            return (writer.ToString(), null);
        }
        catch (TargetInvocationException e)
        {
            return (writer.ToString(), e.InnerException);
        }
        finally
        {
            Console.SetOut(old);
        }
    }

    private static async Task<(string Output, Exception? Error)> CaptureAsync(Func<Task> action)
    {
        var old = Console.Out;
        var writer = new StringWriter();
        Console.SetOut(writer);
        try
        {
            await action();
            return (writer.ToString(), null);
        }
        catch (Exception e)
        {
            return (writer.ToString(), e);
        }
        finally
        {
            Console.SetOut(old);
        }
    }
}
