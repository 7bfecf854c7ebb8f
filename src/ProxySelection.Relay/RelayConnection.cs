using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;

namespace ProxySelection.Relay;

/// <summary>
/// One relayed connection: two directions, each a fill loop (socket → pipe) and a drain loop (pipe → socket) over
/// a bounded pipe, so a slow reader on one side stops reads on the other. A FIN is passed on as shutdown(SHUT_WR)
/// once every byte before it was written; a reset or failure on either side resets both (linger 0).
/// </summary>
public sealed class RelayConnection
{
    private enum Side
    {
        Client,
        Upstream,
    }

    /// <summary>
    /// A busy connection's subflows are counted at the first read or write (the close may come after the last subflow
    /// closed and read 0), every 16th and at least every 100 ms of activity: by reads alone
    /// a subflow that joined late in a slow transfer of large reads was missed (every 64th read of up to 256 KiB), by
    /// time alone one that joined during a fast 20 MB transfer (over in 170 ms). One MPTCP_INFO read costs ~1 µs.
    /// </summary>
    private const int SubflowSampleEvery = 16;

    private static readonly TimeSpan SubflowSampleInterval = TimeSpan.FromMilliseconds(100);

    private readonly Socket _client;
    private readonly Socket _upstream;
    private readonly RelayOptions _options;
    private readonly TimeProvider _time;
    private readonly PipeOptions _pipeOptions;
    private readonly IdleTimeout _idle;
    private readonly Lock _closeLock = new();
    private readonly bool _clientIsMptcp;
    private readonly bool _upstreamIsMptcp;
    private long _started;
    private int _running;
    private int _reason;
    private SocketError _error;
    private long _toUpstream;
    private long _toClient;
    private int _maxClientSubflows;
    private int _maxUpstreamSubflows;
    private long _transfers;
    private long _lastSubflowSample = long.MinValue;
    private int _directionsEnded;
    private bool _closed;
    private MptcpSnapshot _clientSnapshot = MptcpSnapshot.NotMptcp;
    private MptcpSnapshot _upstreamSnapshot = MptcpSnapshot.NotMptcp;

    /// <summary>Takes ownership of both connected sockets: if this constructor throws, it has closed them.</summary>
    /// <exception cref="ArgumentException">invalid options.</exception>
    public RelayConnection(Socket client, Socket upstream, RelayOptions options, TimeProvider time)
        : this(client, upstream, options, time, new KnownLegs())
    {
    }

