using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Mixture;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Pipeline;

/// <summary>How the values of a task column become ids.</summary>
internal enum TaskValueKind
{
    /// <summary>A key column: id = key − 1 (key 0 is missing).</summary>
    Key,

    /// <summary>An Int32, Int64 or UInt32 column: id = value.</summary>
    Integer,

    /// <summary>A String column: ids in order of first appearance in the training data (MapValueToKey's default order).</summary>
    Text,
}

/// <summary>Where the task ids a task router reads come from.</summary>
internal enum TaskIdSource
{
    /// <summary>The adapter has no task router.</summary>
    None,

    /// <summary>The task column.</summary>
    Column,

    /// <summary>Every row is task 0 (a task router configured with one task and no task column).</summary>
    SingleTask,

    /// <summary>The nearest k-means centroid of the row's instance embedding (MoCLE without a task column).</summary>
    Clusters,
}

/// <summary>Where a row's instance embedding comes from.</summary>
internal enum InstanceSource
{
    /// <summary>Not needed.</summary>
    None,

    /// <summary>The mean of the model's frozen input token embeddings over the row's instruction tokens.</summary>
    Derived,

    /// <summary>A vector-of-Single column.</summary>
    Column,
}

/// <summary>The routing inputs of one row at prediction time: its task column id (−1 without one), how many leading
/// tokens are the instruction (for a derived instance embedding) and its instance vector (from the instance column).</summary>
internal sealed record RowRouting(long ColumnId, int InstanceLength, float[]? InstanceVector);

/// <summary>
/// What a pipeline model feeds the routing context of a mixture-of-LoRA-experts adapter (see
/// <see cref="MixtureRoutingInputs"/>), decided from the adapter options and the trainer's
/// <see cref="LowRankTrainerOptions.TaskColumnName"/> / <see cref="LowRankTrainerOptions.InstanceColumnName"/>, plus what
/// it learned at Fit (the text values of the task column, MoCLE's k-means centroids). Saved in the model file.
/// </summary>
internal sealed class TaskRouting : IDisposable
{
    private readonly Dictionary<string, int> _valueIds = new(StringComparer.Ordinal);
    private Tensor? _centroidTensor;

    /// <summary>The method's name in messages (its preset or PEFT type).</summary>
    public required string Method { get; init; }

    /// <summary>Where task-router ids come from.</summary>
    public TaskIdSource TaskIds { get; init; }

    /// <summary>The task column's ids are MoA's domain labels (router cross-entropy, training only).</summary>
    public bool RouterLabels { get; init; }

    /// <summary>The task column's ids are LoRAMoE's task types 0/1 (localized balancing constraint, training only).</summary>
    public bool TaskTypes { get; init; }

    /// <summary>Where the instance embedding of the router (Octavius) or of the clustering (MoCLE) comes from.</summary>
    public InstanceSource Instance { get; init; }

    /// <summary>Whether the router reads the instance embedding (Octavius), not only the clustering.</summary>
    public bool InstanceRouter { get; init; }

    /// <summary>The task column, or null.</summary>
    public string? TaskColumn { get; init; }

    /// <summary>The instance-embedding column, or null.</summary>
    public string? InstanceColumn { get; init; }

    /// <summary>Task column ids must be below this.</summary>
    public int Limit { get; init; } = int.MaxValue;

    /// <summary>What sets <see cref="Limit"/> (for messages).</summary>
    public string LimitDescription { get; init; } = "";

    /// <summary>The number of k-means clusters asked for (MoCLE: num_tasks).</summary>
    public int ClusterCount { get; init; }

    /// <summary>The size of an instance embedding: the router's input size (Octavius), or for clustering alone the size of
    /// the first instance vector read (0 until then).</summary>
    public int InstanceDim { get; set; }

    /// <summary>How task column values become ids (set from the training data's column type).</summary>
    public TaskValueKind Kind { get; set; }

    /// <summary>Text task values in id order.</summary>
    public List<string> Values { get; } = new();

    /// <summary>k-means centroids [k, d] row-major (MoCLE without a task column).</summary>
    public float[]? Centroids { get; private set; }

    /// <summary>d of <see cref="Centroids"/>.</summary>
    public int CentroidDim { get; private set; }

    /// <summary>True when Fit reads the task column.</summary>
    public bool UsesTaskColumn => TaskIds == TaskIdSource.Column || RouterLabels || TaskTypes;

    /// <summary>True when prediction reads the task column (a task router fed by it).</summary>
    public bool TaskColumnAtPrediction => TaskIds == TaskIdSource.Column;

