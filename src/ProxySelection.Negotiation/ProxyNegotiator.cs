namespace ProxySelection.Negotiation;

/// <summary>
/// One proxy's per-SYN negotiation (design §4): events in (SYNs, probe answers, timeouts, resets, SYN/ACKs seen
/// passing), decisions out. No sockets and no clock reads: time comes from the injected <see cref="TimeProvider"/>,
/// so a simulator drives it deterministically with a fake clock.
/// </summary>
/// <remarks>
/// States are enums (<see cref="ProbeState"/>, <see cref="HoldState"/>), guarded by one lock; methods that need
/// the lock held end in <c>Locked</c>; the sink is called only after the lock is released.
/// </remarks>
public sealed class ProxyNegotiator : IDisposable
{
    private const int MaxObservedProbes = 4096;

    // Probe rate limits count by source network (spec §7.5.1): an IPv4 /24, an IPv6 /56.
    private const int SourcePrefixBitsV4 = 24;
    private const int SourcePrefixBitsV6 = 56;

    private readonly Lock _lock = new();
    private readonly NegotiatorOptions _options;
    private readonly TimeProvider _time;
    private readonly INegotiationSink _sink;
    private readonly Dictionary<DestinationKey, Probe> _probeByDestination = [];
    private readonly Dictionary<long, Probe> _probes = [];
    private readonly Dictionary<long, HeldSyn> _holds = [];
    private readonly Dictionary<FlowKey, HeldSyn> _holdByFlow = [];
    private readonly Dictionary<FlowKey, ObservedProbe> _observedProbes = [];
    private readonly ProbeRateLimiter _sourceRate;
    private readonly ProbeRateLimiter _destinationRate;
    private readonly ProbeRateLimiter? _globalRate;
    private bool _rateCapped;
    private long _probesRateLimited;
    private long _probesRateCapped;
    private long _nextId;
    private int _active;
    private bool _disposed;

