using System.Collections.Concurrent;
using System.Net.Sockets;

namespace ProxySelection.Host.Control;

/// <summary>
/// How many control connections the server holds, and for how long. The peer is known from SO_PEERCRED: one process,
/// or one user's processes, cannot take every slot, so a client kept busy by a misbehaving (or hostile) group member
/// leaves room for an operator's <c>proxysel status</c>.
/// </summary>
internal sealed record ControlLimits
{
    /// <summary>Connections served at once; one more is told "busy" and closed.</summary>
    public int MaxClients { get; init; } = 64;

    /// <summary>Connections one process (peer pid) may hold at once.</summary>
    public int MaxPerProcess { get; init; } = 4;

    /// <summary>Connections one user's processes (peer uid) may hold at once; root, who may stop the daemon anyway, is not counted.</summary>
    public int MaxPerUser { get; init; } = 16;

    /// <summary>A connection is closed after this long even while it keeps sending: a slot is lent, not owned.</summary>
    public TimeSpan MaxConnectionTime { get; init; } = TimeSpan.FromMinutes(1);
}

/// <summary>
/// The local control socket: a unix stream socket whose file mode (0660, in a 0750 folder) is the access control.
/// Each client gets its own task, an idle deadline, a lifetime and a bounded request line, so a client that never
/// sends, or sends garbage, costs one slot until its deadline and blocks nobody; <see cref="ControlLimits"/> bounds
/// the slots per process and per user.
/// </summary>
internal sealed class ControlServer : IAsyncDisposable
{
    /// <summary>A client silent this long is closed.</summary>
    public static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Pause after a failed accept (other than stopping), so a persistent error does not spin a core.</summary>
    public static readonly TimeSpan AcceptErrorBackoff = TimeSpan.FromMilliseconds(100);

    private const UnixFileMode SocketMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite;
    private const UnixFileMode FolderMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute;

    private readonly Socket _listener;
    private readonly Func<ControlCommand, byte[]> _handle;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<Task, byte> _clients = new();
    private readonly ConcurrentDictionary<Task, byte> _refusing = new();
    private readonly Task _acceptLoop;
    private readonly ControlLimits _limits;
    private readonly Lock _peersLock = new();
    private readonly Dictionary<int, int> _perProcess = [];
    private readonly Dictionary<uint, int> _perUser = [];
    private int _disposed;

    private ControlServer(string path, Socket listener, Func<ControlCommand, byte[]> handle, TimeProvider time, ControlLimits limits)
    {
        Path = path;
        _listener = listener;
        _handle = handle;
        _time = time;
        _limits = limits;
        _acceptLoop = AcceptLoopAsync();
    }

    public ControlLimits Limits => _limits;

    public string Path { get; }

    /// <summary>The listening socket, for tests that make its accepts fail.</summary>
    internal Socket Listener => _listener;