    /// <summary>True when a row's instance embedding is needed (instance router or clustering).</summary>
    public bool NeedsInstance => Instance != InstanceSource.None;

    /// <summary>The router pools each sequence (MoA, MLoRE): one decision per batch row.</summary>
    public bool SequencePooling { get; init; }

    /// <summary>True when the adapter reads nothing per row (only the token mask of a batch).</summary>
    public bool TokenMaskOnly => TaskIds == TaskIdSource.None && !RouterLabels && !TaskTypes && !InstanceRouter;

    /// <summary>Frees the cached centroid tensor.</summary>
    public void Dispose()
    {
        _centroidTensor?.Dispose();
        _centroidTensor = null;
    }

    // ------------------------------------------------------------------ what a method needs

    /// <summary>The routing a method needs with these columns: null for a method that is not a mixture of experts (a
    /// mixture that reads nothing per row still gets its batches' token mask). Throws
    /// <see cref="ArgumentException"/> naming <c>TaskColumnName</c> when the method needs a task column and none is set.
    /// <paramref name="ignored"/> says which given column the method does not read.</summary>
    public static TaskRouting? Resolve(LowRankAdapterOptions method, string? taskColumn, string? instanceColumn, long hiddenSize, out string? ignored)
    {
        ArgumentNullException.ThrowIfNull(method);
        ignored = null;
        string Unused(string what) => $"{what} is ignored: method {(method as MixtureOfLoraExpertsOptions)?.Preset ?? method.PeftType} does not read it";
        if (method is not MixtureOfLoraExpertsOptions o)
        {
            if (taskColumn is not null) ignored = Unused($"TaskColumnName '{taskColumn}'");
            else if (instanceColumn is not null) ignored = Unused($"InstanceColumnName '{instanceColumn}'");
            return null;
        }
        string name = string.IsNullOrEmpty(o.Preset) ? o.PeftType : o.Preset;
        bool taskRouter = o.RouterInput == RouterInput.Task;
        bool instanceRouter = o.RouterInput == RouterInput.Instance;
        bool labels = o.Coefficient(AuxiliaryLossKind.RouterCrossEntropy) != 0;
        bool types = o.Coefficient(AuxiliaryLossKind.LocalizedBalance) != 0;
        var ids = TaskIdSource.None;
        if (taskRouter)
        {
            if (taskColumn is not null) ids = TaskIdSource.Column;
            else if (o.NumTasks == 1) ids = TaskIdSource.SingleTask;
            else if (o.Preset == "mocle") ids = TaskIdSource.Clusters;
            else throw new ArgumentException($"method {name} routes on task ids (num_tasks = {o.NumTasks}): set TaskColumnName to the column holding each row's task " +
                $"(a key, an integer in [0, {o.NumTasks}) or a string)", nameof(LowRankTrainerOptions.TaskColumnName));
        }
        if (labels && taskColumn is null)
            throw new ArgumentException($"method {name} supervises its router with each row's domain (router cross-entropy): set TaskColumnName to the column holding it " +
                $"(a key, an integer in [0, {o.NumExperts}) or a string; one domain per expert)", nameof(LowRankTrainerOptions.TaskColumnName));
        if (types && taskColumn is null)
            throw new ArgumentException($"method {name}'s localized balancing constraint needs each row's task type: set TaskColumnName to the column holding it (0 or 1)",
                nameof(LowRankTrainerOptions.TaskColumnName));
        bool clusters = ids == TaskIdSource.Clusters;
        if (ids == TaskIdSource.None && !instanceRouter && !labels && !types)
        {
            // Nothing per row, but batches still pass their attention mask as the token mask (padding out of sequence
            // pooling and load-balance statistics).
            if (taskColumn is not null) ignored = Unused($"TaskColumnName '{taskColumn}'");
            else if (instanceColumn is not null) ignored = Unused($"InstanceColumnName '{instanceColumn}'");
            return new TaskRouting { Method = name, SequencePooling = o.RouterInput == RouterInput.Sequence };
        }
        int limit = int.MaxValue;
        var limits = new List<string>();
        if (ids == TaskIdSource.Column) { limit = Math.Min(limit, o.NumTasks); limits.Add($"num_tasks = {o.NumTasks}"); }
        if (labels) { limit = Math.Min(limit, o.NumExperts); limits.Add($"num_experts = {o.NumExperts} (one expert per domain)"); }
        if (types) { limit = Math.Min(limit, 2); limits.Add("two task types (0, 1)"); }
        var instance = instanceRouter || clusters ? (instanceColumn is null ? InstanceSource.Derived : InstanceSource.Column) : InstanceSource.None;
        bool usesTask = ids == TaskIdSource.Column || labels || types;
        if (instanceRouter && instance == InstanceSource.Derived && o.InstanceDim > 0 && o.InstanceDim != hiddenSize)
            throw new ArgumentException($"method {name} has instance_dim = {o.InstanceDim}, but the instance embedding derived from the model has its hidden size {hiddenSize}: " +
                "set InstanceColumnName to a column of embeddings of that size, or instance_dim = 0", nameof(LowRankTrainerOptions.InstanceColumnName));
        if (taskColumn is not null && !usesTask) ignored = Unused($"TaskColumnName '{taskColumn}'");
        else if (instanceColumn is not null && instance != InstanceSource.Column) ignored = Unused($"InstanceColumnName '{instanceColumn}'");
        return new TaskRouting
        {
            Method = name,
            TaskIds = ids,
            RouterLabels = labels,
            TaskTypes = types,
            Instance = instance,
            InstanceRouter = instanceRouter,
            TaskColumn = usesTask ? taskColumn : null,
            InstanceColumn = instance == InstanceSource.Column ? instanceColumn : null,
            Limit = limit,
            LimitDescription = string.Join(" and ", limits),
            ClusterCount = clusters ? o.NumTasks : 0,
            SequencePooling = o.RouterInput == RouterInput.Sequence,
            InstanceDim = instanceRouter ? (o.InstanceDim > 0 ? o.InstanceDim : (int)hiddenSize) : 0,
        };
    }

