using System.Net;
using System.Net.Sockets;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Engine.Fronts;
using ProxySelection.Negotiation;
using ProxySelection.Relay;

namespace ProxySelection.Engine;

/// <summary>
/// The host-configured mode (spec §7.10): the engine's side of its fronts (<see cref="HostConfiguredFront"/>, one per
/// listener). A thin adapter: the negotiator's shared limit as <see cref="IFrontAdmission"/>, the
/// connector with the capability cache and the upstream Claim as <see cref="IFrontUpstream"/>, the engine's telemetry
/// and status as <see cref="IFrontTelemetry"/>.
/// </summary>
public sealed partial class ProxyEngine
{
    private readonly RelayServer? _frontRelay;
    private readonly Lock _frontLock = new();
    private readonly List<HostConfiguredFront> _fronts = [];
    private readonly LocalAddresses _localAddresses;
    private readonly LogBudget _frontLogBudget;
    private SourceLimits? _frontLimits;

    /// <summary>When each relayed SOCKS or Convert connection was accepted, by (client, server): the status's age.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<FlowEndPoints, long> _frontAccepted = new();

    /// <summary>The SOCKS front's counts (zero without one).</summary>
    public SocksCounters SocksCounters { get; } = new();

    /// <summary>The Convert front's counts (zero without one).</summary>
    public SocksCounters ConvertCounters { get; } = new();

    /// <summary>Where the SOCKS server listens, once started; null without one.</summary>
    public IPEndPoint? SocksEndPoint { get; private set; }

    /// <summary>Where the Convert server listens, once started; null without one.</summary>
    public IPEndPoint? ConvertEndPoint { get; private set; }

    /// <summary>Clients in their handshake at once, both fronts together (<see cref="SourceLimits.MaxHandshakesFor"/>).</summary>
    internal int MaxHandshakes => SourceLimits.MaxHandshakesFor(_options.Negotiation.MaxConnections);

    /// <summary>
    /// Explicit beside a transparent mode: the egress queue exists and the connector marks its sockets, so a front's leg
    /// is registered with the egress hook and its SYN carries the proxy's Claim (spec §7.10). Alone, the fronts have no
    /// queue: the connector does not mark, and nothing is registered.
    /// </summary>
    private bool SignsFrontLegs => _options.Transparent && _options.Negotiation.Mode == SignalingMode.Explicit;

    /// <summary>The accept loops of the fronts; they end once the engine stops.</summary>
    private Task FrontAcceptLoops()
    {
        lock (_frontLock)
        {
            return Task.WhenAll(_fronts.Select(f => f.AcceptLoop));
        }
    }

    private static RelayServer? CreateFrontRelay(ProxyEngineOptions options, UpstreamConnector connector, TimeProvider time) =>
        options.Socks is null
            ? null
            : new RelayServer(
                new RelayOptions
                {
                    ClientProtocol = TransportProtocol.Mptcp,
                    UpstreamProtocol = TransportProtocol.Tcp,
                    MaxConnections = options.Negotiation.MaxConnections,
                    IdleTimeout = options.IdleTimeout,
                },
                new ListenerOptions(), SocketFactory.Default, connector, time, static _ => { });

    private void StartFronts()
    {
        if (_options.Socks is not { } socks)
        {
            return;
        }

        var adapter = new FrontAdapter(this);
        _frontLimits = new SourceLimits(MaxHandshakes, socks.MaxHandshakesPerSource, socks.MaxConnectionsPerSource);
        var services = new FrontServices(adapter, adapter, adapter, _frontRelay!, _frontLimits,
            _localAddresses, _frontLogBudget, _time, _log, _stopping.Token);
        if (socks.Listen is { } listen)
        {
            var front = HostConfiguredFront.Socks(listen, socks, SocksCounters, services);
            Start(front);
            SocksEndPoint = front.EndPoint;
        }

        if (socks.Convert is { } convert)
        {
            var front = HostConfiguredFront.Convert(convert, socks, ConvertCounters, services);
            Start(front);
            ConvertEndPoint = front.EndPoint;
        }
    }

