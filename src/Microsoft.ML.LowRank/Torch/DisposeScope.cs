namespace Microsoft.ML.LowRank.Torch;

/// <summary>
/// Frees every tensor created on this thread while it is the innermost open scope, when it is disposed,
/// except tensors moved out of it (<see cref="MoveToOuter(torch.Tensor[])"/>) or detached from it.
/// Scopes are dynamic (thread-static), as in TorchSharp: a tensor created inside a called function belongs
/// to the caller's open scope.
/// </summary>
public sealed class DisposeScope : IDisposable
{
    private List<torch.Tensor>? _tensors = new();
    internal DisposeScope? Outer { get; }

    internal DisposeScope(DisposeScope? outer) { Outer = outer; }

    /// <summary>Number of tensors currently owned by this scope (including ones already disposed).</summary>
    public int Count => _tensors?.Count ?? 0;

    /// <summary>True once the scope has been disposed.</summary>
    public bool IsDisposed => _tensors is null;

    internal void Add(torch.Tensor t) => Add(t, DisposeScopeManager.Statistics);

    internal void Add(torch.Tensor t, ThreadDisposeScopeStatistics stats)
    {
        if (_tensors is null) throw new ObjectDisposedException(nameof(DisposeScope), "the dispose scope is already disposed");
        _tensors.Add(t);
        t.OwningScope = this;
        stats.CreatedInScopeCount++;
    }

    internal void Remove(torch.Tensor t)
    {
        _tensors?.Remove(t);
        t.OwningScope = null;
    }

    /// <summary>Moves the tensors to the enclosing scope (or detaches them when there is none).</summary>
    /// <param name="tensors">Tensors owned by this scope.</param>
    public void MoveToOuter(params torch.Tensor[] tensors)
    {
        foreach (var t in tensors) t.MoveToOuterDisposeScope();
    }

    /// <summary>Detaches the tensors from every scope; the caller then owns them.</summary>
    /// <param name="tensors">Tensors owned by this scope.</param>
    public void Detach(params torch.Tensor[] tensors)
    {
        foreach (var t in tensors) t.DetachFromDisposeScope();
    }

    /// <summary>Disposes every tensor owned by this scope except the given ones, which stay in the scope.</summary>
    /// <param name="keep">Tensors to keep.</param>
    public void DisposeEverythingBut(params torch.Tensor[] keep)
    {
        if (_tensors is null) return;
        var set = new HashSet<torch.Tensor>(keep, ReferenceEqualityComparer.Instance);
        var remaining = new List<torch.Tensor>();
        foreach (var t in _tensors)
        {
            if (set.Contains(t)) remaining.Add(t);
            else { t.OwningScope = null; t.Dispose(); }
        }
        _tensors = remaining;
    }

    /// <summary>Disposes every tensor still owned by this scope and closes the scope.</summary>
    public void Dispose()
    {
        if (_tensors is null) return;
        var list = _tensors;
        _tensors = null;
        foreach (var t in list)
        {
            if (t.OwningScope == this) { t.OwningScope = null; t.Dispose(); }
        }
        DisposeScopeManager.Pop(this);
    }
}

/// <summary>Per-thread counters of tensor lifetimes, for leak tests (TorchSharp's shape).</summary>
public sealed class ThreadDisposeScopeStatistics
{
    /// <summary>Tensors created on this thread while a scope was open.</summary>
    public long CreatedInScopeCount { get; internal set; }
    /// <summary>Tensors created on this thread with no scope open.</summary>
    public long CreatedOutsideScopeCount { get; internal set; }
    /// <summary>Tensors detached from a scope on this thread.</summary>
    public long DetachedFromScopeCount { get; internal set; }
    /// <summary>Native tensor handles alive in the whole process (all threads).</summary>
    public long ThreadTotalLiveCount => TensorHandle.LiveCount;

    /// <summary>Resets the per-thread counters.</summary>
    public void Reset()
    {
        CreatedInScopeCount = 0;
        CreatedOutsideScopeCount = 0;
        DetachedFromScopeCount = 0;
    }
}

/// <summary>The thread-static stack of open <see cref="DisposeScope"/>s.</summary>
public static class DisposeScopeManager
{
    // One thread-static object holds both the scope stack and the counters: one TLS access per tensor creation.
    private sealed class ThreadState
    {
        public DisposeScope? Current;
        public readonly ThreadDisposeScopeStatistics Stats = new();
    }

    [ThreadStatic] private static ThreadState? t_state;

    private static ThreadState State => t_state ??= new ThreadState();

    /// <summary>This thread's counters.</summary>
    public static ThreadDisposeScopeStatistics Statistics => State.Stats;

    /// <summary>The innermost open scope of this thread, or null.</summary>
    public static DisposeScope? Current => t_state?.Current;

    internal static DisposeScope Push()
    {
        var st = State;
        var s = new DisposeScope(st.Current);
        st.Current = s;
        return s;
    }

    internal static void Pop(DisposeScope scope)
    {
        // Scopes normally close innermost first; tolerate out-of-order disposal by unlinking closed scopes.
        var st = State;
        if (st.Current == scope) st.Current = scope.Outer;
        while (st.Current is not null && st.Current.IsDisposed) st.Current = st.Current.Outer;
    }

    internal static void Register(torch.Tensor t)
    {
        var st = State;
        var s = st.Current;
        if (s is null) st.Stats.CreatedOutsideScopeCount++;
        else s.Add(t, st.Stats);
    }
}
