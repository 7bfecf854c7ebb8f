using ProxySelection.Negotiation;

namespace ProxySelection.Engine.Flows;

/// <summary>The connection slots the negotiator counts (<see cref="ProxyNegotiator.ActiveConnections"/>): taken and released by flows only.</summary>
public interface IConnectionSlots
{
    bool TryTake();

    void Release();
}

/// <summary>The negotiator's count as <see cref="IConnectionSlots"/>: its capacity decision (MaxConnections → Defer) reads the same number.</summary>
internal sealed class NegotiatorSlots(ProxyNegotiator negotiator) : IConnectionSlots
{
    public bool TryTake() => negotiator.TryAdmit();

    public void Release() => negotiator.OnConnectionClosed();
}

/// <summary>
/// The engine's <see cref="InterceptedFlow"/>s by their endpoints, and held ones by hold id (Kestrel's
/// TransportConnectionManager): the one place a flow is found, and what the engine awaits on dispose.
/// </summary>
public sealed class FlowTable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<FlowEndPoints, InterceptedFlow> _flows = [];
    private readonly Dictionary<long, InterceptedFlow> _holds = [];
    private int _awaitingAccept;

    public FlowTable(TimeProvider time, TimeSpan adoptionTimeout, IConnectionSlots slots, EgressSigner signer, Action<InterceptedFlow>? expired = null)
    {
        Time = time;
        AdoptionTimeout = adoptionTimeout;
        Slots = slots;
        Signer = signer;
        Expired = expired;
    }

    public TimeProvider Time { get; }

    public TimeSpan AdoptionTimeout { get; }

    public IConnectionSlots Slots { get; }

    public EgressSigner Signer { get; }

    private Action<InterceptedFlow>? Expired { get; }

    public int Count
    {
        get { lock (_lock) { return _flows.Count; } }
    }

    /// <summary>A new flow for <paramref name="endPoints"/>; one already there (a port reused, a decision made again) is shut down first.</summary>
    public InterceptedFlow Add(FlowEndPoints endPoints, HeldPacket? held = null)
    {
        var flow = new InterceptedFlow(this, endPoints, Time.GetTimestamp());
        if (held is not null)
        {
            flow.SetHeld(held);
        }

        InterceptedFlow? previous;
        lock (_lock)
        {
            _flows.Remove(endPoints, out previous);
            _flows[endPoints] = flow;
            if (held is not null)
            {
                _holds[held.HoldId] = flow;
            }
        }

        previous?.Shutdown(FlowCloseReasons.Superseded);
        return flow;
    }

    public bool TryGet(FlowEndPoints endPoints, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out InterceptedFlow? flow)
    {
        lock (_lock)
        {
            return _flows.TryGetValue(endPoints, out flow);
        }
    }

    /// <summary>SYNs held now.</summary>
    public int HeldCount
    {
        get { lock (_lock) { return _holds.Count; } }
    }

    /// <summary>The held flow of <paramref name="holdId"/>, taken out of the hold index (its verdict is being given).</summary>
    public InterceptedFlow? TakeHeld(long holdId)
    {
        lock (_lock)
        {
            return _holds.Remove(holdId, out var flow) ? flow : null;
        }
    }

    /// <summary>
    /// Whether any intercepted flow still waits for its accept (a foreign-token join may be one of its subflows). A count,
    /// not a walk of the table: it is read for every foreign MP_JOIN.
    /// </summary>
    public bool AnyAwaitingAccept() => Volatile.Read(ref _awaitingAccept) > 0;

    /// <summary>Intercepted flows whose accept has not come yet.</summary>
    public int AwaitingAcceptCount => Volatile.Read(ref _awaitingAccept);

    internal void OnAwaitingAccept(int change) => Interlocked.Add(ref _awaitingAccept, change);

    public IReadOnlyList<InterceptedFlow> Snapshot()
    {
        lock (_lock)
        {
            return [.. _flows.Values];
        }
    }

    internal void Remove(InterceptedFlow flow)
    {
        lock (_lock)
        {
            if (_flows.TryGetValue(flow.EndPoints, out var current) && current == flow)
            {
                _flows.Remove(flow.EndPoints);
            }

            if (flow.Held is { } held && _holds.TryGetValue(held.HoldId, out var holding) && holding == flow)
            {
                _holds.Remove(held.HoldId);
            }
        }
    }

    /// <summary>Shrinks the tables to what they hold now (after a flood grew them: a dictionary never shrinks itself).</summary>
    public void TrimExcess()
    {
        lock (_lock)
        {
            _flows.TrimExcess();
            _holds.TrimExcess();
        }
    }

    internal void OnExpired(InterceptedFlow flow) => Expired?.Invoke(flow);

    /// <summary>Shuts every flow down and waits for them (bounded by <paramref name="timeout"/>).</summary>
    public async Task ShutdownAllAsync(string reason, TimeSpan timeout)
    {
        var flows = Snapshot();
        foreach (var flow in flows)
        {
            if (flow.State != FlowState.Relaying)
            {
                flow.Shutdown(reason);
            }
        }

        try
        {
            await Task.WhenAll(flows.Select(f => f.Closed)).WaitAsync(timeout, Time).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // A relay that did not end in time: its flow ends anyway, so no slot outlives the engine.
            foreach (var flow in flows)
            {
                flow.Shutdown(reason);
            }
        }
    }
}
