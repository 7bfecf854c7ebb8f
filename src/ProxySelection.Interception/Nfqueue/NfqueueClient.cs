using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ProxySelection.Interception.Netlink;
using static ProxySelection.Interception.Nfqueue.InterceptionNative;

namespace ProxySelection.Interception.Nfqueue;

/// <summary>Called once per queued packet, on the receiving thread. The packet's spans die when it returns.</summary>
public delegate void NfqueuePacketHandler(in NfqueuePacket packet);

/// <summary>
/// An NFQUEUE client on a raw AF_NETLINK/NETLINK_NETFILTER socket (no libnetfilter_queue). <see cref="Receive"/>
/// must be called from one thread at a time; verdict methods may be called from any thread (each verdict is one
/// sendmsg, which netlink keeps whole). The socket lives in the network namespace of the thread that called
/// <see cref="Open"/>.
/// </summary>
public sealed unsafe class NfqueueClient : IDisposable
{
    private const int SmallVerdictBuffer = 256;
    private readonly NetlinkSocketHandle socket;
    private readonly NfqueueOptions options;
    private readonly int slotSize;
    private readonly byte* arena;
    private readonly MMsgHdr* headers;
    private readonly IoVec* vectors;
    private readonly TimeProvider time;
    private readonly ILogger logger;
    // Held by Receive for its whole call, so Dispose cannot free the buffers under it.
    private readonly Lock receiveGate = new();
    private int sequence;
    private long lastPacketId = -1;
    private int disposed;
    // Latency bookkeeping: when the current batch reached user space, which ingress packet a handler is deciding now
    // (-1: none) and whether its verdict went out during the handler.
    private long batchReceivedAt;
    private int nicedThread;
    private long dispatching = -1;
    private int dispatchVerdicted;

    private NfqueueClient(NetlinkSocketHandle socket, NfqueueOptions options, TimeProvider time, ILogger logger)
    {
        this.socket = socket;
        this.options = options;
        this.time = time;
        this.logger = logger;
        Latency = new VerdictLatency(time);
        // Payload up to the copy range plus headers and small attributes (conntrack is the largest, ~200 bytes):
        // a slot never truncates a packet message, so no packet is ever stranded without a verdict.
        slotSize = (int)Math.Min(options.CopyRange, 0xFFFF) + 4096;
        arena = (byte*)NativeMemory.Alloc((nuint)slotSize, (nuint)options.BatchSize);
        headers = (MMsgHdr*)NativeMemory.AllocZeroed((nuint)sizeof(MMsgHdr), (nuint)options.BatchSize);
        vectors = (IoVec*)NativeMemory.AllocZeroed((nuint)sizeof(IoVec), (nuint)options.BatchSize);
        for (var i = 0; i < options.BatchSize; i++)
        {
            vectors[i].Base = arena + ((long)i * slotSize);
            vectors[i].Length = (nuint)slotSize;
            headers[i].Header.Iov = &vectors[i];
            headers[i].Header.IovLength = 1;
        }
    }

    public ushort QueueNumber => options.QueueNumber;

    public NfqueueStatistics Statistics { get; } = new();

    /// <summary>Receive-to-verdict latency of ingress packets (decided in the handler, or held and decided later).</summary>
    public VerdictLatency Latency { get; }

    /// <summary>
    /// Opens a netlink socket, binds <see cref="NfqueueOptions.QueueNumber"/> and configures copy mode, range, queue
    /// length and flags, waiting for the kernel's acknowledgement of each. Throws <see cref="NfqueueException"/>
    /// when the kernel refuses (EPERM: another socket holds the queue, or no CAP_NET_ADMIN). <paramref name="logger"/>
    /// hears only what an operator must know (overruns, malformed messages, handler faults, refusals); none by default.
    /// </summary>
    public static NfqueueClient Open(NfqueueOptions options, TimeProvider? timeProvider = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var fd = socket(Netlink.Netlink.AfNetlink, SockRaw | SockCloexec, Netlink.Netlink.NetlinkNetfilter);
        if (fd < 0)
        {
            throw new NfqueueException("socket(AF_NETLINK, NETLINK_NETFILTER)", Marshal.GetLastPInvokeError());
        }

        var client = new NfqueueClient(new NetlinkSocketHandle(fd), options, timeProvider ?? TimeProvider.System, logger ?? NullLogger.Instance);
        try
        {
            client.Configure();
        }
        catch
        {
            client.Dispose();
            throw;
        }

        InterceptionLog.QueueBound(client.logger, options.QueueNumber, options.CopyRange, options.MaxQueueLength, options.FailOpen, options.ReceiveBufferBytes);
        return client;
    }

