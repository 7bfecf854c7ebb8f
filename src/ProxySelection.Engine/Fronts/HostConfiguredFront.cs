using System.Net;
using System.Net.Sockets;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Relay;

namespace ProxySelection.Engine.Fronts;

/// <summary>
/// One host-configured front (spec §7.10): a listener, SOCKS5 (RFC 1928/1929) or Convert (RFC 8803), its accept loop
/// and its connections. The host chose this proxy, so the negotiation decides nothing here. A client is admitted by
/// <see cref="SourceLimits"/> before a byte is read (a bound on handshakes, globally and per source, and on a source's
/// connections); only a parsed, authenticated request takes a slot of the limit the transparent mode shares
/// (<see cref="IFrontAdmission"/>). The upstream leg goes through <see cref="IFrontUpstream"/>, the data phase through
/// the relay.
/// </summary>
public sealed class HostConfiguredFront
{
    private readonly IPEndPoint _listen;
    private readonly SocksOptions _options;
    private readonly Func<IHostConfiguredHandshake> _handshake;
    private readonly FrontServices _services;
    private readonly bool _fastOpen;
    private readonly Lock _lock = new();
    private Socket? _listener;
    private Task _acceptLoop = Task.CompletedTask;

    /// <summary>Cancelled at the end of a drain's grace (<see cref="BeginDrain"/>) or at the proxy's stop.</summary>
    private CancellationTokenSource? _accepting;
    private ITimer? _graceEnd;

    private HostConfiguredFront(string name, IPEndPoint listen, SocksOptions options, SocksCounters counters, Func<IHostConfiguredHandshake> handshake, bool fastOpen, FrontServices services)
    {
        Name = name;
        _listen = listen;
        _options = options;
        Counters = counters;
        _handshake = handshake;
        _fastOpen = fastOpen;
        _services = services;
    }

