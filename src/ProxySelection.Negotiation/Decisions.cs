namespace ProxySelection.Negotiation;

/// <summary>What a SYN carries that matters to the negotiation.</summary>
public enum SynKind
{
    /// <summary>No MPTCP option: a plain TCP SYN.</summary>
    Tcp,

    /// <summary>MP_CAPABLE version 1: a new MPTCP connection.</summary>
    MpCapable,

    /// <summary>MP_JOIN: a new subflow of an existing connection, named by its token.</summary>
    MpJoin,

    /// <summary>
    /// MP_CAPABLE version 0 (RFC 6824): passed untouched in both roles (spec §7.2 rule 6). Not terminated as MPTCP,
    /// and not upgraded, since the client already speaks a form of MPTCP.
    /// </summary>
    MpCapableV0,
}

/// <summary>A SYN as the packet hook saw it; <see cref="Signal"/> is set only when an MP_PROXY verified.</summary>
public readonly record struct SynObservation(FlowKey Flow, SynKind Kind, ProxySignal? Signal = null, uint JoinToken = 0)
{
    public DestinationKey Destination => Flow.Responder;

    /// <summary>The SYN's sequence number (ISN): a passing probe's answer must acknowledge ISN + 1 (spec §7.6).</summary>
    public uint Isn { get; init; }

    /// <summary>
    /// Index of the interface the SYN arrived on; scopes ProbedByOther (spec §6): a client SYN that a prober released
    /// follows the probe's path, so only a SYN on the probe's interface is passed on the strength of that entry.
    /// </summary>
    public int IngressInterface { get; init; }

    /// <summary>The SYN carries TCP-MD5 (kind 19) or TCP-AO (kind 29): end-to-end authenticated, never held (spec §7.2 rule 1).</summary>
    public bool HasTcpAuthOption { get; init; }
}

/// <summary>How the SYN/ACK answering our probe looked.</summary>
public readonly record struct ProbeAnswer(bool MpCapable, ProxySignal? Signal = null);

/// <summary>
/// A SYN/ACK that passed through (not for a flow of ours), as the packet hook saw it. <see cref="Flow"/> is the flow
/// as its SYN named it (initiator, responder); <see cref="AckNumber"/> must be the passing probe's ISN + 1 (spec §7.6).
/// </summary>
public readonly record struct SynAckObservation(FlowKey Flow, uint AckNumber, bool MpCapable, ProxySignal? Signal = null);

public enum SynVerdict
{
    /// <summary>Forward untouched.</summary>
    Pass,

    /// <summary>Forward untouched because this proxy is at its connection limit (capacity-aware deferral).</summary>
    Defer,

    /// <summary>Keep the SYN (no verdict yet) and, if <see cref="SynDecision.StartProbe"/>, send a probe; the outcome arrives through <see cref="INegotiationSink"/>.</summary>
    HoldAndProbe,

    /// <summary>Terminate the connection here (TPROXY to the local listener) and open the upstream leg.</summary>
    Intercept,

    /// <summary>The SYN is another proxy's probe: answer it with a SYN/ACK carrying <see cref="SynDecision.SynAckSignal"/> (Defer), keep no state (spec §7.4).</summary>
    AnswerProbe,

    /// <summary>MP_JOIN for a connection this proxy holds: intercept it.</summary>
    InterceptJoin,

    /// <summary>A retransmission of a SYN held here: drop this copy, the held one gets the verdict (spec §8.1).</summary>
    Duplicate,
}

public enum DecisionReason
{
    None,
    NotMptcp,
    AlreadyMptcp,
    JoinTokenOwned,
    JoinTokenForeign,
    ServerSpeaksMptcp,
    ServerTcpOnly,
    ProxyBeyond,
    ProbeFailedRecently,
    ProbedByOther,
    HeldUpstream,
    NotSelected,
    AtCapacity,
    CacheMiss,
    ProbeInFlight,
    AlreadyHeld,
    HoldLimit,
    ProbeAnswered,
    ProbeTimedOut,
    ProbeReset,
    FlowReset,

    /// <summary>The SYN carries TCP-MD5 or TCP-AO: terminating it would break its end-to-end authentication (spec §7.2 rule 1).</summary>
    TcpAuthOption,

    /// <summary>An MPTCP version 0 MP_CAPABLE SYN: passed untouched in both roles (spec §7.2 rule 6).</summary>
    MptcpV0,

    /// <summary>A verified MP_PROXY on the SYN names this proxy's own id: its own probe or leg came back (spec §5.5, §7.2 rule 5).</summary>
    OwnProxyId,