    // ------------------------------------------------------------------ column checks

    /// <summary>Checks a task column's shape (estimator side): a scalar key, Int32, Int64, UInt32 or String.</summary>
    public static void CheckTaskColumn(SchemaShape shape, string name)
    {
        var c = Columns.Find(shape, "task", name);
        bool ok = c.Kind == SchemaShape.Column.VectorKind.Scalar && (c.IsKey || c.ItemType is TextDataViewType || IsInteger(c.ItemType));
        if (!ok) throw Columns.Mismatch("task", name, TaskTypesText, c.GetTypeString());
    }

    /// <summary>Checks an instance-embedding column's shape (estimator side): a vector of Single.</summary>
    public static void CheckInstanceColumn(SchemaShape shape, string name)
    {
        var c = Columns.Find(shape, "instance", name);
        if (c.Kind == SchemaShape.Column.VectorKind.Scalar || c.IsKey || !c.ItemType.Equals(NumberDataViewType.Single))
            throw Columns.Mismatch("instance", name, "a vector of Single (one embedding per row)", c.GetTypeString());
    }

    private const string TaskTypesText = "Key<UInt32>, Int32, Int64, UInt32 or String (one task per row)";

    private static bool IsInteger(DataViewType t) => t.Equals(NumberDataViewType.Int32) || t.Equals(NumberDataViewType.Int64) || t.Equals(NumberDataViewType.UInt32);

    private static TaskValueKind KindOf(DataViewType t) => t is KeyDataViewType ? TaskValueKind.Key : t is TextDataViewType ? TaskValueKind.Text : TaskValueKind.Integer;

    /// <summary>The task column of a schema, checked against the kind learned at Fit (<paramref name="setKind"/>: learn it).</summary>
    public DataViewSchema.Column TaskColumnOf(DataViewSchema schema, bool setKind)
    {
        var name = TaskColumn ?? throw new InvalidOperationException("no task column");
        var c = Columns.Find(schema, "task", name);
        bool ok = c.Type is KeyDataViewType || c.Type is TextDataViewType || IsInteger(c.Type);
        if (!ok) throw Columns.Mismatch("task", name, TaskTypesText, c.Type.ToString()!);
        var kind = KindOf(c.Type);
        if (setKind) Kind = kind;
        else if (kind != Kind)
            throw Columns.Mismatch("task", name, Kind switch { TaskValueKind.Key => "Key<UInt32> (as at Fit)", TaskValueKind.Text => "String (as at Fit)", _ => "Int32, Int64 or UInt32 (as at Fit)" }, c.Type.ToString()!);
        return c;
    }

    /// <summary>The instance column of a schema.</summary>
    public DataViewSchema.Column InstanceColumnOf(DataViewSchema schema)
    {
        var name = InstanceColumn ?? throw new InvalidOperationException("no instance column");
        var c = Columns.Find(schema, "instance", name);
        if (c.Type is not VectorDataViewType v || !v.ItemType.Equals(NumberDataViewType.Single))
            throw Columns.Mismatch("instance", name, "a vector of Single (one embedding per row)", c.Type.ToString()!);
        return c;
    }

