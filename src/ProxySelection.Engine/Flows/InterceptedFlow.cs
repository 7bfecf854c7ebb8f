using System.Net.Sockets;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Engine.Hook;
using ProxySelection.Negotiation;

namespace ProxySelection.Engine.Flows;

/// <summary>Where one connection the engine took an interest in stands.</summary>
public enum FlowState
{
    /// <summary>Its SYN is held while a probe is out.</summary>
    Held,

    /// <summary>Its SYN went to TPROXY; the listener has not accepted it yet (adoption deadline running).</summary>
    AwaitingAccept,

    /// <summary>Another proxy's probe this proxy answered (Defer); the prober resets it (deadline running).</summary>
    AnsweredProbe,

    /// <summary>Accepted: its slot is taken and the relay runs.</summary>
    Relaying,

    /// <summary>Ended; nothing of it is left in the table, the signer or the slot count.</summary>
    Closed,
}

/// <summary>
/// Everything the engine knows of one intercepted (or held) connection: its state, its one deadline timer, its held
/// SYN, its signals (the SYN/ACK claim, the upstream leg's signal), its adopted probe, its trace and its connection
/// slot. One <see cref="Shutdown"/> undoes all of it, once, whoever calls it first (Kestrel's SocketConnection).
/// </summary>
/// <remarks>
/// The slot is taken when the listener accepts the connection (<see cref="TryStartRelay"/>), never at the intercept
/// verdict: a spoofed SYN that never completes its handshake holds no slot (issue 12). State changes happen under the
/// flow's lock; timers, sockets and callbacks run after it is released.
/// </remarks>
public sealed class InterceptedFlow
{
    private readonly Lock _lock = new();
    private readonly FlowTable _table;
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ITimer? _timer;
    private IProbeSocket? _probe;
    private bool _slot;
    private bool _claimExpected;
    private string? _closeReason;

    internal InterceptedFlow(FlowTable table, FlowEndPoints endPoints, long createdAt)
    {
        _table = table;
        EndPoints = endPoints;
        CreatedAt = createdAt;
    }

    public FlowEndPoints EndPoints { get; }

    public long CreatedAt { get; }

    public FlowState State { get; private set; } = FlowState.Held;

    /// <summary>Why the SYN was intercepted (status replies).</summary>
    public DecisionReason? Reason { get; private set; }

    /// <summary>When the intercept verdict was given (status replies: the connection's age).</summary>
    public long DecidedAt { get; private set; }

    /// <summary>The held SYN: packet id, mark, hold id and, for a foreign probe, its bytes (answering it rewrites them).</summary>
    public HeldPacket? Held { get; private set; }

    /// <summary>The signal the relay's upstream leg carries (spec §7.3.3), when it connects one of its own.</summary>
    public ProxySignal? UpstreamSignal { get; private set; }

    public ConnectionTrace? Trace { get; set; }

    /// <summary>Why the flow closed (the first reason given), or null while open.</summary>
    public string? CloseReason
    {
        get { lock (_lock) { return _closeReason; } }
    }

    /// <summary>Completes when the flow closed.</summary>
    public Task Closed => _closed.Task;

    internal void SetHeld(HeldPacket held)
    {
        lock (_lock)
        {
            Held = held;
        }
    }

    /// <summary>
    /// The SYN is being sent to TPROXY: the SYN/ACK's claim is expected, the probe (if any) waits for adoption, and the
    /// adoption deadline starts. False when the flow closed meanwhile (nothing changed).
    /// </summary>
    public bool TryIntercept(DecisionReason reason, ProxySignal? claim, IProbeSocket? probe, ProxySignal? upstreamSignal)
    {
        lock (_lock)
        {
            if (State is not (FlowState.Held or FlowState.AwaitingAccept))
            {
                return false;
            }

            if (State != FlowState.AwaitingAccept)
            {
                _table.OnAwaitingAccept(+1);
            }

            State = FlowState.AwaitingAccept;
            Reason = reason;
            DecidedAt = _table.Time.GetTimestamp();
            _probe = probe;
            UpstreamSignal = probe is null ? upstreamSignal : null;
            ExpectClaimLocked(claim);
            StartTimerLocked(_table.AdoptionTimeout);
        }

        return true;
    }

    /// <summary>Another proxy's probe was answered: the claim (Defer) is expected on the SYN/ACK until the deadline.</summary>
    public bool TryAnswerProbe(ProxySignal? claim)
    {
        lock (_lock)
        {
            if (State != FlowState.Held)
            {
                return false;
            }

            State = FlowState.AnsweredProbe;
            ExpectClaimLocked(claim);
            StartTimerLocked(_table.AdoptionTimeout);
        }

        return true;
    }

