using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Engine.Flows;
using ProxySelection.Engine.Hook;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Interception.Rules;
using ProxySelection.Negotiation;
using ProxySelection.Relay;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Engine;

/// <summary>
/// One proxy, wired end to end inside the current network namespace (design §5 data flow): the interception ruleset,
/// the packet hook (SYN → Wire parse → negotiation → verdict through <see cref="IPacketVerdicts"/>), probes, the egress
/// hook that adds MP_PROXY to the proxy's own SYNs and SYN/ACKs, and the relay behind the transparent listeners. Each
/// connection it holds or intercepts is one <see cref="InterceptedFlow"/> in <see cref="_flows"/>.
/// </summary>
/// <remarks>
/// The packet hook fails open: any exception in the per-packet path accepts the packet untouched and is counted, and
/// the queue is bound with fail-open and installed with <c>--queue-bypass</c>, so traffic passes when the daemon is gone.
/// </remarks>
public sealed partial class ProxyEngine : INegotiationSink, IAsyncDisposable
{
    private readonly ProxyEngineOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly EngineEvents _events;
    // Rebuilt once at start when the kernel signer opens (KernelSigned, explicit-mode fast path); read-only after.
    private InterceptionRuleset _ruleset;
    private InterceptionRulesetOptions _rulesetOptions;
    private readonly ProxyNegotiator _negotiator;
    private readonly EgressSigner _signer;
    private readonly MarkingSocketFactory _markedSockets;
    private readonly MarkingSocketFactory _listenerSockets;
    private readonly MarkingSocketFactory _upstreamSockets;
    private Kernel.KernelSigning? _kernelSigning;
    private int _refreshTicks;
    private readonly Lock _rstGateLock = new();
    private bool _rstGateOpen;
    private readonly UpstreamConnector _connector;
    private readonly RelayServer _relay;
    private readonly ListenerRegistry _listeners;
    private readonly Action<ListenerKey> _ensureListener;
    private Kernel.KernelCacheMirror? _kernelMirror;
    private readonly IProbeConnector _probeConnector;
    private readonly ProxyTelemetry _telemetry;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _holdLock = new();
    private readonly FlowTable _flows;
    private readonly ParkedJoins _parkedJoins;
    private readonly DomainEdge _edge;

    // The per-packet and per-destination warnings a flood could repeat (a failed probe socket under fd exhaustion, a
    // verdict or hook failure, a cache entry removed): bounded, with a count of what was left out.
    private readonly LogBudget _warningBudget;

    // Held SYNs in arrival order, for the overdue check (guarded by _holdLock; resolved ones are skipped when they come up).
    private readonly Queue<(long HoldId, long ProbeId, long HeldAt)> _holdOrder = new();

    // The oldest entry's HeldAt (long.MaxValue when none): the per-packet overdue check reads it without the lock.
    private long _oldestHeldAt = long.MaxValue;

    // Ingress packets so far (written by the hook thread only): what the idle trim reads to see a flood end.
    private long _ingressPackets;
    private readonly IdleTrim _idleTrim;

    // The fronts' connection tasks (ProxyEngine.Socks.cs); intercepted connections are awaited through _flows.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Task, byte> _connections = new();
    private IPacketVerdicts? _verdicts;
    private IPacketVerdicts? _egressVerdicts;
    private NfqueueHook? _hook;
    private NfqueueHook? _egressHook;
    private HoldClock? _holdClock;
    // When StartAsync began, on _time: the run the stop line's GC pause share is a share of.
    private long _startedAt;
    private int _trimming;
    private int _followingInterfaces;
    private int _stopped;

    public ProxyEngine(ProxyEngineOptions options, TimeProvider time, Action<string> log)
        : this(options, time, new LineLogger(log ?? throw new ArgumentNullException(nameof(log))))
    {
    }

    public ProxyEngine(ProxyEngineOptions options, TimeProvider time, ILogger log)
        : this(options, time, log, verdicts: null, probes: null, ensureListener: null)
    {
    }