    // ------------------------------------------------------------------ reading rows

    /// <summary>A getter of the current row's task id. With <paramref name="learn"/> (training data) new text values get
    /// the next id; otherwise an unseen value fails. Missing keys and ids outside [0, <see cref="Limit"/>) fail naming the
    /// column and the row.</summary>
    public Func<long> TaskReader(DataViewRow row, DataViewSchema.Column column, bool learn)
    {
        var name = TaskColumn!;
        long Check(long id, string shown)
        {
            if (id < 0 || id >= Limit)
                throw new InvalidOperationException($"task column '{name}' has {shown} at row {row.Position}: task ids must be in [0, {Limit}) ({LimitDescription} of method {Method})");
            return id;
        }
        switch (Kind)
        {
            case TaskValueKind.Key:
                {
                    var g = row.GetGetter<uint>(column);
                    uint key = 0;
                    return () =>
                    {
                        g(ref key);
                        if (key == 0) throw new InvalidOperationException($"task column '{name}' has a missing key (0) at row {row.Position}: every row needs a task");
                        return Check(key - 1L, $"key {key} (task id {key - 1L})");
                    };
                }
            case TaskValueKind.Text:
                {
                    var text = Columns.TextGetter(row, column);
                    return () =>
                    {
                        var v = text();
                        if (_valueIds.TryGetValue(v, out var id)) return id;
                        if (!learn)
                            throw new InvalidOperationException($"task column '{name}' has the value '{v}' at row {row.Position}, which the training data did not have (tasks: {string.Join(", ", Values.Select(x => $"'{x}'"))})");
                        Check(Values.Count, $"'{v}' (distinct value number {Values.Count + 1})");
                        _valueIds[v] = Values.Count;
                        Values.Add(v);
                        return Values.Count - 1;
                    };
                }
            default:
                {
                    var raw = column.Type.RawType;
                    if (raw == typeof(int))
                    {
                        var g = row.GetGetter<int>(column);
                        int x = 0;
                        return () => { g(ref x); return Check(x, $"the value {x}"); };
                    }
                    if (raw == typeof(uint))
                    {
                        var g = row.GetGetter<uint>(column);
                        uint x = 0;
                        return () => { g(ref x); return Check(x, $"the value {x}"); };
                    }
                    var gl = row.GetGetter<long>(column);
                    long y = 0;
                    return () => { gl(ref y); return Check(y, $"the value {y}"); };
                }
        }
    }

    /// <summary>A getter of the current row's instance vector (its length checked against <see cref="InstanceDim"/>).</summary>
    public Func<float[]> InstanceReader(DataViewRow row, DataViewSchema.Column column)
    {
        var g = row.GetGetter<VBuffer<float>>(column);
        VBuffer<float> buffer = default;
        var name = InstanceColumn!;
        return () =>
        {
            g(ref buffer);
            if (InstanceDim == 0 && buffer.Length > 0) InstanceDim = buffer.Length;
            if (buffer.Length != InstanceDim)
                throw new InvalidOperationException($"instance column '{name}' has a vector of {buffer.Length} values at row {row.Position}; method {Method} reads embeddings of {InstanceDim}");
            var v = new float[buffer.Length];
            buffer.CopyTo(v);
            return v;
        };
    }

    // ------------------------------------------------------------------ building routing inputs

    /// <summary>The instance embedding of one row [1, d] (no gradient): the given vector, or the mean frozen token embedding
    /// of its first <paramref name="length"/> tokens.</summary>
    private static Tensor RowInstance(LowRankModel model, long[] ids, int length, float[]? vector)
    {
        var device = model.Model.Backbone.TokenEmbedding.weight.device;
        if (vector is not null) return tensor(vector, new long[] { 1, vector.Length }).to(device);
        int n = Math.Clamp(length, 1, ids.Length);
        var t = tensor(ids.AsSpan(0, n).ToArray(), new long[] { 1, n }).to(device);
        return MixtureOfLoraExperts.InstructionEmbedding(model, t);
    }

    /// <summary>Clusters the training rows' instance embeddings (MoCLE: k-means with <see cref="ClusterCount"/> clusters, at
    /// most the number of rows, seeded) and returns each row's cluster.</summary>
    public long[] Cluster(LowRankModel model, RoutingRows rows, ulong seed)
    {
        using var scope = NewDisposeScope();
        var points = cat(Enumerable.Range(0, rows.Count).Select(i => RowInstance(model, rows.Tokens[i], rows.InstanceLengths[i], rows.Vectors?[i]).to_type(ScalarType.Float32).cpu()).ToArray(), 0);
        int k = Math.Min(ClusterCount, rows.Count);
        var (centroids, assignments) = MixtureOfLoraExperts.KMeans(points, k, iterations: 100, seed: seed);
        var c = centroids.to_type(ScalarType.Float32).contiguous();
        Centroids = c.ToArray<float>();
        CentroidDim = (int)c.size(1);
        _centroidTensor?.Dispose();
        _centroidTensor = null;
        return assignments.ToArray<long>();
    }