    /// <summary>
    /// Waits up to <paramref name="timeout"/> for queued packets, takes up to <see cref="NfqueueOptions.BatchSize"/>
    /// datagrams in one recvmmsg, and calls <paramref name="handler"/> for each packet. Returns the number of packets
    /// handled (0 on timeout). ENOBUFS is counted and receiving goes on; malformed messages are counted, never thrown.
    /// A packet whose handler throws is accepted (fail open) and the first exception is rethrown, wrapped in
    /// <see cref="NfqueueException"/>, after the whole batch has been handled.
    /// </summary>
    public int Receive(NfqueuePacketHandler handler, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(handler);
        using var scope = receiveGate.EnterScope();
        ObjectDisposedException.ThrowIf(Volatile.Read(ref disposed) != 0, this);
        SetReceiveThreadNice();
        var count = ReceiveDatagrams(timeout);
        batchReceivedAt = time.GetTimestamp();
        var handled = 0;
        Exception? failure = null;
        for (var i = 0; i < count; i++)
        {
            var datagram = new ReadOnlySpan<byte>(arena + ((long)i * slotSize), (int)headers[i].Length);
            handled += Dispatch(datagram, handler, ref failure);
            if (Volatile.Read(ref disposed) != 0)
            {
                // A handler disposed the client: the buffers must not be read any further.
                break;
            }
        }

        if (failure is not null)
        {
            throw new NfqueueException("an NFQUEUE packet handler failed; its packet was accepted", failure);
        }

        return handled;
    }