    private void Start(HostConfiguredFront front)
    {
        front.Start();
        lock (_frontLock)
        {
            _fronts.Add(front);
        }
    }

    /// <summary>
    /// What a drain waits for: the held connections (slots of the shared limit), and the fronts' clients not holding
    /// one yet — a front still listening in its grace, a client in its handshake (closed at the handshake timeout at
    /// the latest). The fronts are read first: a client takes its slot before its handshake's ends.
    /// </summary>
    public int DrainPending
    {
        get
        {
            int fronts;
            lock (_frontLock)
            {
                fronts = _fronts.Count(f => f.IsListening);
            }

            fronts += _frontLimits?.Handshakes ?? 0;
            return fronts + _negotiator.ActiveConnections;
        }
    }

    /// <summary>A drain begins: each front serves what reaches it for its grace and its queue, then closes (<see cref="HostConfiguredFront.BeginDrain"/>).</summary>
    private void DrainFronts()
    {
        lock (_frontLock)
        {
            foreach (var front in _fronts)
            {
                front.BeginDrain();
            }
        }
    }

    /// <summary>Stopping: the fronts' listeners close at once; relayed connections end with the front relay.</summary>
    private void StopFrontListeners()
    {
        lock (_frontLock)
        {
            foreach (var front in _fronts)
            {
                front.StopListening();
            }
        }
    }

    /// <summary>The engine as its fronts see it.</summary>
    private sealed class FrontAdapter(ProxyEngine engine) : IFrontAdmission, IFrontUpstream, IFrontTelemetry
    {
        public bool TryTakeSlot() => engine._negotiator.TryAdmit();

        public void ReleaseSlot() => engine._negotiator.OnConnectionClosed();

        public void Track(Task connection)
        {
            engine._connections[connection] = 0;
            _ = connection.ContinueWith(t => engine._connections.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }

        public TransportProtocol ProtocolFor(IPEndPoint destination) =>
            engine._negotiator.Cache.TryPeek(DestinationKey.From(destination), out var entry) && entry.State == CapabilityState.MptcpCapable
                ? TransportProtocol.Mptcp
                : TransportProtocol.Tcp;

        public async ValueTask<UpstreamConnectResult> ConnectAsync(IPEndPoint destination, TransportProtocol protocol, CancellationToken cancellationToken)
        {
            if (!engine.SignsFrontLegs)
            {
                return await engine._connector.ConnectReportingIcmpAsync(destination, protocol, cancellationToken).ConfigureAwait(false);
            }

            // Spec §7.10: the leg's SYN carries MP_PROXY Claim (the 16-byte form), so a P-aware proxy beyond passes it.
            var negotiation = engine._options.Negotiation;
            engine._signer.ExpectUpstreamSyn(destination, new ProxySignal(SignalKind.Claim, negotiation.ProxyId, negotiation.Priority));
            try
            {
                return await engine._connector.ConnectReportingIcmpAsync(destination, protocol, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                engine._signer.ForgetUpstreamSyn(destination);
            }
        }

        public void OnUpstreamFailed(IPEndPoint destination) => engine._negotiator.OnUpstreamFailed(DestinationKey.From(destination));

        public void Accepted() => engine._telemetry.AddConnection("host_configured");

        public ConnectionTrace? Started(IPEndPoint? client, Socks5Target target, uint token, string? user, string front) =>
            engine._telemetry.HostConfigured(client, target.Address?.ToString() ?? target.Host!, target.Port, token, user, front);

        public void UpstreamConnected(ConnectionTrace trace, Socket upstream) => engine._telemetry.UpstreamConnected(trace, upstream);

        public void Relaying(FlowEndPoints flow, long acceptedAt) => engine._frontAccepted[flow] = acceptedAt;

        public void RelayEnded(FlowEndPoints flow) => engine._frontAccepted.TryRemove(flow, out _);

        public void Relayed(ConnectionTrace? trace, RelayResult result) => engine._telemetry.Relayed(trace, result);
    }
}