    /// <summary>
    /// The listener accepted this flow: the deadline stops, the slot is taken, the adopted probe (if any) is handed over.
    /// False (and the flow closed) when no slot is free; an answered probe's flow is never relayed (null probe, true).
    /// </summary>
    public bool TryStartRelay(out IProbeSocket? probe)
    {
        probe = null;
        ITimer? timer = null;
        bool admitted;
        lock (_lock)
        {
            if (State != FlowState.AwaitingAccept)
            {
                return false;
            }

            admitted = _table.Slots.TryTake();
            if (admitted)
            {
                _slot = true;
                _table.OnAwaitingAccept(-1);
                State = FlowState.Relaying;
                probe = _probe;
                _probe = null;
                timer = _timer;
                _timer = null;
            }
        }

        if (!admitted)
        {
            Shutdown(FlowCloseReasons.AtCapacity);
            return false;
        }

        timer?.Dispose();
        // The SYN/ACK went out with the handshake: the claim is done.
        ForgetClaim();
        return true;
    }

    /// <summary>Whether this flow is the answered probe the listener just accepted (then it is drained, not relayed).</summary>
    public bool IsAnsweredProbe
    {
        get { lock (_lock) { return State == FlowState.AnsweredProbe; } }
    }

    /// <summary>
    /// Ends the flow, once: stops its timer, forgets its claim, aborts an unadopted probe, releases its slot and leaves
    /// the table. Safe to call twice and from any thread; the first reason is kept.
    /// </summary>
    public void Shutdown(string reason)
    {
        ITimer? timer;
        IProbeSocket? probe;
        bool slot;
        lock (_lock)
        {
            if (State == FlowState.Closed)
            {
                return;
            }

            if (State == FlowState.AwaitingAccept)
            {
                _table.OnAwaitingAccept(-1);
            }

            State = FlowState.Closed;
            _closeReason = reason;
            timer = _timer;
            _timer = null;
            probe = _probe;
            _probe = null;
            slot = _slot;
            _slot = false;
        }

        timer?.Dispose();
        ForgetClaim();
        probe?.Abort();
        if (slot)
        {
            _table.Slots.Release();
        }

        _table.Remove(this);
        _closed.TrySetResult();
    }

    private void ExpectClaimLocked(ProxySignal? claim)
    {
        if (claim is { } signal)
        {
            _table.Signer.ExpectSynAck(EndPoints, signal);
            _claimExpected = true;
        }
    }

    private void ForgetClaim()
    {
        bool expected;
        lock (_lock)
        {
            expected = _claimExpected;
            _claimExpected = false;
        }

        if (expected)
        {
            _table.Signer.ForgetClaim(EndPoints);
        }
    }

    private void StartTimerLocked(TimeSpan due)
    {
        _timer?.Dispose();
        _timer = _table.Time.CreateTimer(static state => ((InterceptedFlow)state!).OnDeadline(), this, due, Timeout.InfiniteTimeSpan);
    }

    private void OnDeadline()
    {
        FlowState was;
        lock (_lock)
        {
            was = State;
            if (was is not (FlowState.AwaitingAccept or FlowState.AnsweredProbe))
            {
                return;
            }
        }

        // The client's connection never reached the listener (or the prober never came back): all of it goes.
        Shutdown(was == FlowState.AwaitingAccept ? FlowCloseReasons.NeverArrived : FlowCloseReasons.ProbeAnswerDone);
        if (was == FlowState.AwaitingAccept)
        {
            _table.OnExpired(this);
        }
    }
}

/// <summary>A held SYN: its verdict is still owed to the queue.</summary>
public sealed record HeldPacket(uint PacketId, uint Mark, long HoldId, long HeldAt, byte[]? Syn);

/// <summary>The reasons a flow closes with (events and traces name them).</summary>
public static class FlowCloseReasons
{
    public const string Released = "released";
    public const string NeverArrived = "never_arrived";
    public const string ProbeAnswerDone = "probe_answered";
    public const string VerdictFailed = "verdict_failed";
    public const string AtCapacity = "at_capacity";
    public const string Relayed = "relayed";
    public const string Superseded = "superseded";
    public const string Stopping = "stopping";

    /// <summary>The held SYN's sender reset the flow (spec §7.2): the SYN was discarded.</summary>
    public const string ResetBySender = "reset_by_sender";
}
