using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ProxySelection.Engine;
using ProxySelection.Interception.Netlink;
using ProxySelection.Negotiation;
using ProxySelection.Relay;

namespace ProxySelection.Engine.Diagnostics;

/// <summary>
/// The engine's OpenTelemetry instrumentation (issue 6): one <see cref="ActivitySource"/> and one meter, both named
/// <see cref="Name"/>. One trace per held connection: a root span <c>proxysel.connection</c> from the SYN's decision
/// to the relay's end, with children <c>proxysel.probe</c> and <c>proxysel.upstream_connect</c>, and span events for
/// subflows from the kernel's <c>mptcp_pm</c> events, matched by MPTCP token. Nothing is allocated for a packet when
/// no listener is attached: spans start only when the source has listeners, instruments record only when enabled.
/// </summary>
public sealed class ProxyTelemetry : IDisposable
{
    public const string Name = "ProxySelection";

    /// <summary>Open traces at most; beyond, new connections are not traced (a bound against a flood of held SYNs).</summary>
    private const int MaxTraces = 65_536;

    /// <summary>Tokens whose early subflow events wait for their connection's accept.</summary>
    private const int MaxPendingTokens = 4_096;

    /// <summary>
    /// Early events wait this long for their accept at most: the accept follows the kernel's first event within
    /// milliseconds, so older ones belong to a connection never traced (unsampled, over the bound) or whose Closed was lost.
    /// </summary>
    private static readonly TimeSpan PendingLifetime = TimeSpan.FromSeconds(10);

    public static readonly ActivitySource Source = new(Name, typeof(ProxyTelemetry).Assembly.GetName().Version?.ToString(3));

    private const string RehearsalName = Name + ".Rehearsal";
    private static readonly ActivitySource RehearsalSource = new(RehearsalName);
    private readonly ActivitySource _source;

    /// <summary>Bucket bounds for probe and verdict latencies, in seconds: a probe is held 20..400 ms.</summary>
    private static readonly double[] LatencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

    /// <summary>On the connections the kernel fast path decided (read back from its rules' counters).</summary>
    private static readonly KeyValuePair<string, object?> KernelDecided = new("proxysel.decided_by", "kernel");

    private readonly ProxyEngineOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _log;
    private readonly bool _ownsMeter;
    private readonly ConcurrentDictionary<FlowEndPoints, ConnectionTrace> _byFlow = new();
    /// <summary>Guards <see cref="_byToken"/> and <see cref="_pendingEvents"/> together: publishing a token and draining its
    /// early events is one step for the event listener. Kernel events are rare next to packets.</summary>
    private readonly Lock _tokenLock = new();
    private readonly Dictionary<uint, ConnectionTrace> _byToken = [];
    private readonly Dictionary<uint, PendingEvents> _pendingEvents = [];
    private readonly TimeSpan _traceLifetime;
    private long _nextPendingSweep;
    private long _nextTraceSweep;
    private int _traceCount;
    private readonly ConcurrentDictionary<long, (Activity? Span, long Started)> _probes = new();
    private readonly Counter<long> _connections;
    private readonly Counter<long> _bytes;
    private readonly Counter<long> _subflows;
    private readonly Counter<long> _cacheHits;
    private readonly Counter<long> _cacheMisses;
    private readonly Histogram<double> _probeDuration;
    private readonly Histogram<double> _verdictDuration;
    private readonly CancellationTokenSource _stopping = new();
    private MptcpPmListener? _pmListener;
    private Task _pmLoop = Task.CompletedTask;

