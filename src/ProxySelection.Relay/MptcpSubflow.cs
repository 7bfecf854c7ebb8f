using System.Buffers.Binary;
using System.Net;

namespace ProxySelection.Relay;

/// <summary>
/// One subflow of an MPTCP connection: its addresses (MPTCP_SUBFLOW_ADDRS) and a few fields of its struct tcp_info
/// (MPTCP_TCPINFO). The two come from separate getsockopt calls; the TCP fields are zero when the subflow set
/// changed between them.
/// </summary>
public readonly record struct MptcpSubflow(
    IPEndPoint Local,
    IPEndPoint Remote,
    byte TcpState,
    uint RttMicroseconds,
    uint SendCongestionWindow,
    uint TotalRetransmits,
    ulong BytesAcked,
    ulong BytesReceived)
{
    /// <summary>struct tcp_info bytes requested per subflow: up to tcpi_bytes_received (offset 128 + 8).</summary>
    internal const int TcpInfoSize = 136;

    /// <summary>Size of struct mptcp_subflow_addrs: two __kernel_sockaddr_storage of 128 bytes.</summary>
    internal const int AddrsSize = 256;

    internal static bool TryParseAddrs(ReadOnlySpan<byte> entry, out IPEndPoint local, out IPEndPoint remote)
    {
        local = remote = null!;
        return entry.Length >= AddrsSize
            && TryParseSockaddr(entry[..128], out local)
            && TryParseSockaddr(entry[128..AddrsSize], out remote);
    }

    internal MptcpSubflow WithTcpInfo(ReadOnlySpan<byte> tcpInfo) => tcpInfo.Length < TcpInfoSize ? this : this with
    {
        TcpState = tcpInfo[0],
        RttMicroseconds = BinaryPrimitives.ReadUInt32LittleEndian(tcpInfo[68..]),
        SendCongestionWindow = BinaryPrimitives.ReadUInt32LittleEndian(tcpInfo[80..]),
        TotalRetransmits = BinaryPrimitives.ReadUInt32LittleEndian(tcpInfo[100..]),
        BytesAcked = BinaryPrimitives.ReadUInt64LittleEndian(tcpInfo[120..]),
        BytesReceived = BinaryPrimitives.ReadUInt64LittleEndian(tcpInfo[128..]),
    };

    /// <summary>struct sockaddr_in / sockaddr_in6: family in host order, port and address in network order.</summary>
    internal static bool TryParseSockaddr(ReadOnlySpan<byte> sa, out IPEndPoint endPoint)
    {
        endPoint = null!;
        ushort family = BinaryPrimitives.ReadUInt16LittleEndian(sa);
        int port = BinaryPrimitives.ReadUInt16BigEndian(sa[2..]);
        switch (family)
        {
            case Native.AfInet:
                endPoint = new IPEndPoint(new IPAddress(sa.Slice(4, 4)), port);
                return true;
            case Native.AfInet6:
                uint scope = BinaryPrimitives.ReadUInt32LittleEndian(sa[24..]);
                endPoint = new IPEndPoint(new IPAddress(sa.Slice(8, 16), scope), port);
                return true;
            default:
                return false;
        }
    }

    public override string ToString() => $"{Local} -> {Remote} state={TcpState} rtt={RttMicroseconds}us";
}
