using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Net.Sockets;

namespace ProxySelection.Relay;

/// <summary>What a socket is, as far as Multipath TCP goes.</summary>
public enum MptcpStatus
{
    /// <summary>A plain TCP socket (created with IPPROTO_TCP).</summary>
    NotMptcp,

    /// <summary>An MPTCP socket whose connection runs MPTCP.</summary>
    Active,

    /// <summary>An MPTCP socket whose connection fell back to plain TCP (the peer did not answer MP_CAPABLE, ...).</summary>
    FellBackToTcp,

    /// <summary>The kernel could not be asked (socket closed or an unexpected error).</summary>
    Unknown,
}

/// <summary>The MPTCP state of one socket at one moment, read from the kernel.</summary>
public sealed record MptcpSnapshot(MptcpStatus Status, MptcpInfo Info, ImmutableArray<MptcpSubflow> Subflows)
{
    public static MptcpSnapshot NotMptcp { get; } = new(MptcpStatus.NotMptcp, default, []);
    public static MptcpSnapshot FellBack { get; } = new(MptcpStatus.FellBackToTcp, default, []);
    public static MptcpSnapshot Unknown { get; } = new(MptcpStatus.Unknown, default, []);

    public override string ToString() => $"{Status} {Info} [{string.Join(", ", Subflows)}]";
}

/// <summary>Reads MPTCP_INFO, MPTCP_SUBFLOW_ADDRS and MPTCP_TCPINFO from a socket. Never throws for socket errors.</summary>
public static class MptcpSocket
{
    private const int SubflowDataHeader = 16; // struct mptcp_subflow_data, aligned(8)
    private const int MaxSubflows = 64;

    /// <summary>
    /// True when the kernel socket is IPPROTO_MPTCP, read from SO_PROTOCOL: .NET reports ProtocolType.Unknown for
    /// protocol 262, and an accepted socket inherits the listener's value rather than asking the kernel.
    /// </summary>
    public static bool IsMptcp(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        Span<byte> value = stackalloc byte[4];
        try
        {
            return socket.GetRawSocketOption(Native.SolSocket, Native.SoProtocol, value) == 4
                && BitConverter.ToInt32(value) == Native.IpprotoMptcp;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>Connection-level info plus the subflow list.</summary>
    public static MptcpSnapshot Snapshot(Socket socket) =>
        IsMptcp(socket) ? SnapshotOfMptcp(socket) : MptcpSnapshot.NotMptcp;

    /// <summary>
    /// <see cref="Snapshot"/> of a socket the caller knows is IPPROTO_MPTCP (SO_PROTOCOL is fixed at socket(2) and
    /// accept(2)): three getsockopt instead of five; one, and no allocation, without the subflow list.
    /// </summary>
    internal static MptcpSnapshot SnapshotOfMptcp(Socket socket, bool withSubflows = true)
    {
        var status = ReadInfo(socket, out var info);
        if (status != MptcpStatus.Active)
        {
            return status switch
            {
                MptcpStatus.NotMptcp => MptcpSnapshot.NotMptcp,
                MptcpStatus.FellBackToTcp => MptcpSnapshot.FellBack,
                _ => MptcpSnapshot.Unknown,
            };
        }
        return new MptcpSnapshot(status, info, withSubflows ? ReadSubflows(socket) : []);
    }

    /// <summary>
    /// MPTCP_INFO. On a fallen-back connection the kernel passes SOL_MPTCP options to the remaining TCP subflow,
    /// which answers EOPNOTSUPP: that, or the fallback flag, means "fell back to TCP".
    /// </summary>
    public static MptcpStatus TryGetInfo(Socket socket, out MptcpInfo info)
    {
        if (!IsMptcp(socket))
        {
            info = default;
            return MptcpStatus.NotMptcp;
        }
        return ReadInfo(socket, out info);
    }

    /// <summary><see cref="TryGetInfo"/> of a socket the caller knows is IPPROTO_MPTCP: one getsockopt, not two.</summary>
    internal static MptcpStatus ReadInfo(Socket socket, out MptcpInfo info)
    {
        info = default;
        Span<byte> buffer = stackalloc byte[MptcpInfo.Size];
        buffer.Clear();
        int length;
        try
        {
            length = socket.GetRawSocketOption(Native.SolMptcp, Native.MptcpInfo, buffer);
        }
        catch (SocketException e) when (e.NativeErrorCode is Native.EOpNotSupp or Native.EnoProtoOpt)
        {
            return MptcpStatus.FellBackToTcp;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return MptcpStatus.Unknown;
        }
        if (!MptcpInfo.TryParse(buffer[..length], out info))
        {
            return MptcpStatus.Unknown;
        }
        return info.FellBack ? MptcpStatus.FellBackToTcp : MptcpStatus.Active;
    }

    /// <summary>Each subflow's addresses, with TCP details where the second read agreed on the subflow count.</summary>
    public static ImmutableArray<MptcpSubflow> GetSubflows(Socket socket) => IsMptcp(socket) ? ReadSubflows(socket) : [];

    private static ImmutableArray<MptcpSubflow> ReadSubflows(Socket socket)
    {
        if (!TryReadArray(socket, Native.MptcpSubflowAddrs, MptcpSubflow.AddrsSize, out var addrs, out int count))
        {
            return [];
        }
        var subflows = ImmutableArray.CreateBuilder<MptcpSubflow>(count);
        for (int i = 0; i < count; i++)
        {
            var entry = addrs.AsSpan(SubflowDataHeader + (i * MptcpSubflow.AddrsSize), MptcpSubflow.AddrsSize);
            if (MptcpSubflow.TryParseAddrs(entry, out var local, out var remote))
            {
                subflows.Add(new MptcpSubflow(local, remote, 0, 0, 0, 0, 0, 0));
            }
        }
        if (subflows.Count == count
            && TryReadArray(socket, Native.MptcpTcpInfo, MptcpSubflow.TcpInfoSize, out var tcp, out int tcpCount)
            && tcpCount == count)
        {
            for (int i = 0; i < count; i++)
            {
                subflows[i] = subflows[i].WithTcpInfo(tcp.AsSpan(SubflowDataHeader + (i * MptcpSubflow.TcpInfoSize), MptcpSubflow.TcpInfoSize));
            }
        }
        return subflows.DrainToImmutable();
    }

    /// <summary>
    /// getsockopt with struct mptcp_subflow_data in front of an array: the caller states the header size and the
    /// element size it wants, the kernel fills num_subflows (all of them, even those that did not fit) and
    /// size_kernel. Retries once with room for every subflow.
    /// </summary>
    private static bool TryReadArray(Socket socket, int option, int elementSize, out byte[] buffer, out int count)
    {
        int capacity = 8;
        for (int attempt = 0; attempt < 2; attempt++)
        {
            buffer = new byte[SubflowDataHeader + (capacity * elementSize)];
            BinaryPrimitives.WriteUInt32LittleEndian(buffer, SubflowDataHeader);
            BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(12), (uint)elementSize);
            int length;
            try
            {
                length = socket.GetRawSocketOption(Native.SolMptcp, option, buffer);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                break;
            }
            if (length < SubflowDataHeader)
            {
                break;
            }
            int total = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(4)), MaxSubflows);
            int sizeUser = (int)BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(12));
            if (total <= capacity)
            {
                // The kernel shrinks size_user to its own element size when that is smaller.
                count = sizeUser == elementSize ? Math.Min(total, (length - SubflowDataHeader) / elementSize) : 0;
                return count > 0 || total == 0;
            }
            capacity = total;
        }
        buffer = [];
        count = 0;
        return false;
    }
}
