using System.Net;
using System.Net.Sockets;
using ProxySelection.Engine.Fronts;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Negotiation;
using ProxySelection.Relay;

namespace ProxySelection.Engine;

/// <summary>
/// The host-configured mode (spec §7.10): a SOCKS5 server and an RFC 8803 Convert server on MPTCP listeners. The host
/// chose this proxy, so the negotiation decides nothing here. A client in its handshake holds a slot of a small bound of
/// its own (<see cref="MaxHandshakes"/>); only a parsed, authenticated CONNECT takes a slot of the shared limit
/// (<see cref="ProxyNegotiator.TryAdmit"/>), so silent clients cannot starve the transparent mode. The upstream leg goes
/// through the same connector, the data phase through a relay with the same options, and the trace, counters, status
/// and drain are the engine's.
/// </summary>
public sealed partial class ProxyEngine
{
    private readonly RelayServer? _frontRelay;
    private readonly Lock _frontLock = new();
    private readonly List<Socket> _frontListeners = [];
    private readonly List<Task> _frontAccepts = [];
    private readonly LocalAddresses _localAddresses;
    private readonly FrontLogBudget _frontLogBudget;
    private int _handshakes;

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

    /// <summary>
    /// Clients in their handshake at once, both fronts together: a tenth of the connection limit, at least 16, at most
    /// 256. Over it a new client is closed at once (counted as refused), before it reads a byte.
    /// </summary>
    internal int MaxHandshakes => MaxHandshakesFor(_options.Negotiation.MaxConnections);

    internal static int MaxHandshakesFor(int capacity) => Math.Min(256, Math.Max(16, capacity / 10));

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
            return Task.WhenAll(_frontAccepts);
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

    /// <summary>One host-configured front: its name in the log, its handshake, its counts.</summary>
    private sealed record Front(string Name, Func<IHostConfiguredHandshake> Handshake, SocksCounters Counters);

    private void StartFronts()
    {
        if (_options.Socks is not { } socks)
        {
            return;
        }

        if (socks.Listen is { } listen)
        {
            var socket = OpenFront(listen, fastOpen: false, out var transport);
            SocksEndPoint = (IPEndPoint?)socket.LocalEndPoint;
            SocksLog.Listening(_log, "socks", SocksEndPoint, transport, socks.Credentials is null ? "none" : "username/password");
            if (socks.Credentials is null && IsWildcard(listen.Address))
            {
                SocksLog.OpenToAll(_log, "socks", SocksEndPoint);
            }

            StartAccepting(socket, new Front("socks", () => new Socks5Handshake(socks.Credentials), SocksCounters));
        }

        if (socks.Convert is { } convert)
        {
            // RFC 8803 §4: the Convert message rides in the SYN, which a listener takes only with TCP Fast Open.
            var socket = OpenFront(convert, fastOpen: true, out var transport);
            ConvertEndPoint = (IPEndPoint?)socket.LocalEndPoint;
            SocksLog.Listening(_log, "convert", ConvertEndPoint, transport, "none");
            if (IsWildcard(convert.Address))
            {
                SocksLog.OpenToAll(_log, "convert", ConvertEndPoint);
            }

            StartAccepting(socket, new Front("convert", () => new ConvertHandshake(), ConvertCounters));
        }
    }

