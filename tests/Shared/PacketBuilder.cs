using System.Buffers.Binary;
using ProxySelection.Wire;

namespace ProxySelection.Tests;

/// <summary>
/// Builds IPv4/IPv6 TCP packets for tests, both checksums filled by <see cref="InternetChecksum"/>. Addresses are in
/// 198.18.0.0/15 and 2001:db8::/32, the server port is <see cref="ServerPort"/>. <see cref="Tcp"/> takes the options
/// and payload as bytes (and can add IPv6 extension headers or spare room); <see cref="Build{T}"/> writes one MPTCP
/// option with the wire writers. Linked into Wire.Tests and Host.Tests.
/// </summary>
internal static class PacketBuilder
{
    public const ushort ServerPort = 18000;

    private const ushort TcpSourcePort = 40000;

    public static readonly byte[] V4Source = [198, 18, 0, 1];
    public static readonly byte[] V4Destination = [198, 18, 0, 2];
    public static readonly byte[] V6Source = Convert.FromHexString("20010db8000000000000000000000001");
    public static readonly byte[] V6Destination = Convert.FromHexString("20010db8000000000000000000000002");

    /// <summary>
    /// A packet from port 40000 with fixed sequence numbers; <paramref name="spare"/> bytes of room after it (not in
    /// the IP length), IPv6 <paramref name="extensionHeaders"/> between the fixed header and TCP.
    /// </summary>
    public static byte[] Tcp(bool ipv6, ReadOnlySpan<byte> options, ReadOnlySpan<byte> payload, TcpFlags flags = TcpFlags.Syn,
        byte[]? extensionHeaders = null, byte firstNextHeader = 6, int spare = 0, bool fillChecksums = true) =>
        Write(ipv6, extensionHeaders ?? [], firstNextHeader, ipId: 0x1234, TcpSourcePort, 0x01020304, 0xA0B0C0D0, flags, options, payload,
            spare, fillChecksums);

    public static byte[] WithSpare(byte[] packet, int spare)
    {
        var buffer = new byte[packet.Length + spare];
        packet.CopyTo(buffer, 0);
        return buffer;
    }

    /// <summary>A packet around one MPTCP option written by <see cref="TcpOptionWriter"/>, NOP-padded.</summary>
    public static byte[] Build<T>(bool ipv6, ushort sourcePort, TcpFlags flags, in T option, int payloadLength = 0)
        where T : struct, IMptcpSuboption
    {
        var writer = new TcpOptionWriter(stackalloc byte[TcpHeader.MaxOptionsLength]);
        Check(writer.TryWriteMptcp(option));
        return BuildPadded(ipv6, sourcePort, flags, ref writer, payloadLength);
    }

    /// <summary>A packet around an option given as bytes (parsed by <see cref="MptcpOption"/> and written back by the writer).</summary>
    public static byte[] BuildRaw(bool ipv6, ushort sourcePort, TcpFlags flags, ReadOnlySpan<byte> mptcpOption, int payloadLength = 0)
    {
        var writer = new TcpOptionWriter(stackalloc byte[TcpHeader.MaxOptionsLength]);
        Check(writer.TryWriteMptcp(MptcpOption.Parse(mptcpOption)));
        return BuildPadded(ipv6, sourcePort, flags, ref writer, payloadLength);
    }

    /// <summary>
    /// A packet from <paramref name="sourcePort"/> (also the IPv4 identification) with sequence numbers derived from it,
    /// no acknowledgment number without ACK, and <paramref name="payloadLength"/> bytes of a-z.
    /// </summary>
    public static byte[] Build(bool ipv6, ushort sourcePort, TcpFlags flags, ReadOnlySpan<byte> options, int payloadLength = 0)
    {
        var payload = new byte[payloadLength];
        for (int i = 0; i < payloadLength; i++)
        {
            payload[i] = (byte)('a' + (i % 26));
        }

        uint acknowledgment = (flags & TcpFlags.Ack) != 0 ? 0x2000_0000u + sourcePort : 0;
        return Write(ipv6, [], IpPacket.ProtocolTcp, ipId: sourcePort, sourcePort, 0x1000_0000u + sourcePort, acknowledgment, flags, options,
            payload, spare: 0, fillChecksums: true);
    }

    private static byte[] BuildPadded(bool ipv6, ushort sourcePort, TcpFlags flags, ref TcpOptionWriter writer, int payloadLength)
    {
        Check(writer.TryPadWithNops());
        return Build(ipv6, sourcePort, flags, writer.Written, payloadLength);
    }

    private static byte[] Write(bool ipv6, ReadOnlySpan<byte> extensionHeaders, byte firstNextHeader, ushort ipId, ushort sourcePort,
        uint sequence, uint acknowledgment, TcpFlags flags, ReadOnlySpan<byte> options, ReadOnlySpan<byte> payload, int spare, bool fillChecksums)
    {
        if (options.Length % 4 != 0)
        {
            throw new ArgumentException("options must be a multiple of 4", nameof(options));
        }

        int ipHeader = ipv6 ? 40 + extensionHeaders.Length : 20;
        int tcpLength = TcpHeader.MinLength + options.Length + payload.Length;
        var packet = new byte[ipHeader + tcpLength + spare];
        if (ipv6)
        {
            packet[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), (ushort)(extensionHeaders.Length + tcpLength));
            packet[6] = extensionHeaders.Length > 0 ? firstNextHeader : IpPacket.ProtocolTcp;
            packet[7] = 64;
            V6Source.CopyTo(packet, 8);
            V6Destination.CopyTo(packet, 24);
            extensionHeaders.CopyTo(packet.AsSpan(40));
        }
        else
        {
            packet[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)(20 + tcpLength));
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), ipId);
            packet[6] = 0x40; // DF
            packet[8] = 64;
            packet[9] = IpPacket.ProtocolTcp;
            V4Source.CopyTo(packet, 12);
            V4Destination.CopyTo(packet, 16);
        }

        var tcp = packet.AsSpan(ipHeader);
        BinaryPrimitives.WriteUInt16BigEndian(tcp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], ServerPort);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], sequence);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], acknowledgment);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[12..], (ushort)((((TcpHeader.MinLength + options.Length) / 4) << 12) | (int)flags));
        BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 64240);
        options.CopyTo(tcp[TcpHeader.MinLength..]);
        payload.CopyTo(tcp[(TcpHeader.MinLength + options.Length)..]);
        if (fillChecksums)
        {
            Check(InternetChecksum.TryFillChecksums(packet.AsSpan(0, packet.Length - spare)));
        }

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
