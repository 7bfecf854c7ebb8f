using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace ProxySelection.Relay;

/// <summary>
/// The relay's front: transparent listeners opened on demand, then per accepted connection the limit, the upstream
/// connect and the two-way copy. Every connection ends in exactly one <see cref="RelayResult"/> passed to the
/// observer given at construction.
/// </summary>
public sealed class RelayServer : IAsyncDisposable
{
    private readonly RelayOptions _options;
    private readonly UpstreamConnector _connector;
    private readonly TimeProvider _time;
    private readonly Func<IPEndPoint, IPEndPoint> _upstreamFor;
    private readonly Action<RelayResult> _onCompleted;
    private readonly ConcurrentDictionary<RelayConnection, Task> _connections = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _handlers;
    private int _disposed;

    /// <param name="options">Validated here; an invalid value throws ArgumentException.</param>
    /// <param name="listenerOptions">How listeners are opened.</param>
    /// <param name="sockets">Creates every socket (listeners and upstream).</param>
    /// <param name="connector">Upstream connector; owned by the caller.</param>
    /// <param name="time">Idle timeouts and durations.</param>
    /// <param name="onCompleted">Called once per connection, on a thread-pool thread; must not throw.</param>
    /// <param name="upstreamFor">
    /// Maps the original destination to the upstream endpoint. Default: the original destination itself (TPROXY).
    /// </param>
    public RelayServer(
        RelayOptions options,
        ListenerOptions listenerOptions,
        SocketFactory sockets,
        UpstreamConnector connector,
        TimeProvider time,
        Action<RelayResult> onCompleted,
        Func<IPEndPoint, IPEndPoint>? upstreamFor = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(connector);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(onCompleted);
        options.ThrowIfInvalid();
        _options = options;
        _connector = connector;
        _time = time;
        _onCompleted = onCompleted;
        _upstreamFor = upstreamFor ?? (destination => destination);
        Limiter = new ConnectionLimiter(options.MaxConnections);
        Listeners = new ListenerRegistry(sockets, listenerOptions, HandleAcceptedAsync);
    }

    public ListenerRegistry Listeners { get; }
    public ConnectionLimiter Limiter { get; }

    /// <summary>Connections being relayed now.</summary>
    public IReadOnlyCollection<RelayConnection> Connections => _connections.Keys.ToArray();

    /// <summary>
    /// Makes sure a listener for <paramref name="port"/> exists before the verdict that sends a SYN there.
    /// The client leg's transport is <see cref="RelayOptions.ClientProtocol"/>.
    /// </summary>
    public TransparentListener EnsureListener(int port, AddressFamily family) =>
        Listeners.Ensure(new ListenerKey(port, family, _options.ClientProtocol));

    private async Task HandleAcceptedAsync(Socket client, ListenerKey key)
    {
        // Counted before the stopping check in HandleAsync, so DisposeAsync either sees this handler or this
        // handler sees DisposeAsync's cancellation.
        Interlocked.Increment(ref _handlers);
        try
        {
            // No Task.Yield here: the part before the upstream connect's first wait is short (limit, socket, connect(2)),
            // and a hop to the thread pool per connection cost more than it let the accept loop gain (measured).
            // A TCP listener's connections are TCP; an MPTCP listener's may be either (a plain TCP client's is TCP on 6.18).
            var result = await HandleCoreAsync(client, null, key.Protocol == TransportProtocol.Tcp ? false : null).ConfigureAwait(false);
            Report(result);
        }
        finally
        {
            if (Interlocked.Decrement(ref _handlers) == 0 && _stopping.IsCancellationRequested)
            {
                _drained.TrySetResult();
            }
        }
    }

    /// <summary>
    /// Relays an accepted client socket (owned from here on): limit, connect upstream, copy. Never throws: every
    /// failure ends in a result, and the client socket is closed on every path.
    /// </summary>
    /// <param name="client">The accepted client socket.</param>
    /// <param name="onConnect">
    /// Null, or called right before the upstream connect with its target and protocol; the callback it returns (if any)
    /// gets the connect's result. For tracing the connect as a span on this very path; must not throw.
    /// </param>
    public Task<RelayResult> HandleAsync(Socket client, Func<IPEndPoint, TransportProtocol, Action<UpstreamConnectResult>?>? onConnect = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        return HandleCoreAsync(client, onConnect, clientIsMptcp: null);
    }

