using System.Runtime.InteropServices;
using ProxySelection.Interception.Nfqueue;
using static ProxySelection.Interception.Nfqueue.InterceptionNative;

namespace ProxySelection.Interception.Netlink;

/// <summary>The kernel refused a request of the <c>mptcp_pm</c> event listener (no MPTCP, no CAP_NET_ADMIN, ...).</summary>
public sealed class MptcpPmException : Exception
{
    public MptcpPmException() { }

    public MptcpPmException(string message) : base(message) { }

    public MptcpPmException(string message, Exception inner) : base(message, inner) { }

    public MptcpPmException(string message, int errno) : base($"{message}: {Describe(errno)}") => Errno = errno;

    /// <summary>The positive errno the kernel returned, 0 when not a kernel error.</summary>
    public int Errno { get; }
}

/// <summary>
/// Listens to the MPTCP path manager's events (generic netlink family <c>mptcp_pm</c>, multicast group
/// <c>mptcp_pm_events</c>) of the network namespace of the thread that calls <see cref="Open"/>. Joining the group
/// needs CAP_NET_ADMIN (the kernel flags it GENL_MCAST_CAP_NET_ADMIN).
/// </summary>
public sealed unsafe partial class MptcpPmListener : IDisposable
{
    private const int NetlinkAddMembership = 1;
    private const int ReceiveBufferBytes = 1 << 20;
    private readonly NetlinkSocketHandle socket;
    private readonly ushort familyId;
    private long overruns;
    private long malformed;
    private long events;

    private MptcpPmListener(NetlinkSocketHandle socket, ushort familyId, uint group)
    {
        this.socket = socket;
        this.familyId = familyId;
        EventsGroup = group;
    }

    /// <summary>The multicast group id the kernel gave <c>mptcp_pm_events</c>.</summary>
    public uint EventsGroup { get; }

    /// <summary>ENOBUFS: events the kernel dropped because this socket's buffer was full.</summary>
    public long Overruns => Interlocked.Read(ref overruns);

    /// <summary>Messages that did not parse (counted, skipped).</summary>
    public long MalformedMessages => Interlocked.Read(ref malformed);

    public long EventsReceived => Interlocked.Read(ref events);

