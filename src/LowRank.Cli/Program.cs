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
                "--help" or "-h" or "help" => Help(),
                _ => Unknown(command),
            };
        }
        catch (Exception e) when (e is TorchException or DllNotFoundException or ArgumentException or IOException)
        {
            Console.Error.WriteLine($"lowrank: {e.Message}");
            return 1;
        }
    }

    private static int Help()
    {
        Console.WriteLine("usage: lowrank <command>\n  smoke   build check: libtorch version, threads, one matmul");
        return 0;
    }

    private static int Unknown(string command)
    {
        Console.Error.WriteLine($"lowrank: unknown command '{command}' (try 'lowrank help')");
        return 2;
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