    /// <summary>
    /// The engine with its kernel edges replaced (unit tests, no root): verdicts go to <paramref name="verdicts"/>
    /// instead of NFQUEUE, probes through <paramref name="probes"/>, and <paramref name="ensureListener"/> stands for
    /// opening the transparent listener.
    /// </summary>
    internal ProxyEngine(ProxyEngineOptions options, TimeProvider time, ILogger log, IPacketVerdicts? verdicts, IProbeConnector? probes,
        Action<ListenerKey>? ensureListener)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(log);
        var errors = options.Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException("Invalid proxy options: " + string.Join(" ", errors), nameof(options));
        }

        _options = options;
        _time = time;
        _log = log;
        _events = new EngineEvents(options.Events, time);
        SocketRuntime.UseInlineCompletions(); // before any socket of this process: read once by .NET's socket engine
        _rulesetOptions = RulesetOptions(options);
        _ruleset = new InterceptionRuleset(_rulesetOptions);
        _negotiator = new ProxyNegotiator(options.Negotiation, time, this);
        _telemetry = new ProxyTelemetry(options, time, log, () => _negotiator.ActiveConnections, () => (_hook?.ReceiveOverruns ?? 0) + (_egressHook?.ReceiveOverruns ?? 0));
        Counters = new ProxyCounters(_telemetry);
        _signer = new EgressSigner(options.KeyRing);
        _flows = new FlowTable(time, options.AdoptionTimeout, new NegotiatorSlots(_negotiator), _signer, OnFlowExpired);
        _parkedJoins = new ParkedJoins(time, OnParkedJoinTimedOut);
        _edge = new DomainEdge(options.EdgeInterfaces);
        // Listeners and probes carry the egress mark: their SYN/ACKs and SYNs pass the egress queue to get MP_PROXY. With the
        // kernel signer, listeners and upstream legs take its marks instead (StartAsync); probes stay on the queue.
        _markedSockets = new MarkingSocketFactory(_rulesetOptions.EgressMark);
        _listenerSockets = new MarkingSocketFactory(_rulesetOptions.EgressMark);
        _upstreamSockets = new MarkingSocketFactory(_rulesetOptions.EgressMark);
        _probeConnector = probes ?? new SocketProbeConnector(_markedSockets);
        _verdicts = verdicts;
        _egressVerdicts = verdicts;
        // Explicit mode: upstream legs carry the mark too, so their SYNs get the holder's Claim or Upgrade (spec §7.3.3).
        // Host-configured alone has no egress queue: its legs go unmarked.
        _connector = new UpstreamConnector(new UpstreamConnectorOptions(),
            options.Negotiation.Mode == SignalingMode.Explicit && options.Transparent ? _upstreamSockets : SocketFactory.Default, time);
        bool downgrade = options.Negotiation.Role == ProxyRole.Downgrade;
        var relayOptions = new RelayOptions
        {
            ClientProtocol = downgrade ? TransportProtocol.Mptcp : TransportProtocol.Tcp,
            UpstreamProtocol = downgrade ? TransportProtocol.Tcp : TransportProtocol.Mptcp,
            MaxConnections = options.Negotiation.MaxConnections,
            IdleTimeout = options.IdleTimeout,
        };
        _relay = new RelayServer(relayOptions, new ListenerOptions(), SocketFactory.Default, _connector, time, static _ => { });
        _listeners = new ListenerRegistry(_listenerSockets, new ListenerOptions(), OnAcceptedAsync);
        _ensureListener = ensureListener ?? (key => _listeners.Ensure(key));
        _frontRelay = CreateFrontRelay(options, _connector, time);
        _localAddresses = new Fronts.LocalAddresses(time);
        _frontLogBudget = new LogBudget(time);
        _warningBudget = new LogBudget(time);
        _idleTrim = new IdleTrim(time);
        ClientProtocol = relayOptions.ClientProtocol;
    }

    public ProxyCounters Counters { get; }

    public ProxyNegotiator Negotiator => _negotiator;

    public TransportProtocol ClientProtocol { get; }

    /// <summary>The flows the engine holds or intercepted now (tests, status).</summary>
    internal FlowTable Flows => _flows;

    /// <summary>The ruleset options for <paramref name="options"/>: what <c>proxysel cleanup</c> removes.</summary>
    public static InterceptionRulesetOptions RulesetOptions(ProxyEngineOptions options) => RulesetOptions(options, kernelSigned: false);

    /// <summary>As <see cref="RulesetOptions(ProxyEngineOptions)"/>, with the kernel signer open (<paramref name="kernelSigned"/>):
    /// the listener's SYN/ACKs leave the egress queue, and explicit mode may intercept in the kernel. Without
    /// <paramref name="ipset"/> (the tool is missing) there is no fast path.</summary>
    public static InterceptionRulesetOptions RulesetOptions(ProxyEngineOptions options, bool kernelSigned, bool ipset = true, string? joinMatch = null,
        string? foreignJoinMatch = null, string? rstGate = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new InterceptionRulesetOptions
        {
            ChainPrefix = options.ChainPrefix,
            QueueNumber = options.QueueNumber,
            EgressQueueNumber = options.EgressQueueNumber,
            Ports = options.Ports,
            EdgeInterfaces = options.EdgeInterfaces,
            // SYN/ACKs carry the signals a P-aware proxy reads: a claim answering its probe, what passing probes learn.
            QueueSynAcks = options.Negotiation.Mode == SignalingMode.Explicit,
            // A downgrading proxy passes every SYN without an MPTCP option (ProxyNegotiator.OnSyn: NotMptcp): those stay
            // in the kernel, so plain TCP through it never crosses the queue (issue 7: pass-through connection rate).
            QueueOnlyMptcpSyns = options.Negotiation.Role == ProxyRole.Downgrade,
            // Nor does it learn anything from a SYN/ACK without one (OnSynAck: the signal and MP_CAPABLE are MPTCP options,
            // a probe's answer is read from its socket): plain TCP's SYN/ACK stays in the kernel too.
            QueueOnlyMptcpSynAcks = options.Negotiation.Role == ProxyRole.Downgrade,
            // A SYN-cookie ACK reaches the listener as long as the engine would still await its accept.
            HandshakeSetSeconds = (int)Math.Ceiling(options.AdoptionTimeout.TotalSeconds),
            FastPathPass = options.KernelFastPath && ipset && options.Negotiation.Role == ProxyRole.Downgrade,
            FastPathIntercept = options.KernelFastPath && ipset && options.Negotiation.Role == ProxyRole.Downgrade
                && (options.Negotiation.Mode == SignalingMode.Implicit || kernelSigned),
            KernelSigned = kernelSigned,
            KernelJoinMatch = kernelSigned ? joinMatch : null,
            KernelForeignJoinMatch = kernelSigned ? foreignJoinMatch : null,
            KernelRstGate = kernelSigned ? rstGate : null,
        };
    }

    /// <summary>Binds the queue first (a SYN queued before that would wait for nobody), then installs the rules.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _startedAt = _time.GetTimestamp();
        try
        {
            _telemetry.Start();
            if (_options.Warmup)
            {
                // Before the queue is bound: the first SYN must find the path compiled (a cold first probe timed out).
                var (methods, elapsed) = Warmup.Run();
                ProxyEngineLog.WarmedUp(_log, methods, elapsed.TotalMilliseconds);
                if (_options.Transparent)
                {
                    // What PrepareMethod cannot reach (generic instantiations, call-site stubs, the first socket): one SYN end to end.
                    if (await RehearseAsync(_options, _time, cancellationToken).ConfigureAwait(false) is { } rehearsed)
                    {
                        ProxyEngineLog.Rehearsed(_log, rehearsed.TotalMilliseconds);
                    }
                    else
                    {
                        ProxyEngineLog.RehearsalIncomplete(_log);
                    }
                }
            }

            if (_options.Transparent)
            {
                // The proxy's own SYNs (probes among them) on a queue and thread of their own: behind a burst of client SYNs
                // a probe's SYN waited past its deadline and a probe the server answered at once was declared timed out.
                // Before the hook threads start: they, and the pool threads after them, inherit the nice value.
                int niced = _options.RaisedScheduling ? ThreadScheduling.RaiseProcess(HoldClock.Nice) : 0;
                OpenKernelSigning();
                _hook = NfqueueHook.Open(_options.QueueNumber, _log, (uint)(_options.MaxHeldSyns + _options.QueueWaitRoom), MayWarn);
                _verdicts = _hook;
                _egressHook = NfqueueHook.Open(_options.EgressQueueNumber, _log, (uint)(_options.MaxHeldSyns + _options.QueueWaitRoom), MayWarn);
                _egressVerdicts = _egressHook;
                _hook.Start(OnPacket, _options.RaisedScheduling);
                _egressHook.Start(OnPacket, _options.RaisedScheduling);
                // The hook thread releases overdue holds as packets arrive; this thread does between them, on time.
                _holdClock = HoldClock.Start(OnHoldClockTick, HoldClockPeriod, _options.RaisedScheduling);
                ProxyEngineLog.Scheduling(_log, niced, HoldClock.Nice,
                    await _holdClock.Schedule.WaitAsync(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false),
                    await _hook.Schedule.WaitAsync(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false));
                await _ruleset.ApplyAsync(cancellationToken).ConfigureAwait(false);
                if (_rulesetOptions.FastPath)
                {
                    _kernelMirror = new Kernel.KernelCacheMirror(_rulesetOptions, _negotiator.Cache, new ProcessCommandRunner(), _log, Counters, _time);
                    _negotiator.Cache.Observer = _kernelMirror;
                    _kernelMirror.Resync();
                }
            }

            // Host-configured alone: no queue, no rules; the SOCKS listener is the only way in.
            StartFronts();
        }
        catch
        {
            await DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// With <see cref="ProxyEngineOptions.KernelSigning"/> in explicit mode: the kernel signs the listener's SYN/ACKs and the
    /// upstream legs' SYNs. Before any listener or leg exists (the process moves to the signer's cgroup, and a socket's
    /// cgroup is the one it was made in). A kernel that refuses costs nothing but the queue trips: one line says why.
    /// </summary>
    private void OpenKernelSigning()
    {
        if ((_options.KernelFastPath || _options.KernelSigning) && !ToolOnPath("ipset"))
        {
            // Both keep their kernel state in ipsets (the fast path's destinations, the re-sign set): without the tool the
            // queue decides and signs everything, as it always could.
            ProxyEngineLog.NoIpsetForKernelPaths(_log);
            _rulesetOptions = RulesetOptions(_options, kernelSigned: false, ipset: false);
            _ruleset = new InterceptionRuleset(_rulesetOptions);
            return;
        }

        if (!_options.KernelSigning || _options.Negotiation.Mode != SignalingMode.Explicit)
        {
            if (_options.KernelJoins)
            {
                // The tokens are learnt by the kernel signer's egress programs.
                ProxyEngineLog.KernelJoinsUnavailable(_log, "needs Proxy:KernelSigning in explicit mode");
            }

            return;
        }

        string name = Kernel.KernelSigningNames.ForProcess(_options.ChainPrefix, Environment.ProcessId);
        _kernelSigning = Kernel.KernelSigning.TryOpen(name, _options.Negotiation, _options.KeyRing, out string? reason);
        if (_kernelSigning is null)
        {
            ProxyEngineLog.KernelSigningUnavailable(_log, reason ?? "unknown");
            return;
        }

        if (_options.KernelJoins && _kernelSigning.TryEnableJoins(name) is { } refused)
        {
            ProxyEngineLog.KernelJoinsUnavailable(_log, refused);
        }

        if (_kernelSigning.AttachEgress(_options.EdgeInterfaces) is { } failed)
        {
            _kernelSigning.Dispose();
            _kernelSigning = null;
            ProxyEngineLog.KernelSigningUnavailable(_log, failed);
            return;
        }

        if (_options.EdgeInterfaces.Count == 0)
        {
            // With edges, a SYN/ACK leaving by one is not learnt: a join missing from the map could be this proxy's.
            _kernelSigning.OpenForeignJoins();
        }

        _listenerSockets.Mark = _kernelSigning.ListenerMark;
        _upstreamSockets.Mark = _kernelSigning.UpstreamMark;
        _rulesetOptions = RulesetOptions(_options, kernelSigned: true, joinMatch: _kernelSigning.JoinMatchPath,
            foreignJoinMatch: _kernelSigning.ForeignJoinMatchPath, rstGate: _kernelSigning.RstGatePath);
        _ruleset = new InterceptionRuleset(_rulesetOptions);
        ProxyEngineLog.KernelSigningOn(_log, _kernelSigning.CgroupPath);
        if (_kernelSigning.JoinMatchPath is { } joins)
        {
            ProxyEngineLog.KernelJoinsOn(_log, joins);
        }

        if (_kernelSigning.ForeignJoinMatchPath is not null)
        {
            ProxyEngineLog.KernelForeignJoinsOpen(_log, "the map holds every token this proxy handed out");
        }
    }

    /// <summary>An interface that comes up after the start (an LTE or PPP link) gets the egress relabelling within a second.</summary>
    private void FollowInterfaces(Kernel.KernelSigning signing)
    {
        try
        {
            var change = signing.SyncEgress(_options.EdgeInterfaces);
            foreach (string name in change.Attached)
            {
                ProxyEngineLog.KernelRelabelAttached(_log, name);
            }

            foreach (string reason in change.Failed)
            {
                ProxyEngineLog.KernelRelabelRefused(_log, reason);
            }

            if (signing.CheckJoinMap(_negotiator.Tokens) is { } joins)
            {
                if (joins.Open)
                {
                    ProxyEngineLog.KernelForeignJoinsOpen(_log, joins.Reason);
                }
                else
                {
                    ProxyEngineLog.KernelForeignJoinsClosed(_log, joins.Reason);
                }
            }
        }
        catch (ObjectDisposedException)
        {
            // The engine stopped under us: nothing left to follow.
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Counters.AddHookFailure();
        }
        finally
        {
            Volatile.Write(ref _followingInterfaces, 0);
        }
    }

    private static bool ToolOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Any(directory => File.Exists(Path.Combine(directory, name)));

    private void ReadKernelSigned()
    {
        if (_kernelSigning is { } signing)
        {
            var counts = signing.ReadCounts();
            Counters.SetKernelSigned(counts.SynsSigned, counts.SynAcksSigned, counts.NoRoom);
            Counters.SetKernelJoins(counts.JoinsTaken);
            Counters.SetKernelJoinsPassed(counts.JoinsPassed);
        }
    }

    private IPacketVerdicts Verdicts => _verdicts ?? throw new InvalidOperationException("The packet hook is not bound.");

    /// <summary>Verdicts on the egress queue's packets (packet ids are per queue).</summary>
    private IPacketVerdicts EgressVerdicts => _egressVerdicts ?? throw new InvalidOperationException("The egress hook is not bound.");

    /// <summary>One queued packet: the egress hook's (own SYNs and SYN/ACKs) or the ingress hook's.</summary>
    internal void OnPacket(in QueuedPacket packet)
    {
        try
        {
            if (packet.Hook == NetfilterHook.PostRouting)
            {
                OnEgress(packet);
            }
            else
            {
                _ingressPackets++;
                ReleaseOverdueHolds();
                OnSyn(packet);
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Counters.AddHookFailure();
            if (MayWarn())
            {
                ProxyEngineLog.HookFailed(_log, e.GetType().Name, e.Message);
            }
            TryAccept(packet.PacketId, packet.Hook == NetfilterHook.PostRouting ? _egressVerdicts : _verdicts);
        }
    }

    private void OnEgress(in QueuedPacket packet)
    {
        if (_edge.IsEdge(packet.OutDeviceIndex))
        {
            // Leaving the operator's domain (spec §7.12): no MP_PROXY goes out, whoever added it; nothing is signed.
            if (DomainEdge.Strip(packet.Payload, out var stripped, out int strippedLength) > 0)
            {
                Counters.AddEdgeStripped();
                EgressVerdicts.AcceptWithPayload(packet.PacketId, stripped.AsSpan(0, strippedLength));
            }
            else
            {
                EgressVerdicts.Accept(packet.PacketId);
            }

            return;
        }

        bool parsed = TcpPacket.TryParse(packet.Payload, out var own) == WireError.None;
        if (parsed)
        {
            OnOwnSyn(own);
        }

        ReadOnlySpan<byte> payload = packet.Payload;
        if (_kernelSigning is not null && parsed && (own.Tcp.Flags & (TcpFlags.Syn | TcpFlags.Ack)) == (TcpFlags.Syn | TcpFlags.Ack) && packet.InDeviceIndex == 0
            && DomainEdge.Strip(payload, out var unsigned, out int unsignedLength) > 0)
        {
            // A SYN/ACK the kernel signed with the Claim whose flow asked for something else (a Defer: the re-sign set):
            // the engine's option replaces the kernel's. If none is due any more, the kernel's goes out (below).
            payload = unsigned.AsSpan(0, unsignedLength);
        }

        var rewrite = _signer.Rewrite(payload, packet.InDeviceIndex, out var rewritten, out int length);
        switch (rewrite)
        {
            case EgressRewrite.SynAck:
                Counters.AddClaim();
                break;
            case EgressRewrite.Probe:
                Counters.AddProbeSignal();
                break;
            case EgressRewrite.Upstream:
                Counters.AddUpstreamSignal();
                break;
            case EgressRewrite.NoRoom:
                Counters.AddEgressNoRoom();
                Counters.AddEgressUntouched();
                break;
            default:
                Counters.AddEgressUntouched();
                break;
        }

        if (rewrite is EgressRewrite.Untouched or EgressRewrite.NoRoom or EgressRewrite.Forwarded)
        {
            EgressVerdicts.Accept(packet.PacketId);
            return;
        }

        EgressVerdicts.AcceptWithPayload(packet.PacketId, rewritten.AsSpan(0, length));
    }

    private void OnSyn(in QueuedPacket packet)
    {
        bool parsedOk = TcpPacket.TryParse(packet.Payload, out var parsed) == WireError.None;
        if (parsedOk && (parsed.Tcp.Flags & (TcpFlags.Syn | TcpFlags.Rst)) == TcpFlags.Rst)
        {
            OnRst(parsed, packet.PacketId);
            return;
        }

        if (!parsedOk || (parsed.Tcp.Flags & (TcpFlags.Syn | TcpFlags.Rst)) != TcpFlags.Syn)
        {
            Counters.AddSyn();
            Counters.AddPassed();
            Verdicts.Accept(packet.PacketId);
            return;
        }

        if ((parsed.Tcp.Flags & TcpFlags.Ack) != 0)
        {
            Counters.AddSynAck();
            OnSynAck(parsed);
            Verdicts.Accept(packet.PacketId);
            return;
        }

        Counters.AddSyn();

        var ip = parsed.Ip;
        var tcp = parsed.Tcp;
        var kind = SynOptions.Classify(tcp.Options, out uint token, out string? untouched);
        var flow = new FlowKey(new DestinationKey(ip.SourceAddress, tcp.SourcePort), new DestinationKey(ip.DestinationAddress, tcp.DestinationPort));
        var endpoints = new FlowEndPoints(flow.Initiator.ToEndPoint(), flow.Responder.ToEndPoint());
        uint packetId = packet.PacketId;
        uint mark = packet.Mark;
        if (untouched is not null)
        {
            // TCP-MD5/TCP-AO sign the segment (a proxy cannot terminate it), and MPTCP v0 is not this spec's: the SYN
            // passes as it came, never held, probed or intercepted.
            SynDecided(endpoints, kind, token, nameof(SynVerdict.Pass), untouched);
            Counters.AddPassed();
            Verdicts.Accept(packetId);
            return;
        }

        if (kind != SynKind.MpJoin && _flows.TryGet(endpoints, out var known) && known.State == FlowState.AwaitingAccept)
        {
            // A retransmission of a SYN already intercepted (its SYN/ACK was lost): same verdict, no second decision.
            SynDecided(endpoints, kind, token, nameof(SynVerdict.Intercept), "Retransmission");
            InterceptVerdict(packetId, mark, endpoints.Destination);
            return;
        }

        if (kind != SynKind.MpJoin && IsDraining)
        {
            // Draining: new connections are not claimed; joins still reach the negotiator, so a held connection keeps
            // adding subflows (its token is owned) until it ends.
            SynDecided(endpoints, kind, token, nameof(SynVerdict.Pass), "Draining");
            Counters.AddPassed();
            Verdicts.Accept(packetId);
            return;
        }

        ProxySignal? signal = null;
        if (_options.Negotiation.Mode == SignalingMode.Explicit)
        {
            var mpFlow = MpProxyFlow.ForSyn(ip.SourceAddress, ip.DestinationAddress, tcp.SourcePort, tcp.DestinationPort, tcp.SequenceNumber);
            signal = SignalCodec.Read(tcp.Options, _options.KeyRing, mpFlow, out _);
        }

        var observation = new SynObservation(flow, kind, signal, token) { Isn = tcp.SequenceNumber, IngressInterface = (int)packet.InDeviceIndex };
        var waited = QueueWait(packet.ReceivedAtMicroseconds);
        SynDecision decision;
        bool overload = false;
        lock (_holdLock)
        {
            // Under the lock: a probe that ends at once must find the held flow registered.
            decision = _negotiator.OnSyn(observation);
            if (decision.Verdict == SynVerdict.HoldAndProbe)
            {
                // Overload passes untouched (spec: never hold beyond the limit): too many held already, or this SYN
                // spent half the limit in the queue. A probe it would start is abandoned (below); one it joined goes on.
                overload = (_flows.HeldCount >= _options.MaxHeldSyns || waited >= _options.Negotiation.ProbeTimeout / 2)
                    && _negotiator.OnHeldSynReset(decision.HoldId);
                if (overload)
                {
                    decision = decision with { Verdict = SynVerdict.Pass, Reason = DecisionReason.HoldLimit };
                }
                else
                {
                    // A foreign probe's bytes are kept: answering it later rewrites them. The hold counts from the
                    // SYN's arrival in the kernel, not from when this thread got to it.
                    var bytes = signal is { Kind: SignalKind.Probe or SignalKind.Upgrade } ? packet.Payload.ToArray() : null;
                    long heldAt = _time.GetTimestamp() - (long)(waited.TotalSeconds * _time.TimestampFrequency);
                    _flows.Add(endpoints, new HeldPacket(packetId, mark, decision.HoldId, heldAt, bytes));
                    _holdOrder.Enqueue((decision.HoldId, decision.ProbeId, heldAt));
                    if (_holdOrder.Count == 1)
                    {
                        Volatile.Write(ref _oldestHeldAt, heldAt);
                    }
                }
            }

            // Under the lock too: a hold that joined a running probe may resolve on another thread as soon as the lock is
            // released, and HoldResolved must find its trace.
            _telemetry.OnSynDecision(endpoints, kind, decision);
        }

        // The accept registers the token before it stops awaiting, so one of the two is seen if the decision raced it.
        bool park = decision is { Verdict: SynVerdict.Pass, Reason: DecisionReason.JoinTokenForeign }
            && (_flows.AnyAwaitingAccept() || _negotiator.Tokens.Contains(token)
                || _kernelMirror?.InterceptsToward(endpoints.Destination) == true); // the kernel intercepts with no flow record
        SynDecided(endpoints, kind, token, park ? "Wait for the accept" : decision.Verdict.ToString(), decision.Reason.ToString());
        if (decision.RateCapReached)
        {
            ProbeRateCapReached();
        }

        if (overload)
        {
            Counters.AddOverloadPassed();
            // Its client reaches the server directly: a probe now would be a second connection the server accepts
            // for one client (issue 13's burst: 400 accepts for 200 clients). Later SYNs probe when there is room.
            if (decision.StartProbe && !_negotiator.AbandonProbe(decision.ProbeId))
            {
                StartProbe(decision.ProbeId, endpoints.Destination, decision.ProbeSignal);
            }
        }

        switch (decision.Verdict)
        {
            case SynVerdict.HoldAndProbe:
                Counters.AddHeld();
                SyncRstGate();
                if (decision.StartProbe)
                {
                    StartProbe(decision.ProbeId, endpoints.Destination, decision.ProbeSignal);
                }

                break;
            case SynVerdict.Intercept:
                Intercept(_flows.Add(endpoints), packetId, mark, decision.Reason, decision.SynAckSignal, probe: null, decision.UpstreamSignal);
                break;
            case SynVerdict.InterceptJoin:
                Counters.AddJoinIntercepted();
                InterceptVerdict(packetId, mark, endpoints.Destination);
                break;
            case SynVerdict.Pass when park:
                if (!_parkedJoins.TryPark(new ParkedJoin(packetId, mark, token, endpoints), _negotiator.Tokens.Contains))
                {
                    // Registered between the decision and now.
                    Counters.AddJoinIntercepted();
                    InterceptVerdict(packetId, mark, endpoints.Destination);
                }

                break;
            case SynVerdict.AnswerProbe:
                AnswerProbe(_flows.Add(endpoints), packet.Payload, packetId, mark, decision.SynAckSignal);
                break;
            case SynVerdict.Duplicate:
                // A copy of a SYN held here (spec §8.1): the held one gets the verdict; this one goes.
                Verdicts.Drop(packetId);
                break;
            case SynVerdict.Pass when kind == SynKind.MpJoin:
                // A subflow of a connection this proxy does not hold: not a connection of its own in the metrics.
                Counters.AddJoinPassed();
                Verdicts.Accept(packetId);
                break;
            default:
                // Pass, Defer.
                Counters.AddPassed();
                Verdicts.Accept(packetId);
                break;
        }

    }

    /// <summary>
    /// Keeps the kernel's RST gate in step with the holds: open while a SYN is held, closed when none is, so that RSTs
    /// toward the ports (MPTCP closes subflows with them) cross the queue only when one could end a hold. Called after a
    /// hold is added and on every tick of the hold clock, which also mends a race between the two (within 5 ms); a RST
    /// that slips past a just-opened gate leaves its hold to the probe's verdict, as a RST lost on the way would.
    /// </summary>
    private void SyncRstGate()
    {
        if (_kernelSigning is not { RstGatePath: not null } signing)
        {
            return;
        }

        bool held = _flows.HeldCount > 0;
        if (held == Volatile.Read(ref _rstGateOpen))
        {
            return;
        }

        lock (_rstGateLock)
        {
            held = _flows.HeldCount > 0;
            if (held != _rstGateOpen && signing.SetRstGate(held))
            {
                Volatile.Write(ref _rstGateOpen, held);
            }
        }
    }

    /// <summary>
    /// A RST toward an intercepted port (spec §7.2: a RST for the flow of a held SYN ends the hold). The held SYN is
    /// discarded (its sender gave up: releasing it later would open a connection nobody wants), the probe it joined goes
    /// on for the others. The RST itself always passes untouched, whatever flow it belongs to.
    /// </summary>
    private void OnRst(in TcpPacket parsed, uint packetId)
    {
        var ip = parsed.Ip;
        var tcp = parsed.Tcp;
        var endpoints = new FlowEndPoints(new IPEndPoint(new IPAddress(ip.SourceAddress), tcp.SourcePort),
            new IPEndPoint(new IPAddress(ip.DestinationAddress), tcp.DestinationPort));
        InterceptedFlow? flow = null;
        if (_flows.TryGet(endpoints, out var known) && known.State == FlowState.Held && known.Held is { } held)
        {
            lock (_holdLock)
            {
                // The negotiator's lock orders this against the probe's resolution: whichever comes first decides.
                if (_negotiator.OnHeldSynReset(held.HoldId))
                {
                    flow = _flows.TakeHeld(held.HoldId);
                }
            }
        }

        if (flow?.Held is { } dropped)
        {
            Counters.AddHoldReset();
            CloseBeforeRelay(flow, FlowCloseReasons.ResetBySender);
            Verdicts.Drop(dropped.PacketId);
        }

        Verdicts.Accept(packetId);
    }

    /// <summary>Whether a repeatable warning may be written now (<see cref="_warningBudget"/>); writes the left-out count first.</summary>
    private bool MayWarn()
    {
        if (!_warningBudget.TryTake(out long skipped))
        {
            return false;
        }

        if (skipped > 0)
        {
            ProxyEngineLog.WarningsLeftOut(_log, skipped, LogBudget.LinesPerWindow);
        }

        return true;
    }

    private static readonly TimeSpan HoldClockPeriod = TimeSpan.FromMilliseconds(5);

    // About once a second at the hold clock's period.
    private const int KeyRefreshTicks = 200;

    private void OnHoldClockTick()
    {
        try
        {
            ReleaseOverdueHolds();
            SyncRstGate();
            if (_kernelSigning is not null && ++_refreshTicks >= KeyRefreshTicks)
            {
                // A reloaded key ring or priority reaches the kernel within a second.
                _refreshTicks = 0;
                _kernelSigning.Refresh();
                if (Interlocked.Exchange(ref _followingInterfaces, 1) == 0)
                {
                    // Off this thread: listing the interfaces reads netlink and /proc, milliseconds on a host with many.
                    var signing = _kernelSigning;
                    _ = Task.Run(() => FollowInterfaces(signing));
                }
                ReadKernelSigned();
            }

            if (_idleTrim.Due(Volatile.Read(ref _ingressPackets), _flows.HeldCount) && Interlocked.Exchange(ref _trimming, 1) == 0)
            {
                // Off this thread: the collection pauses every thread anyway, but the clock must not wait for its end.
                _ = Task.Run(TrimAfterFlood);
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A timer callback must not throw; the hook thread and the negotiator's deadline still release holds.
            Counters.AddHookFailure();
            if (MayWarn())
            {
                ProxyEngineLog.HookFailed(_log, e.GetType().Name, e.Message);
            }
        }
    }

    /// <summary>
    /// After a flood, once the host is quiet (<see cref="IdleTrim"/>): the flow table's arrays shrink, a full, compacting,
    /// decommitting collection returns the heap the flood grew, and the C heap its free memory; logged with the before and after.
    /// </summary>
    private void TrimAfterFlood()
    {
        try
        {
            long start = _time.GetTimestamp();
            long committed = GC.GetGCMemoryInfo().TotalCommittedBytes;
            long rss = Environment.WorkingSet;
            _flows.TrimExcess();
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            NativeHeap.Trim();
            const double MiB = 1 << 20;
            ProxyEngineLog.Trimmed(_log, committed / MiB, GC.GetGCMemoryInfo().TotalCommittedBytes / MiB, rss / MiB, Environment.WorkingSet / MiB,
                _time.GetElapsedTime(start).TotalMilliseconds);
        }
        finally
        {
            Volatile.Write(ref _trimming, 0);
        }
    }

    /// <summary>How long a packet waited between the kernel's receive and now (zero when the kernel gave no timestamp).</summary>
    private TimeSpan QueueWait(long receivedAtMicroseconds)
    {
        if (receivedAtMicroseconds <= 0)
        {
            return TimeSpan.Zero;
        }

        long now = (_time.GetUtcNow().UtcTicks - DateTime.UnixEpoch.Ticks) / TimeSpan.TicksPerMicrosecond;
        long waited = now - receivedAtMicroseconds;
        // Negative or absurd: the wall clock stepped; the wait is then unknown, not a reason to pass everything.
        return waited is > 0 and < 10_000_000 ? TimeSpan.FromMicroseconds(waited) : TimeSpan.Zero;
    }

    /// <summary>
    /// Releases held SYNs whose hold limit passed while the probe timer had not fired yet (a busy process runs timers
    /// late; the hook thread sees every packet): no SYN is held beyond the limit, counted from its arrival. Oldest first.
    /// </summary>
    private void ReleaseOverdueHolds()
    {
        long now = _time.GetTimestamp();
        // The negotiator's deadline, counted from the SYN's arrival in the kernel rather than from its probe's start: a SYN
        // that waited in the queue, or a timer that ran late, is released here. The whole margin stays for what stops
        // this process: a collection pauses every thread (20-25 ms each under a 20k SYN/s flood on 2 busy vCPUs, issue 12).
        long limit = (long)(_options.Negotiation.ProbeDeadline.TotalSeconds * _time.TimestampFrequency);
        if (now - Volatile.Read(ref _oldestHeldAt) < limit)
        {
            // Nothing due (or nothing held): the hook thread's usual case, without the lock.
            return;
        }

        List<InterceptedFlow>? overdue = null;
        List<long>? answered = null;
        lock (_holdLock)
        {
            while (_holdOrder.TryPeek(out var hold) && now - hold.HeldAt >= limit)
            {
                _holdOrder.Dequeue();
                if (_probes.TryGetValue(hold.ProbeId, out var probe) && probe.Socket.IsEstablished)
                {
                    // The server answered; the completion waits for a busy thread. Read the answer now (below) instead
                    // of declaring the probe timed out: it decides this hold and every other on the probe.
                    (answered ??= []).Add(hold.ProbeId);
                }
                else if (_negotiator.OnHeldSynReset(hold.HoldId) && _flows.TakeHeld(hold.HoldId) is { } flow)
                {
                    // False when it was resolved already (the usual case): nothing to do.
                    (overdue ??= []).Add(flow);
                }
            }

            Volatile.Write(ref _oldestHeldAt, _holdOrder.TryPeek(out var oldest) ? oldest.HeldAt : long.MaxValue);
        }

        if (answered is not null)
        {
            // Outside the lock: the resolution gives verdicts through the engine, which takes it.
            foreach (long probeId in answered.Distinct())
            {
                _negotiator.OnProbeOverdue(probeId);
            }
        }

        if (overdue is null)
        {
            return;
        }

        foreach (var flow in overdue)
        {
            if (flow.Held is not { } held)
            {
                continue;
            }

            HoldEnded(flow, held, new HoldResolution { HoldId = held.HoldId, Outcome = HoldOutcome.Release, Reason = DecisionReason.ProbeTimedOut });
            flow.Shutdown(FlowCloseReasons.Released);
            Counters.AddReleased();
            Counters.AddHoldOverdue();
            Verdicts.Accept(held.PacketId);
        }
    }

    private void SynDecided(FlowEndPoints flow, SynKind kind, uint token, string verdict, string reason)
    {
        if (_log.IsEnabled(LogLevel.Debug))
        {
            if (kind == SynKind.MpJoin)
            {
                ProxyEngineLog.JoinSyn(_log, flow.Client, flow.Destination, kind, token, verdict, reason);
            }
            else
            {
                ProxyEngineLog.Syn(_log, flow.Client, flow.Destination, kind, verdict, reason);
            }
        }

        if (_events.Enabled)
        {
            _events.Syn(flow, kind, token, verdict, reason);
        }
    }

    /// <summary>Opens the listener on the original port, then gives the verdict that sends the SYN to TPROXY.</summary>
    private void InterceptVerdict(uint packetId, uint mark, IPEndPoint destination)
    {
        _ensureListener(new ListenerKey(destination.Port, destination.AddressFamily, ClientProtocol));
        Verdicts.AcceptWithMark(packetId, NfqueueClient.MaskedMark(mark, _rulesetOptions.InterceptMark, _rulesetOptions.InterceptMask));
    }

    /// <summary>Sends <paramref name="flow"/>'s SYN to TPROXY; a failure closes the flow and reaches the caller's fail-open accept.</summary>
    private void Intercept(InterceptedFlow flow, uint packetId, uint mark, DecisionReason reason, ProxySignal? claim, IProbeSocket? probe, ProxySignal? upstreamSignal)
    {
        if (!flow.TryIntercept(reason, claim, probe, upstreamSignal))
        {
            // Closed meanwhile (stopping): the SYN passes untouched, the probe goes.
            probe?.Abort();
            Counters.AddPassed();
            Verdicts.Accept(packetId);
            return;
        }

        try
        {
            InterceptVerdict(packetId, mark, flow.EndPoints.Destination);
        }
        catch
        {
            // No listener, no interception: the SYN passes (the caller's fail-open accept), the flow and its probe go.
            CloseBeforeRelay(flow, FlowCloseReasons.VerdictFailed);
            throw;
        }

        Counters.AddIntercepted();
        if (probe is not null)
        {
            Counters.AddProbeAdopted();
        }
    }

    /// <summary>An intercepted flow that will never be relayed: shut down, its trace ended, reported as expired.</summary>
    private void CloseBeforeRelay(InterceptedFlow flow, string reason)
    {
        flow.Shutdown(reason);
        _telemetry.Abandoned(flow.EndPoints, reason);
        if (_log.IsEnabled(LogLevel.Debug))
        {
            ProxyEngineLog.Expired(_log, flow.EndPoints.Client, flow.EndPoints.Destination, reason);
        }

        if (_events.Enabled)
        {
            _events.Expired(flow.EndPoints, reason);
        }
    }

    /// <summary>The adoption deadline passed: the client's connection never reached the listener.</summary>
    private void OnFlowExpired(InterceptedFlow flow) => CloseBeforeRelay(flow, FlowCloseReasons.NeverArrived);

    private void TryAccept(uint packetId) => TryAccept(packetId, _verdicts);

    private static void TryAccept(uint packetId, IPacketVerdicts? verdicts)
    {
        try
        {
            verdicts?.Accept(packetId);
        }
        catch (Exception e) when (e is NfqueueException or ObjectDisposedException)
        {
            // Nothing more to do: with fail-open, bypass and the kernel's queue timeout the packet is not stranded.
        }
    }

    private static void CloseAbortively(Socket socket) => Sockets.CloseAbortively(socket);

    /// <summary>Stops the hook (held SYNs are accepted by the queue's close), ends every flow, closes the relay and removes the rules.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        _holdClock?.Dispose();

        if (_hook is not null)
        {
            ProxyEngineLog.DecisionLatency(_log, _hook.Latency.ToString());
            // What stopped every thread at once (holds released late come in bursts; issue 12).
            var gc = GC.GetGCMemoryInfo(GCKind.Any);
            var paused = GC.GetTotalPauseDuration();
            ProxyEngineLog.GcSummary(_log, GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2), paused.TotalMilliseconds,
                100 * paused / _time.GetElapsedTime(_startedAt),
                gc.PauseDurations.Length > 0 ? gc.PauseDurations[0].TotalMilliseconds : 0);
            await _hook.DisposeAsync().ConfigureAwait(false);
        }

        if (_egressHook is not null)
        {
            await _egressHook.DisposeAsync().ConfigureAwait(false);
        }

        if (_hook is null)
        {
            ProxyEngineLog.DecisionLatency(_log, "proxysel: syn decision latency not measured (no queue)");
        }

        _negotiator.Dispose();
        _parkedJoins.Clear();
        CloseProbes();
        _listeners.Dispose();
        StopFrontListeners();
        await _relay.DisposeAsync().ConfigureAwait(false);
        if (_frontRelay is not null)
        {
            await _frontRelay.DisposeAsync().ConfigureAwait(false);
        }

        await FrontAcceptLoops().ConfigureAwait(false);
        // Flows not relaying end now; relaying ones end with their relay (closed above), each releasing its slot.
        await _flows.ShutdownAllAsync(FlowCloseReasons.Stopping, TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_connections.Keys).WaitAsync(TimeSpan.FromSeconds(5), _time).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }

        await _connector.DisposeAsync().ConfigureAwait(false);
        if (_kernelMirror is not null)
        {
            _negotiator.Cache.Observer = null;
            await _kernelMirror.DisposeAsync().ConfigureAwait(false);
        }

        try
        {
            if (_options.Transparent && _hook is not null)
            {
                // Never applied otherwise: another proxy's rules under the same prefix are not this one's to remove.
                await _ruleset.RemoveAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        finally
        {
            // The last counts for the stop line, then the program goes (after the rules: no SYN is sent any more to a
            // listener whose SYN/ACK the kernel should sign).
            ReadKernelSigned();
            _kernelSigning?.Dispose();
            _telemetry.Dispose();
            _stopping.Dispose();
        }
    }
}

/// <summary>Sockets with SO_MARK set, so their SYNs and SYN/ACKs match the egress hook.</summary>
public sealed class MarkingSocketFactory(uint mark) : SocketFactory
{
    private uint _mark = mark;

    /// <summary>The mark sockets created from now on carry.</summary>
    public uint Mark
    {
        get => Volatile.Read(ref _mark);
        set => Volatile.Write(ref _mark, value);
    }

    public override Socket Create(AddressFamily family, TransportProtocol protocol)
    {
        var socket = base.Create(family, protocol);
        try
        {
            socket.SetRawSocketOption(1 /* SOL_SOCKET */, 36 /* SO_MARK */, BitConverter.GetBytes(Mark));
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
