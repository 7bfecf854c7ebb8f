using System.Buffers.Binary;
using ProxySelection.Wire;

namespace ProxySelection.Host.Tests;

/// <summary>
/// Builds IPv4/IPv6 TCP packets around one MPTCP option written by the wire writers, with both checksums filled by
/// <see cref="InternetChecksum"/>. Addresses are in 198.18.0.0/15 and 2001:db8::/32.
/// </summary>
internal static class PacketBuilder
{
    public const ushort ServerPort = 18000;

    private static readonly byte[] V4Source = [198, 18, 0, 1];
    private static readonly byte[] V4Destination = [198, 18, 0, 2];
    private static readonly byte[] V6Source = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    private static readonly byte[] V6Destination = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    public static byte[] Build<T>(bool ipv6, ushort sourcePort, TcpFlags flags, in T option, int payloadLength = 0)
        where T : struct, IMptcpSuboption
    {
        Span<byte> options = stackalloc byte[TcpHeader.MaxOptionsLength];
        var writer = new TcpOptionWriter(options);
        Check(writer.TryWriteMptcp(option));
        Check(writer.TryPadWithNops());
        return Build(ipv6, sourcePort, flags, writer.Written, payloadLength);
    }

    /// <summary>A packet around an option given as bytes (parsed by <see cref="MptcpOption"/> and written back by the writer).</summary>
    public static byte[] BuildRaw(bool ipv6, ushort sourcePort, TcpFlags flags, ReadOnlySpan<byte> mptcpOption, int payloadLength = 0)
    {
        var option = MptcpOption.Parse(mptcpOption);
        Span<byte> options = stackalloc byte[TcpHeader.MaxOptionsLength];
        var writer = new TcpOptionWriter(options);
        Check(writer.TryWriteMptcp(option));
        Check(writer.TryPadWithNops());
        return Build(ipv6, sourcePort, flags, writer.Written, payloadLength);
    }

    public static byte[] Build(bool ipv6, ushort sourcePort, TcpFlags flags, ReadOnlySpan<byte> options, int payloadLength = 0)
    {
        int ipLength = ipv6 ? 40 : 20;
        int tcpLength = TcpHeader.MinLength + options.Length;
        var packet = new byte[ipLength + tcpLength + payloadLength];
        if (ipv6)
        {
            packet[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), (ushort)(tcpLength + payloadLength));
            packet[6] = IpPacket.ProtocolTcp;
            packet[7] = 64;
            V6Source.CopyTo(packet, 8);
            V6Destination.CopyTo(packet, 24);
        }
        else
        {
            packet[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), sourcePort);
            packet[6] = 0x40; // DF
            packet[8] = 64;
            packet[9] = IpPacket.ProtocolTcp;
            V4Source.CopyTo(packet, 12);
            V4Destination.CopyTo(packet, 16);
        }

        var tcp = packet.AsSpan(ipLength);
        BinaryPrimitives.WriteUInt16BigEndian(tcp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], ServerPort);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], 0x1000_0000u + sourcePort);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], (flags & TcpFlags.Ack) != 0 ? 0x2000_0000u + sourcePort : 0);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[12..], (ushort)(((tcpLength / 4) << 12) | (int)flags));
        BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 64240);
        options.CopyTo(tcp[TcpHeader.MinLength..]);
        for (int i = 0; i < payloadLength; i++)
        {
            tcp[tcpLength + i] = (byte)('a' + (i % 26));
        }

        Check(InternetChecksum.TryFillChecksums(packet));
        return packet;
    }

    private static void Check(WireError error)
    {
        if (error != WireError.None)
        {
            throw new InvalidOperationException($"building a test packet failed: {error}");
        }
    }
}