    /// <param name="options">The engine's options: role, mode, policy and id go on every connection span.</param>
    /// <param name="time">Clock of the probe durations.</param>
    /// <param name="log">Where a missing subflow listener is reported.</param>
    /// <param name="activeConnections">Connections held now (the negotiator's count).</param>
    /// <param name="queueDrops">Packets the kernel dropped for a full queue socket (ENOBUFS).</param>
    /// <param name="meterFactory">Where the meter comes from under the generic host; null: a meter of its own.</param>
    public ProxyTelemetry(ProxyEngineOptions options, TimeProvider time, ILogger log, Func<long> activeConnections, Func<long> queueDrops,
        IMeterFactory? meterFactory = null)
    {
        _options = options;
        _time = time;
        _log = log;
        // The start's rehearsal (a throwaway engine) measures and traces nothing an exporter sees: its own meter and
        // source names, which no one listens to.
        _ownsMeter = meterFactory is null || options.Rehearsal;
        _source = options.Rehearsal ? RehearsalSource : Source;
        // A trace waits in _byFlow for its hold (a probe, bounded by the probe timeout) and then for the accept (bounded
        // by the adoption timeout); one older than twice both leaked (a lost race, a path that never reported).
        _traceLifetime = 2 * (options.Negotiation.ProbeTimeout + options.AdoptionTimeout);
        Meter = options.Rehearsal ? new Meter(RehearsalName) : meterFactory?.Create(Name) ?? new Meter(Name);
        _connections = Meter.CreateCounter<long>("proxysel.connections", "{connection}",
            "Connections by the proxy's decision on their SYN: intercept (held here), release (passed after a probe), pass, answer_probe; " +
            "those the kernel fast path decided without the queue carry proxysel.decided_by=kernel. " +
            "A downgrading proxy never sees plain TCP SYNs (its queue takes only SYNs with an MPTCP option): they are not counted.");
        Meter.CreateObservableUpDownCounter("proxysel.connections.active", () => new Measurement<long>(activeConnections(), DecisionTag("intercept")),
            "{connection}", "Connections this proxy holds now.");
        _bytes = Meter.CreateCounter<long>("proxysel.bytes", "By", "Bytes relayed, by direction (upstream: client to server).");
        _subflows = Meter.CreateCounter<long>("proxysel.subflows", "{subflow}", "Subflows of the MPTCP leg of relayed connections, counted at their end.");
        _cacheHits = Meter.CreateCounter<long>("proxysel.cache.hits", "{lookup}", "SYNs decided from the capability cache, without a probe.");
        _cacheMisses = Meter.CreateCounter<long>("proxysel.cache.misses", "{lookup}", "SYNs the cache could not decide: held for a probe.");
        _probeDuration = Meter.CreateHistogram("proxysel.probe.duration", "s", "From a probe's SYN to its answer or failure.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _verdictDuration = Meter.CreateHistogram("proxysel.verdict.duration", "s", "How long a held SYN waited for its verdict.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        Meter.CreateObservableCounter("proxysel.queue.drops", queueDrops, "{packet}", "Packets the kernel dropped because the queue socket was full (ENOBUFS).");
    }

    public Meter Meter { get; }

    /// <summary>Whether an exporter listens: only then the <c>mptcp_pm</c> listener runs.</summary>
    public static bool IsObserved => Source.HasListeners();

    /// <summary>Counts SYN decisions by name; called through <see cref="ProxyCounters"/>.</summary>
    public void AddConnection(string decision)
    {
        if (_connections.Enabled)
        {
            _connections.Add(1, DecisionTag(decision));
        }
    }

    /// <summary>
    /// SYNs the kernel fast path decided since the last read of its rules' counters: the same instrument as the queue's
    /// decisions, so a sum by decision stays complete; <c>proxysel.decided_by=kernel</c> tells them apart.
    /// </summary>
    public void AddKernelDecided(string decision, long count)
    {
        if (count > 0 && _connections.Enabled)
        {
            _connections.Add(count, DecisionTag(decision), KernelDecided);
        }
    }

    public void RecordVerdict(TimeSpan held)
    {
        if (_verdictDuration.Enabled)
        {
            _verdictDuration.Record(held.TotalSeconds);
        }
    }

    /// <summary>Starts the <c>mptcp_pm</c> listener when traces are exported; a kernel that refuses is logged, not fatal.</summary>
    public void Start()
    {
        if (!IsObserved)
        {
            return;
        }

        try
        {
            _pmListener = MptcpPmListener.Open(TimeSpan.FromSeconds(2));
            _pmLoop = _pmListener.RunAsync(OnPathManagerEvent, _stopping.Token);
        }
        catch (MptcpPmException e)
        {
            ProxyEngineLog.NoSubflowEvents(_log, e.Message);
        }
    }

    /// <summary>After the negotiator decided a SYN: cache statistics, and the root span of a held connection.</summary>
    public void OnSynDecision(FlowEndPoints flow, SynKind kind, SynDecision decision)
    {
        if (kind == SynKind.MpJoin)
        {
            return;
        }

        if (decision.Reason is DecisionReason.CacheMiss)
        {
            if (_cacheMisses.Enabled)
            {
                _cacheMisses.Add(1);
            }
        }
        else if (decision.Verdict != SynVerdict.HoldAndProbe && IsCacheAnswer(decision.Reason) && _cacheHits.Enabled)
        {
            _cacheHits.Add(1);
        }

        if (decision.Verdict is not (SynVerdict.Intercept or SynVerdict.HoldAndProbe) || !_source.HasListeners() || !HasTraceRoom())
        {
            if (decision is { Verdict: SynVerdict.HoldAndProbe, StartProbe: true } && _probeDuration.Enabled)
            {
                _probes[decision.ProbeId] = (null, _time.GetTimestamp());
            }

            return;
        }

        var root = StartRoot(flow);
        if (root is null)
        {
            return;
        }

        var trace = new ConnectionTrace(root, _time.GetTimestamp());
        trace.SetDecision(decision.Verdict == SynVerdict.Intercept ? "intercept" : "hold", decision.Reason);
        if (TryRemoveTrace(flow, out var previous))
        {
            // The same flow decided again (a retransmitted SYN after its hold ended): the older trace has no future.
            previous.End("superseded", error: false);
        }

        if (_byFlow.TryAdd(flow, trace))
        {
            Interlocked.Increment(ref _traceCount);
        }
        else
        {
            trace.End("superseded", error: false);
            return;
        }

        if (decision is { Verdict: SynVerdict.HoldAndProbe, StartProbe: true })
        {
            var probe = _source.StartActivity("proxysel.probe", ActivityKind.Client, root.Context);
            probe?.SetTag("server.address", flow.Destination.Address.ToString());
            probe?.SetTag("server.port", flow.Destination.Port);
            probe?.SetTag("proxysel.probe.id", decision.ProbeId);
            if (probe is not null)
            {
                // StartActivity made the probe current on the hook thread; nothing after it there belongs to it.
                Activity.Current = null;
            }

            _probes[decision.ProbeId] = (probe, _time.GetTimestamp());
        }
    }

    /// <summary>Open traces in <see cref="_byFlow"/> (an interlocked count: ConcurrentDictionary.Count takes every lock).</summary>
    internal int OpenTraces => Volatile.Read(ref _traceCount);

    /// <summary>Pending early-event tokens (tests).</summary>
    internal int PendingTokens
    {
        get
        {
            lock (_tokenLock)
            {
                return _pendingEvents.Count;
            }
        }
    }

    /// <summary>Below <see cref="MaxTraces"/>; at the bound, or once in a trace lifetime, leaked traces are ended first.</summary>
    private bool HasTraceRoom()
    {
        long now = _time.GetTimestamp();
        if (Volatile.Read(ref _traceCount) >= MaxTraces || now >= Volatile.Read(ref _nextTraceSweep))
        {
            Volatile.Write(ref _nextTraceSweep, now + (long)(_traceLifetime.TotalSeconds * _time.TimestampFrequency));
            SweepTraces(now);
        }

        return Volatile.Read(ref _traceCount) < MaxTraces;
    }

    private void SweepTraces(long now)
    {
        foreach (var (flow, trace) in _byFlow)
        {
            if (_time.GetElapsedTime(trace.Started, now) > _traceLifetime && _byFlow.TryRemove(new KeyValuePair<FlowEndPoints, ConnectionTrace>(flow, trace)))
            {
                Interlocked.Decrement(ref _traceCount);
                trace.End("expired", error: true);
            }
        }
    }

    private bool TryRemoveTrace(FlowEndPoints flow, [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out ConnectionTrace trace)
    {
        if (_byFlow.TryRemove(flow, out trace))
        {
            Interlocked.Decrement(ref _traceCount);
            return true;
        }

        return false;
    }

    private Activity? StartRoot(FlowEndPoints flow)
    {
        // A root of its own: whatever is current on the hook thread is not this connection's parent.
        var previous = Activity.Current;
        Activity.Current = null;
        var root = _source.StartActivity("proxysel.connection", ActivityKind.Server, default(ActivityContext));
        Activity.Current = previous;
        if (root is null)
        {
            return null;
        }

        var negotiation = _options.Negotiation;
        root.SetTag("network.transport", "tcp");
        root.SetTag("network.type", flow.Client.AddressFamily == AddressFamily.InterNetworkV6 ? "ipv6" : "ipv4");
        root.SetTag("client.address", flow.Client.Address.ToString());
        root.SetTag("client.port", flow.Client.Port);
        root.SetTag("network.peer.address", flow.Client.Address.ToString());
        root.SetTag("network.peer.port", flow.Client.Port);
        root.SetTag("server.address", flow.Destination.Address.ToString());
        root.SetTag("server.port", flow.Destination.Port);
        root.SetTag("proxysel.role", Lower(negotiation.Role));
        root.SetTag("proxysel.mode", Lower(negotiation.Mode));
        root.SetTag("proxysel.policy", Lower(negotiation.Policy));
        root.SetTag("proxysel.proxy_id", (int)negotiation.ProxyId);
        return root;
    }

    /// <summary>
    /// A SOCKS client's CONNECT (host-configured mode, spec §7.10): a root span of its own, tagged mode
    /// <c>host-configured</c> and decision <c>socks</c> or <c>convert</c>, named by the host's destination (a name for ATYP 3). The client
    /// leg's MPTCP token (0 for TCP) names its subflow events. Null when nobody listens.
    /// </summary>
    public ConnectionTrace? HostConfigured(IPEndPoint? client, string server, int port, uint token, string? user, string front = "socks")
    {
        if (client is null || !_source.HasListeners())
        {
            return null;
        }

        var root = StartRoot(new FlowEndPoints(client, new IPEndPoint(client.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, port)));
        if (root is null)
        {
            return null;
        }

        root.SetTag("server.address", server);
        root.SetTag("proxysel.mode", ProxyEngine.HostConfiguredMode);
        root.SetTag("proxysel.decision", front);
        root.SetTag("proxysel.reason", "HostSelected");
        root.SetTag("proxysel.socks.authenticated", user is not null);
        var trace = new ConnectionTrace(root, _time.GetTimestamp());
        if (token != 0)
        {
            Track(trace, token);
        }

        return trace;
    }

    /// <summary>A probe ended: its duration, and its span's outcome.</summary>
    public void ProbeEnded(long probeId, bool answered, bool mpCapable, string? signal)
    {
        if (!_probes.TryRemove(probeId, out var probe))
        {
            return;
        }

        if (_probeDuration.Enabled)
        {
            _probeDuration.Record(_time.GetElapsedTime(probe.Started).TotalSeconds, new KeyValuePair<string, object?>("proxysel.probe.outcome", answered ? "answered" : "failed"));
        }

        if (probe.Span is { } span)
        {
            span.SetTag("proxysel.probe.outcome", answered ? "answered" : "failed");
            span.SetTag("proxysel.probe.mp_capable", mpCapable);
            if (signal is not null)
            {
                span.SetTag("proxysel.probe.signal", signal);
            }

            if (!answered)
            {
                span.SetStatus(ActivityStatusCode.Error, "probe failed");
            }

            span.Stop();
        }
    }

    /// <summary>A held SYN got its verdict: intercepted connections go on, the others' traces end here.</summary>
    public void HoldResolved(FlowEndPoints flow, HoldResolution resolution)
    {
        if (!_byFlow.TryGetValue(flow, out var trace))
        {
            return;
        }

        string decision = resolution.Outcome switch
        {
            HoldOutcome.Intercept => "intercept",
            HoldOutcome.AnswerProbe => "answer_probe",
            _ => "release",
        };
        trace.SetDecision(decision, resolution.Reason);
        if (resolution.Outcome != HoldOutcome.Intercept && TryRemoveTrace(flow, out _))
        {
            trace.End("not_held", error: false);
        }
    }

    /// <summary>An intercepted connection that never reached the listener, or whose verdict failed.</summary>
    public void Abandoned(FlowEndPoints flow, string reason)
    {
        if (TryRemoveTrace(flow, out var trace))
        {
            trace.End(reason, error: true);
        }
    }

    /// <summary>The listener accepted <paramref name="flow"/>; its MPTCP token (0 for TCP) names its subflow events.</summary>
    public ConnectionTrace? Accepted(FlowEndPoints flow, uint token)
    {
        if (!TryRemoveTrace(flow, out var trace))
        {
            return null;
        }

        if (token != 0)
        {
            Track(trace, token);
        }

        return trace;
    }

    /// <summary>The upstream leg is connected; an MPTCP upstream (upgrade) has its own token and subflows.</summary>
    public void UpstreamConnected(ConnectionTrace trace, Socket upstream)
    {
        if (MptcpSocket.TryGetInfo(upstream, out var info) == MptcpStatus.Active && info.Token != 0)
        {
            Track(trace, info.Token);
        }
    }

    private void Track(ConnectionTrace trace, uint token)
    {
        trace.AddToken(token);
        lock (_tokenLock)
        {
            // Under the lock: an event of this token is either buffered before and replayed here, or finds the trace.
            _byToken[token] = trace;
            if (_pendingEvents.Remove(token, out var early))
            {
                foreach (var e in early.Events)
                {
                    trace.OnPathManagerEvent(e);
                }
            }
        }
    }

    /// <summary>A relayed connection ended: bytes and subflows counted; its trace, if any, ends.</summary>
    public void Relayed(ConnectionTrace? trace, RelayResult result)
    {
        if (_bytes.Enabled)
        {
            _bytes.Add(result.BytesClientToUpstream, new KeyValuePair<string, object?>("proxysel.direction", "upstream"));
            _bytes.Add(result.BytesUpstreamToClient, new KeyValuePair<string, object?>("proxysel.direction", "downstream"));
        }

        int subflows = Math.Max(result.ClientMaxSubflows, result.UpstreamMaxSubflows);
        if (_subflows.Enabled && subflows > 0)
        {
            _subflows.Add(subflows);
        }

        if (trace is null)
        {
            return;
        }

        lock (_tokenLock)
        {
            foreach (var token in trace.Tokens)
            {
                // Only this trace's entry: a reused token may name a newer connection by now.
                if (_byToken.TryGetValue(token, out var owner) && owner == trace)
                {
                    _byToken.Remove(token);
                }

                _pendingEvents.Remove(token);
            }
        }

        trace.Relayed(result, subflows);
    }

    /// <summary>One kernel event: onto its connection's span, or kept until the accept names its token.</summary>
    internal void OnPathManagerEvent(MptcpPmEvent e)
    {
        if (e.Type is MptcpPmEventType.ListenerCreated or MptcpPmEventType.ListenerClosed)
        {
            return;
        }

        lock (_tokenLock)
        {
            if (e.Type == MptcpPmEventType.Closed)
            {
                // In both cases: a token closed before its accept (never traced) must not stay buffered.
                _pendingEvents.Remove(e.Token);
            }

            if (_byToken.TryGetValue(e.Token, out var trace))
            {
                trace.OnPathManagerEvent(e);
                return;
            }

            if (e.Type == MptcpPmEventType.Closed)
            {
                return;
            }

            // The kernel reports a connection's first subflows before the accept reads its token: kept until then.
            long now = _time.GetTimestamp();
            if (!_pendingEvents.TryGetValue(e.Token, out var pending))
            {
                if (_pendingEvents.Count >= MaxPendingTokens || now >= _nextPendingSweep)
                {
                    _nextPendingSweep = now + (long)(PendingLifetime.TotalSeconds * _time.TimestampFrequency);
                    SweepPending(now);
                }

                if (_pendingEvents.Count >= MaxPendingTokens)
                {
                    return;
                }

                pending = new PendingEvents(now);
                _pendingEvents.Add(e.Token, pending);
            }

            if (pending.Events.Count < 64)
            {
                pending.Events.Add(e);
            }
        }
    }

    /// <summary>Under <see cref="_tokenLock"/>: drops tokens whose accept did not come within <see cref="PendingLifetime"/>.</summary>
    private void SweepPending(long now)
    {
        List<uint>? stale = null;
        foreach (var (token, pending) in _pendingEvents)
        {
            if (_time.GetElapsedTime(pending.Since, now) > PendingLifetime)
            {
                (stale ??= []).Add(token);
            }
        }

        foreach (var token in stale ?? [])
        {
            _pendingEvents.Remove(token);
        }
    }

    private sealed class PendingEvents(long since)
    {
        public long Since => since;

        public List<MptcpPmEvent> Events { get; } = [];
    }

    private static bool IsCacheAnswer(DecisionReason reason) => reason is DecisionReason.ServerSpeaksMptcp or DecisionReason.ServerTcpOnly
        or DecisionReason.ProxyBeyond or DecisionReason.ProbeFailedRecently or DecisionReason.ProbedByOther;

    private static KeyValuePair<string, object?> DecisionTag(string decision) => new("proxysel.decision", decision);

    private static string Lower<T>(T value)
        where T : struct, Enum => value.ToString().ToLowerInvariant();

    /// <summary>Stops the listener; traces still open end as aborted (the engine closed their connections).</summary>
    public void Dispose()
    {
        _stopping.Cancel();
        _pmListener?.Dispose();
        try
        {
            _pmLoop.Wait(TimeSpan.FromSeconds(2));
        }
        catch (AggregateException)
        {
        }

        foreach (var flow in _byFlow.Keys)
        {
            if (TryRemoveTrace(flow, out var trace))
            {
                trace.End("aborted", error: false);
            }
        }

        foreach (var probe in _probes.Values)
        {
            probe.Span?.Stop();
        }

        _probes.Clear();
        _stopping.Dispose();
        if (_ownsMeter)
        {
            Meter.Dispose();
        }
    }
}

/// <summary>One held connection's root span; safe to update from the hook, the relay and the event listener.</summary>
public sealed class ConnectionTrace(Activity root, long started)
{
    private readonly Lock _lock = new();
    private readonly List<uint> _tokens = [];
    private int _subflowsEstablished;
    private bool _ended;

    public Activity Root => root;

    /// <summary>Timestamp of the SYN's decision (the telemetry's clock).</summary>
    public long Started => started;

    public IReadOnlyList<uint> Tokens
    {
        get
        {
            lock (_lock)
            {
                return [.. _tokens];
            }
        }
    }

    public void SetDecision(string decision, DecisionReason reason)
    {
        lock (_lock)
        {
            root.SetTag("proxysel.decision", decision);
            root.SetTag("proxysel.reason", reason.ToString());
        }
    }

    public void AddToken(uint token)
    {
        lock (_lock)
        {
            _tokens.Add(token);
            root.SetTag("proxysel.mptcp.token", token.ToString("x8", CultureInfo.InvariantCulture));
        }
    }

    /// <summary>A child <c>proxysel.upstream_connect</c> span (null when not recorded); the caller stops it.</summary>
    public Activity? StartUpstreamConnect(IPEndPoint destination, TransportProtocol protocol)
    {
        var span = ProxyTelemetry.Source.StartActivity("proxysel.upstream_connect", ActivityKind.Client, root.Context);
        span?.SetTag("server.address", destination.Address.ToString());
        span?.SetTag("server.port", destination.Port);
        span?.SetTag("network.transport", "tcp");
        span?.SetTag("proxysel.upstream.protocol", protocol == TransportProtocol.Mptcp ? "mptcp" : "tcp");
        return span;
    }

    public void OnPathManagerEvent(MptcpPmEvent e)
    {
        string? name = e.Type switch
        {
            // The initial subflow is established with the connection; MP_JOINs add the others.
            MptcpPmEventType.Established or MptcpPmEventType.SubflowEstablished => "proxysel.subflow.established",
            MptcpPmEventType.SubflowClosed => "proxysel.subflow.closed",
            MptcpPmEventType.Closed => "proxysel.mptcp.closed",
            _ => null,
        };
        if (name is null)
        {
            return;
        }

        var tags = new ActivityTagsCollection
        {
            ["mptcp.token"] = e.Token.ToString("x8", CultureInfo.InvariantCulture),
            ["proxysel.subflow.initial"] = e.Type == MptcpPmEventType.Established,
        };
        if (e.Source is { } local)
        {
            tags["network.local.address"] = local.Address.ToString();
            tags["network.local.port"] = local.Port;
        }

        if (e.Destination is { } remote)
        {
            tags["network.peer.address"] = remote.Address.ToString();
            tags["network.peer.port"] = remote.Port;
        }

        if (e.Type is MptcpPmEventType.SubflowEstablished or MptcpPmEventType.SubflowClosed)
        {
            tags["mptcp.local_id"] = (int)e.LocalId;
            tags["mptcp.remote_id"] = (int)e.RemoteId;
            tags["mptcp.backup"] = e.Backup;
        }

        if (e.Error != 0)
        {
            tags["error.type"] = e.Error.ToString(CultureInfo.InvariantCulture);
        }

        lock (_lock)
        {
            if (_ended)
            {
                return;
            }

            if (name == "proxysel.subflow.established")
            {
                _subflowsEstablished++;
            }

            root.AddEvent(new ActivityEvent(name, tags: tags));
        }
    }

    public void Relayed(RelayResult result, int subflows)
    {
        lock (_lock)
        {
            if (_ended)
            {
                return;
            }

            root.SetTag("proxysel.subflows", Math.Max(subflows, _subflowsEstablished));
            root.SetTag("proxysel.bytes.upstream", result.BytesClientToUpstream);
            root.SetTag("proxysel.bytes.downstream", result.BytesUpstreamToClient);
            root.SetTag("proxysel.upstream.connect_status", result.ConnectStatus.ToString());
            root.SetTag("proxysel.client.mptcp", result.ClientMptcp.Status.ToString());
            root.SetTag("proxysel.upstream.mptcp", result.UpstreamMptcp.Status.ToString());
        }

        bool error = result.Reason is CloseReason.Error or CloseReason.UpstreamConnectFailed or CloseReason.Refused;
        End(result.Reason.ToString(), error);
    }

    public void End(string closeReason, bool error)
    {
        lock (_lock)
        {
            if (_ended)
            {
                return;
            }

            _ended = true;
            root.SetTag("proxysel.close_reason", closeReason);
            if (error)
            {
                root.SetStatus(ActivityStatusCode.Error, closeReason);
            }

            root.Stop();
        }
    }
}
