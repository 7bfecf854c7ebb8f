using System.Net;
using System.Net.Sockets;

namespace ProxySelection.Relay;

/// <summary>
/// The transparent listeners, opened on demand. The interception path calls <see cref="Ensure"/> before it gives
/// the verdict that sends a SYN to TPROXY, so the SYN always finds a listener on its original port.
/// </summary>
public sealed class ListenerRegistry : IDisposable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<ListenerKey, TransparentListener> _listeners = [];
    private readonly SocketFactory _sockets;
    private readonly Func<Socket, ListenerKey, Task> _onAccepted;
    private readonly ListenerOptions _options;
    private bool _disposed;

    public ListenerRegistry(SocketFactory sockets, ListenerOptions options, Func<Socket, ListenerKey, Task> onAccepted)
    {
        ArgumentNullException.ThrowIfNull(sockets);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(onAccepted);
        _sockets = sockets;
        _options = options;
        _onAccepted = onAccepted;
    }

    /// <summary>The listener for <paramref name="key"/>, opened and started if it was not there. Idempotent.</summary>
    /// <exception cref="SocketException">the listener could not be opened (e.g. port taken by a non-reusable socket).</exception>
    /// <exception cref="ObjectDisposedException">the registry was disposed.</exception>
    public TransparentListener Ensure(ListenerKey key)
    {
        TransparentListener listener;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_listeners.TryGetValue(key, out var existing))
            {
                return existing;
            }
            var address = key.Family == AddressFamily.InterNetworkV6 ? _options.BindAddressV6 : _options.BindAddressV4;
            listener = TransparentListener.Open(key, address, _sockets, _options.Backlog, _options.Transparent, _options.SynAckRetries);
            // Port 0 (tests) is registered under the port the kernel chose.
            _listeners[listener.Key] = listener;
            if (key.Port == 0)
            {
                _listeners[key] = listener;
            }
        }
        listener.Start(_onAccepted);
        return listener;
    }

    public bool TryGet(ListenerKey key, out TransparentListener listener)
    {
        lock (_lock)
        {
            return _listeners.TryGetValue(key, out listener!);
        }
    }

    /// <summary>Closes the listener for <paramref name="key"/>; accepted connections are not affected.</summary>
    public bool Close(ListenerKey key)
    {
        TransparentListener? listener;
        lock (_lock)
        {
            if (!_listeners.Remove(key, out listener))
            {
                return false;
            }
            foreach (var alias in _listeners.Where(pair => ReferenceEquals(pair.Value, listener)).Select(pair => pair.Key).ToList())
            {
                _listeners.Remove(alias);
            }
        }
        listener.Dispose();
        return true;
    }

    public IReadOnlyList<TransparentListener> Snapshot()
    {
        lock (_lock)
        {
            return _listeners.Values.Distinct().ToList();
        }
    }

    public void Dispose()
    {
        List<TransparentListener> listeners;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            listeners = _listeners.Values.Distinct().ToList();
            _listeners.Clear();
        }
        foreach (var listener in listeners)
        {
            listener.Dispose();
        }
    }
}

/// <summary>How transparent listeners are opened.</summary>
public sealed class ListenerOptions
{
    /// <summary>IPv4 bind address. Default Any: TPROXY (on-ip unset) finds a listener by port.</summary>
    public IPAddress BindAddressV4 { get; set; } = IPAddress.Any;

    /// <summary>IPv6 bind address. Default IPv6Any (IPV6_V6ONLY, so an IPv4 listener can share the port).</summary>
    public IPAddress BindAddressV6 { get; set; } = IPAddress.IPv6Any;

    /// <summary>listen(2) backlog, which also bounds the SYN queue (the kernel caps it at net.core.somaxconn, 4096 by
    /// default). Default 4096: a spoofed flood must fill it before the kernel answers with SYN cookies.</summary>
    public int Backlog { get; set; } = 4096;

    /// <summary>SYN/ACK retransmissions of a half-open connection (TCP_SYNCNT on the listener; 0: the sysctl's).
    /// Default 1: a half-open connection leaves the SYN queue after about 3 s. TCP listeners only (MPTCP refuses it).</summary>
    public int SynAckRetries { get; set; } = 1;

    /// <summary>Set IP_TRANSPARENT / IPV6_TRANSPARENT (needs CAP_NET_ADMIN). Default true.</summary>
    public bool Transparent { get; set; } = true;
}