    /// <summary>
    /// Runs <see cref="Receive"/> in a loop on a dedicated thread until <paramref name="cancellationToken"/> is
    /// cancelled (checked every 100 ms) or the client is disposed. A handler failure (its packet already accepted) goes
    /// to <paramref name="onHandlerError"/> and the loop goes on; without that callback it ends the loop and faults the
    /// task — then dispose the client, so held packets are accepted and <c>--queue-bypass</c> passes new ones.
    /// </summary>
    public Task RunAsync(NfqueuePacketHandler handler, CancellationToken cancellationToken, Action<NfqueueException>? onHandlerError = null) =>
        Task.Factory.StartNew(() =>
        {
            while (!cancellationToken.IsCancellationRequested && Volatile.Read(ref disposed) == 0)
            {
                try
                {
                    Receive(handler, TimeSpan.FromMilliseconds(100));
                }
                catch (ObjectDisposedException)
                {
                    return;
                }
                catch (NfqueueException e) when (onHandlerError is not null && e.Errno == 0)
                {
                    onHandlerError(e);
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>
    /// A socket with SO_TIMESTAMP set, to keep for as long as queued packets should carry NFQA_TIMESTAMP: the kernel stamps
    /// received packets (netstamp_needed_key) only while some socket asked for receive timestamps. Dispose it to stop.
    /// </summary>
    public static System.Net.Sockets.Socket EnableReceiveTimestamps()
    {
        var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram,
            System.Net.Sockets.ProtocolType.Udp);
        try
        {
            socket.SetRawSocketOption(1 /* SOL_SOCKET */, 29 /* SO_TIMESTAMP_OLD */, BitConverter.GetBytes(1));
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public void Accept(uint packetId) => SetVerdict(packetId, NfqueueVerdict.Accept);

    public void Drop(uint packetId) => SetVerdict(packetId, NfqueueVerdict.Drop);

    /// <summary>Accepts with skb->mark set to <paramref name="mark"/> (the whole mark: combine with the packet's
    /// existing mark yourself to keep other bits, see <see cref="MaskedMark"/>).</summary>
    public void AcceptWithMark(uint packetId, uint mark) => SetVerdict(packetId, NfqueueVerdict.Accept, mark);

    /// <summary><paramref name="current"/> with the bits of <paramref name="mask"/> replaced by <paramref name="value"/>.</summary>
    public static uint MaskedMark(uint current, uint value, uint mask) => (current & ~mask) | (value & mask);

    /// <summary>Accepts with the packet replaced by <paramref name="packet"/> (whole IP packet; checksums must be right —
    /// the kernel marks the skb CHECKSUM_NONE and does not recompute them).</summary>
    public void AcceptWithPayload(uint packetId, ReadOnlySpan<byte> packet, uint? mark = null)
    {
        if (packet.IsEmpty)
        {
            throw new ArgumentException("a replacement packet cannot be empty", nameof(packet));
        }

        var length = NfqueueCodec.VerdictLength(packet.Length);
        byte[]? rented = null;
        var buffer = length <= SmallVerdictBuffer ? stackalloc byte[SmallVerdictBuffer] : (rented = ArrayPool<byte>.Shared.Rent(length));
        try
        {
            var w = new NetlinkWriter(buffer);
            NfqueueCodec.WriteVerdict(ref w, NextSequence(), options.QueueNumber, packetId, NfqueueVerdict.Accept, mark, packet, replacePayload: true);
            Send(buffer[..w.Length], 1);
            NoteVerdict(packetId);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>Any verdict, optionally with a mark.</summary>
    public void SetVerdict(uint packetId, NfqueueVerdict verdict, uint? mark = null)
    {
        Span<byte> buffer = stackalloc byte[SmallVerdictBuffer];
        var w = new NetlinkWriter(buffer);
        NfqueueCodec.WriteVerdict(ref w, NextSequence(), options.QueueNumber, packetId, verdict, mark);
        Send(buffer[..w.Length], 1);
        NoteVerdict(packetId);
    }

    /// <summary>Records the verdict's latency: immediate when its packet's handler is still running, else deferred.</summary>
    private void NoteVerdict(uint packetId)
    {
        var now = time.GetTimestamp();
        if (Volatile.Read(ref dispatching) == packetId)
        {
            if (Interlocked.Exchange(ref dispatchVerdicted, 1) == 0)
            {
                Latency.Immediate.Record(time.GetElapsedTime(batchReceivedAt, now));
            }
        }
        else
        {
            Latency.OnLateVerdict(packetId, now);
        }
    }

    /// <summary>One verdict message per entry, all in one sendmsg.</summary>
    public void SetVerdicts(ReadOnlySpan<(uint PacketId, NfqueueVerdict Verdict, uint? Mark)> verdicts)
    {
        if (verdicts.IsEmpty)
        {
            return;
        }

        var length = verdicts.Length * NfqueueCodec.SmallRequestLength;
        var rented = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            var w = new NetlinkWriter(rented);
            foreach (var (id, verdict, mark) in verdicts)
            {
                NfqueueCodec.WriteVerdict(ref w, NextSequence(), options.QueueNumber, id, verdict, mark);
            }

            Send(rented.AsSpan(0, w.Length), verdicts.Length);
            foreach (var (id, _, _) in verdicts)
            {
                NoteVerdict(id);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>NFQNL_MSG_VERDICT_BATCH: <paramref name="verdict"/> for every packet still queued with id up to
    /// <paramref name="lastPacketId"/> (ids are assigned in arrival order).</summary>
    public void SetBatchVerdict(uint lastPacketId, NfqueueVerdict verdict, uint? mark = null) =>
        SendBatchVerdict(lastPacketId, verdict, mark, afterDispose: false);

    /// <summary>Accepts every packet still held (batch verdict up to the last id seen), then closes the socket —
    /// closing alone would make the kernel drop them. Waits for a concurrent <see cref="Receive"/> to return.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0)
        {
            return;
        }

        // Waits for a running Receive to return (at most its timeout).
        using var scope = receiveGate.EnterScope();
        var last = Interlocked.Read(ref lastPacketId);
        if (last >= 0)
        {
            try
            {
                SendBatchVerdict((uint)last, NfqueueVerdict.Accept, null, afterDispose: true);
            }
            catch (NfqueueException e)
            {
                // Nothing more to do: the kernel flushes the queue when the socket closes.
                InterceptionLog.ReleaseOnCloseFailed(logger, options.QueueNumber, e);
            }
        }

        socket.Dispose();
        NativeMemory.Free(arena);
        NativeMemory.Free(headers);
        NativeMemory.Free(vectors);
    }

    /// <summary><paramref name="afterDispose"/>: the release of held packets by <see cref="Dispose"/>, which has
    /// already marked the client disposed, so the message is sent without the disposed check (and not counted).</summary>
    private void SendBatchVerdict(uint lastPacketId, NfqueueVerdict verdict, uint? mark, bool afterDispose)
    {
        Span<byte> buffer = stackalloc byte[SmallVerdictBuffer];
        var w = new NetlinkWriter(buffer);
        NfqueueCodec.WriteBatchVerdict(ref w, NextSequence(), options.QueueNumber, lastPacketId, verdict, mark);
        if (afterDispose)
        {
            SendRaw(buffer[..w.Length]);
        }
        else
        {
            Send(buffer[..w.Length], 1);
        }
    }

    private void Configure()
    {
        var size = options.ReceiveBufferBytes;
        if (setsockopt(socket.Fd, SolSocket, SoRcvbufForce, &size, sizeof(int)) != 0)
        {
            // Without CAP_NET_ADMIN only the capped SO_RCVBUF is allowed.
            _ = setsockopt(socket.Fd, SolSocket, SoRcvbuf, &size, sizeof(int));
        }

        var address = new SockaddrNl { Family = Netlink.Netlink.AfNetlink };
        if (bind(socket.Fd, &address, sizeof(SockaddrNl)) != 0)
        {
            throw new NfqueueException("bind(AF_NETLINK)", Marshal.GetLastPInvokeError());
        }

        var q = options.QueueNumber;
        var first = (uint)Interlocked.Add(ref sequence, 4) - 3;
        Span<byte> buffer = stackalloc byte[4 * NfqueueCodec.SmallRequestLength];
        var w = new NetlinkWriter(buffer);
        NfqueueCodec.WriteConfigCommand(ref w, first, q, NfqueueCommand.Bind);
        NfqueueCodec.WriteConfigParams(ref w, first + 1, q, options.CopyMode, options.CopyRange);
        NfqueueCodec.WriteConfigMaxLength(ref w, first + 2, q, options.MaxQueueLength);
        var flags = (options.FailOpen ? NfqueueConfigFlags.FailOpen : 0) | (options.Gso ? NfqueueConfigFlags.Gso : 0)
            | (options.Conntrack ? NfqueueConfigFlags.Conntrack : 0);
        NfqueueCodec.WriteConfigFlags(ref w, first + 3, q, flags,
            NfqueueConfigFlags.FailOpen | NfqueueConfigFlags.Gso | NfqueueConfigFlags.Conntrack);
        SendRaw(buffer[..w.Length]);
        AwaitAcks(first, 4);
    }

    private void AwaitAcks(uint first, int count)
    {
        string[] what = ["bind queue", "set copy mode", "set queue length", "set flags"];
        var pending = new bool[count];
        Array.Fill(pending, true);
        var left = count;
        var started = time.GetTimestamp();
        while (left > 0)
        {
            var remaining = options.ConfigTimeout - time.GetElapsedTime(started);
            if (remaining <= TimeSpan.Zero)
            {
                throw new NfqueueException($"queue {options.QueueNumber}: no acknowledgement within {options.ConfigTimeout}");
            }

            var n = ReceiveDatagrams(remaining);
            for (var i = 0; i < n; i++)
            {
                var reader = new NetlinkMessageReader(new ReadOnlySpan<byte>(arena + ((long)i * slotSize), (int)headers[i].Length));
                while (reader.TryReadNext(out var m))
                {
                    if (m.Type == Netlink.Netlink.TypeError
                        && NfqueueCodec.TryReadError(m, out var error, out var seq) == NetlinkStatus.Ok
                        && seq - first < (uint)count)
                    {
                        if (error != 0)
                        {
                            // NFQA_CT needs CONFIG_NETFILTER_NETLINK_GLUE_CT (absent on the 6.18 kernel measured here).
                            var hint = seq - first == 3 && -error == 95 && options.Conntrack ? " (Conntrack needs CONFIG_NETFILTER_NETLINK_GLUE_CT)" : "";
                            throw new NfqueueException($"queue {options.QueueNumber}: {what[seq - first]}{hint}", -error);
                        }

                        if (pending[seq - first])
                        {
                            pending[seq - first] = false;
                            left--;
                        }
                    }
                    else if (m.Type == Nfq.MsgPacket)
                    {
                        // A packet queued before we finished configuring: let it through rather than decide half-set-up.
                        if (AcceptUndecided(m) is { } id)
                        {
                            InterceptionLog.AcceptedDuringSetup(logger, options.QueueNumber, id);
                        }
                    }
                }
            }
        }
    }

    private int Dispatch(ReadOnlySpan<byte> datagram, NfqueuePacketHandler handler, ref Exception? failure)
    {
        var handled = 0;
        var reader = new NetlinkMessageReader(datagram);
        while (reader.TryReadNext(out var m))
        {
            switch (m.Type)
            {
                case Nfq.MsgPacket:
                    var status = NfqueueCodec.TryReadPacket(m, out var packet);
                    if (status != NetlinkStatus.Ok)
                    {
                        Malformed(m.Type, status);
                        AcceptUndecided(m);
                        break;
                    }

                    Statistics.AddPacket();
                    RecordId(packet.PacketId);
                    handled++;
                    bool timed = packet.Hook != NetfilterHook.PostRouting;
                    if (timed)
                    {
                        Volatile.Write(ref dispatchVerdicted, 0);
                        Volatile.Write(ref dispatching, packet.PacketId);
                    }

                    try
                    {
                        handler(in packet);
                    }
                    catch (Exception e) when (e is not OutOfMemoryException)
                    {
                        InterceptionLog.HandlerFault(logger, options.QueueNumber, packet.PacketId, e);
                        failure ??= e;
                        Statistics.AddFailOpenAccept();
                        TryAccept(packet.PacketId);
                    }

                    if (timed)
                    {
                        Volatile.Write(ref dispatching, -1);
                        if (Volatile.Read(ref dispatchVerdicted) == 0)
                        {
                            Latency.Defer(packet.PacketId, batchReceivedAt);
                        }
                    }

                    if (Volatile.Read(ref disposed) != 0)
                    {
                        return handled;
                    }

                    break;
                case Netlink.Netlink.TypeError:
                    var errorStatus = NfqueueCodec.TryReadError(m, out var error, out _);
                    if (errorStatus != NetlinkStatus.Ok)
                    {
                        Malformed(m.Type, errorStatus);
                    }
                    else if (error != 0)
                    {
                        Statistics.AddNetlinkError(-error);
                        InterceptionLog.NetlinkError(logger, options.QueueNumber, -error);
                    }

                    break;
                case Netlink.Netlink.TypeNoop:
                case Netlink.Netlink.TypeDone:
                    break;
                default:
                    Malformed(m.Type, NetlinkStatus.UnexpectedType);
                    break;
            }
        }

        if (reader.Status != NetlinkStatus.Ok)
        {
            Statistics.AddMalformed();
            InterceptionLog.MalformedDatagram(logger, options.QueueNumber, reader.Status);
        }

        return handled;
    }

    /// <summary>Applies <see cref="NfqueueOptions.ReceiveThreadNice"/> once per receiving thread (best effort: without
    /// CAP_SYS_NICE a negative value is refused and the thread keeps its priority).</summary>
    private void SetReceiveThreadNice()
    {
        if (options.ReceiveThreadNice is not int nice)
        {
            return;
        }

        var tid = gettid();
        if (nicedThread == tid)
        {
            return;
        }

        nicedThread = tid;
        _ = ThreadScheduling.Raise(realtime: false, nice);
    }

    private void Malformed(ushort type, NetlinkStatus status)
    {
        Statistics.AddMalformed();
        InterceptionLog.MalformedMessage(logger, options.QueueNumber, type, status);
    }

    /// <summary>Accepts a packet message we cannot or will not decide on, if its id can still be found; returns that id.</summary>
    private uint? AcceptUndecided(in NetlinkMessage m)
    {
        if (m.Payload.Length < Nfq.NfgenHeaderLength)
        {
            return null;
        }

        var attrs = new NetlinkAttributeReader(m.Payload[Nfq.NfgenHeaderLength..]);
        while (attrs.TryReadNext(out var a))
        {
            if (a.Type == Nfq.AttrPacketHeader && a.Payload.Length >= 4)
            {
                var id = BinaryPrimitives.ReadUInt32BigEndian(a.Payload);
                RecordId(id);
                Statistics.AddFailOpenAccept();
                TryAccept(id);
                return id;
            }
        }

        return null;
    }

    private void TryAccept(uint id)
    {
        try
        {
            Accept(id);
        }
        catch (NfqueueException e)
        {
            // The socket is failing; the fail-open flag and --queue-bypass are the remaining safety net.
            InterceptionLog.FailOpenAcceptFailed(logger, options.QueueNumber, id, e);
        }
    }

    private void RecordId(uint id)
    {
        long current;
        do
        {
            current = Interlocked.Read(ref lastPacketId);
            // Ids grow by one per packet; compare in serial-number order so wrap-around still moves forward.
            if (current >= 0 && (int)(id - (uint)current) <= 0)
            {
                return;
            }
        }
        while (Interlocked.CompareExchange(ref lastPacketId, id, current) != current);
    }

    private int ReceiveDatagrams(TimeSpan timeout)
    {
        // Under load the next batch is queued already (packets arrive while the last one's verdicts are sent): take it
        // before paying a poll(2), which was 8 % of the hook thread's time in MPTCP pass-through (perf). Idle, this
        // costs one recvmmsg that finds nothing.
        var n = TryReceiveDatagrams();
        if (n > 0)
        {
            return n;
        }

        var pfd = new PollFd { Fd = socket.Fd, Events = PollIn };
        var ms = (int)Math.Clamp(timeout.TotalMilliseconds, 0, int.MaxValue);
        var ready = poll(&pfd, 1, ms);
        if (ready < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno == EIntr ? 0 : throw new NfqueueException("poll(netlink)", errno);
        }

        return ready == 0 ? 0 : TryReceiveDatagrams();
    }

    /// <summary>One non-blocking recvmmsg: the datagrams queued now (0 when none).</summary>
    private int TryReceiveDatagrams()
    {
        // Two tries: an ENOBUFS report comes alone, the datagrams still queued follow it.
        for (var attempt = 0; attempt < 2; attempt++)
        {
            for (var i = 0; i < options.BatchSize; i++)
            {
                headers[i].Header.Flags = 0;
                headers[i].Length = 0;
            }

            var n = recvmmsg(socket.Fd, headers, (uint)options.BatchSize, MsgDontwait, null);
            if (n >= 0)
            {
                return n;
            }

            var errno = Marshal.GetLastPInvokeError();
            switch (errno)
            {
                case ENoBufs:
                    Statistics.AddOverrun();
                    InterceptionLog.ReceiveOverrun(logger, options.QueueNumber, Statistics.ReceiveOverruns);
                    continue;
                case EAgain:
                case EIntr:
                    return 0;
                default:
                    throw new NfqueueException("recvmmsg(netlink)", errno);
            }
        }

        return 0;
    }

    private uint NextSequence() => (uint)Interlocked.Increment(ref sequence);

    private void Send(ReadOnlySpan<byte> message, int verdicts)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref disposed) != 0, this);
        SendRaw(message);
        Statistics.AddVerdicts(verdicts);
    }

    private void SendRaw(ReadOnlySpan<byte> message)
    {
        var added = false;
        socket.DangerousAddRef(ref added);
        try
        {
            fixed (byte* p = message)
            {
                while (true)
                {
                    var sent = send(socket.Fd, p, (nuint)message.Length, 0);
                    if (sent >= 0)
                    {
                        return;
                    }

                    var errno = Marshal.GetLastPInvokeError();
                    if (errno != EIntr)
                    {
                        throw new NfqueueException("send(netlink)", errno);
                    }
                }
            }
        }
        finally
        {
            if (added)
            {
                socket.DangerousRelease();
            }
        }
    }
}