    /// <summary>The cluster of each row of <paramref name="rows"/> (nearest centroid).</summary>
    public long[] AssignClusters(LowRankModel model, RoutingRows rows)
    {
        using var scope = NewDisposeScope();
        var ids = new long[rows.Count];
        for (int i = 0; i < rows.Count; i++) ids[i] = NearestCentroid(model, RowInstance(model, rows.Tokens[i], rows.InstanceLengths[i], rows.Vectors?[i]));
        return ids;
    }

    private long NearestCentroid(LowRankModel model, Tensor point)
    {
        var centroids = Centroids ?? throw new InvalidOperationException("the clusters were not fitted");
        if (point.size(1) != CentroidDim)
            throw new InvalidOperationException($"instance embedding of {point.size(1)} values, but the clusters have {CentroidDim}");
        _centroidTensor ??= tensor(centroids, new long[] { centroids.Length / CentroidDim, CentroidDim }).DetachFromDisposeScope();
        using var s = NewDisposeScope();
        return MixtureOfLoraExperts.AssignClusters(point.to_type(ScalarType.Float32).cpu(), _centroidTensor).ToInt64();
    }

    /// <summary>The routing inputs of a batch (tensors in the current dispose scope): task ids, domain labels, task types,
    /// instance embeddings (given vectors, or the mean frozen token embedding of each row's first
    /// <paramref name="instanceLengths"/> tokens, padding excluded) and the attention mask as the token mask.</summary>
    public MixtureRoutingInputs BatchInputs(LowRankModel model, Tensor inputIds, Tensor? attentionMask, long[] taskIds, long[] columnIds, int[] instanceLengths, float[][]? vectors)
    {
        var device = inputIds.device;
        long b = inputIds.size(0), w = inputIds.size(1);
        Tensor? instance = null;
        if (InstanceRouter)
        {
            if (vectors is not null)
            {
                int d = vectors[0].Length;
                var flat = new float[b * d];
                for (int r = 0; r < b; r++) Array.Copy(vectors[r], 0, flat, r * d, d);
                instance = tensor(flat, new long[] { b, d }).to(device);
            }
            else
            {
                var lengths = tensor(instanceLengths.Select(l => (long)Math.Max(1, l)).ToArray(), new long[] { b, 1 }).to(device);
                var mask = arange(w, ScalarType.Int64, device).unsqueeze(0).lt(lengths);
                instance = MixtureOfLoraExperts.InstructionEmbedding(model, inputIds, mask);
            }
        }
        Tensor? column = RouterLabels || TaskTypes ? tensor(columnIds, new long[] { b }).to(device) : null;
        return new MixtureRoutingInputs
        {
            TaskIds = TaskIds != TaskIdSource.None ? tensor(taskIds, new long[] { b }).to(device) : null,
            RouterLabels = RouterLabels ? column : null,
            TaskTypes = TaskTypes ? column : null,
            InstanceFeatures = instance,
            TokenMask = attentionMask,
        };
    }

    /// <summary>The routing inputs of one row at prediction time (tensors in the current dispose scope).</summary>
    public MixtureRoutingInputs RowInputs(LowRankModel model, long[] ids, RowRouting? row)
    {
        long taskId = 0;
        switch (TaskIds)
        {
            case TaskIdSource.Column:
                if (row is null || row.ColumnId < 0)
                    throw new InvalidOperationException($"method {Method} routes on the task column '{TaskColumn}': predict through Transform on data with that column");
                taskId = row.ColumnId;
                break;
            case TaskIdSource.Clusters:
                taskId = NearestCentroid(model, RowInstance(model, ids, row?.InstanceLength ?? ids.Length, row?.InstanceVector));
                break;
        }
        Tensor? instance = null;
        if (InstanceRouter)
        {
            if (Instance == InstanceSource.Column && row?.InstanceVector is null)
                throw new InvalidOperationException($"method {Method} routes on the instance column '{InstanceColumn}': predict through Transform on data with that column");
            instance = RowInstance(model, ids, row?.InstanceLength ?? ids.Length, row?.InstanceVector);
        }
        var device = model.Model.Backbone.TokenEmbedding.weight.device;
        return new MixtureRoutingInputs
        {
            TaskIds = TaskIds != TaskIdSource.None ? tensor(new[] { taskId }, new long[] { 1 }).to(device) : null,
            InstanceFeatures = instance,
        };
    }

