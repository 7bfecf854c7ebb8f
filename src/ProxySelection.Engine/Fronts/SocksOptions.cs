using System.Net;

namespace ProxySelection.Engine.Fronts;

/// <summary>The host-configured mode's fronts (spec §7.10): SOCKS5 and Convert, where they listen and whom they let in.</summary>
public sealed class SocksOptions
{
    /// <summary>The SOCKS5 listen address and port (an MPTCP listener: the host side is MPTCP); null for no SOCKS.</summary>
    public IPEndPoint? Listen { get; init; }

    /// <summary>The Convert (RFC 8803) listen address and port (MPTCP, TCP Fast Open); null for no Convert.</summary>
    public IPEndPoint? Convert { get; init; }

    /// <summary>RFC 1929 users; null offers NO AUTH instead.</summary>
    public SocksCredentials? Credentials { get; init; }

    /// <summary>From accept to a complete CONNECT request; a client that takes longer is closed.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a draining front goes on accepting before it takes its accept queue and closes its listener (spec
    /// §12.6). Instance mode sets the routers' convergence bound (<c>Proxy:Instance:ConvergenceTime</c>): until then a
    /// router may still send a new client here. Zero (a proxy of its own) stops at once, the queue still served.
    /// </summary>
    public TimeSpan DrainAcceptGrace { get; init; }

    /// <summary>How long the system resolver may take for an ATYP 3 name.</summary>
    public TimeSpan ResolveTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Addresses of a resolved name tried in turn at most (each bounded by the connector's timeout).</summary>
    public int MaxAddresses { get; init; } = 4;

    /// <summary>
    /// Clients of one source (an IPv4 address, an IPv6 /64) in their handshake at once, both fronts together; over it
    /// the source's next client is closed at once. At most the global handshake bound.
    /// </summary>
    public int MaxHandshakesPerSource { get; init; } = 16;

    /// <summary>Front connections of one source at once (in the handshake, connecting or relayed), both fronts together.</summary>
    public int MaxConnectionsPerSource { get; init; } = 1024;
}

/// <summary>The SOCKS front's counts, printed at stop as a line of their own (the <c>stopped</c> line keeps its text).</summary>
public sealed class SocksCounters
{
    private long _accepted;
    private long _refused;
    private long _handshakeFailed;
    private long _connectFailed;
    private long _connected;

    /// <summary>Connections the listener accepted.</summary>
    public long Accepted => Interlocked.Read(ref _accepted);

    /// <summary>Closed at once: over a handshake or source bound, or at the connection limit (never because of a drain).</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>Closed during the handshake: malformed, unsupported, authentication failed, timed out.</summary>
    public long HandshakeFailed => Interlocked.Read(ref _handshakeFailed);

    /// <summary>A CONNECT whose destination could not be resolved or reached (a failure reply sent).</summary>
    public long ConnectFailed => Interlocked.Read(ref _connectFailed);

    /// <summary>A CONNECT answered with success and relayed.</summary>
    public long Connected => Interlocked.Read(ref _connected);

    public void AddAccepted() => Interlocked.Increment(ref _accepted);

    public void AddRefused() => Interlocked.Increment(ref _refused);

    public void AddHandshakeFailed() => Interlocked.Increment(ref _handshakeFailed);

    public void AddConnectFailed() => Interlocked.Increment(ref _connectFailed);

    public void AddConnected() => Interlocked.Increment(ref _connected);

    public override string ToString() =>
        $"accepted={Accepted} refused={Refused} handshake_failed={HandshakeFailed} connect_failed={ConnectFailed} connected={Connected}";
}