    /// <summary>The SOCKS5 front on <paramref name="listen"/>, with the options' users (RFC 1929) or NO AUTH.</summary>
    public static HostConfiguredFront Socks(IPEndPoint listen, SocksOptions options, SocksCounters counters, FrontServices services)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new HostConfiguredFront("socks", listen, options, counters, () => new Socks5Handshake(options.Credentials), fastOpen: false, services);
    }

    /// <summary>
    /// The Convert front on <paramref name="listen"/>: RFC 8803 §4, the Convert message rides in the SYN, which a
    /// listener takes only with TCP Fast Open.
    /// </summary>
    public static HostConfiguredFront Convert(IPEndPoint listen, SocksOptions options, SocksCounters counters, FrontServices services) =>
        new("convert", listen, options, counters, () => new ConvertHandshake(), fastOpen: true, services);

    /// <summary>"socks" or "convert": the log's and the trace's name of the front.</summary>
    public string Name { get; }

    public SocksCounters Counters { get; }

    /// <summary>Where it listens, once started.</summary>
    public IPEndPoint? EndPoint { get; private set; }

    /// <summary>The accept loop; it ends once the listener is closed or the proxy stops.</summary>
    public Task AcceptLoop
    {
        get
        {
            lock (_lock)
            {
                return _acceptLoop;
            }
        }
    }

    /// <summary>
    /// Still listening: before a drain, and in a drain until its grace is over and the accept queue is taken
    /// (<see cref="BeginDrain"/>); the drain waits for it.
    /// </summary>
    public bool IsListening
    {
        get
        {
            lock (_lock)
            {
                return _listener is not null;
            }
        }
    }

    /// <summary>Opens the listener and starts accepting.</summary>
    public void Start()
    {
        var listener = Open(out string transport);
        EndPoint = (IPEndPoint?)listener.LocalEndPoint;
        var log = _services.Log;
        SocksLog.Listening(log, Name, EndPoint, transport, _options.Credentials is null || Name != "socks" ? "none" : "username/password");
        if ((Name != "socks" || _options.Credentials is null) && (_listen.Address.Equals(IPAddress.Any) || _listen.Address.Equals(IPAddress.IPv6Any)))
        {
            SocksLog.OpenToAll(log, Name, EndPoint);
        }

        lock (_lock)
        {
            _listener = listener;
            _accepting = CancellationTokenSource.CreateLinkedTokenSource(_services.Stopping);
            var accepting = _accepting.Token;
            _acceptLoop = Task.Run(() => AcceptAsync(listener, accepting), CancellationToken.None);
        }
    }

    /// <summary>
    /// A drain begins (spec §12.6): the front goes on accepting and serving every client for the options'
    /// <see cref="SocksOptions.DrainAcceptGrace"/> (in instance mode the routers' convergence bound: a client whose SYN
    /// the router still sends here is served, not reset), then serves what the kernel has already accepted (its accept
    /// queue) and only then closes the listener, since closing it with connections queued resets them. A request is
    /// never refused because of the drain. Safe to call twice.
    /// </summary>
    public void BeginDrain()
    {
        lock (_lock)
        {
            if (_listener is null || _graceEnd is not null || _accepting is not { } accepting)
            {
                return;
            }

            _graceEnd = _services.Time.CreateTimer(static state => ((CancellationTokenSource)state!).Cancel(), accepting, _options.DrainAcceptGrace, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>Stopping: the listener closes at once (what its queue holds is reset); connections go on until the proxy's stop ends them.</summary>
    public void StopListening()
    {
        lock (_lock)
        {
            _graceEnd?.Dispose();
            _listener?.Dispose();
            _listener = null;
        }
    }

    private Socket Open(out string transport)
    {
        var family = _listen.AddressFamily;
        Socket listener;
        transport = _services.Listener == TransportProtocol.Mptcp ? "mptcp" : "tcp";
        try
        {
            listener = SocketFactory.Default.Create(family, _services.Listener);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ProtocolNotSupported)
        {
            // net.mptcp.enabled=0: host-configured clients still get a proxy, as plain TCP.
            SocksLog.NoMptcp(_services.Log, e.SocketErrorCode);
            listener = new Socket(family, SocketType.Stream, ProtocolType.Tcp);
            transport = "tcp";
        }

        try
        {
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Bind(_listen);
            if (_fastOpen)
            {
                try
                {
                    // TCP_FASTOPEN: the queue of pending 0-RTT connections; the namespace's net.ipv4.tcp_fastopen decides the rest.
                    listener.SetRawSocketOption(6 /* IPPROTO_TCP */, 23 /* TCP_FASTOPEN */, BitConverter.GetBytes(256));
                    transport += "+tfo";
                }
                catch (SocketException e)
                {
                    SocksLog.NoFastOpen(_services.Log, e.SocketErrorCode);
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

    private bool IsCurrent(Socket listener)
    {
        lock (_lock)
        {
            return ReferenceEquals(_listener, listener);
        }
    }

    private async Task AcceptAsync(Socket listener, CancellationToken accepting)
    {
        var stopping = _services.Stopping;
        while (!stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(accepting).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!stopping.IsCancellationRequested)
            {
                // The drain's grace is over.
                CloseAfterQueue(listener);
                return;
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                if (!IsCurrent(listener))
                {
                    return;
                }

                // EMFILE and the like: back off a little instead of spinning on the error.
                if (TakeLine())
                {
                    SocksLog.AcceptFailed(_services.Log, Name, e.SocketErrorCode);
                }

                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(100), _services.Time, accepting).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!stopping.IsCancellationRequested)
                {
                    CloseAfterQueue(listener);
                    return;
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            Admit(client);
        }
    }

    /// <summary>
    /// The end of a drain's grace: takes every connection the kernel has already accepted, then closes the listener.
    /// Closing it first would reset them; a SYN that comes later is the routers' or the operator's SYN drop's to keep away.
    /// </summary>
    private void CloseAfterQueue(Socket listener)
    {
        try
        {
            while (!_services.Stopping.IsCancellationRequested && listener.Poll(0, SelectMode.SelectRead))
            {
                Admit(listener.Accept());
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Closed by the stop meanwhile, or a queued client gone: nothing more to take.
        }

        lock (_lock)
        {
            if (ReferenceEquals(_listener, listener))
            {
                _listener = null;
            }
        }

        listener.Dispose();
    }

    /// <summary>An accepted client: admitted by <see cref="SourceLimits"/> and served by a task of its own, or closed at once over a bound.</summary>
    private void Admit(Socket client)
    {
        var remote = RemoteOf(client);
        var refusal = _services.Limits.TryEnter(remote?.Address, out var slot);
        if (slot is null)
        {
            // Over a bound: closed before it costs a task or a buffer; the transparent mode's slots and other
            // sources' share stay free.
            Counters.AddAccepted();
            Counters.AddRefused();
            LogRefused(remote, refusal switch
            {
                SourceRefusal.Handshakes => "handshakes at their bound",
                SourceRefusal.SourceHandshakes => "handshakes from this source at their bound",
                _ => "connections from this source at their bound",
            });
            CloseAbortively(client);
            return;
        }

        _services.Admission.Track(Task.Run(() => ConnectionAsync(client, remote, slot), CancellationToken.None));
    }

    private async Task ConnectionAsync(Socket client, IPEndPoint? clientEndPoint, SourceLimits.SourceSlot slot)
    {
        using var _ = slot;
        var time = _services.Time;
        long acceptedAt = time.GetTimestamp();
        Counters.AddAccepted();
        _services.Telemetry.Accepted();
        IHostConfiguredHandshake? handshake;
        byte[] pending;
        try
        {
            (handshake, pending) = await HandshakeAsync(client).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The proxy is stopping (or the client failed in a way the handshake did not name): this connection ends.
            slot.EndHandshake();
            CloseAbortively(client);
            return;
        }

        // A parsed, authenticated request: only now a slot of the limit the transparent mode shares, whether the proxy
        // drains or not (spec §12.6: a drain serves what reached it). Taken before the handshake's slot goes, so a
        // drain counting both never sees the connection in neither.
        var admission = _services.Admission;
        bool admitted = handshake is not null && admission.TryTakeSlot();
        slot.EndHandshake();
        if (handshake is null)
        {
            return;
        }

        if (!admitted)
        {
            Counters.AddRefused();
            LogRefused(clientEndPoint, "at capacity");
            await SendAndCloseAsync(client, handshake.AtCapacity()).ConfigureAwait(false);
            return;
        }

        Socket? upstream = null;
        ConnectionTrace? trace = null;
        try
        {
            var target = handshake.Target;
            trace = _services.Telemetry.Started(clientEndPoint, target, ClientToken(client), handshake.User, Name);
            var (connected, reply, icmp, detail) = await ConnectAsync(target, trace).ConfigureAwait(false);
            if (connected is not null || TakeLine())
            {
                // Failures are per-client lines too: bounded under a flood like the handshake's.
                SocksLog.Connect(_services.Log, Name, clientEndPoint, target.ToString(), reply, detail);
            }

            if (connected is null)
            {
                Counters.AddConnectFailed();
                trace?.End(Name + "_" + reply, error: true);
                await SendAndCloseAsync(client, handshake.Failed(reply, icmp)).ConfigureAwait(false);
                return;
            }

            upstream = connected;
            // BND.ADDR/BND.PORT: the address the proxy connected from (RFC 1928 §6).
            await client.SendAsync(handshake.Succeeded((IPEndPoint?)upstream.LocalEndPoint), SocketFlags.None, _services.Stopping).ConfigureAwait(false);
            if (pending.Length > 0)
            {
                // Bytes the client sent behind its request (an optimistic client) belong to the server.
                await upstream.SendAsync(pending, SocketFlags.None, _services.Stopping).ConfigureAwait(false);
            }

            Counters.AddConnected();
            var owned = upstream;
            upstream = null;
            var flow = clientEndPoint is not null && RemoteOf(owned) is { } server ? new FlowEndPoints(clientEndPoint, server) : (FlowEndPoints?)null;
            if (flow is { } started)
            {
                _services.Telemetry.Relaying(started, acceptedAt);
            }

            RelayResult result;
            try
            {
                result = await _services.Relay.RelayAsync(client, owned).ConfigureAwait(false);
                // The bytes behind the request went to the server before the relay began: they count all the same.
                result = result with { BytesClientToUpstream = result.BytesClientToUpstream + pending.Length };
            }
            finally
            {
                if (flow is { } ended)
                {
                    _services.Telemetry.RelayEnded(ended);
                }
            }

            SocksLog.Relayed(_services.Log, Name, clientEndPoint ?? result.Client, result.Upstream ?? flow?.Destination, result.Reason, result.BytesClientToUpstream,
                result.BytesUpstreamToClient, result.ClientMaxSubflows, result.ClientMptcp.Status, result.UpstreamMptcp.Status, result.Duration.TotalMilliseconds);
            _services.Telemetry.Relayed(trace, result);
            trace = null;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The client or the server went away between the reply and the relay, or the proxy is stopping; whatever
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
            admission.ReleaseSlot();
        }
    }

    /// <summary>
    /// Reads the handshake within its deadline and size bound. Returns the handshake in state Connect and any bytes
    /// behind the request, or null after it answered (a failure, or an RFC 8803 Info) or the client left, and closed the socket.
    /// </summary>
    private async Task<(IHostConfiguredHandshake? Handshake, byte[] Pending)> HandshakeAsync(Socket client)
    {
        var handshake = _handshake();
        // Twice the longest message of either protocol: a message and what follows it fit.
        var buffer = new byte[2 * Math.Max(Socks5Handshake.MaxMessageLength, ConvertHandshake.MaxMessageLength)];
        int filled = 0;
        using var timeout = new CancellationTokenSource(_options.HandshakeTimeout, _services.Time);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_services.Stopping, timeout.Token);
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
                        if (handshake.Failure is { } failure)
                        {
                            Counters.AddHandshakeFailed();
                            LogHandshakeFailed(client, failure);
                        }

                        if (reply.Length == 0)
                        {
                            CloseAbortively(client);
                        }
                        else
                        {
                            await SendAndCloseAsync(client, reply).ConfigureAwait(false);
                        }

                        return (null, []);
                }

                // NeedMore: every message fits the buffer (MaxMessageLength), so a full buffer cannot happen here.
                int read = await client.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, deadline.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    Counters.AddHandshakeFailed();
                    LogHandshakeFailed(client, "client closed in " + handshake.StateName);
                    CloseAbortively(client);
                    return (null, []);
                }

                filled += read;
            }
        }
        catch (OperationCanceledException) when (!_services.Stopping.IsCancellationRequested)
        {
            Counters.AddHandshakeFailed();
            LogHandshakeFailed(client, "timed out in " + handshake.StateName);
            CloseAbortively(client);
            return (null, []);
        }
        catch (SocketException e)
        {
            Counters.AddHandshakeFailed();
            LogHandshakeFailed(client, e.SocketErrorCode.ToString());
            CloseAbortively(client);
            return (null, []);
        }
    }

    /// <summary>Resolves (ATYP 3) and connects; on failure the reply code that matches (RFC 1928 §6) and the ICMP error, if one ended the connect.</summary>
    private async Task<(Socket? Upstream, SocksReply Reply, IcmpError? Icmp, string Detail)> ConnectAsync(Socks5Target target, ConnectionTrace? trace)
    {
        var stopping = _services.Stopping;
        IPAddress[] addresses;
        if (target.Address is { } address)
        {
            addresses = [address];
        }
        else
        {
            using var timeout = new CancellationTokenSource(_options.ResolveTimeout, _services.Time);
            using var resolve = CancellationTokenSource.CreateLinkedTokenSource(stopping, timeout.Token);
            try
            {
                addresses = await Dns.GetHostAddressesAsync(target.Host!, resolve.Token).WaitAsync(_options.ResolveTimeout, _services.Time, resolve.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or TimeoutException or ArgumentException)
            {
                return (null, SocksReply.HostUnreachable, null, e is SocketException s ? "resolve: " + s.SocketErrorCode : "resolve: timed out");
            }

            if (addresses.Length == 0)
            {
                return (null, SocksReply.HostUnreachable, null, "resolve: no address");
            }
        }

        (SocksReply Reply, IcmpError? Icmp, string Detail) failure = (SocksReply.GeneralFailure, null, "no address tried");
        foreach (var candidate in addresses.Take(_options.MaxAddresses))
        {
            var destination = new IPEndPoint(candidate.IsIPv4MappedToIPv6 ? candidate.MapToIPv4() : candidate, target.Port);
            if (!IsAllowedDestination(destination.Address) || _services.LocalAddresses.Contains(destination.Address))
            {
                // The proxy host's own services (loopback or not, its own fronts included: a loop) and broadcast or
                // multicast groups are not a client's to reach.
                failure = (SocksReply.NotAllowed, null, destination + " not allowed");
                continue;
            }

            var protocol = _services.Upstream.ProtocolFor(destination);
            var span = trace?.StartUpstreamConnect(destination, protocol);
            var connect = await _services.Upstream.ConnectAsync(destination, protocol, stopping).ConfigureAwait(false);
            span?.SetTag("proxysel.upstream.connect_status", connect.Status.ToString());
            span?.Dispose();
            if (connect.Connected && IsSelfConnection(connect.Socket!))
            {
                // An address this host took after the last look at its interfaces: the kernel connected the host to itself.
                CloseAbortively(connect.Socket!);
                _services.LocalAddresses.Invalidate();
                failure = (SocksReply.NotAllowed, null, destination + " not allowed");
                continue;
            }

            string transport = protocol == TransportProtocol.Mptcp ? "mptcp" : "tcp";
            if (connect.Connected)
            {
                if (trace is not null)
                {
                    _services.Telemetry.UpstreamConnected(trace, connect.Socket!);
                }

                return (connect.Socket, SocksReply.Succeeded, null, $"{destination} {transport}");
            }

            if (protocol == TransportProtocol.Mptcp)
            {
                _services.Upstream.OnUpstreamFailed(destination);
            }

            failure = (ReplyFor(connect), connect.Icmp, connect.Icmp is { } icmp ? $"{destination} {connect.Status} ({icmp})" : $"{destination} {connect.Status}");
            if (connect.Status == UpstreamConnectStatus.Cancelled)
            {
                break;
            }
        }

        return (null, failure.Reply, failure.Icmp, failure.Detail);
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

    private void LogRefused(IPEndPoint? client, string reason)
    {
        if (TakeLine())
        {
            SocksLog.Refused(_services.Log, Name, client, reason);
        }
    }

    private void LogHandshakeFailed(Socket client, string reason)
    {
        if (TakeLine())
        {
            SocksLog.HandshakeFailed(_services.Log, Name, RemoteOf(client), reason);
        }
    }

    private bool TakeLine()
    {
        bool take = _services.LogBudget.TryTake(out long skipped);
        if (skipped > 0)
        {
            SocksLog.LinesLeftOut(_services.Log, skipped, LogBudget.LinesPerWindow);
        }

        return take;
    }

    internal static IPEndPoint? RemoteOf(Socket socket)
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

    private static void CloseAbortively(Socket socket)
    {
        try
        {
            // RST, not FIN: a refused or failed client must not take the close for a finished exchange.
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }

        socket.Dispose();
    }

    /// <summary>Sends a reply (best effort) and closes with a FIN, so the client reads the reply before the end.</summary>
    private async Task SendAndCloseAsync(Socket client, byte[] reply)
    {
        try
        {
            if (reply.Length > 0)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2), _services.Time);
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