    /// <summary>Everything training needs: MoCLE's clusters (fitted on the training rows, seeded; validation rows go to the
    /// nearest centroid), the routing data of every training and validation example in one index space (validation
    /// examples after the training ones: <paramref name="validationSource"/> comes back shifted), and the function that
    /// builds a batch's routing inputs from its example indices.</summary>
    public (IBatchSource? Validation, Func<Batch, MixtureRoutingInputs> Routing) ForTraining(LowRankModel model, RoutingRows train, RoutingRows? validation,
        IBatchSource? validationSource, int seed)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(train);
        int n = train.Count, m = validation?.Count ?? 0;
        long[] trainTasks, validationTasks;
        switch (TaskIds)
        {
            case TaskIdSource.Clusters:
                trainTasks = Cluster(model, train, unchecked((ulong)seed));
                validationTasks = validation is null ? [] : AssignClusters(model, validation);
                break;
            case TaskIdSource.Column:
                trainTasks = [.. train.ColumnIds];
                validationTasks = validation is null ? [] : [.. validation.ColumnIds];
                break;
            default:
                trainTasks = new long[n];
                validationTasks = new long[m];
                break;
        }
        var tasks = new long[n + m];
        var columnIds = new long[n + m];
        var lengths = new int[n + m];
        var vectors = Instance == InstanceSource.Column ? new float[n + m][] : null;
        void Fill(RoutingRows rows, long[] rowTasks, int offset)
        {
            for (int i = 0; i < rows.Count; i++)
            {
                tasks[offset + i] = rowTasks[i];
                columnIds[offset + i] = rows.ColumnIds[i];
                lengths[offset + i] = rows.InstanceLengths[i];
                if (vectors is not null) vectors[offset + i] = rows.Vectors![i];
            }
        }
        Fill(train, trainTasks, 0);
        if (validation is not null) Fill(validation, validationTasks, n);
        MixtureRoutingInputs Build(Batch batch)
        {
            var idx = batch.ExampleIndices ?? throw new InvalidOperationException("the batch does not say which examples it holds");
            int b = idx.Count;
            var t = new long[b];
            var c = new long[b];
            var l = new int[b];
            var v = vectors is null ? null : new float[b][];
            for (int r = 0; r < b; r++)
            {
                int i = idx[r];
                t[r] = tasks[i];
                c[r] = columnIds[i];
                l[r] = lengths[i];
                if (v is not null) v[r] = vectors![i];
            }
            return BatchInputs(model, batch.InputIds, batch.AttentionMask, t, c, l, v);
        }
        return (validationSource is null ? null : new OffsetBatchSource(validationSource, n), Build);
    }

    // ------------------------------------------------------------------ persistence

    /// <summary>The routing settings and what Fit learned, for the model file.</summary>
    public JsonObject ToJson()
    {
        var o = new JsonObject
        {
            ["method"] = Method,
            ["task_ids"] = TaskIds.ToString(),
            ["router_labels"] = RouterLabels,
            ["task_types"] = TaskTypes,
            ["instance"] = Instance.ToString(),
            ["instance_router"] = InstanceRouter,
            ["task_column"] = TaskColumn,
            ["task_column_kind"] = TaskColumn is null ? null : Kind.ToString(),
            ["instance_column"] = InstanceColumn,
            ["limit"] = Limit,
            ["limit_description"] = LimitDescription,
            ["cluster_count"] = ClusterCount,
            ["instance_dim"] = InstanceDim,
        };
        if (TaskColumn is not null && Kind == TaskValueKind.Text) o["task_values"] = new JsonArray(Values.Select(v => (JsonNode?)v).ToArray());
        if (Centroids is not null)
            o["centroids"] = new JsonObject { ["dim"] = CentroidDim, ["values"] = new JsonArray(Centroids.Select(v => (JsonNode?)v).ToArray()) };
        return o;
    }

    /// <summary>Reads <see cref="ToJson"/>.</summary>
    public static TaskRouting FromJson(JsonObject o)
    {
        var r = new TaskRouting
        {
            Method = (string?)o["method"] ?? "",
            TaskIds = Enum.Parse<TaskIdSource>((string?)o["task_ids"] ?? nameof(TaskIdSource.None)),
            RouterLabels = o["router_labels"]?.GetValue<bool>() ?? false,
            TaskTypes = o["task_types"]?.GetValue<bool>() ?? false,
            Instance = Enum.Parse<InstanceSource>((string?)o["instance"] ?? nameof(InstanceSource.None)),
            InstanceRouter = o["instance_router"]?.GetValue<bool>() ?? false,
            TaskColumn = (string?)o["task_column"],
            InstanceColumn = (string?)o["instance_column"],
            Limit = o["limit"]?.GetValue<int>() ?? int.MaxValue,
            LimitDescription = (string?)o["limit_description"] ?? "",
            ClusterCount = o["cluster_count"]?.GetValue<int>() ?? 0,
            InstanceDim = o["instance_dim"]?.GetValue<int>() ?? 0,
        };
        if ((string?)o["task_column_kind"] is { } kind) r.Kind = Enum.Parse<TaskValueKind>(kind);
        if (o["task_values"] is JsonArray values)
            foreach (var v in values)
            {
                var s = (string)v!;
                r._valueIds[s] = r.Values.Count;
                r.Values.Add(s);
            }
        if (o["centroids"] is JsonObject c)
        {
            r.CentroidDim = c["dim"]!.GetValue<int>();
            r.Centroids = c["values"]!.AsArray().Select(v => v!.GetValue<float>()).ToArray();
        }
        return r;
    }

    /// <summary>Short description for the log.</summary>
    public string Describe()
    {
        var parts = new List<string>();
        switch (TaskIds)
        {
            case TaskIdSource.Column: parts.Add($"task ids from column '{TaskColumn}'"); break;
            case TaskIdSource.SingleTask: parts.Add("one task (id 0 for every row)"); break;
            case TaskIdSource.Clusters: parts.Add($"instruction clusters (k-means on {(Instance == InstanceSource.Column ? $"column '{InstanceColumn}'" : "the mean frozen token embedding of each row")})"); break;
        }
        if (RouterLabels) parts.Add($"domain labels from column '{TaskColumn}'");
        if (TaskTypes) parts.Add($"task types from column '{TaskColumn}'");
        if (InstanceRouter) parts.Add(Instance == InstanceSource.Column ? $"instance embeddings from column '{InstanceColumn}'" : "instance embeddings = mean frozen token embedding of each row's instruction tokens");
        if (parts.Count == 0) parts.Add("the attention mask as the token mask");
        return string.Create(CultureInfo.InvariantCulture, $"routing of {Method}: {string.Join("; ", parts)}");
    }
}

