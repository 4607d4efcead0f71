namespace Microsoft.ML.LowRank.Tests.Helpers;

/// <summary>Tests that read the process-wide live tensor count run alone, never beside other tests.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialCollection
{
    public const string Name = "Serial (process-wide counters)";
}
