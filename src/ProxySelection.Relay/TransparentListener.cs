using System.Net;
using System.Net.Sockets;

namespace ProxySelection.Relay;

/// <summary>
/// A listening socket with IP_TRANSPARENT / IPV6_TRANSPARENT, so TPROXY can hand it connections addressed to any
/// address: an accepted socket's local endpoint is the client's original destination. TPROXY only assigns SYNs to
/// a listener that is transparent (nf_tproxy_sk_is_transparent), and it must keep the original port (on-port 0)
/// or the kernel resets every MP_JOIN for the port mismatch, hence one listener per intercepted port.
/// </summary>
public sealed class TransparentListener : IDisposable
{
    private static readonly TimeSpan MaxAcceptBackoff = TimeSpan.FromSeconds(1);

    private readonly Socket _socket;
    private Task _acceptLoop = Task.CompletedTask;
    private int _started;
    private int _disposed;

    private TransparentListener(ListenerKey key, Socket socket)
    {
        Key = key;
        _socket = socket;
        LocalEndPoint = (IPEndPoint)socket.LocalEndPoint!;
    }

    public ListenerKey Key { get; }
    public IPEndPoint LocalEndPoint { get; }

    /// <summary>Accepted connections so far.</summary>
    public long Accepted => Interlocked.Read(ref _accepted);
    private long _accepted;

    /// <summary>
    /// Binds (usually to Any/IPv6Any: TPROXY finds the listener by port) and listens; nothing is accepted before
    /// <see cref="Start"/>. <c>transparent: false</c> is for tests that connect to the relay's own address.
    /// <para><paramref name="synAckRetries"/> (TCP_SYNCNT on the listener, 0: the sysctl's 5) bounds how long a
    /// half-open connection keeps its place in the SYN queue (kernel reqsk_timer_handler reads the listener's
    /// icsk_syn_retries): 1 gives about 3 s, the proxy's adoption timeout, instead of about 63 s. Spoofed SYNs, which
    /// never complete, then leave the queue sooner and fill it later. MPTCP listeners refuse the option (ENOPROTOOPT,
    /// Linux 6.18) and keep the sysctl's value; the ruleset's handshake set covers what overflows.</para>
    /// </summary>
    /// <exception cref="SocketException">bind/listen failed (EADDRINUSE, EPERM without CAP_NET_ADMIN, ...).</exception>
    public static TransparentListener Open(
        ListenerKey key, IPAddress bindAddress, SocketFactory sockets, int backlog = 1024, bool transparent = true, int synAckRetries = 0)
    {
        ArgumentNullException.ThrowIfNull(bindAddress);
        ArgumentNullException.ThrowIfNull(sockets);
        if (bindAddress.AddressFamily != key.Family)
        {
            throw new ArgumentException($"bind address {bindAddress} is not of family {key.Family}", nameof(bindAddress));
        }
        var socket = sockets.Create(key.Family, key.Protocol);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            if (key.Family == AddressFamily.InterNetworkV6)
            {
                // A separate IPv4 listener may hold the same port.
                socket.DualMode = false;
            }
            if (transparent)
            {
                SetTransparent(socket);
            }
            if (synAckRetries > 0)
            {
                SetSynAckRetries(socket, synAckRetries);
            }
            socket.Bind(new IPEndPoint(bindAddress, key.Port));
            socket.Listen(backlog);
            return new TransparentListener(key with { Port = ((IPEndPoint)socket.LocalEndPoint!).Port }, socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static void SetSynAckRetries(Socket socket, int retries)
    {
        try
        {
            socket.SetRawSocketOption(IpProtoTcp, TcpSynCount, BitConverter.GetBytes(retries));
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ProtocolOption)
        {
            // An MPTCP socket: mptcp_setsockopt_sol_tcp has no TCP_SYNCNT.
        }
    }

    // include/uapi/linux/tcp.h
    private const int IpProtoTcp = 6;
    private const int TcpSynCount = 7;

    /// <summary>IP_TRANSPARENT (IPv4) or IPV6_TRANSPARENT: accept for, or bind to, addresses not local to this host.</summary>
    public static void SetTransparent(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        Span<byte> one = [1, 0, 0, 0];
        if (socket.AddressFamily == AddressFamily.InterNetworkV6)
        {
            socket.SetRawSocketOption(Native.SolIpv6, Native.Ipv6Transparent, one);
        }
        else
        {
            socket.SetRawSocketOption(Native.SolIp, Native.IpTransparent, one);
        }
    }

    /// <summary>Starts the accept loop; each accepted socket goes to <paramref name="onAccepted"/>, which owns it.</summary>
    /// <exception cref="InvalidOperationException">started already.</exception>
    public void Start(Func<Socket, ListenerKey, Task> onAccepted)
    {
        ArgumentNullException.ThrowIfNull(onAccepted);
        if (Interlocked.Exchange(ref _started, 1) != 0)
        {
            throw new InvalidOperationException($"listener {Key} was started already");
        }
        _acceptLoop = AcceptLoopAsync(onAccepted);
    }

    private async Task AcceptLoopAsync(Func<Socket, ListenerKey, Task> onAccepted)
    {
        await Task.Yield();
        var backoff = TimeSpan.Zero;
        while (true)
        {
            Socket accepted;
            try
            {
                accepted = await _socket.AcceptAsync().ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.OperationAborted || Volatile.Read(ref _disposed) != 0)
            {
                return;
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionAborted or SocketError.ConnectionReset)
            {
                // The client gave up while in the queue: that one connection is gone, the next may be there.
                continue;
            }
            catch (SocketException)
            {
                // EMFILE, ENFILE, ENOBUFS: the connection stays queued and accept fails at once until a descriptor
                // or memory frees up; retrying without a pause would spin a core.
                backoff = backoff == TimeSpan.Zero ? TimeSpan.FromMilliseconds(10) : TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxAcceptBackoff.Ticks));
                await Task.Delay(backoff).ConfigureAwait(false);
                continue;
            }
            backoff = TimeSpan.Zero;
            Interlocked.Increment(ref _accepted);
            _ = onAccepted(accepted, Key);
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _socket.Dispose();
        }
    }

    /// <summary>Completes when the accept loop has stopped (after <see cref="Dispose"/>).</summary>
    public Task Stopped => _acceptLoop;
}
