using System.Buffers.Binary;

namespace ProxySelection.Wire.Tests;

/// <summary>Builds IPv4/IPv6 TCP packets with valid checksums for tests.</summary>
internal static class PacketBuilder
{
    public static readonly byte[] V4Source = [198, 18, 0, 1];
    public static readonly byte[] V4Destination = [198, 18, 0, 2];
    public static readonly byte[] V6Source = Convert.FromHexString("20010db8000000000000000000000001");
    public static readonly byte[] V6Destination = Convert.FromHexString("20010db8000000000000000000000002");

    public static byte[] Tcp(bool ipv6, ReadOnlySpan<byte> options, ReadOnlySpan<byte> payload, TcpFlags flags = TcpFlags.Syn,
        byte[]? extensionHeaders = null, byte firstNextHeader = 6, int spare = 0, bool fillChecksums = true)
    {
        if (options.Length % 4 != 0)
        {
            throw new ArgumentException("options must be a multiple of 4", nameof(options));
        }

        var ext = extensionHeaders ?? [];
        var ipHeader = ipv6 ? 40 + ext.Length : 20;
        var tcpLength = 20 + options.Length + payload.Length;
        var packet = new byte[ipHeader + tcpLength + spare];
        if (ipv6)
        {
            packet[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), (ushort)(ext.Length + tcpLength));
            packet[6] = ext.Length > 0 ? firstNextHeader : (byte)6;
            packet[7] = 64;
            V6Source.CopyTo(packet, 8);
            V6Destination.CopyTo(packet, 24);
            ext.CopyTo(packet, 40);
        }
        else
        {
            packet[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)(20 + tcpLength));
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), 0x1234);
            packet[6] = 0x40;
            packet[8] = 64;
            packet[9] = 6;
            V4Source.CopyTo(packet, 12);
            V4Destination.CopyTo(packet, 16);
        }

        var tcp = packet.AsSpan(ipHeader);
        BinaryPrimitives.WriteUInt16BigEndian(tcp, 40000);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], 18000);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], 0x01020304);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], 0xA0B0C0D0);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[12..], (ushort)((((20 + options.Length) / 4) << 12) | (ushort)flags));
        BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 64240);
        options.CopyTo(tcp[20..]);
        payload.CopyTo(tcp[(20 + options.Length)..]);
        var error = fillChecksums ? InternetChecksum.TryFillChecksums(packet.AsSpan(0, packet.Length - spare)) : WireError.None;
        if (error != WireError.None)
        {
            throw new InvalidOperationException(error.ToString());
        }

        return packet;
    }

    public static byte[] WithSpare(byte[] packet, int spare)
    {
        var buffer = new byte[packet.Length + spare];
        packet.CopyTo(buffer, 0);
        return buffer;
    }
}