    /// <summary>Resolves the family, joins its event group. <see cref="MptcpPmException"/> when the kernel refuses.</summary>
    public static MptcpPmListener Open(TimeSpan timeout)
    {
        int fd = socket(Netlink.AfNetlink, SockRaw | SockCloexec, MptcpPmCodec.NetlinkGeneric);
        if (fd < 0)
        {
            throw new MptcpPmException("socket(AF_NETLINK, NETLINK_GENERIC)", Marshal.GetLastPInvokeError());
        }

        var handle = new NetlinkSocketHandle(fd);
        try
        {
            int size = ReceiveBufferBytes;
            if (setsockopt(fd, SolSocket, SoRcvbufForce, &size, sizeof(int)) != 0)
            {
                _ = setsockopt(fd, SolSocket, SoRcvbuf, &size, sizeof(int));
            }

            var address = new SockaddrNl { Family = Netlink.AfNetlink };
            if (bind(fd, &address, sizeof(SockaddrNl)) != 0)
            {
                throw new MptcpPmException("bind(AF_NETLINK)", Marshal.GetLastPInvokeError());
            }

            var (family, group) = ResolveFamily(fd, timeout);
            if (setsockopt(fd, Netlink.SolNetlink, NetlinkAddMembership, &group, sizeof(uint)) != 0)
            {
                throw new MptcpPmException("NETLINK_ADD_MEMBERSHIP mptcp_pm_events", Marshal.GetLastPInvokeError());
            }

            return new MptcpPmListener(handle, family, group);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static (ushort Family, uint Group) ResolveFamily(int fd, TimeSpan timeout)
    {
        Span<byte> request = stackalloc byte[64];
        int length = MptcpPmCodec.WriteGetFamily(request, 1);
        fixed (byte* p = request)
        {
            if (send(fd, p, (nuint)length, 0) < 0)
            {
                throw new MptcpPmException("send(CTRL_CMD_GETFAMILY)", Marshal.GetLastPInvokeError());
            }
        }

        var buffer = new byte[16384];
        if (!Wait(fd, (int)timeout.TotalMilliseconds))
        {
            throw new MptcpPmException("no answer from the generic netlink controller");
        }

        int received = Receive(fd, buffer, out int errno);
        if (received < 0)
        {
            throw new MptcpPmException("recv(CTRL_CMD_GETFAMILY)", errno);
        }

        var reader = new NetlinkMessageReader(buffer.AsSpan(0, received));
        while (reader.TryReadNext(out var message))
        {
            if (NfqueueCodec.TryReadError(message, out int error, out _) == NetlinkStatus.Ok && error != 0)
            {
                // ENOENT: the kernel has no MPTCP (CONFIG_MPTCP off).
                throw new MptcpPmException("CTRL_CMD_GETFAMILY mptcp_pm", -error);
            }

            var status = MptcpPmCodec.TryReadFamily(message, out ushort family, out uint group);
            if (status == NetlinkStatus.Ok)
            {
                return (family, group);
            }

            if (status != NetlinkStatus.UnexpectedType)
            {
                throw new MptcpPmException($"the controller's answer for mptcp_pm did not parse: {status}");
            }
        }

        throw new MptcpPmException($"no mptcp_pm family in the controller's answer ({reader.Status})");
    }

    /// <summary>
    /// Receives events on a dedicated thread until <paramref name="cancellationToken"/> or <see cref="Dispose"/>,
    /// calling <paramref name="onEvent"/> on that thread. A throwing handler loses its event only.
    /// </summary>
    public Task RunAsync(Action<MptcpPmEvent> onEvent, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(onEvent);
        return Task.Factory.StartNew(() => Loop(onEvent, cancellationToken), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    private void Loop(Action<MptcpPmEvent> onEvent, CancellationToken cancellationToken)
    {
        var buffer = new byte[65536];
        while (!cancellationToken.IsCancellationRequested)
        {
            bool added = false;
            try
            {
                socket.DangerousAddRef(ref added);
                if (!Wait(socket.Fd, 100))
                {
                    continue;
                }

                int received = Receive(socket.Fd, buffer, out int errno);
                if (received < 0)
                {
                    if (errno == ENoBufs)
                    {
                        Interlocked.Increment(ref overruns);
                    }

                    continue;
                }

                Dispatch(buffer.AsSpan(0, received), onEvent);
            }
            catch (ObjectDisposedException)
            {
                return;
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

    private void Dispatch(ReadOnlySpan<byte> datagram, Action<MptcpPmEvent> onEvent)
    {
        var reader = new NetlinkMessageReader(datagram);
        while (reader.TryReadNext(out var message))
        {
            if (MptcpPmCodec.TryReadEvent(message, familyId, out var parsed) != NetlinkStatus.Ok)
            {
                Interlocked.Increment(ref malformed);
                continue;
            }

            Interlocked.Increment(ref events);
            try
            {
                onEvent(parsed!);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // An observer bug must not stop the listener.
            }
        }

        if (reader.Status != NetlinkStatus.Ok)
        {
            Interlocked.Increment(ref malformed);
        }
    }

    private static bool Wait(int fd, int milliseconds)
    {
        var pfd = new PollFd { Fd = fd, Events = PollIn };
        // POLLERR (ENOBUFS pending) counts as ready too: the recv that follows reports and clears it.
        return poll(&pfd, 1, milliseconds) > 0;
    }

    private static int Receive(int fd, byte[] buffer, out int errno)
    {
        errno = 0;
        fixed (byte* p = buffer)
        {
            var n = (int)recv(fd, p, (nuint)buffer.Length, MsgDontwait);
            if (n < 0)
            {
                errno = Marshal.GetLastPInvokeError();
            }

            return n;
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint recv(int fd, void* buffer, nuint length, int flags);

    public void Dispose() => socket.Dispose();
}