    /// <summary>
    /// Binds <paramref name="path"/> (its folder created 0750 when missing; a stale socket file of a dead daemon
    /// replaced). Null with <paramref name="error"/> when another daemon answers there, something other than a
    /// socket is there (never deleted), the folder is a symlink or writable by others, or the socket cannot be made.
    /// </summary>
    /// <param name="path">The socket file.</param>
    /// <param name="handle">Turns a parsed request into its reply line; it must not throw (a throw becomes an error reply).</param>
    /// <param name="time">For the clients' idle deadlines.</param>
    /// <param name="error">Why there is no server, when null is returned.</param>
    /// <param name="limits">Null for the defaults.</param>
    public static ControlServer? Start(string path, Func<ControlCommand, byte[]> handle, TimeProvider time, out string error, ControlLimits? limits = null)
    {
        limits ??= new ControlLimits();
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

            if (FolderProblem(string.IsNullOrEmpty(folder) ? "." : folder) is { } problem)
            {
                error = problem;
                return null;
            }

            // lstat semantics: a symlink is judged itself, never what it points at.
            var mode = ControlNative.ModeOf(path, out error);
            if (error.Length > 0)
            {
                return null;
            }

            if (mode is { } existing)
            {
                if ((existing & ControlNative.SIfMt) != ControlNative.SIfSock)
                {
                    // Never unlink anything but a socket: a mistyped path must not cost a file.
                    error = $"{path} exists and is not a socket";
                    return null;
                }

                if (IsAnswering(path))
                {
                    error = $"{path} is in use by another running proxysel";
                    return null;
                }

                // Left behind by a daemon that died without cleaning up.
                File.Delete(path);
            }

            listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            // bind creates the file 0777 & ~umask: with umask 077 it is owner-only until the chmod below. The umask
            // is process-wide; 077 (not 117) keeps a folder another thread makes meanwhile usable by its owner.
            uint previous = ControlNative.Umask(0x3F);
            try
            {
                listener.Bind(new UnixDomainSocketEndPoint(path));
            }
            finally
            {
                ControlNative.Umask(previous);
            }

            // The folder is not writable by others (checked above), so nobody swapped the socket for a symlink.
            File.SetUnixFileMode(path, SocketMode);
            listener.Listen(limits.MaxClients);
            error = "";
            return new ControlServer(path, listener, handle, time, limits);
        }
        catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            listener?.Dispose();
            error = $"{path}: {e.Message}";
            return null;
        }
    }

    /// <summary>Why <paramref name="folder"/> is unfit to hold the socket (a symlink, or others may replace files in it), or null.</summary>
    private static string? FolderProblem(string folder)
    {
        var mode = ControlNative.ModeOf(folder, out var error);
        if (mode is not { } found)
        {
            return error.Length > 0 ? error : $"{folder} does not exist";
        }

        if ((found & ControlNative.SIfMt) == ControlNative.SIfLnk)
        {
            return $"{folder} is a symlink; give the control socket a path in a real folder";
        }

        // o+w without the sticky bit lets anyone swap the socket file (or plant a symlink) before the chmod.
        const int OtherWrite = 0x2, Sticky = 0x200;
        if ((found & OtherWrite) != 0 && (found & Sticky) == 0)
        {
            return $"{folder} is world-writable without the sticky bit; give the control socket a private folder";
        }

        return null;
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

                // A persistent error (EMFILE: out of descriptors) fails every accept at once: pause, do not spin.
                try
                {
                    await Task.Delay(AcceptErrorBackoff, _time, _stopping.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            var peer = ControlNative.PeerOf(client);
            string? busy = _clients.Count >= _limits.MaxClients ? "busy: too many control clients; try again" : Admit(peer);
            if (busy is not null)
            {
                if (_refusing.Count >= _limits.MaxClients)
                {
                    // A flood: refusing politely holds a descriptor per client, so beyond this just close.
                    client.Dispose();
                    continue;
                }

                Track(_refusing, RefuseAsync(client, busy));
                continue;
            }

            Track(_clients, ServeAsync(client, peer));
        }
    }

    /// <summary>Takes a slot for <paramref name="peer"/>, or says why not; an unknown peer (no credentials) counts against the total only.</summary>
    private string? Admit(ControlPeer? peer)
    {
        if (peer is not { } p)
        {
            return null;
        }

        lock (_peersLock)
        {
            if (_perProcess.GetValueOrDefault(p.Pid) >= _limits.MaxPerProcess)
            {
                return $"busy: too many control connections from this process (at most {_limits.MaxPerProcess}); try again";
            }

            if (p.Uid != 0 && _perUser.GetValueOrDefault(p.Uid) >= _limits.MaxPerUser)
            {
                return $"busy: too many control connections from this user (at most {_limits.MaxPerUser}); try again";
            }

            _perProcess[p.Pid] = _perProcess.GetValueOrDefault(p.Pid) + 1;
            if (p.Uid != 0)
            {
                _perUser[p.Uid] = _perUser.GetValueOrDefault(p.Uid) + 1;
            }

            return null;
        }
    }

    private void Release(ControlPeer? peer)
    {
        if (peer is not { } p)
        {
            return;
        }

        lock (_peersLock)
        {
            if (--_perProcess[p.Pid] == 0)
            {
                _perProcess.Remove(p.Pid);
            }

            if (p.Uid != 0 && --_perUser[p.Uid] == 0)
            {
                _perUser.Remove(p.Uid);
            }
        }
    }

    private static void Track(ConcurrentDictionary<Task, byte> tasks, Task task)
    {
        tasks[task] = 0;
        _ = task.ContinueWith(t => tasks.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private async Task RefuseAsync(Socket client, string reason)
    {
        await Task.Yield();
        using var _ = client;
        using var idle = new CancellationTokenSource(IdleTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(idle.Token, _stopping.Token);
        try
        {
            await client.SendAsync(ControlProtocol.FormatError(reason), SocketFlags.None, linked.Token).ConfigureAwait(false);
            await CloseAfterErrorAsync(client, linked.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task ServeAsync(Socket client, ControlPeer? peer)
    {
        try
        {
            await ServeAsync(client).ConfigureAwait(false);
        }
        finally
        {
            Release(peer);
        }
    }

    private async Task ServeAsync(Socket client)
    {
        await Task.Yield();
        using var _ = client;
        using var idle = new CancellationTokenSource(IdleTimeout, _time);
        using var lifetime = new CancellationTokenSource(_limits.MaxConnectionTime, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(idle.Token, lifetime.Token, _stopping.Token);
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

                    // A whole request restarts the deadline before its reply goes out: a client holding the reply
                    // has its full idle time again.
                    idle.CancelAfter(IdleTimeout);
                    var reply = Reply(line.Span.TrimEnd((byte)'\r'));
                    await client.SendAsync(reply, SocketFlags.None, linked.Token).ConfigureAwait(false);
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
        ControlCommand command;
        try
        {
            if (!ControlProtocol.TryParseRequest(line, out command, out var error))
            {
                return ControlProtocol.FormatError(error);
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // TryParseRequest must not throw; if it ever does, the client still gets its one reply line.
            return ControlProtocol.FormatError($"bad request: {e.Message}");
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
        await Task.WhenAll(_clients.Keys.Concat(_refusing.Keys)).ConfigureAwait(false);
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
