using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Interception.Rules;
using ProxySelection.Negotiation;
using ProxySelection.Relay;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Engine;

/// <summary>
/// One proxy, wired end to end inside the current network namespace (design §5 data flow): the interception ruleset,
/// the NFQUEUE hook (SYN → Wire parse → negotiation → verdict), probes, the egress hook that adds MP_PROXY to the
/// proxy's own SYNs and SYN/ACKs, and the relay behind the transparent listeners.
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
    private readonly InterceptionRuleset _ruleset;
    private readonly InterceptionRulesetOptions _rulesetOptions;
    private readonly ProxyNegotiator _negotiator;
    private readonly EgressSigner _signer;
    private readonly MarkingSocketFactory _markedSockets;
    private readonly UpstreamConnector _connector;
    private readonly RelayServer _relay;
    private readonly ListenerRegistry _listeners;
    private readonly ProxyTelemetry _telemetry;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _holdLock = new();
    private readonly Dictionary<long, HeldSyn> _holds = [];
    private readonly ConcurrentDictionary<long, Socket> _probes = new();
    private readonly ConcurrentDictionary<FlowEndPoints, Socket> _adopted = new();
    private readonly ConcurrentDictionary<FlowEndPoints, ProxySignal> _upstreamSignals = new();
    private readonly ConcurrentDictionary<Task, byte> _connections = new();
    private readonly ConcurrentDictionary<FlowEndPoints, byte> _awaitingAccept = new();
    private readonly ConcurrentDictionary<FlowEndPoints, byte> _answeredProbes = new();
    private readonly List<ParkedJoin> _parkedJoins = [];
    private readonly ConcurrentDictionary<(ushort LocalPort, IPEndPoint Server), ProbeAnswerSlot> _probeAnswers = new();
    private readonly CachePassLogSampler _cachePassLog;
    private readonly CachePassLogSampler _joinPassLog;
    private NfqueueClient? _queue;
    private Task _receiveLoop = Task.CompletedTask;
    private int _stopped;

    public ProxyEngine(ProxyEngineOptions options, TimeProvider time, Action<string> log)
        : this(options, time, new LineLogger(log ?? throw new ArgumentNullException(nameof(log))))
    {
    }

    public ProxyEngine(ProxyEngineOptions options, TimeProvider time, ILogger log)
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
        SocketRuntime.UseInlineCompletions(); // before any socket of this process: read once by .NET's socket engine
        _rulesetOptions = RulesetOptions(options);
        _cachePassLog = new CachePassLogSampler(time);
        _joinPassLog = new CachePassLogSampler(time);
        _ruleset = new InterceptionRuleset(_rulesetOptions);
        _negotiator = new ProxyNegotiator(options.Negotiation, time, this);
        _telemetry = new ProxyTelemetry(options, time, log, () => _negotiator.ActiveConnections, () => _queue?.Statistics.ReceiveOverruns ?? 0);
        Counters = new ProxyCounters(_telemetry);
        _signer = new EgressSigner(options.KeyRing);
        // Listeners and probes carry the egress mark: their SYN/ACKs and SYNs pass the egress queue to get MP_PROXY.
        _markedSockets = new MarkingSocketFactory(_rulesetOptions.EgressMark);
        // Explicit mode: upstream legs carry the mark too, so their SYNs get the holder's Claim or Upgrade (spec §7.3.3).
        // Host-configured alone has no egress queue: its legs go unmarked.
        _connector = new UpstreamConnector(new UpstreamConnectorOptions(),
            options.Negotiation.Mode == SignalingMode.Explicit && options.Transparent ? _markedSockets : SocketFactory.Default, time);
        bool downgrade = options.Negotiation.Role == ProxyRole.Downgrade;
        var relayOptions = new RelayOptions
        {
            ClientProtocol = downgrade ? TransportProtocol.Mptcp : TransportProtocol.Tcp,
            UpstreamProtocol = downgrade ? TransportProtocol.Tcp : TransportProtocol.Mptcp,
            MaxConnections = options.Negotiation.MaxConnections,
            IdleTimeout = options.IdleTimeout,
        };
        _relay = new RelayServer(relayOptions, new ListenerOptions(), SocketFactory.Default, _connector, time, static _ => { });
        _listeners = new ListenerRegistry(_markedSockets, new ListenerOptions(), OnAcceptedAsync);
        _frontRelay = CreateFrontRelay(options, _connector, time);
        _localAddresses = new Fronts.LocalAddresses(time);
        _frontLogBudget = new Fronts.FrontLogBudget(time);
        ClientProtocol = relayOptions.ClientProtocol;
    }

    public ProxyCounters Counters { get; }

    public ProxyNegotiator Negotiator => _negotiator;

    public TransportProtocol ClientProtocol { get; }

    /// <summary>The ruleset options for <paramref name="options"/>: what <c>proxysel cleanup</c> removes.</summary>
    public static InterceptionRulesetOptions RulesetOptions(ProxyEngineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new InterceptionRulesetOptions
        {
            ChainPrefix = options.ChainPrefix,
            QueueNumber = options.QueueNumber,
            Ports = options.Ports,
            // SYN/ACKs carry the signals a P-aware proxy reads: a claim answering its probe, what passing probes learn.
            QueueSynAcks = options.Negotiation.Mode == SignalingMode.Explicit,
            // A downgrading proxy passes every SYN without an MPTCP option (ProxyNegotiator.OnSyn: NotMptcp): those stay
            // in the kernel, so plain TCP through it never crosses the queue (issue 7: pass-through connection rate).
            QueueOnlyMptcpSyns = options.Negotiation.Role == ProxyRole.Downgrade,
            // Nor does it learn anything from a SYN/ACK without one (OnSynAck: the signal and MP_CAPABLE are MPTCP options,
            // a probe's answer is read from its socket): plain TCP's SYN/ACK stays in the kernel too.
            QueueOnlyMptcpSynAcks = options.Negotiation.Role == ProxyRole.Downgrade,
        };
    }

    /// <summary>Binds the queue first (a SYN queued before that would wait for nobody), then installs the rules.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!_options.Transparent)
        {
            // Host-configured alone: no queue, no rules; the SOCKS listener is the only way in.
            try
            {
                _telemetry.Start();
                StartFronts();
            }
            catch
            {
                await DisposeAsync().ConfigureAwait(false);
                throw;
            }

            return;
        }

        _queue = NfqueueClient.Open(new NfqueueOptions { QueueNumber = _options.QueueNumber, FailOpen = true, ReceiveThreadNice = -10 });
        _receiveLoop = Task.Factory.StartNew(ReceiveLoop, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        try
        {
            _telemetry.Start();
            await _ruleset.ApplyAsync(cancellationToken).ConfigureAwait(false);
            StartFronts();
        }
        catch
        {
            await DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private void ReceiveLoop()
    {
        var queue = _queue!;
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                queue.Receive(OnPacket, TimeSpan.FromMilliseconds(100));
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (NfqueueException e)
            {
                // The failing packet was accepted by the client already; keep receiving.
                ProxyEngineLog.HookError(_log, e.InnerException?.Message ?? e.Message);
            }
        }
    }

    private void OnPacket(in NfqueuePacket packet)
    {
        try
        {
            if (packet.Hook == NetfilterHook.PostRouting)
            {
                OnEgress(packet);
            }
            else
            {
                OnSyn(packet);
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Counters.AddHookFailure();
            ProxyEngineLog.HookFailed(_log, e.GetType().Name, e.Message);
            TryVerdict(packet.PacketId, null);
        }
    }

    private void OnEgress(in NfqueuePacket packet)
    {
        var rewrite = _signer.Rewrite(packet.Payload, packet.InDeviceIndex, out var rewritten, out int length);
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
            _queue!.Accept(packet.PacketId);
            return;
        }

        _queue!.AcceptWithPayload(packet.PacketId, rewritten.AsSpan(0, length));
    }

    private void OnSyn(in NfqueuePacket packet)
    {
        if (TcpPacket.TryParse(packet.Payload, out var parsed) != WireError.None
            || (parsed.Tcp.Flags & (TcpFlags.Syn | TcpFlags.Rst)) != TcpFlags.Syn)
        {
            Counters.AddSyn();
            Counters.AddPassed();
            _queue!.Accept(packet.PacketId);
            return;
        }

        if ((parsed.Tcp.Flags & TcpFlags.Ack) != 0)
        {
            Counters.AddSynAck();
            OnSynAck(parsed);
            _queue!.Accept(packet.PacketId);
            return;
        }

        Counters.AddSyn();

        var ip = parsed.Ip;
        var tcp = parsed.Tcp;
        var kind = ReadMptcp(tcp.Options, out uint token);
        var flow = new FlowKey(new DestinationKey(ip.SourceAddress, tcp.SourcePort), new DestinationKey(ip.DestinationAddress, tcp.DestinationPort));
        ProxySignal? signal = null;
        if (_options.Negotiation.Mode == SignalingMode.Explicit)
        {
            var mpFlow = MpProxyFlow.ForSyn(ip.SourceAddress, ip.DestinationAddress, tcp.SourcePort, tcp.DestinationPort, tcp.SequenceNumber);
            signal = SignalCodec.Read(tcp.Options, _options.KeyRing, mpFlow, out _);
        }

        var observation = new SynObservation(flow, kind, signal, token) { Isn = tcp.SequenceNumber, IngressInterface = (int)packet.InDeviceIndex };
        var endpoints = new FlowEndPoints(flow.Initiator.ToEndPoint(), flow.Responder.ToEndPoint());
        uint packetId = packet.PacketId;
        uint mark = packet.Mark;
        if (kind != SynKind.MpJoin && _awaitingAccept.ContainsKey(endpoints))
        {
            // A retransmission of a SYN already intercepted (its SYN/ACK was lost): same verdict, no second decision.
            ProxyEngineLog.Retransmission(_log, endpoints.Client, endpoints.Destination, kind);
            InterceptVerdict(packetId, mark, endpoints.Destination);
            return;
        }

        if (kind != SynKind.MpJoin && IsDraining)
        {
            // Draining: new connections are not claimed; joins still reach the negotiator, so a held connection keeps
            // adding subflows (its token is owned) until it ends.
            ProxyEngineLog.Syn(_log, endpoints.Client, endpoints.Destination, kind, nameof(SynVerdict.Pass), "Draining");
            Counters.AddPassed();
            _queue!.Accept(packetId);
            return;
        }

        SynDecision decision;
        lock (_holdLock)
        {
            // Under the lock: a probe that ends at once must find the hold registered.
            decision = _negotiator.OnSyn(observation);
            if (decision.Verdict == SynVerdict.HoldAndProbe)
            {
                // A foreign probe's bytes are kept: answering it later rewrites them.
                var bytes = signal is { Kind: SignalKind.Probe or SignalKind.Upgrade } ? packet.Payload.ToArray() : null;
                _holds[decision.HoldId] = new HeldSyn(packetId, mark, endpoints, _time.GetTimestamp(), bytes);
            }

            // Under the lock too: a hold that joined a running probe may resolve on another thread as soon as the lock is
            // released, and HoldResolved must find its trace (else the trace leaks).
            _telemetry.OnSynDecision(endpoints, kind, decision);
        }

        // The accept registers the token before it stops awaiting, so one of the two is seen if the decision raced it.
        bool park = decision is { Verdict: SynVerdict.Pass, Reason: DecisionReason.JoinTokenForeign }
            && (!_awaitingAccept.IsEmpty || _negotiator.Tokens.Contains(token));
        string verdict = park ? "Wait for the accept" : decision.Verdict.ToString();
        if (kind == SynKind.MpJoin && CachePassLogSampler.IsRoutineJoinPass(decision, park) && !_joinPassLog.AtInformation(flow.Responder))
        {
            ProxyEngineLog.JoinSynPassed(_log, endpoints.Client, endpoints.Destination, kind, token, verdict, decision.Reason.ToString());
        }
        else if (kind == SynKind.MpJoin)
        {
            ProxyEngineLog.JoinSyn(_log, endpoints.Client, endpoints.Destination, kind, token, verdict, decision.Reason.ToString());
        }
        else if (CachePassLogSampler.IsRoutineCachePass(decision, signal) && !_cachePassLog.AtInformation(flow.Responder))
        {
            ProxyEngineLog.SynPassedFromCache(_log, endpoints.Client, endpoints.Destination, kind, verdict, decision.Reason.ToString());
        }
        else
        {
            ProxyEngineLog.Syn(_log, endpoints.Client, endpoints.Destination, kind, verdict, decision.Reason.ToString());
        }
        switch (decision.Verdict)
        {
            case SynVerdict.HoldAndProbe:
                Counters.AddHeld();
                if (decision.StartProbe)
                {
                    StartProbe(decision.ProbeId, endpoints.Destination, decision.ProbeSignal);
                }

                break;
            case SynVerdict.Intercept:
                Intercept(packetId, mark, endpoints, decision.SynAckSignal, probe: null, decision.Reason, decision.UpstreamSignal);
                break;
            case SynVerdict.InterceptJoin:
                Counters.AddJoinIntercepted();
                InterceptVerdict(packetId, mark, endpoints.Destination);
                break;
            case SynVerdict.Pass when park:
                if (!TryParkJoin(new ParkedJoin(packetId, mark, token, endpoints)))
                {
                    // Registered between the decision and now.
                    Counters.AddJoinIntercepted();
                    InterceptVerdict(packetId, mark, endpoints.Destination);
                }

                break;
            case SynVerdict.AnswerProbe:
                AnswerProbe(packet.Payload, packetId, mark, endpoints, decision.SynAckSignal);
                break;
            default:
                // Pass, Defer.
                Counters.AddPassed();
                _queue!.Accept(packetId);
                break;
        }
    }

    private static SynKind ReadMptcp(ReadOnlySpan<byte> options, out uint token)
    {
        token = 0;
        foreach (var option in new TcpOptionReader(options))
        {
            if (option.Kind != TcpOptionKind.Mptcp || MptcpOption.TryParse(option.Slice(options), out var mptcp) != WireError.None)
            {
                continue;
            }

            if (mptcp.Subtype == MptcpSubtype.MpCapable)
            {
                return SynKind.MpCapable;
            }

            if (mptcp.Subtype == MptcpSubtype.MpJoin && mptcp.MpJoin.Form == MpJoinForm.Syn)
            {
                token = mptcp.MpJoin.ReceiverToken;
                return SynKind.MpJoin;
            }
        }

        return SynKind.Tcp;
    }

    /// <summary>Opens the listener on the original port, then gives the verdict that sends the SYN to TPROXY.</summary>
    private void InterceptVerdict(uint packetId, uint mark, IPEndPoint destination)
    {
        _listeners.Ensure(new ListenerKey(destination.Port, destination.AddressFamily, ClientProtocol));
        var intercept = NfqueueClient.MaskedMark(mark, _rulesetOptions.InterceptMark, _rulesetOptions.InterceptMask);
        _queue!.AcceptWithMark(packetId, intercept);
    }

    private void Intercept(uint packetId, uint mark, FlowEndPoints flow, ProxySignal? claim, Socket? probe, DecisionReason reason, ProxySignal? upstreamSignal)
    {
        _decided[flow] = new Decided(reason, _time.GetTimestamp());
        if (claim is { } signal)
        {
            _signer.ExpectSynAck(flow, signal);
        }

        _awaitingAccept[flow] = 0;
        if (probe is not null)
        {
            _adopted[flow] = probe;
        }
        else if (upstreamSignal is { } leg)
        {
            _upstreamSignals[flow] = leg;
        }

        try
        {
            InterceptVerdict(packetId, mark, flow.Destination);
        }
        catch
        {
            // No listener, no interception: the SYN passes (the caller's fail-open accept) and the slot is freed.
            Forget(flow, closeProbe: true);
            _negotiator.OnConnectionClosed();
            _telemetry.Abandoned(flow, "verdict_failed");
            throw;
        }

        Counters.AddIntercepted();
        if (probe is not null)
        {
            Counters.AddProbeAdopted();
        }

        _ = ExpireAdoptionAsync(flow);
    }

    private async Task ExpireAdoptionAsync(FlowEndPoints flow)
    {
        try
        {
            await Task.Delay(_options.AdoptionTimeout, _time, _stopping.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        _signer.ForgetClaim(flow);
        if (_awaitingAccept.TryRemove(flow, out _))
        {
            _decided.TryRemove(flow, out _);
            _upstreamSignals.TryRemove(flow, out _);
            // The client's connection never reached the listener: its slot (and probe) go.
            if (_adopted.TryRemove(flow, out var probe))
            {
                CloseAbortively(probe);
            }

            _negotiator.OnConnectionClosed();
            ProxyEngineLog.NeverArrived(_log, flow.Client, flow.Destination);
            _telemetry.Abandoned(flow, "never_arrived");
        }
    }

    private void Forget(FlowEndPoints flow, bool closeProbe)
    {
        _signer.ForgetClaim(flow);
        _decided.TryRemove(flow, out _);
        _awaitingAccept.TryRemove(flow, out _);
        _upstreamSignals.TryRemove(flow, out _);
        if (_adopted.TryRemove(flow, out var probe) && closeProbe)
        {
            CloseAbortively(probe);
        }
    }

    private async Task OnAcceptedAsync(Socket client, ListenerKey key)
    {
        await Task.Yield();
        var run = RelayAcceptedAsync(client);
        _connections[run] = 0;
        try
        {
            await run.ConfigureAwait(false);
        }
        finally
        {
            _connections.TryRemove(run, out _);
        }
    }

    private async Task RelayAcceptedAsync(Socket client)
    {
        uint token = 0;
        bool registered = false;
        if (MptcpSocket.TryGetInfo(client, out var info) == MptcpStatus.Active)
        {
            // MP_JOINs name the connection by this proxy's token (RFC 8684 §3.2): from here on they are intercepted.
            token = info.Token;
            lock (_parkedJoins)
            {
                registered = _negotiator.Tokens.Register(token);
            }

            ProxyEngineLog.Accepted(_log, client.RemoteEndPoint, client.LocalEndPoint, token);
        }

        var flow = new FlowEndPoints((IPEndPoint)client.RemoteEndPoint!, (IPEndPoint)client.LocalEndPoint!);
        _signer.ForgetClaim(flow);
        if (_answeredProbes.TryRemove(flow, out _))
        {
            // Another proxy's probe that this proxy answered: nothing to relay; the prober resets it.
            await DrainAsync(client).ConfigureAwait(false);
            return;
        }

        // The negotiator counted the connection at its intercept; one that arrives after expiring was uncounted.
        bool counted = _awaitingAccept.TryRemove(flow, out _);
        _upstreamSignals.TryRemove(flow, out var upstreamSignal);
        var trace = _telemetry.Accepted(flow, token);
        if (registered)
        {
            AdoptParkedJoins(token);
        }

        try
        {
            var result = _adopted.TryRemove(flow, out var probe)
                ? await RelayAdoptedAsync(client, probe, trace).ConfigureAwait(false)
                : await ConnectAndRelayAsync(client, trace, upstreamSignal).ConfigureAwait(false);
            Counters.AddRelayed();
            ProxyEngineLog.Relayed(_log, result.Client, result.OriginalDestination, result.Reason, result.BytesClientToUpstream, result.BytesUpstreamToClient,
                result.ClientMaxSubflows, result.ClientMptcp.Status, result.UpstreamMptcp.Status, result.ConnectStatus, result.Duration.TotalMilliseconds);
            _telemetry.Relayed(trace, result);
            if (result.ConnectStatus is UpstreamConnectStatus.Refused or UpstreamConnectStatus.TimedOut or UpstreamConnectStatus.Unreachable
                or UpstreamConnectStatus.CircuitOpen or UpstreamConnectStatus.Failed
                && _negotiator.OnUpstreamFailed(DestinationKey.From(flow.Destination)))
            {
                ProxyEngineLog.CacheEntryRemoved(_log, flow.Destination, result.ConnectStatus);
            }
        }
        finally
        {
            _decided.TryRemove(flow, out _);
            if (registered)
            {
                _negotiator.Tokens.Unregister(token);
            }

            if (counted)
            {
                _negotiator.OnConnectionClosed();
            }
        }
    }

    private async Task DrainAsync(Socket socket)
    {
        var buffer = new byte[256];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5), _time);
        try
        {
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token).ConfigureAwait(false) > 0)
            {
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
        finally
        {
            CloseAbortively(socket);
        }
    }

    private void TryVerdict(uint packetId, uint? mark)
    {
        try
        {
            _queue?.SetVerdict(packetId, NfqueueVerdict.Accept, mark);
        }
        catch (Exception e) when (e is NfqueueException or ObjectDisposedException)
        {
            // Nothing more to do: with fail-open, bypass and the kernel's queue timeout the packet is not stranded.
        }
    }

    private static void CloseAbortively(Socket socket)
    {
        try
        {
            // RST, not FIN: the probe's server must not take it for a finished request.
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }

        socket.Dispose();
    }

    /// <summary>Stops the hook (held SYNs are accepted by the queue's dispose), closes the relay and removes the rules.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        await _receiveLoop.ConfigureAwait(false);
        ProxyEngineLog.DecisionLatency(_log, _queue?.Latency.ToString() ?? "proxysel: syn decision latency not measured (no queue)");
        _queue?.Dispose();
        _negotiator.Dispose();
        foreach (var probe in _probes.Values)
        {
            CloseAbortively(probe);
        }

        foreach (var probe in _adopted.Values)
        {
            CloseAbortively(probe);
        }

        _listeners.Dispose();
        StopFrontListeners();
        await _relay.DisposeAsync().ConfigureAwait(false);
        if (_frontRelay is not null)
        {
            await _frontRelay.DisposeAsync().ConfigureAwait(false);
        }

        await FrontAcceptLoops().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(_connections.Keys).WaitAsync(TimeSpan.FromSeconds(5), _time).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }

        await _connector.DisposeAsync().ConfigureAwait(false);
        try
        {
            if (_options.Transparent)
            {
                // Never applied otherwise: another proxy's rules under the same prefix are not this one's to remove.
                await _ruleset.RemoveAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        finally
        {
            _telemetry.Dispose();
            _stopping.Dispose();
        }
    }

    private sealed record HeldSyn(uint PacketId, uint Mark, FlowEndPoints Flow, long HeldAt, byte[]? Syn);
}

/// <summary>Sockets with SO_MARK set, so their SYNs and SYN/ACKs match the egress hook.</summary>
public sealed class MarkingSocketFactory(uint mark) : SocketFactory
{
    public override Socket Create(AddressFamily family, TransportProtocol protocol)
    {
        var socket = base.Create(family, protocol);
        try
        {
            socket.SetRawSocketOption(1 /* SOL_SOCKET */, 36 /* SO_MARK */, BitConverter.GetBytes(mark));
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
