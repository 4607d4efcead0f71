using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Microsoft.ML.LowRank.Torch;

/// <summary>
/// Finds and loads the native shim (<c>liblowrank_native.so</c>) and, through it, libtorch. Probe order:
/// <c>LOWRANK_NATIVE_DIR</c>, the folder of this assembly, the application base folder,
/// <c>runtimes/&lt;rid&gt;/native</c>, then the system loader. libtorch itself is found through the shim's
/// run path (set at build time to the libtorch it was built against), <c>LIBTORCH</c>/lib, Debian's
/// library folder, or <c>LD_LIBRARY_PATH</c>. A failure lists every attempt and what to install.
/// </summary>
public static class NativeLibraryLoader
{
    private static readonly object s_lock = new();
    private static IntPtr s_handle;
    private static string? s_trace;

    /// <summary>The load attempts of the last load, for diagnostics.</summary>
    public static string? LoadTrace => s_trace;

#pragma warning disable CA2255 // registering the resolver before any P/Invoke is exactly what a module initializer is for
    [ModuleInitializer]
    internal static void Register()
#pragma warning restore CA2255
    {
        NativeLibrary.SetDllImportResolver(typeof(NativeLibraryLoader).Assembly, Resolve);
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name != Native.NativeMethods.Lib) return IntPtr.Zero;
        return Load();
    }

    /// <summary>Loads the shim now (idempotent) and returns its handle.</summary>
    /// <returns>The OS handle of the loaded shim.</returns>
    /// <exception cref="DllNotFoundException">The shim or libtorch could not be loaded; the message lists the attempts.</exception>
    public static IntPtr Load()
    {
        if (s_handle != IntPtr.Zero) return s_handle;
        lock (s_lock)
        {
            if (s_handle != IntPtr.Zero) return s_handle;
            var trace = new StringBuilder();
            ConfigureOpenMp();
            PreloadLibtorch(trace);
            PreloadOpenMpBlas(trace);
            const string file = "liblowrank_native.so";
            var dirs = new List<string>();
            var env = Environment.GetEnvironmentVariable("LOWRANK_NATIVE_DIR");
            if (!string.IsNullOrEmpty(env)) dirs.Add(env);
            var asmDir = Path.GetDirectoryName(typeof(NativeLibraryLoader).Assembly.Location);
            if (!string.IsNullOrEmpty(asmDir)) dirs.Add(asmDir);
            dirs.Add(AppContext.BaseDirectory);
            dirs.Add(Path.Combine(AppContext.BaseDirectory, "runtimes", RuntimeInformation.RuntimeIdentifier, "native"));
            foreach (var d in dirs.Distinct())
            {
                var p = Path.Combine(d, file);
                if (!File.Exists(p)) { trace.AppendLine($"  {p}: not found"); continue; }
                try
                {
                    s_handle = NativeLibrary.Load(p);
                    trace.AppendLine($"  {p}: loaded");
                    break;
                }
                catch (Exception e)
                {
                    trace.AppendLine($"  {p}: {e.Message}");
                }
            }
            if (s_handle == IntPtr.Zero && NativeLibrary.TryLoad(file, out var h)) { s_handle = h; trace.AppendLine($"  {file} (system loader): loaded"); }
            s_trace = trace.ToString();
            if (s_handle == IntPtr.Zero)
            {
                throw new DllNotFoundException(
                    "Microsoft.ML.LowRank could not load its native shim liblowrank_native.so (or libtorch, which it needs).\n" +
                    "Attempts:\n" + s_trace +
                    "Fix: on Debian/Ubuntu run 'apt-get install libtorch-dev libopenblas0-pthread' and rebuild (dotnet build builds the shim);\n" +
                    "or set LIBTORCH to a libtorch folder (or install PyTorch) before building; or set LOWRANK_NATIVE_DIR to the folder holding liblowrank_native.so.");
            }
            ConfigureThreads();
            ConfigureCpuCache();
            return s_handle;
        }
    }

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    /// <summary>
    /// libtorch's OpenMP threads and OpenBLAS's own threads share the cores; OpenMP's default of spinning while idle
    /// makes them fight (measured on 2 cores: a 4x1024 MLP training step took 57 ms instead of 23 ms). Unless the user
    /// chose a policy, idle OpenMP threads sleep instead (OMP_WAIT_POLICY=PASSIVE). This must reach the native
    /// environment before libgomp loads, which .NET's Environment.SetEnvironmentVariable does not do on Unix.
    /// </summary>
    private static void ConfigureOpenMp()
    {
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OMP_WAIT_POLICY"))) return;
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        try { SetEnv("OMP_WAIT_POLICY", "PASSIVE", 0); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    private static void PreloadLibtorch(StringBuilder trace)
    {
        // The shim's run path normally finds libtorch. A LIBTORCH override is honoured by preloading from it.
        var lt = Environment.GetEnvironmentVariable("LIBTORCH");
        if (string.IsNullOrEmpty(lt)) return;
        foreach (var lib in new[] { "libc10.so", "libtorch_cpu.so", "libc10_cuda.so", "libtorch_cuda.so", "libtorch.so" })
        {
            var p = Path.Combine(lt, "lib", lib);
            if (!File.Exists(p)) continue;
            trace.AppendLine(NativeLibrary.TryLoad(p, out _) ? $"  {p}: preloaded" : $"  {p}: failed to preload");
        }
    }

    /// <summary>The OpenBLAS build the process uses for float32 matrix products ("openmp", "pthread" or "other"), as
    /// found after loading (read once, on first use; "unknown" before the shim loads): see <see cref="PreloadOpenMpBlas"/>.</summary>
    public static string BlasThreading => s_handle == IntPtr.Zero ? "unknown" : s_blas ??= DetectBlas();

    private static string? s_blas;

    /// <summary>
    /// Debian's libtorch calls OpenBLAS through libblas.so.3, which the alternatives system points at the pthread build:
    /// its worker threads then spin (sched_yield) beside libtorch's OpenMP threads after every product, and the two
    /// pools fight over the cores (measured on 2 cores: about a quarter of a LoRA step's CPU time in the kernel). The
    /// OpenMP build of the same OpenBLAS (Debian's libopenblas0-openmp, which eng/setup.sh installs) runs its products
    /// on libtorch's own OpenMP pool. When it is installed and libtorch is Debian's, it is loaded first, so that the
    /// loader resolves libtorch's libblas.so.3/liblapack.so.3 to it. <c>LOWRANK_BLAS=system</c> keeps the system
    /// choice; a LIBTORCH override (e.g. a PyTorch wheel, which brings its own BLAS) is left alone.
    /// </summary>
    private static void PreloadOpenMpBlas(StringBuilder trace)
    {
        if (!OperatingSystem.IsLinux() || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("LIBTORCH"))) return;
        if (string.Equals(Environment.GetEnvironmentVariable("LOWRANK_BLAS"), "system", StringComparison.OrdinalIgnoreCase)) return;
        var triplet = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? "aarch64-linux-gnu" : "x86_64-linux-gnu";
        var lib = $"/usr/lib/{triplet}";
        if (!Directory.EnumerateFiles(lib, "libtorch_cpu.so*").Any()) return;
        var dir = Path.Combine(lib, "openblas-openmp");
        foreach (var f in new[] { "libopenblas.so.0", "libblas.so.3", "liblapack.so.3" })
        {
            var p = Path.Combine(dir, f);
            if (!File.Exists(p)) return;
            if (!NativeLibrary.TryLoad(p, out _)) { trace.AppendLine($"  {p}: failed to preload"); return; }
            trace.AppendLine($"  {p}: preloaded");
        }
    }

    private static string DetectBlas()
    {
        try
        {
            var maps = File.ReadAllText("/proc/self/maps");
            return maps.Contains("openblas-openmp", StringComparison.Ordinal) ? "openmp"
                : maps.Contains("openblas-pthread", StringComparison.Ordinal) ? "pthread" : "other";
        }
        catch (IOException) { return "unknown"; }
        catch (UnauthorizedAccessException) { return "unknown"; }
    }

    private static unsafe void ConfigureCpuCache()
    {
        if (Environment.GetEnvironmentVariable("LOWRANK_CPU_CACHE") == "0") return;
        long limit = Environment.GetEnvironmentVariable("LOWRANK_CPU_CACHE_LIMIT_MB") is { } s && long.TryParse(s, out var mb) && mb > 0
            ? mb << 20
            : Math.Max(256L << 20, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4);
        var fn = (delegate* unmanaged<int, long, int>)NativeLibrary.GetExport(s_handle, "lr_memory_cpu_cache");
        fn(1, limit);
    }

    private static unsafe void ConfigureThreads()
    {
        // Debian's libtorch starts with one intra-op thread: use every core unless the user said otherwise.
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OMP_NUM_THREADS"))) return;
        var n = Environment.GetEnvironmentVariable("LOWRANK_NUM_THREADS") is { } s && int.TryParse(s, out var v) && v > 0 ? v : Environment.ProcessorCount;
        var fn = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(s_handle, "lr_core_set_num_threads");
        fn(n);
    }
}