/// <summary>The routing data of the rows of one data set read at Fit, in example order: task column ids, instruction
/// lengths, the instruction tokens (for clustering) and instance vectors. Inactive (nothing read) without routing.</summary>
internal sealed class RoutingRows
{
    private readonly TaskRouting? _routing;
    private readonly DataViewSchema.Column? _task;
    private readonly DataViewSchema.Column? _instance;
    private readonly bool _learn;

    private RoutingRows(TaskRouting? routing, DataViewSchema.Column? task, DataViewSchema.Column? instance, bool learn)
    {
        _routing = routing;
        _task = task;
        _instance = instance;
        _learn = learn;
        if (instance is not null) Vectors = new List<float[]>();
    }

    /// <summary>Task column ids (−1 without a task column).</summary>
    public List<long> ColumnIds { get; } = new();

    /// <summary>Instruction lengths in tokens.</summary>
    public List<int> InstanceLengths { get; } = new();

    /// <summary>The token ids of each row (kept for clustering).</summary>
    public List<long[]> Tokens { get; } = new();

    /// <summary>Instance vectors, or null without an instance column.</summary>
    public List<float[]>? Vectors { get; }

    /// <summary>Rows read.</summary>
    public int Count => InstanceLengths.Count;

    /// <summary>Opens the routing columns of <paramref name="schema"/> (training data: <paramref name="training"/>).</summary>
    public static RoutingRows Open(LowRankRuntime runtime, DataViewSchema schema, bool training)
    {
        var r = runtime.Routing;
        if (r is null) return new RoutingRows(null, null, null, training);
        DataViewSchema.Column? task = r.UsesTaskColumn ? r.TaskColumnOf(schema, setKind: training) : null;
        DataViewSchema.Column? instance = r.Instance == InstanceSource.Column ? r.InstanceColumnOf(schema) : null;
        return new RoutingRows(r, task, instance, training);
    }

    /// <summary>The cursor columns: <paramref name="columns"/> plus the routing columns.</summary>
    public DataViewSchema.Column[] With(params DataViewSchema.Column[] columns)
    {
        var list = columns.ToList();
        if (_task is { } t && !list.Any(c => c.Index == t.Index)) list.Add(t);
        if (_instance is { } i && !list.Any(c => c.Index == i.Index)) list.Add(i);
        return [.. list];
    }