    private static bool IsWildcard(IPAddress address) => address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any);

    private Socket OpenFront(IPEndPoint endPoint, bool fastOpen, out string transport)
    {
        var family = endPoint.AddressFamily;
        Socket listener;
        transport = "mptcp";
        try
        {
            listener = SocketFactory.Default.Create(family, TransportProtocol.Mptcp);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ProtocolNotSupported)
        {
            // net.mptcp.enabled=0: host-configured clients still get a proxy, as plain TCP.
            SocksLog.NoMptcp(_log, e.SocketErrorCode);
            listener = new Socket(family, SocketType.Stream, ProtocolType.Tcp);
            transport = "tcp";
        }

        try
        {
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Bind(endPoint);
            if (fastOpen)
            {
                try
                {
                    // TCP_FASTOPEN: the queue of pending 0-RTT connections; the namespace's net.ipv4.tcp_fastopen decides the rest.
                    listener.SetRawSocketOption(6 /* IPPROTO_TCP */, 23 /* TCP_FASTOPEN */, BitConverter.GetBytes(256));
                    transport += "+tfo";
                }
                catch (SocketException e)
                {
                    SocksLog.NoFastOpen(_log, e.SocketErrorCode);
                }
            }

            listener.Listen(512);
        }
        catch
        {
            listener.Dispose();
            throw;
        }

        return listener;
    }

    private void StartAccepting(Socket listener, Front front)
    {
        lock (_frontLock)
        {
            _frontListeners.Add(listener);
            _frontAccepts.Add(Task.Run(() => AcceptFrontAsync(listener, front), CancellationToken.None));
        }
    }

    /// <summary>Draining: no new host-configured client is accepted; relayed ones go on until they end or the drain does.</summary>
    private void StopFrontListeners()
    {
        lock (_frontLock)
        {
            foreach (var listener in _frontListeners)
            {
                listener.Dispose();
            }

            _frontListeners.Clear();
        }
    }

    private bool IsListening(Socket listener)
    {
        lock (_frontLock)
        {
            return _frontListeners.Contains(listener);
        }
    }

    private async Task AcceptFrontAsync(Socket listener, Front front)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                if (!IsListening(listener))
                {
                    return;
                }

                // EMFILE and the like: back off a little instead of spinning on the error.
                if (TakeFrontLine())
                {
                    SocksLog.AcceptFailed(_log, front.Name, e.SocketErrorCode);
                }

                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(100), _time, _stopping.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            bool draining = IsDraining;
            if (draining || Interlocked.Increment(ref _handshakes) > MaxHandshakes)
            {
                // Over the handshake bound: closed before it costs a task or a buffer; the transparent mode's slots stay free.
                if (!draining)
                {
                    Interlocked.Decrement(ref _handshakes);
                }

                front.Counters.AddAccepted();
                front.Counters.AddRefused();
                LogRefused(front, RemoteOf(client), draining ? "draining" : "handshakes at their bound");
                CloseAbortively(client);
                continue;
            }

            var run = Task.Run(() => FrontConnectionAsync(client, front), CancellationToken.None);
            _connections[run] = 0;
            _ = run.ContinueWith(t => _connections.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private async Task FrontConnectionAsync(Socket client, Front front)
    {
        var socks = _options.Socks!;
        long acceptedAt = _time.GetTimestamp();
        var clientEndPoint = RemoteOf(client);
        var counters = front.Counters;
        counters.AddAccepted();
        _telemetry.AddConnection("host_configured");
        IHostConfiguredHandshake? handshake;
        byte[] pending;
        try
        {
            (handshake, pending) = await FrontHandshakeAsync(client, socks, front).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The engine is stopping (or the client failed in a way the handshake did not name): this connection ends.
            CloseAbortively(client);
            return;
        }
        finally
        {
            Interlocked.Decrement(ref _handshakes);
        }

        if (handshake is null)
        {
            return;
        }

        // A parsed, authenticated CONNECT: only now a slot of the limit the transparent mode shares.
        if (IsDraining || !_negotiator.TryAdmit())
        {
            counters.AddRefused();
            LogRefused(front, clientEndPoint, IsDraining ? "draining" : "at capacity");
            await SendAndCloseAsync(client, handshake.Failed(SocksReply.GeneralFailure)).ConfigureAwait(false);
            return;
        }

        Socket? upstream = null;
        ConnectionTrace? trace = null;
        try
        {

            var target = handshake.Target;
            trace = _telemetry.HostConfigured(clientEndPoint, target.Address?.ToString() ?? target.Host!, target.Port, ClientToken(client), handshake.User, front.Name);
            var (connected, reply, detail) = await FrontConnectAsync(target, socks, trace).ConfigureAwait(false);
            if (connected is not null || TakeFrontLine())
            {
                // Failures are per-client lines too: bounded under a flood like the handshake's.
                SocksLog.Connect(_log, front.Name, clientEndPoint, target.ToString(), reply, detail);
            }
            if (connected is null)
            {
                counters.AddConnectFailed();
                trace?.End(front.Name + "_" + reply, error: true);
                await SendAndCloseAsync(client, handshake.Failed(reply)).ConfigureAwait(false);
                return;
            }

            upstream = connected;
            // BND.ADDR/BND.PORT: the address the proxy connected from (RFC 1928 §6).
            await client.SendAsync(handshake.Succeeded((IPEndPoint?)upstream.LocalEndPoint), SocketFlags.None, _stopping.Token).ConfigureAwait(false);
            if (pending.Length > 0)
            {
                // Bytes the client sent behind its request (an optimistic client) belong to the server.
                await upstream.SendAsync(pending, SocketFlags.None, _stopping.Token).ConfigureAwait(false);
            }

            counters.AddConnected();
            var owned = upstream;
            upstream = null;
            var flow = clientEndPoint is not null && RemoteOf(owned) is { } server ? new FlowEndPoints(clientEndPoint, server) : (FlowEndPoints?)null;
            if (flow is { } started)
            {
                _frontAccepted[started] = acceptedAt;
            }

            RelayResult result;
            try
            {
                result = await _frontRelay!.RelayAsync(client, owned).ConfigureAwait(false);
                // The bytes behind the request went to the server before the relay began: they count all the same.
                result = result with { BytesClientToUpstream = result.BytesClientToUpstream + pending.Length };
            }
            finally
            {
                if (flow is { } ended)
                {
                    _frontAccepted.TryRemove(ended, out _);
                }
            }

            SocksLog.Relayed(_log, front.Name, clientEndPoint ?? result.Client, result.Upstream ?? RemoteOf(owned), result.Reason, result.BytesClientToUpstream,
                result.BytesUpstreamToClient, result.ClientMaxSubflows, result.ClientMptcp.Status, result.UpstreamMptcp.Status, result.Duration.TotalMilliseconds);
            _telemetry.Relayed(trace, result);
            trace = null;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The client or the server went away between the reply and the relay, or the engine is stopping; whatever
            // else failed, this connection ends and the listener goes on.
            trace?.End("aborted", error: true);
            CloseAbortively(client);
            if (upstream is not null)
            {
                CloseAbortively(upstream);
            }
        }
        finally
        {
            _negotiator.OnConnectionClosed();
        }
    }

    /// <summary>
    /// Reads the handshake within its deadline and size bound. Returns the handshake in state Connect and any bytes
    /// behind the request, or null after it answered a failure (or the client left) and closed the socket.
    /// </summary>
    private async Task<(IHostConfiguredHandshake? Handshake, byte[] Pending)> FrontHandshakeAsync(Socket client, SocksOptions socks, Front front)
    {
        var handshake = front.Handshake();
        var counters = front.Counters;
        // Twice the longest message of either protocol: a message and what follows it fit.
        var buffer = new byte[2 * Math.Max(Socks5Handshake.MaxMessageLength, ConvertHandshake.MaxMessageLength)];
        int filled = 0;
        using var timeout = new CancellationTokenSource(socks.HandshakeTimeout, _time);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token, timeout.Token);
        try
        {
            while (true)
            {
                var step = handshake.Advance(buffer.AsSpan(0, filled), out int consumed, out var reply);
                buffer.AsSpan(consumed, filled - consumed).CopyTo(buffer);
                filled -= consumed;
                switch (step)
                {
                    case Socks5Step.Connect:
                        return (handshake, buffer.AsSpan(0, filled).ToArray());
                    case Socks5Step.Send:
                        await client.SendAsync(reply, SocketFlags.None, deadline.Token).ConfigureAwait(false);
                        continue;
                    case Socks5Step.Close:
                        counters.AddHandshakeFailed();
                        LogHandshakeFailed(front, client, handshake.Failure ?? "closed");
                        await SendAndCloseAsync(client, reply).ConfigureAwait(false);
                        return (null, []);
                }

                // NeedMore: every message fits the buffer (MaxMessageLength), so a full buffer cannot happen here.
                int read = await client.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, deadline.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    counters.AddHandshakeFailed();
                    LogHandshakeFailed(front, client, "client closed in " + handshake.StateName);
                    CloseAbortively(client);
                    return (null, []);
                }

                filled += read;
            }
        }
        catch (OperationCanceledException) when (!_stopping.IsCancellationRequested)
        {
            counters.AddHandshakeFailed();
            LogHandshakeFailed(front, client, "timed out in " + handshake.StateName);
            CloseAbortively(client);
            return (null, []);
        }
        catch (SocketException e)
        {
            counters.AddHandshakeFailed();
            LogHandshakeFailed(front, client, e.SocketErrorCode.ToString());
            CloseAbortively(client);
            return (null, []);
        }
    }

    /// <summary>Resolves (ATYP 3) and connects; on failure the reply code that matches (RFC 1928 §6).</summary>
    private async Task<(Socket? Upstream, SocksReply Reply, string Detail)> FrontConnectAsync(Socks5Target target, SocksOptions socks, ConnectionTrace? trace)
    {
        IPAddress[] addresses;
        if (target.Address is { } address)
        {
            addresses = [address];
        }
        else
        {
            using var timeout = new CancellationTokenSource(socks.ResolveTimeout, _time);
            using var resolve = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token, timeout.Token);
            try
            {
                addresses = await Dns.GetHostAddressesAsync(target.Host!, resolve.Token).WaitAsync(socks.ResolveTimeout, _time, resolve.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or TimeoutException or ArgumentException)
            {
                return (null, SocksReply.HostUnreachable, e is SocketException s ? "resolve: " + s.SocketErrorCode : "resolve: timed out");
            }

            if (addresses.Length == 0)
            {
                return (null, SocksReply.HostUnreachable, "resolve: no address");
            }
        }

        (SocksReply Reply, string Detail) failure = (SocksReply.GeneralFailure, "no address tried");
        foreach (var candidate in addresses.Take(socks.MaxAddresses))
        {
            var destination = new IPEndPoint(candidate.IsIPv4MappedToIPv6 ? candidate.MapToIPv4() : candidate, target.Port);
            if (!IsAllowedDestination(destination.Address) || _localAddresses.Contains(destination.Address))
            {
                // The proxy host's own services (loopback or not, its own fronts included: a loop) and broadcast or
                // multicast groups are not a client's to reach.
                failure = (SocksReply.NotAllowed, destination + " not allowed");
                continue;
            }

            // Spec §7.10: MPTCP toward a server the cache knows speaks it, else TCP (the downgrade role's leg).
            var key = DestinationKey.From(destination);
            bool mptcp = _negotiator.Cache.TryPeek(key, out var entry) && entry.State == CapabilityState.MptcpCapable;
            var protocol = mptcp ? TransportProtocol.Mptcp : TransportProtocol.Tcp;
            var span = trace?.StartUpstreamConnect(destination, protocol);
            var connect = await ConnectFrontLegAsync(destination, protocol).ConfigureAwait(false);
            span?.SetTag("proxysel.upstream.connect_status", connect.Status.ToString());
            span?.Dispose();
            if (connect.Connected && IsSelfConnection(connect.Socket!))
            {
                // An address this host took after the last look at its interfaces: the kernel connected the host to itself.
                CloseAbortively(connect.Socket!);
                _localAddresses.Invalidate();
                failure = (SocksReply.NotAllowed, destination + " not allowed");
                continue;
            }

            if (connect.Connected)
            {
                if (trace is not null)
                {
                    _telemetry.UpstreamConnected(trace, connect.Socket!);
                }

                return (connect.Socket, SocksReply.Succeeded, $"{destination} {(mptcp ? "mptcp" : "tcp")}");
            }

            if (mptcp)
            {
                _negotiator.OnUpstreamFailed(key);
            }

            failure = (ReplyFor(connect), $"{destination} {connect.Status}");
            if (connect.Status == UpstreamConnectStatus.Cancelled)
            {
                break;
            }
        }

        return (null, failure.Reply, failure.Detail);
    }

    /// <summary>The front's upstream connect; beside an explicit transparent mode, its SYN registered for the proxy's Claim.</summary>
    private async Task<UpstreamConnectResult> ConnectFrontLegAsync(IPEndPoint destination, TransportProtocol protocol)
    {
        if (!SignsFrontLegs)
        {
            return await _connector.ConnectAsync(destination, protocol, null, _stopping.Token).ConfigureAwait(false);
        }

        // Spec §7.10: the leg's SYN carries MP_PROXY Claim (the 16-byte form), so a P-aware proxy beyond passes it.
        _signer.ExpectUpstreamSyn(destination, new ProxySignal(SignalKind.Claim, _options.Negotiation.ProxyId, _options.Negotiation.Priority));
        try
        {
            return await _connector.ConnectAsync(destination, protocol, null, _stopping.Token).ConfigureAwait(false);
        }
        finally
        {
            _signer.ForgetUpstreamSyn(destination);
        }
    }

    private static bool IsSelfConnection(Socket socket)
    {
        try
        {
            return socket.LocalEndPoint is IPEndPoint local && socket.RemoteEndPoint is IPEndPoint remote && local.Address.Equals(remote.Address);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    private void LogRefused(Front front, IPEndPoint? client, string reason)
    {
        if (TakeFrontLine())
        {
            SocksLog.Refused(_log, front.Name, client, reason);
        }
    }

    private void LogHandshakeFailed(Front front, Socket client, string reason)
    {
        if (TakeFrontLine())
        {
            SocksLog.HandshakeFailed(_log, front.Name, RemoteOf(client), reason);
        }
    }

    private bool TakeFrontLine()
    {
        bool take = _frontLogBudget.TryTake(out long skipped);
        if (skipped > 0)
        {
            SocksLog.LinesLeftOut(_log, skipped, FrontLogBudget.LinesPerWindow);
        }

        return take;
    }

    /// <summary>The RFC 1928 §6 code for a failed upstream connect.</summary>
    internal static SocksReply ReplyFor(UpstreamConnectResult connect) => connect.Status switch
    {
        UpstreamConnectStatus.Refused => SocksReply.ConnectionRefused,
        UpstreamConnectStatus.TimedOut => SocksReply.TtlExpired,
        UpstreamConnectStatus.Unreachable when connect.Error is SocketError.NetworkUnreachable or SocketError.NetworkDown => SocksReply.NetworkUnreachable,
        UpstreamConnectStatus.Unreachable or UpstreamConnectStatus.CircuitOpen => SocksReply.HostUnreachable,
        _ => SocksReply.GeneralFailure,
    };

    internal static bool IsAllowedDestination(IPAddress address) =>
        !IPAddress.IsLoopback(address)
        && !address.Equals(IPAddress.Any) && !address.Equals(IPAddress.IPv6Any)
        && !address.Equals(IPAddress.Broadcast)
        && !address.IsIPv6Multicast
        && !(address.AddressFamily == AddressFamily.InterNetwork && (address.GetAddressBytes()[0] & 0xF0) == 0xE0);

    private static IPEndPoint? RemoteOf(Socket socket)
    {
        try
        {
            // A v4 client of a dual-stack listener is named as v4, as everywhere else in the logs.
            return socket.RemoteEndPoint is IPEndPoint { Address.IsIPv4MappedToIPv6: true } mapped
                ? new IPEndPoint(mapped.Address.MapToIPv4(), mapped.Port)
                : socket.RemoteEndPoint as IPEndPoint;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return null;
        }
    }

    private static uint ClientToken(Socket client) =>
        MptcpSocket.TryGetInfo(client, out var info) == MptcpStatus.Active ? info.Token : 0;

    /// <summary>Sends a failure reply (best effort) and closes with a FIN, so the client reads the reply before the end.</summary>
    private async Task SendAndCloseAsync(Socket client, byte[] reply)
    {
        try
        {
            if (reply.Length > 0)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2), _time);
                await client.SendAsync(reply, SocketFlags.None, timeout.Token).ConfigureAwait(false);
            }

            client.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
        finally
        {
            client.Dispose();
        }
    }
}
