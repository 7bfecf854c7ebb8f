using System.Collections.Concurrent;
using System.Net.Sockets;

namespace ProxySelection.Host.Control;

/// <summary>
/// The local control socket: a unix stream socket whose file mode (0660, in a 0750 folder) is the access control.
/// Each client gets its own task, an idle deadline and a bounded request line, so a client that never sends, or
/// sends garbage, costs one slot until its deadline and blocks nobody.
/// </summary>
internal sealed class ControlServer : IAsyncDisposable
{
    /// <summary>A client silent this long is closed.</summary>
    public static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Clients served at once; one more is told "busy" and closed.</summary>
    public const int MaxClients = 16;

    private const UnixFileMode SocketMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite;
    private const UnixFileMode FolderMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute;

    private readonly Socket _listener;
    private readonly Func<ControlCommand, byte[]> _handle;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<Task, byte> _clients = new();
    private readonly Task _acceptLoop;
    private int _disposed;

    private ControlServer(string path, Socket listener, Func<ControlCommand, byte[]> handle, TimeProvider time)
    {
        Path = path;
        _listener = listener;
        _handle = handle;
        _time = time;
        _acceptLoop = AcceptLoopAsync();
    }

    public string Path { get; }

    /// <summary>
    /// Binds <paramref name="path"/> (its folder created 0750 when missing; a stale socket file of a dead daemon
    /// replaced). Null with <paramref name="error"/> when another daemon answers there or the socket cannot be made.
    /// </summary>
    /// <param name="path">The socket file.</param>
    /// <param name="handle">Turns a parsed request into its reply line; it must not throw (a throw becomes an error reply).</param>
    /// <param name="time">For the clients' idle deadlines.</param>
    /// <param name="error">Why there is no server, when null is returned.</param>
    public static ControlServer? Start(string path, Func<ControlCommand, byte[]> handle, TimeProvider time, out string error)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(handle);
        ArgumentNullException.ThrowIfNull(time);
        if (!OperatingSystem.IsLinux())
        {
            error = "the control socket needs Linux";
            return null;
        }

        var folder = System.IO.Path.GetDirectoryName(path);
        Socket? listener = null;
        try
        {
            if (!string.IsNullOrEmpty(folder) && !Directory.Exists(folder))
            {
                Directory.CreateDirectory(folder, FolderMode);
            }

            // File.Exists is false for a socket file.
            if (System.IO.Path.Exists(path) && !Directory.Exists(path))
            {
                if (IsAnswering(path))
                {
                    error = $"{path} is in use by another running proxysel";
                    return null;
                }

                // Left behind by a daemon that died without cleaning up.
                File.Delete(path);
            }

            listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            // Between bind and chmod the 0750 folder keeps others out.
            File.SetUnixFileMode(path, SocketMode);
            listener.Listen(MaxClients);
            error = "";
            return new ControlServer(path, listener, handle, time);
        }
        catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
        {
            listener?.Dispose();
            error = $"{path}: {e.Message}";
            return null;
        }
    }

    private static bool IsAnswering(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stopping.IsCancellationRequested)
                {
                    return;
                }

                continue;
            }

            if (_clients.Count >= MaxClients)
            {
                _ = RefuseAsync(client);
                continue;
            }

            var serve = ServeAsync(client);
            _clients[serve] = 0;
            _ = serve.ContinueWith(t => _clients.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private static async Task RefuseAsync(Socket client)
    {
        using (client)
        {
            try
            {
                await client.SendAsync(ControlProtocol.FormatError("busy: too many control clients; try again"), SocketFlags.None).ConfigureAwait(false);
            }
            catch (SocketException)
            {
            }
        }
    }

    private async Task ServeAsync(Socket client)
    {
        await Task.Yield();
        using var _ = client;
        using var idle = new CancellationTokenSource(IdleTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(idle.Token, _stopping.Token);
        var buffer = new byte[ControlProtocol.MaxRequestBytes + 1];
        int filled = 0;
        try
        {
            while (true)
            {
                int read = await client.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, linked.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    return;
                }

                filled += read;
                int start = 0;
                int newline;
                while ((newline = Array.IndexOf(buffer, (byte)'\n', start, filled - start)) >= 0)
                {
                    var line = buffer.AsMemory(start, newline - start);
                    start = newline + 1;
                    if (line.Span.TrimEnd((byte)'\r').IsEmpty)
                    {
                        continue;
                    }

                    var reply = Reply(line.Span.TrimEnd((byte)'\r'));
                    await client.SendAsync(reply, SocketFlags.None, linked.Token).ConfigureAwait(false);
                    idle.CancelAfter(IdleTimeout);
                }

                Array.Copy(buffer, start, buffer, 0, filled - start);
                filled -= start;
                if (filled == buffer.Length)
                {
                    await client.SendAsync(ControlProtocol.FormatError($"request longer than {ControlProtocol.MaxRequestBytes} bytes; closing"), SocketFlags.None, linked.Token)
                        .ConfigureAwait(false);
                    await CloseAfterErrorAsync(client, linked.Token).ConfigureAwait(false);
                    return;
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // Idle deadline, stopping, or the client went away.
        }
    }

    /// <summary>
    /// Closing a unix socket with unread input resets the peer, which may then lose the error line: say we are done
    /// sending, then read (and drop) what the client still sends, bounded in bytes and by the idle deadline.
    /// </summary>
    private static async Task CloseAfterErrorAsync(Socket client, CancellationToken cancellationToken)
    {
        client.Shutdown(SocketShutdown.Send);
        var sink = new byte[4096];
        int dropped = 0;
        while (dropped < 16 * ControlProtocol.MaxRequestBytes)
        {
            int read = await client.ReceiveAsync(sink, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                return;
            }

            dropped += read;
        }
    }

    private byte[] Reply(ReadOnlySpan<byte> line)
    {
        if (!ControlProtocol.TryParseRequest(line, out var command, out var error))
        {
            return ControlProtocol.FormatError(error);
        }

        try
        {
            return _handle(command);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return ControlProtocol.FormatError($"{ControlProtocol.NameOf(command)} failed: {e.Message}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        await _acceptLoop.ConfigureAwait(false);
        await Task.WhenAll(_clients.Keys).ConfigureAwait(false);
        try
        {
            // Only ever this server's file: Start does not replace a socket another daemon answers on.
            File.Delete(Path);
        }
        catch (IOException)
        {
        }

        _stopping.Dispose();
    }
}
