using System.Runtime.InteropServices;

namespace Microsoft.ML.LowRank.Torch.Native;

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial int lr_random_manual_seed(ulong seed);
    [LibraryImport(Lib)] internal static partial IntPtr lr_random_generator_new(ulong seed, int dk, int di);
    [LibraryImport(Lib)] internal static partial IntPtr lr_random_default_generator(int dk, int di);
    [LibraryImport(Lib)] internal static partial void lr_random_generator_free(IntPtr g);
    [LibraryImport(Lib)] internal static partial int lr_random_generator_manual_seed(GeneratorHandle g, ulong seed);
    [LibraryImport(Lib)] internal static partial ulong lr_random_generator_initial_seed(GeneratorHandle g);
    [LibraryImport(Lib)] internal static partial IntPtr lr_random_generator_get_state(GeneratorHandle g);
    [LibraryImport(Lib)] internal static partial int lr_random_generator_set_state(GeneratorHandle g, TensorHandle state);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_random_rand(long* shape, int n, IntPtr g, int dtype, int dk, int di, int rg);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_random_randn(long* shape, int n, IntPtr g, int dtype, int dk, int di, int rg);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_random_randint(long low, long high, long* shape, int n, IntPtr g, int dtype, int dk, int di);
    [LibraryImport(Lib)] internal static partial IntPtr lr_random_randperm(long n, IntPtr g, int dtype, int dk, int di);
    [LibraryImport(Lib)] internal static partial IntPtr lr_random_multinomial(TensorHandle probs, long numSamples, int replacement, IntPtr g);
    [LibraryImport(Lib)] internal static partial IntPtr lr_random_bernoulli(TensorHandle probs, IntPtr g);
    [LibraryImport(Lib)] internal static partial int lr_random_normal_(TensorHandle t, double mean, double std, IntPtr g);
    [LibraryImport(Lib)] internal static partial int lr_random_uniform_(TensorHandle t, double from, double to, IntPtr g);
    [LibraryImport(Lib)] internal static partial int lr_random_bernoulli_(TensorHandle t, double p, IntPtr g);
}