    /// <summary>Starting a probe would exceed the per-source-prefix or per-destination probe rate (spec §7.5.1).</summary>
    ProbeRateLimited,

    /// <summary>Starting a probe would exceed the proxy's global probe rate (spec §11.3, <see cref="NegotiatorOptions.ProbeRateGlobal"/>).</summary>
    ProbeRateCapped,
}

/// <summary>Which kind of connection the proxy opens upstream after it intercepts.</summary>
public enum UpstreamLeg
{
    None,

    /// <summary>Plain TCP toward a TCP-only server (downgrade).</summary>
    Tcp,

    /// <summary>MPTCP (upgrade).</summary>
    Mptcp,
}

/// <summary>The immediate answer to a SYN.</summary>
public readonly record struct SynDecision
{
    public SynVerdict Verdict { get; init; }

    public DecisionReason Reason { get; init; }

    /// <summary>Names the held SYN in later <see cref="HoldResolution"/>s (<see cref="SynVerdict.HoldAndProbe"/> only).</summary>
    public long HoldId { get; init; }

    /// <summary>Names the probe the SYN waits on; the host reports its answer with this id.</summary>
    public long ProbeId { get; init; }

    /// <summary>True when the host must send the probe now; false when the SYN joined a probe already out for its destination.</summary>
    public bool StartProbe { get; init; }

    /// <summary>When the held SYN is released untouched if no answer came.</summary>
    public TimeSpan ProbeTimeout { get; init; }

    /// <summary>MP_PROXY for the probe SYN (null in implicit mode). The probe SYN always carries MP_CAPABLE.</summary>
    public ProxySignal? ProbeSignal { get; init; }

    /// <summary>MP_PROXY for the SYN/ACK we send: the Claim on an intercepted connection, or the Defer answering a probe.</summary>
    public ProxySignal? SynAckSignal { get; init; }

    public UpstreamLeg Upstream { get; init; }

    /// <summary>MP_PROXY for the upstream leg's SYN: Upgrade (upgrade origin) or Claim (a downgrade holder's TCP leg).</summary>
    public ProxySignal? UpstreamSignal { get; init; }

    /// <summary>
    /// <see cref="DecisionReason.ProbeRateCapped"/> only: the first SYN the global cap passed since a probe last got
    /// through it, so the host logs one line per episode of capping, not one per SYN.
    /// </summary>
    public bool RateCapReached { get; init; }
}

public enum HoldOutcome
{
    /// <summary>Give the held SYN its verdict ACCEPT, unmodified.</summary>
    Release,

    /// <summary>Terminate the held SYN here; <see cref="HoldResolution.UpstreamIsProbe"/> says whether the probe connection becomes the upstream leg.</summary>
    Intercept,

    /// <summary>The held SYN is a probe from another proxy: answer it with <see cref="HoldResolution.SynAckSignal"/> (Defer) and drop it.</summary>
    AnswerProbe,
}

/// <summary>The end of one held SYN, delivered after the negotiator's lock is released.</summary>
public readonly record struct HoldResolution
{
    public long HoldId { get; init; }

    public long ProbeId { get; init; }

    public HoldOutcome Outcome { get; init; }

    public DecisionReason Reason { get; init; }

    public ProxySignal? SynAckSignal { get; init; }

    public UpstreamLeg Upstream { get; init; }

    /// <summary>True for at most one hold per probe: the probe connection is this connection's upstream leg (no second connect).</summary>
    public bool UpstreamIsProbe { get; init; }

    public ProxySignal? UpstreamSignal { get; init; }
}

/// <summary>Receives the outcomes that arrive later than the SYN: probe answers, timeouts, resets.</summary>
public interface INegotiationSink
{
    /// <summary>
    /// A probe ended. <paramref name="holds"/> are the SYNs that waited on it, in arrival order. When
    /// <paramref name="probeAdopted"/> is false the host closes (resets) the probe connection.
    /// </summary>
    void OnProbeResolved(long probeId, bool probeAdopted, ReadOnlySpan<HoldResolution> holds);

    /// <summary>
    /// The probe's deadline passed: its answer may be in the host's socket already, its reading delayed by a busy host (a
    /// cold or starved process). True with the answer when the connection is established; the negotiator then decides on
    /// that answer instead of a timeout (issue 13: a probe answered in time is never declared timed out).
    /// </summary>
    bool TryReadProbeAnswerAtDeadline(long probeId, out ProbeAnswer answer)
    {
        answer = default;
        return false;
    }
}