    private async Task<RelayResult> HandleCoreAsync(
        Socket client, Func<IPEndPoint, TransportProtocol, Action<UpstreamConnectResult>?>? onConnect, bool? clientIsMptcp)
    {
        long started = _time.GetTimestamp();
        var clientEndPoint = RelayConnection.RemoteEndPointOf(client);
        var destination = RelayConnection.LocalEndPointOf(client);
        RelayResult Failed(CloseReason reason, UpstreamConnectStatus status = UpstreamConnectStatus.NotAttempted, SocketError error = SocketError.Success) => new()
        {
            Client = clientEndPoint,
            OriginalDestination = destination,
            Reason = reason,
            ConnectStatus = status,
            Error = error,
            Duration = _time.GetElapsedTime(started),
        };

        if (destination is null || _stopping.IsCancellationRequested)
        {
            RelayConnection.CloseSocket(client, abortive: true);
            return Failed(CloseReason.Aborted);
        }
        if (!Limiter.TryAcquire())
        {
            RelayConnection.CloseSocket(client, abortive: true);
            return Failed(CloseReason.Refused);
        }
        try
        {
            IPEndPoint upstream;
            try
            {
                upstream = _upstreamFor(destination);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A bug in the caller's mapping must not leak the client socket or take the listener down.
                RelayConnection.CloseSocket(client, abortive: true);
                return Failed(CloseReason.Error, error: SocketError.SocketError);
            }
            var connected = onConnect?.Invoke(upstream, _options.UpstreamProtocol);
            long connectStarted = _time.GetTimestamp();
            var connect = await _connector.ConnectAsync(
                upstream,
                _options.UpstreamProtocol,
                _options.TransparentSource ? clientEndPoint?.Address : null,
                _stopping.Token).ConfigureAwait(false);
            var connectTime = _time.GetElapsedTime(connectStarted);
            connected?.Invoke(connect);
            if (!connect.Connected)
            {
                // Reset, not FIN: the client must not take a closed port for an empty answer.
                RelayConnection.CloseSocket(client, abortive: true);
                var reason = connect.Status == UpstreamConnectStatus.Cancelled ? CloseReason.Aborted : CloseReason.UpstreamConnectFailed;
                return Failed(reason, connect.Status, connect.Error) with { Upstream = upstream, ConnectTime = connectTime };
            }
            // The connector opened the leg with UpstreamProtocol toward upstream: neither is asked of the kernel again.
            var known = new KnownLegs(clientIsMptcp, _options.UpstreamProtocol == TransportProtocol.Mptcp, upstream);
            return await RelayCoreAsync(client, connect.Socket!, known).ConfigureAwait(false) with { ConnectTime = connectTime };
        }
        finally
        {
            Limiter.Release();
        }
    }

    /// <summary>
    /// Relays between two connected sockets, e.g. when the probe connection becomes the upstream leg. Owns both
    /// (closed on every path). Does not take a slot of the limiter (the caller decides). Never throws.
    /// </summary>
    public Task<RelayResult> RelayAsync(Socket client, Socket upstream)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(upstream);
        return RelayCoreAsync(client, upstream, new KnownLegs());
    }

    private async Task<RelayResult> RelayCoreAsync(Socket client, Socket upstream, KnownLegs known)
    {
        RelayConnection connection;
        try
        {
            connection = new RelayConnection(client, upstream, _options, _time, known);
        }
        catch (ArgumentException)
        {
            // The options were changed to invalid values after start; the connection already closed both sockets.
            return new RelayResult
            {
                Client = null,
                OriginalDestination = null,
                Reason = CloseReason.Error,
                Error = SocketError.SocketError,
                ConnectStatus = UpstreamConnectStatus.Connected,
            };
        }
        var run = connection.RunAsync();
        _connections[connection] = run;
        if (_stopping.IsCancellationRequested)
        {
            connection.Abort(CloseReason.Aborted);
        }
        try
        {
            return await run.ConfigureAwait(false);
        }
        finally
        {
            _connections.TryRemove(connection, out _);
        }
    }

    private void Report(RelayResult result)
    {
        try
        {
            _onCompleted(result);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // An observer bug must not take the relay down; the result is lost.
        }
    }

    /// <summary>
    /// Stops accepting, resets every live connection (reason Aborted), cancels upstream connects in progress and
    /// waits for all of them, bounded by 5 s.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _stopping.CancelAsync().ConfigureAwait(false);
        Listeners.Dispose();
        foreach (var connection in _connections.Keys)
        {
            connection.Abort(CloseReason.Aborted);
        }
        if (Volatile.Read(ref _handlers) == 0)
        {
            _drained.TrySetResult();
        }
        try
        {
            await Task.WhenAll(_drained.Task, Task.WhenAll(_connections.Values)).WaitAsync(TimeSpan.FromSeconds(5), _time).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // Sockets are closed already; a loop that has not noticed yet ends on its own.
        }
        // _stopping is not disposed: a handler accepted after the wait above may still read its token, and a
        // source without timer or links holds nothing to free.
    }
}