    public ProxyNegotiator(NegotiatorOptions options, TimeProvider time, INegotiationSink sink)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(sink);
        options.EnsureValid();
        _options = options;
        _time = time;
        _sink = sink;
        Cache = new CapabilityCache(options.Cache, time, options.ProbedByOtherTtl);
        _sourceRate = new ProbeRateLimiter(time, options.ProbeRatePerSourcePrefix, options.ProbeRateTableEntries);
        _destinationRate = new ProbeRateLimiter(time, options.ProbeRatePerDestination, options.ProbeRateTableEntries);
        // One bucket under one key: the same token bucket as the others, for every probe at once.
        _globalRate = options.ProbeRateGlobal > 0 ? new ProbeRateLimiter(time, options.ProbeRateGlobal, capacity: 1) : null;
    }

    private enum ProbeState
    {
        InFlight,
        Answered,
        TimedOut,
        Reset,
    }

    private enum HoldState
    {
        Held,
        Resolved,
        Dropped,
    }

    private enum HoldKind
    {
        /// <summary>A client's SYN, or an upgrade proxy's MPTCP SYN reaching a downgrade proxy: this proxy may hold the connection.</summary>
        Origin,

        /// <summary>Another proxy's probe that this proxy pre-empts under its policy.</summary>
        ForeignProbe,
    }

    /// <summary>What a probe found, in the terms of this proxy's role.</summary>
    private enum ProbeResult
    {
        /// <summary>This proxy should act (downgrade: nothing beyond speaks MPTCP; upgrade: MPTCP is reachable).</summary>
        Act,

        /// <summary>Nothing for this proxy to do (downgrade: MPTCP is reachable; upgrade: nothing speaks MPTCP).</summary>
        NoAction,

        /// <summary>A verified defer: a proxy further on acts.</summary>
        ProxyBeyond,

        /// <summary>No usable answer (timeout, reset): fail open.</summary>
        Failed,
    }

    public NegotiatorOptions Options => _options;

    public CapabilityCache Cache { get; }

    public TokenRegistry Tokens { get; } = new();

    /// <summary>Connections this proxy holds: accepted (<see cref="TryAdmit"/>) and not yet closed.</summary>
    public int ActiveConnections
    {
        get { lock (_lock) { return _active; } }
    }

    /// <summary>SYNs currently held.</summary>
    public int HeldSyns
    {
        get { lock (_lock) { return _holds.Count; } }
    }

    /// <summary>Probes currently out.</summary>
    public int ProbesInFlight
    {
        get { lock (_lock) { return _probes.Count; } }
    }

    /// <summary>Source prefixes whose probe rate is tracked (bounded by <see cref="NegotiatorOptions.ProbeRateTableEntries"/>).</summary>
    public int ProbeRateSourcePrefixes
    {
        get { lock (_lock) { return _sourceRate.Count; } }
    }

    /// <summary>Destinations whose probe rate is tracked (bounded by <see cref="NegotiatorOptions.ProbeRateTableEntries"/>).</summary>
    public int ProbeRateDestinations
    {
        get { lock (_lock) { return _destinationRate.Count; } }
    }

    /// <summary>SYNs passed untouched because their probe would have exceeded a probe rate limit, the global cap included.</summary>
    public long ProbesRateLimited
    {
        get { lock (_lock) { return _probesRateLimited; } }
    }

    /// <summary>Of <see cref="ProbesRateLimited"/>, those the global cap (<see cref="NegotiatorOptions.ProbeRateGlobal"/>) passed.</summary>
    public long ProbesRateCapped
    {
        get { lock (_lock) { return _probesRateCapped; } }
    }

    private bool IsExplicit => _options.Mode == SignalingMode.Explicit;

    private bool IsDowngrade => _options.Role == ProxyRole.Downgrade;

    /// <summary>Whether <paramref name="policy"/> selects a proxy with <paramref name="mine"/> over an upstream prober with <paramref name="theirs"/>.</summary>
    public static bool Outranks(SelectionPolicy policy, byte mine, byte theirs) => policy switch
    {
        SelectionPolicy.First => false,
        SelectionPolicy.NearestServer => true,
        // Ties go to the proxy nearer the client: it probed first.
        SelectionPolicy.Priority => mine > theirs,
        _ => false,
    };

    /// <summary>Decides what to do with a SYN (spec §7.2: the first rule that matches).</summary>
    public SynDecision OnSyn(in SynObservation syn)
    {
        if (syn.HasTcpAuthOption)
        {
            // Authenticated end to end: terminating it would break that, and a probe could not reproduce it.
            return Pass(DecisionReason.TcpAuthOption);
        }

        if (syn.Kind == SynKind.MpJoin)
        {
            return Tokens.Contains(syn.JoinToken)
                ? new SynDecision { Verdict = SynVerdict.InterceptJoin, Reason = DecisionReason.JoinTokenOwned }
                : Pass(DecisionReason.JoinTokenForeign);
        }

        if (IsHeld(syn.Flow, out long heldId))
        {
            return new SynDecision { Verdict = SynVerdict.Duplicate, Reason = DecisionReason.AlreadyHeld, HoldId = heldId };
        }

        // A stock (implicit) proxy does not parse MP_PROXY at all.
        ProxySignal? signal = IsExplicit ? syn.Signal : null;
        if (signal is { Kind: SignalKind.Claim })
        {
            // A holder's upstream leg (spec §7.2 step 2): never intercepted, whatever the role.
            return Pass(DecisionReason.HeldUpstream);
        }

        if (signal is { } own && own.ProxyId == _options.ProxyId)
        {
            // A loop (spec §5.5): this proxy's own probe or leg came back, or two proxies share one id.
            return Pass(DecisionReason.OwnProxyId);
        }

        if (syn.Kind == SynKind.MpCapableV0)
        {
            return Pass(DecisionReason.MptcpV0);
        }

        if (IsDowngrade)
        {
            if (syn.Kind != SynKind.MpCapable)
            {
                return Pass(DecisionReason.NotMptcp);
            }

            return signal is { Kind: SignalKind.Probe } probe ? OnForeignProbe(syn, probe) : OnOriginSyn(syn);
        }

        if (syn.Kind == SynKind.MpCapable)
        {
            // Already MPTCP: act only as necessary. An upgrade-marked SYN is another upgrader's probe.
            return signal is { Kind: SignalKind.Upgrade } upgrade
                ? OnForeignProbe(syn, upgrade)
                : Pass(DecisionReason.AlreadyMptcp);
        }

        return OnOriginSyn(syn);
    }

    /// <summary>The SYN/ACK answering probe <paramref name="probeId"/> arrived.</summary>
    public void OnProbeAnswered(long probeId, in ProbeAnswer answer)
    {
        ProbeResult result;
        byte beyond = 0;
        ProxySignal? signal = IsExplicit ? answer.Signal : null;
        if (signal is { Kind: SignalKind.Defer } defer)
        {
            // A proxy further on outranks this one (spec §7.5.2); any other MP_PROXY on the answer is ignored.
            result = ProbeResult.ProxyBeyond;
            beyond = defer.ProxyId;
        }
        else
        {
            result = answer.MpCapable == IsDowngrade ? ProbeResult.NoAction : ProbeResult.Act;
        }

        Finish(probeId, ProbeState.Answered, result, beyond);
    }

    /// <summary>The deadline: an answer the host already holds decides; otherwise the probe timed out (fail open).</summary>
    private void OnProbeDeadline(long probeId)
    {
        if (_sink.TryReadProbeAnswerAtDeadline(probeId, out var answer))
        {
            OnProbeAnswered(probeId, answer);
            return;
        }

        Finish(probeId, ProbeState.TimedOut, ProbeResult.Failed, 0);
    }

    /// <summary>
    /// The engine's hold limit passed for a SYN waiting on <paramref name="probeId"/> while the host already holds the
    /// probe's answer (its completion waits for a busy thread): decide on it now, so an answered probe is never declared
    /// timed out. When the completion took the answer first, it decides, and this does nothing.
    /// </summary>
    public void OnProbeOverdue(long probeId)
    {
        if (_sink.TryReadProbeAnswerAtDeadline(probeId, out var answer))
        {
            OnProbeAnswered(probeId, answer);
        }
    }

    /// <summary>
    /// Forgets a probe not yet started whose every SYN was passed (overload): no connection goes to a server its client
    /// reaches directly, no fact is recorded, and the destination's next SYN probes again. False when the probe has
    /// holds or ended already.
    /// </summary>
    public bool AbandonProbe(long probeId)
    {
        lock (_lock)
        {
            if (!_probes.TryGetValue(probeId, out var probe) || probe.State != ProbeState.InFlight || probe.Holds.Count != 0)
            {
                return false;
            }

            _probes.Remove(probeId);
            probe.State = ProbeState.Reset;
            probe.Timer?.Dispose();
            _probeByDestination.Remove(probe.Destination);
            return true;
        }
    }

    /// <summary>The probe connection was reset (by the server or on the way): fail open.</summary>
    public void OnProbeReset(long probeId) => Finish(probeId, ProbeState.Reset, ProbeResult.Failed, 0);

    /// <summary>A RST arrived for a held SYN's flow (the sender gave up): drop the held SYN. The probe goes on.</summary>
    public bool OnHeldSynReset(long holdId)
    {
        lock (_lock)
        {
            if (!_holds.Remove(holdId, out var hold) || hold.State != HoldState.Held)
            {
                return false;
            }

            hold.State = HoldState.Dropped;
            hold.Probe.Holds.Remove(hold);
            _holdByFlow.Remove(hold.Flow);
            return true;
        }
    }

    /// <summary>
    /// A SYN/ACK passed through (not for a flow of ours). When it answers a probe this proxy passed, learn from it
    /// what the prober learns — but only facts that make this proxy pass: whether it should act itself is its own
    /// probe's business, since another prober's answer says nothing about proxies between the two (spec §7.6). It
    /// counts only if it acknowledges the probe's ISN + 1, and only the first that does; the fact it gives lives
    /// <see cref="CapabilityCacheOptions.ObservedTtl"/> and is written only where no own fact is.
    /// </summary>
    public void OnSynAckObserved(in SynAckObservation synAck)
    {
        if (!IsExplicit)
        {
            return;
        }

        lock (_lock)
        {
            var flow = synAck.Flow;
            if (!_observedProbes.TryGetValue(flow, out var probe))
            {
                return;
            }

            if (_time.GetTimestamp() >= probe.ExpiresAt)
            {
                _observedProbes.Remove(flow);
                return;
            }

            if (synAck.AckNumber != unchecked(probe.Isn + 1))
            {
                // Not an answer to that probe (a forgery, or another incarnation of the flow): it is not the first either.
                return;
            }

            _observedProbes.Remove(flow);
            var destination = flow.Responder;
            if (Cache.TryPeek(destination, out var known) && known.State != CapabilityState.ProbedByOther)
            {
                return;
            }

            if (synAck.Signal is { Kind: SignalKind.Defer } defer)
            {
                Cache.Set(destination, new CapabilityEntry(CapabilityState.ProxyBeyond, defer.ProxyId, CapabilitySource.Observed));
            }
            else if (IsDowngrade && synAck.MpCapable)
            {
                Cache.Set(destination, new CapabilityEntry(CapabilityState.MptcpCapable, 0, CapabilitySource.Observed));
            }
            else if (!IsDowngrade && !synAck.MpCapable)
            {
                Cache.Set(destination, new CapabilityEntry(CapabilityState.TcpOnly, 0, CapabilitySource.Observed));
            }
        }
    }

    /// <summary>
    /// Takes a connection slot for an accepted connection: an intercepted one when its listener accepts it, and the
    /// host-configured mode's SOCKS/Convert connections (same limit). False when at the limit.
    /// </summary>
    public bool TryAdmit()
    {
        lock (_lock)
        {
            if (_active >= _options.MaxConnections)
            {
                return false;
            }

            _active++;
            return true;
        }
    }

    /// <summary>
    /// The upstream leg of a connection this proxy intercepted could not be opened (spec §10.6): what the cache says
    /// of <paramref name="destination"/> may be stale (the server moved, or changed), so its entry goes and the next
    /// SYN toward it probes again. Returns whether there was an entry.
    /// </summary>
    public bool OnUpstreamFailed(in DestinationKey destination) => Cache.Remove(destination);

    /// <summary>A connection this proxy held has closed: its slot is free again.</summary>
    public void OnConnectionClosed()
    {
        lock (_lock)
        {
            if (_active > 0)
            {
                _active--;
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            foreach (var probe in _probes.Values)
            {
                probe.Timer?.Dispose();
            }
        }
    }

    private bool IsHeld(in FlowKey flow, out long holdId)
    {
        lock (_lock)
        {
            bool held = _holdByFlow.TryGetValue(flow, out var hold);
            holdId = held ? hold!.Id : 0;
            return held;
        }
    }

    private static SynDecision Pass(DecisionReason reason) => new() { Verdict = SynVerdict.Pass, Reason = reason };

    private static SynDecision DeferAtCapacity() => new() { Verdict = SynVerdict.Defer, Reason = DecisionReason.AtCapacity };

    private ProxySignal OwnSignal(SignalKind kind) => new(kind, _options.ProxyId, _options.Priority);

    /// <summary>
    /// A downgrade holder marks its TCP leg with Claim so no proxy beyond terminates it again (spec §7.3.3); an
    /// upgrade holder marks its MPTCP leg with Upgrade (§7.3.2), which a downgrade proxy beyond may still terminate.
    /// </summary>
    private ProxySignal? UpstreamMark() =>
        IsExplicit ? OwnSignal(IsDowngrade ? SignalKind.Claim : SignalKind.Upgrade) : null;

    private SynDecision OnOriginSyn(in SynObservation syn)
    {
        lock (_lock)
        {
            if (Cache.TryGet(syn.Destination, out var entry, out var expired))
            {
                switch (entry.State)
                {
                    case CapabilityState.ProbedByOther when entry.IngressInterface == syn.IngressInterface:
                        return Pass(DecisionReason.ProbedByOther);
                    case CapabilityState.ProbedByOther:
                        // Another proxy's probe came in on another interface: this SYN's path did not cross that prober.
                        break;
                    case CapabilityState.Unresolved:
                        return Pass(DecisionReason.ProbeFailedRecently);
                    case CapabilityState.ProxyBeyond:
                        return Pass(DecisionReason.ProxyBeyond);
                    case CapabilityState.MptcpCapable:
                        return IsDowngrade ? Pass(DecisionReason.ServerSpeaksMptcp) : InterceptLocked(DecisionReason.ServerSpeaksMptcp);
                    case CapabilityState.TcpOnly:
                        return IsDowngrade ? InterceptLocked(DecisionReason.ServerTcpOnly) : Pass(DecisionReason.ServerTcpOnly);
                }
            }

            if (_active >= _options.MaxConnections)
            {
                return DeferAtCapacity();
            }

            return HoldLocked(syn, HoldKind.Origin, expired);
        }
    }

    private SynDecision OnForeignProbe(in SynObservation syn, ProxySignal prober)
    {
        lock (_lock)
        {
            var destination = syn.Destination;
            if (!Outranks(_options.Policy, _options.Priority, prober.Priority))
            {
                ObserveProbeLocked(syn);
                return Pass(DecisionReason.NotSelected);
            }

            if (_active >= _options.MaxConnections)
            {
                ObserveProbeLocked(syn);
                return DeferAtCapacity();
            }

            if (Cache.TryGet(destination, out var entry, out var expired))
            {
                switch (entry.State)
                {
                    case CapabilityState.TcpOnly when IsDowngrade:
                    case CapabilityState.MptcpCapable when !IsDowngrade:
                        // This proxy would act: the prober defers to it and releases its SYN untouched.
                        return new SynDecision
                        {
                            Verdict = SynVerdict.AnswerProbe,
                            Reason = IsDowngrade ? DecisionReason.ServerTcpOnly : DecisionReason.ServerSpeaksMptcp,
                            SynAckSignal = OwnSignal(SignalKind.Defer),
                        };
                    case CapabilityState.TcpOnly:
                    case CapabilityState.MptcpCapable:
                        ObserveProbeLocked(syn);
                        return Pass(IsDowngrade ? DecisionReason.ServerSpeaksMptcp : DecisionReason.ServerTcpOnly);
                    case CapabilityState.ProxyBeyond:
                        // That proxy outranked this one, so under the same policy it outranks the prober too.
                        ObserveProbeLocked(syn);
                        return Pass(DecisionReason.ProxyBeyond);
                    case CapabilityState.Unresolved:
                        return Pass(DecisionReason.ProbeFailedRecently);
                    case CapabilityState.ProbedByOther:
                        break;
                }
            }

            return HoldLocked(syn, HoldKind.ForeignProbe, expired);
        }
    }

    private void ObserveProbeLocked(in SynObservation probe)
    {
        var flow = probe.Flow;
        var destination = flow.Responder;
        if (!Cache.TryPeek(destination, out _))
        {
            Cache.Set(destination, new CapabilityEntry(CapabilityState.ProbedByOther, 0, CapabilitySource.Observed, probe.IngressInterface));
        }

        long now = _time.GetTimestamp();
        if (_observedProbes.Count >= MaxObservedProbes)
        {
            foreach (var (key, observed) in _observedProbes)
            {
                if (observed.ExpiresAt <= now)
                {
                    _observedProbes.Remove(key);
                }
            }

            if (_observedProbes.Count >= MaxObservedProbes)
            {
                return;
            }
        }

        _observedProbes[flow] = new ObservedProbe(now + (long)(_options.ProbedByOtherTtl.TotalSeconds * _time.TimestampFrequency), probe.Isn);
    }

    private SynDecision InterceptLocked(DecisionReason reason)
    {
        if (_active >= _options.MaxConnections)
        {
            return DeferAtCapacity();
        }

        // No slot yet: the engine takes it when the connection is accepted (TryAdmit), so spoofed SYNs hold none.
        return new SynDecision
        {
            Verdict = SynVerdict.Intercept,
            Reason = reason,
            SynAckSignal = IsExplicit ? OwnSignal(SignalKind.Claim) : null,
            Upstream = IsDowngrade ? UpstreamLeg.Tcp : UpstreamLeg.Mptcp,
            UpstreamSignal = UpstreamMark(),
        };
    }

    /// <summary><paramref name="previous"/>: the destination's entry that just expired, which a probe started here re-checks.</summary>
    private SynDecision HoldLocked(in SynObservation syn, HoldKind kind, in CapabilityEntry previous)
    {
        var flow = syn.Flow;
        if (_holdByFlow.TryGetValue(flow, out var held))
        {
            // A retransmission raced the first copy past the check in OnSyn.
            return new SynDecision { Verdict = SynVerdict.Duplicate, Reason = DecisionReason.AlreadyHeld, HoldId = held.Id };
        }

        var destination = flow.Responder;
        bool start = false;
        if (_probeByDestination.TryGetValue(destination, out var probe))
        {
            if (probe.Holds.Count >= _options.MaxHeldPerProbe)
            {
                return Pass(DecisionReason.HoldLimit);
            }
        }
        else
        {
            if (_probes.Count >= _options.MaxProbesInFlight)
            {
                return Pass(DecisionReason.HoldLimit);
            }

            // Only a SYN that starts a probe is rate-limited: joining one in flight costs nothing on the wire.
            var source = flow.Initiator.ToPrefix(SourcePrefixBitsV4, SourcePrefixBitsV6);
            if (!_sourceRate.HasToken(source) || !_destinationRate.HasToken(destination))
            {
                _probesRateLimited++;
                return Pass(DecisionReason.ProbeRateLimited);
            }

            if (_globalRate is not null && !_globalRate.HasToken(default))
            {
                _probesRateLimited++;
                _probesRateCapped++;
                bool reached = !_rateCapped;
                _rateCapped = true;
                return Pass(DecisionReason.ProbeRateCapped) with { RateCapReached = reached };
            }

            _sourceRate.Take(source);
            _destinationRate.Take(destination);
            _globalRate?.Take(default);
            _rateCapped = false;

            start = true;
            probe = new Probe(++_nextId, destination, _time.GetTimestamp()) { Previous = previous };
            _probeByDestination.Add(destination, probe);
            _probes.Add(probe.Id, probe);
            probe.Timer = _time.CreateTimer(static state => ((ProbeTimeoutState)state!).Fire(), new ProbeTimeoutState(this, probe.Id), _options.ProbeDeadline, Timeout.InfiniteTimeSpan);
        }

        var hold = new HeldSyn(++_nextId, flow, kind, probe);
        probe.Holds.Add(hold);
        _holds.Add(hold.Id, hold);
        _holdByFlow[flow] = hold;
        var remaining = _options.ProbeDeadline - _time.GetElapsedTime(probe.StartedAt);
        return new SynDecision
        {
            Verdict = SynVerdict.HoldAndProbe,
            Reason = start ? DecisionReason.CacheMiss : DecisionReason.ProbeInFlight,
            HoldId = hold.Id,
            ProbeId = probe.Id,
            StartProbe = start,
            ProbeTimeout = remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero,
            ProbeSignal = IsExplicit ? OwnSignal(IsDowngrade ? SignalKind.Probe : SignalKind.Upgrade) : null,
        };
    }

    private void Finish(long probeId, ProbeState how, ProbeResult result, byte beyond)
    {
        HoldResolution[] resolutions;
        bool adopted = false;
        lock (_lock)
        {
            if (!_probes.Remove(probeId, out var probe) || probe.State != ProbeState.InFlight)
            {
                return;
            }

            probe.State = how;
            probe.Timer?.Dispose();
            _probeByDestination.Remove(probe.Destination);
            RecordLocked(probe, result, beyond);

            var reason = how switch
            {
                ProbeState.TimedOut => DecisionReason.ProbeTimedOut,
                ProbeState.Reset => DecisionReason.ProbeReset,
                _ => DecisionReason.ProbeAnswered,
            };

            resolutions = new HoldResolution[probe.Holds.Count];
            for (int i = 0; i < probe.Holds.Count; i++)
            {
                var hold = probe.Holds[i];
                hold.State = HoldState.Resolved;
                _holds.Remove(hold.Id);
                _holdByFlow.Remove(hold.Flow);
                resolutions[i] = ResolveLocked(hold, result, beyond, reason, ref adopted);
            }
        }

        _sink.OnProbeResolved(probeId, adopted, resolutions);
    }

    private void RecordLocked(Probe probe, ProbeResult result, byte beyond)
    {
        var state = result switch
        {
            ProbeResult.ProxyBeyond => CapabilityState.ProxyBeyond,
            ProbeResult.Failed => CapabilityState.Unresolved,
            ProbeResult.Act => IsDowngrade ? CapabilityState.TcpOnly : CapabilityState.MptcpCapable,
            _ => IsDowngrade ? CapabilityState.MptcpCapable : CapabilityState.TcpOnly,
        };
        Cache.SetOwnProbeResult(probe.Destination, state, beyond, probe.Previous);
    }

    private HoldResolution ResolveLocked(HeldSyn hold, ProbeResult result, byte beyond, DecisionReason reason, ref bool adopted)
    {
        var release = new HoldResolution { HoldId = hold.Id, ProbeId = hold.Probe.Id, Outcome = HoldOutcome.Release, Reason = reason };
        switch (result)
        {
            case ProbeResult.Failed:
                return release;
            case ProbeResult.ProxyBeyond:
                // A held probe learns the same: relay the defer instead of sending the prober on a second trip.
                return hold.Kind == HoldKind.ForeignProbe
                    ? release with { Outcome = HoldOutcome.AnswerProbe, SynAckSignal = new ProxySignal(SignalKind.Defer, beyond, 0) }
                    : release with { Reason = DecisionReason.ProxyBeyond };
            case ProbeResult.NoAction:
                return release with { Reason = IsDowngrade ? DecisionReason.ServerSpeaksMptcp : DecisionReason.ServerTcpOnly };
        }

        if (_active >= _options.MaxConnections)
        {
            return release with { Reason = DecisionReason.AtCapacity };
        }

        if (hold.Kind == HoldKind.ForeignProbe)
        {
            return release with { Outcome = HoldOutcome.AnswerProbe, SynAckSignal = OwnSignal(SignalKind.Defer) };
        }

        bool useProbe = !adopted;
        adopted = true;
        return release with
        {
            Outcome = HoldOutcome.Intercept,
            SynAckSignal = IsExplicit ? OwnSignal(SignalKind.Claim) : null,
            Upstream = IsDowngrade ? UpstreamLeg.Tcp : UpstreamLeg.Mptcp,
            UpstreamIsProbe = useProbe,
            UpstreamSignal = UpstreamMark(),
        };
    }

    private sealed class Probe(long id, DestinationKey destination, long startedAt)
    {
        public long Id { get; } = id;

        public DestinationKey Destination { get; } = destination;

        public long StartedAt { get; } = startedAt;

        public ProbeState State { get; set; } = ProbeState.InFlight;

        /// <summary>The destination's entry that had just expired when this probe started: the fact it re-checks (spec §6).</summary>
        public CapabilityEntry Previous { get; init; }

        public ITimer? Timer { get; set; }

        public List<HeldSyn> Holds { get; } = [];
    }

    private sealed class HeldSyn(long id, FlowKey flow, HoldKind kind, Probe probe)
    {
        public long Id { get; } = id;

        public FlowKey Flow { get; } = flow;

        public HoldKind Kind { get; } = kind;

        public Probe Probe { get; } = probe;

        public HoldState State { get; set; } = HoldState.Held;
    }

    /// <summary>A probe this proxy passed, whose answer it watches for until <see cref="ExpiresAt"/> (spec §7.6).</summary>
    private readonly record struct ObservedProbe(long ExpiresAt, uint Isn);

    private sealed class ProbeTimeoutState(ProxyNegotiator owner, long probeId)
    {
        public void Fire() => owner.OnProbeDeadline(probeId);
    }
}