    /// <summary>As the public constructor, with what the caller knows of the legs already (the kernel is not asked again).</summary>
    internal RelayConnection(Socket client, Socket upstream, RelayOptions options, TimeProvider time, KnownLegs known)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(upstream);
        try
        {
            ArgumentNullException.ThrowIfNull(options);
            ArgumentNullException.ThrowIfNull(time);
            options.ThrowIfInvalid();
        }
        catch (ArgumentException)
        {
            CloseSocket(client, abortive: true);
            CloseSocket(upstream, abortive: true);
            throw;
        }
        _client = client;
        _upstream = upstream;
        _options = options;
        _time = time;
        ClientEndPoint = RemoteEndPointOf(client);
        LocalEndPoint = LocalEndPointOf(client);
        UpstreamEndPoint = known.UpstreamEndPoint ?? RemoteEndPointOf(upstream);
        _clientIsMptcp = known.ClientIsMptcp ?? MptcpSocket.IsMptcp(client);
        _upstreamIsMptcp = known.UpstreamIsMptcp ?? MptcpSocket.IsMptcp(upstream);
        _pipeOptions = new PipeOptions(
            pool: options.MemoryPool,
            pauseWriterThreshold: options.PauseThreshold,
            resumeWriterThreshold: options.ResumeThreshold,
            minimumSegmentSize: options.SegmentSize,
            // Inline: a flush runs the drain loop's continuation (the send) on the filling thread, and a drain that
            // frees room resumes a paused fill the same way. The ThreadPool default costs a thread hop (a futex wake
            // and a context switch) per chunk and per connection; measured on 2 vCPUs: ~30 % of the relay's CPU per
            // short connection went to context switches.
            readerScheduler: PipeScheduler.Inline,
            writerScheduler: PipeScheduler.Inline,
            useSynchronizationContext: false);
        _idle = new IdleTimeout(options.IdleTimeout, time);
    }

    public IPEndPoint? ClientEndPoint { get; }

    /// <summary>The client leg's local endpoint: the original destination under TPROXY.</summary>
    public IPEndPoint? LocalEndPoint { get; }

    public IPEndPoint? UpstreamEndPoint { get; }

    /// <summary><see cref="CloseReason.None"/> while open, then the first reason recorded.</summary>
    public CloseReason Reason => (CloseReason)Volatile.Read(ref _reason);

    public long BytesClientToUpstream => Interlocked.Read(ref _toUpstream);
    public long BytesUpstreamToClient => Interlocked.Read(ref _toClient);

    /// <summary>The client leg's MPTCP state now (or as captured at close).</summary>
    public MptcpSnapshot ClientMptcp()
    {
        lock (_closeLock)
        {
            return _closed ? _clientSnapshot : Snapshot(_client, _clientIsMptcp);
        }
    }

    /// <summary>The upstream leg's MPTCP state now (or as captured at close).</summary>
    public MptcpSnapshot UpstreamMptcp()
    {
        lock (_closeLock)
        {
            return _closed ? _upstreamSnapshot : Snapshot(_upstream, _upstreamIsMptcp);
        }
    }

    /// <summary>
    /// Resets both legs and records <paramref name="reason"/>. Safe to call any number of times from any thread:
    /// the first reason is kept, later calls do nothing.
    /// </summary>
    public void Abort(CloseReason reason, SocketError error = SocketError.Success)
    {
        if (reason == CloseReason.None)
        {
            throw new ArgumentOutOfRangeException(nameof(reason), reason, "an abort needs a reason");
        }
        if (TrySetReasonLocked(reason, error))
        {
            Close(abortive: true);
        }
    }

    /// <summary>Records the first reason and its error together, so a result never pairs a reason with another's error.</summary>
    private bool TrySetReasonLocked(CloseReason reason, SocketError error)
    {
        lock (_closeLock)
        {
            if (_reason != (int)CloseReason.None)
            {
                return false;
            }
            _error = error;
            Volatile.Write(ref _reason, (int)reason);
            return true;
        }
    }

    /// <summary>Relays until both directions finished or the connection was aborted. Never throws.</summary>
    /// <exception cref="InvalidOperationException">called a second time.</exception>
    public async Task<RelayResult> RunAsync()
    {
        if (Interlocked.Exchange(ref _running, 1) != 0)
        {
            throw new InvalidOperationException("RunAsync was called already");
        }
        _started = _time.GetTimestamp();
        _idle.Reset();
        var registration = _idle.Token.UnsafeRegister(static state => ((RelayConnection)state!).Abort(CloseReason.IdleTimeout), this);
        try
        {
            await Task.WhenAll(
                PumpAsync(_client, Side.Client, _upstream, Side.Upstream),
                PumpAsync(_upstream, Side.Upstream, _client, Side.Client)).ConfigureAwait(false);
            // An abort that won the race to the reason but not yet to Close still resets.
            Close(abortive: !TrySetReasonLocked(CloseReason.Completed, SocketError.Success));
        }
        finally
        {
            await registration.DisposeAsync().ConfigureAwait(false);
            _idle.Dispose();
        }
        return new RelayResult
        {
            Client = ClientEndPoint,
            OriginalDestination = LocalEndPoint,
            Upstream = UpstreamEndPoint,
            Reason = Reason,
            Error = _error,
            ConnectStatus = UpstreamConnectStatus.Connected,
            BytesClientToUpstream = BytesClientToUpstream,
            BytesUpstreamToClient = BytesUpstreamToClient,
            Duration = _time.GetElapsedTime(_started),
            ClientMptcp = _clientSnapshot,
            UpstreamMptcp = _upstreamSnapshot,
            ClientMaxSubflows = Volatile.Read(ref _maxClientSubflows),
            UpstreamMaxSubflows = Volatile.Read(ref _maxUpstreamSubflows),
        };
    }

    private Task PumpAsync(Socket source, Side sourceSide, Socket destination, Side destinationSide)
    {
        // Never splice into an MPTCP socket: with two subflows the kernel corrupts data sent by splice/sendfile (issue 13:
        // 1232 bytes skipped, a later stretch duplicated, 6 of 120 runs with no proxy at all). Toward MPTCP the copy path
        // sends; splicing out of an MPTCP socket (its receive side) is not affected.
        bool toMptcp = destinationSide == Side.Client ? _clientIsMptcp : _upstreamIsMptcp;
        if (_options.Splice && !toMptcp)
        {
            return SpliceAsync(source, sourceSide, destination, destinationSide);
        }
        var pipe = new Pipe(_pipeOptions);
        return Task.WhenAll(
            FillAsync(source, sourceSide, pipe, readFirst: sourceSide == Side.Client),
            DrainAsync(pipe.Reader, destination, destinationSide));
    }

    /// <summary>
    /// Socket → pipe. The pipe returns its writing segment only from a reader AdvanceTo that reaches it while no write
    /// is open (GetMemory to FlushAsync); otherwise the segment stays until more bytes pass. So the read inside a write
    /// never waits (non-blocking recv), and a write that ends empty asks the reader to advance once more.
    /// </summary>
    /// <remarks>
    /// <c>readFirst</c>: read before the first park. A client's first bytes are usually there by the accept and upstream
    /// connect, and the zero-byte read would cost a recvmsg(MSG_PEEK) for them. When they are not, the stale-wakeup path parks.
    /// </remarks>
    private async Task FillAsync(Socket source, Side side, Pipe pipe, bool readFirst)
    {
        var writer = pipe.Writer;
        Exception? failure = null;
        bool park = !readFirst;
        try
        {
            while (true)
            {
                // Park on a zero-byte read, holding no buffer, until the socket is signalled readable.
                if (park)
                {
                    await source.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None).ConfigureAwait(false);
                }
                park = true;
                var memory = writer.GetMemory(_options.ReadSize);
                int received = ReceiveNow(source, memory.Span);
                if (received < 0)
                {
                    // A stale wakeup: .NET completes a queued zero-byte read on the readiness event without reading,
                    // and epoll (edge-triggered) may announce bytes the last read already took (measured: hundreds per
                    // 20 MB test run, TCP and MPTCP alike). Close the write empty and make the reader advance again so
                    // the segment goes back, then park again.
                    if ((await writer.FlushAsync().ConfigureAwait(false)).IsCompleted)
                    {
                        break;
                    }
                    pipe.Reader.CancelPendingRead();
                    continue;
                }
                if (received == 0)
                {
                    break;
                }
                writer.Advance(received);
                Interlocked.Add(ref side == Side.Client ? ref _toUpstream : ref _toClient, received);
                _idle.Reset();
                SampleSubflows();
                var flush = await writer.FlushAsync().ConfigureAwait(false);
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception e)
        {
            failure = e;
            OnFailure(e, side);
        }
        await writer.CompleteAsync(failure).ConfigureAwait(false);
    }

    /// <summary>
    /// recv(2) with MSG_DONTWAIT, straight on the descriptor: the bytes read, 0 at EOF, -1 when nothing is readable now.
    /// Not Socket.Receive on a non-blocking Socket: setting Socket.Blocking costs two fcntl(2) per socket and the
    /// managed Receive another layer per read (measured per short connection: 4 fcntl of ~30 syscalls).
    /// </summary>
    /// <exception cref="SocketException">the read failed.</exception>
    /// <exception cref="ObjectDisposedException">the socket was closed (an abort).</exception>
    private static unsafe int ReceiveNow(Socket source, Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            return (int)DescriptorCall.Run(source.SafeHandle, ((nint)p, buffer.Length),
                static (fd, b) => Native.Recv(fd, (byte*)b.Item1, (nuint)b.Item2, Native.MsgDontwait));
        }
    }

    /// <summary>
    /// The zero-copy direction (<see cref="RelayOptions.Splice"/>): wait until the source is readable (zero-byte read, no
    /// buffer held), splice what is there into this direction's kernel pipe, splice it all on to the destination, repeat.
    /// The pipe is emptied before the next read, so a slow destination stops reads from the source (as the copy path's
    /// pause threshold does, with the pipe's size as the bound).
    /// </summary>
    private async Task SpliceAsync(Socket source, Side sourceSide, Socket destination, Side destinationSide)
    {
        SplicePipe? pipe = null;
        var side = sourceSide;
        var oneByte = new byte[1];
        try
        {
            while (true)
            {
                side = sourceSide;
                await source.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None).ConfigureAwait(false);
                pipe ??= SplicePipe.Open(_options.SplicePipeSize);
                int moved = pipe.Fill(source, _options.SplicePipeSize);
                if (moved < 0)
                {
                    continue; // a stale wakeup (see FillAsync)
                }
                if (moved == 0)
                {
                    break;
                }
                Interlocked.Add(ref sourceSide == Side.Client ? ref _toUpstream : ref _toClient, moved);
                _idle.Reset();
                SampleSubflows();
                side = destinationSide;
                while (pipe.Pending > 0)
                {
                    if (pipe.Drain(destination) < 0)
                    {
                        // The send buffer is full: hand the next byte to SendAsync, which waits until it is writable.
                        oneByte[0] = pipe.TakeOne();
                        while (await destination.SendAsync(oneByte, SocketFlags.None).ConfigureAwait(false) == 0)
                        {
                        }
                    }
                }
                _idle.Reset();
            }
            // The source sent FIN and every byte before it is written: pass the FIN on.
            PassFinOn(destination);
        }
        catch (Exception e)
        {
            OnFailure(e, side);
        }
        finally
        {
            pipe?.Dispose();
        }
    }

    private async Task DrainAsync(PipeReader reader, Socket destination, Side side)
    {
        Exception? failure = null;
        try
        {
            while (true)
            {
                ReadResult result;
                try
                {
                    result = await reader.ReadAsync().ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    // The fill loop failed and already recorded why.
                    failure = e;
                    return;
                }
                var buffer = result.Buffer;
                foreach (var segment in buffer)
                {
                    var remaining = segment;
                    while (!remaining.IsEmpty)
                    {
                        int sent = await destination.SendAsync(remaining, SocketFlags.None).ConfigureAwait(false);
                        remaining = remaining[sent..];
                    }
                }
                reader.AdvanceTo(buffer.End);
                if (!buffer.IsEmpty)
                {
                    _idle.Reset();
                    // Sampled on writes too: a response that fits the pipe is read in the first milliseconds, before a
                    // join, and the slow reader's writes are then the only activity until the close (when the peer's
                    // subflows may already be gone).
                    SampleSubflows();
                }
                if (result.IsCanceled && !buffer.IsEmpty)
                {
                    // The fill loop asked for a look with nothing left to send (see FillAsync), but this read still
                    // carried bytes: the segment the writer took after them is returned only by a read that ends
                    // there, so look once more.
                    reader.CancelPendingRead();
                }
                if (result.IsCompleted)
                {
                    break;
                }
            }
            // The source sent FIN and every byte before it is written: pass the FIN on.
            PassFinOn(destination);
        }
        catch (Exception e)
        {
            failure = e;
            OnFailure(e, side);
        }
        finally
        {
            await reader.CompleteAsync(failure).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// shutdown(SHUT_WR), except in the direction that ends second: the close that follows at once sends that FIN (as
    /// HAProxy does; one syscall less per connection). Its peer's EOF was read already, so the close is not a reset.
    /// </summary>
    private void PassFinOn(Socket destination)
    {
        if (Interlocked.Increment(ref _directionsEnded) == 1 && Reason == CloseReason.None)
        {
            destination.Shutdown(SocketShutdown.Send);
        }
    }

    private void OnFailure(Exception exception, Side side)
    {
        var kind = SocketErrors.Classify(exception, out var error);
        var reason = kind switch
        {
            SocketFailure.Reset => side == Side.Client ? CloseReason.ClientReset : CloseReason.UpstreamReset,
            // Our own close; if nothing recorded a reason first, something closed the socket under us.
            SocketFailure.Abort => CloseReason.Error,
            _ => CloseReason.Error,
        };
        Abort(reason, error);
    }

    /// <summary>Tracks the highest subflow count now and then: subflows join after the first data and may leave.</summary>
    private void SampleSubflows()
    {
        if (!_clientIsMptcp && !_upstreamIsMptcp)
        {
            return;
        }

        long now = _time.GetTimestamp();
        long last = Volatile.Read(ref _lastSubflowSample);
        bool due = Interlocked.Increment(ref _transfers) % SubflowSampleEvery == 1
            || last == long.MinValue || _time.GetElapsedTime(last, now) >= SubflowSampleInterval;
        if (!due || Interlocked.CompareExchange(ref _lastSubflowSample, now, last) != last)
        {
            return;
        }
        lock (_closeLock)
        {
            if (_closed)
            {
                return;
            }
            // Either leg may be the MPTCP one: the client's in the downgrade role, the upstream's in the upgrade role.
            if (_clientIsMptcp && MptcpSocket.ReadInfo(_client, out var info) == MptcpStatus.Active)
            {
                _maxClientSubflows = Math.Max(_maxClientSubflows, info.Subflows);
            }
            if (_upstreamIsMptcp && MptcpSocket.ReadInfo(_upstream, out info) == MptcpStatus.Active)
            {
                _maxUpstreamSubflows = Math.Max(_maxUpstreamSubflows, info.Subflows);
            }
        }
    }

    private void Close(bool abortive)
    {
        lock (_closeLock)
        {
            if (_closed)
            {
                return;
            }
            // Status and counts only: the subflow list costs two getsockopt and ~3 KiB per MPTCP leg, and no reader of a
            // result needs it (a live connection's ClientMptcp()/UpstreamMptcp() still list the subflows).
            _clientSnapshot = Snapshot(_client, _clientIsMptcp, withSubflows: false);
            _upstreamSnapshot = Snapshot(_upstream, _upstreamIsMptcp, withSubflows: false);
            if (_clientSnapshot.Status == MptcpStatus.Active)
            {
                _maxClientSubflows = Math.Max(_maxClientSubflows, _clientSnapshot.Info.Subflows);
            }
            if (_upstreamSnapshot.Status == MptcpStatus.Active)
            {
                _maxUpstreamSubflows = Math.Max(_maxUpstreamSubflows, _upstreamSnapshot.Info.Subflows);
            }
            _closed = true;
        }
        CloseSocket(_client, abortive);
        CloseSocket(_upstream, abortive);
    }

    /// <summary>A plain TCP socket stays one (SO_PROTOCOL is fixed at socket(2)): no getsockopt for it at close.</summary>
    private static MptcpSnapshot Snapshot(Socket socket, bool isMptcp, bool withSubflows = true) =>
        isMptcp ? MptcpSocket.SnapshotOfMptcp(socket, withSubflows) : MptcpSnapshot.NotMptcp;

    /// <summary>The peer's address, or null when the socket cannot tell any more (closed, never connected).</summary>
    internal static IPEndPoint? RemoteEndPointOf(Socket socket)
    {
        try
        {
            return socket.RemoteEndPoint as IPEndPoint;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return null;
        }
    }

    /// <summary>The local address (the original destination under TPROXY), or null when the socket cannot tell.</summary>
    internal static IPEndPoint? LocalEndPointOf(Socket socket)
    {
        try
        {
            return socket.LocalEndPoint as IPEndPoint;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return null;
        }
    }

    /// <summary>Abortive: SO_LINGER {on, 0} so close(2) sends RST (MPTCP: a fast close) instead of FIN.</summary>
    internal static void CloseSocket(Socket socket, bool abortive)
    {
        if (abortive)
        {
            try
            {
                socket.LingerState = new LingerOption(true, 0);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
        }
        socket.Dispose();
    }
}

/// <summary>What a caller of <see cref="RelayConnection"/> knows of its legs already; null: ask the kernel.</summary>
internal readonly record struct KnownLegs(bool? ClientIsMptcp = null, bool? UpstreamIsMptcp = null, IPEndPoint? UpstreamEndPoint = null);