    /// <summary>Reads the current row's routing data and adds it (call once per kept example): its token ids and how many
    /// leading tokens are the instruction.</summary>
    public Action<long[], int> Reader(DataViewRow cursor)
    {
        if (_routing is null) return (_, _) => { };
        var task = _task is { } t ? _routing.TaskReader(cursor, t, _learn) : null;
        var vector = _instance is { } i ? _routing.InstanceReader(cursor, i) : null;
        bool keepTokens = _routing.TaskIds == TaskIdSource.Clusters;
        return (ids, instanceLength) =>
        {
            ColumnIds.Add(task?.Invoke() ?? -1);
            InstanceLengths.Add(Math.Clamp(instanceLength, 1, Math.Max(1, ids.Length)));
            Tokens.Add(keepTokens ? ids : []);
            if (vector is not null) Vectors!.Add(vector());
        };
    }
}

/// <summary>A batch source whose batches carry example indices shifted by an offset (training and validation rows share one
/// index space for the routing data).</summary>
internal sealed class OffsetBatchSource(IBatchSource inner, int offset) : IBatchSource
{
    public int Count => inner.Count;

    public Batch GetBatch(IReadOnlyList<int> indices)
    {
        var b = inner.GetBatch(indices);
        var shifted = new int[indices.Count];
        for (int i = 0; i < shifted.Length; i++) shifted[i] = indices[i] + offset;
        return new Batch(b.InputIds, b.AttentionMask, b.Labels)
        {
            TokenTypeIds = b.TokenTypeIds,
            PositionIds = b.PositionIds,
            SequenceIds = b.SequenceIds,
            TokenCount = b.TokenCount,
            TargetCount = b.TargetCount,
            ExampleIndices = shifted,
        };
    }
}

/// <summary>Routing inputs owned outside any dispose scope (kept set on the model between a micro-batch's loss and its
/// auxiliary loss), freed when replaced.</summary>
internal sealed class OwnedRoutingInputs : IDisposable
{
    private readonly List<Tensor> _owned = new();

    public OwnedRoutingInputs(MixtureRoutingInputs inputs)
    {
        Tensor? Own(Tensor? t)
        {
            if (t is null) return null;
            var a = t.alias().DetachFromDisposeScope();
            _owned.Add(a);
            return a;
        }
        Inputs = new MixtureRoutingInputs
        {
            TaskIds = Own(inputs.TaskIds),
            InstanceFeatures = Own(inputs.InstanceFeatures),
            TokenMask = Own(inputs.TokenMask),
            TaskTypes = Own(inputs.TaskTypes),
            RouterLabels = Own(inputs.RouterLabels),
        };
    }

    public MixtureRoutingInputs Inputs { get; }

    public void Dispose()
    {
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
    }
}

/// <summary>Reads the routing data of rows at prediction time (the task column when a task router reads it, the instance
/// column when one is configured); checks that the columns exist with the types seen at Fit.</summary>
internal sealed class RowRoutingReader
{
    private readonly TaskRouting? _routing;
    private readonly DataViewSchema.Column? _task;
    private readonly DataViewSchema.Column? _instance;

    public RowRoutingReader(TaskRouting? routing, DataViewSchema schema)
    {
        _routing = routing;
        if (routing is null) return;
        if (routing.TaskColumnAtPrediction) _task = routing.TaskColumnOf(schema, setKind: false);
        if (routing.Instance == InstanceSource.Column) _instance = routing.InstanceColumnOf(schema);
    }

    /// <summary><paramref name="dependencies"/> plus the routing columns read.</summary>
    public int[] Dependencies(params int[] dependencies)
    {
        var list = dependencies.ToList();
        if (_task is { } t && !list.Contains(t.Index)) list.Add(t.Index);
        if (_instance is { } i && !list.Contains(i.Index)) list.Add(i.Index);
        return [.. list];
    }

    /// <summary>For a row: a function of the row's instruction length (in tokens) giving its routing data, or null without routing.</summary>
    public Func<int, RowRouting?> For(DataViewRow row)
    {
        if (_routing is null) return _ => null;
        var task = _task is { } t ? _routing.TaskReader(row, row.Schema[t.Index], learn: false) : null;
        var vector = _instance is { } i ? _routing.InstanceReader(row, row.Schema[i.Index]) : null;
        return length => new RowRouting(task?.Invoke() ?? -1, length, vector?.Invoke());
    }
}
