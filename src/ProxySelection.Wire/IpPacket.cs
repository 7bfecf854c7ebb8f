using System.Buffers.Binary;

namespace ProxySelection.Wire;

/// <summary>
/// A parsed IPv4 or IPv6 header over the caller's bytes (no copy). <see cref="Payload"/> is what follows the IP
/// header and, for IPv6, the extension headers; it is cut to the length the IP header declares, so link-layer
/// padding after the packet is ignored.
/// </summary>
public readonly ref struct IpPacket
{
    public const byte ProtocolTcp = 6;

    /// <summary>Most extension headers walked before giving up; a legal chain has at most 7 (RFC 8200 section 4.1).</summary>
    public const int MaxExtensionHeaders = 8;

    private IpPacket(ReadOnlySpan<byte> packet, int version, int headerLength, int packetLength, byte protocol,
        int extensionHeaderCount)
    {
        Packet = packet[..packetLength];
        Version = version;
        HeaderLength = headerLength;
        Protocol = protocol;
        ExtensionHeaderCount = extensionHeaderCount;
    }

    /// <summary>The whole IP packet as the IP header sizes it.</summary>
    public ReadOnlySpan<byte> Packet { get; }

    /// <summary>4 or 6.</summary>
    public int Version { get; }

    /// <summary>Bytes before the transport header: IPv4 IHL*4, or 40 plus every IPv6 extension header.</summary>
    public int HeaderLength { get; }

    /// <summary>The transport protocol: IPv4 protocol, or the last IPv6 next-header value of the chain.</summary>
    public byte Protocol { get; }

    /// <summary>IPv6 extension headers walked (always 0 for IPv4).</summary>
    public int ExtensionHeaderCount { get; }

    public bool IsIPv6 => Version == 6;

    /// <summary>Length of the whole packet: IPv4 total length, or 40 plus IPv6 payload length.</summary>
    public int PacketLength => Packet.Length;

    /// <summary>The transport header and data.</summary>
    public ReadOnlySpan<byte> Payload => Packet[HeaderLength..];

    /// <summary>4 for IPv4, 16 for IPv6.</summary>
    public int AddressLength => IsIPv6 ? 16 : 4;

    /// <summary>Offset of the source address in <see cref="Packet"/>.</summary>
    public int SourceAddressOffset => IsIPv6 ? 8 : 12;

    /// <summary>Offset of the destination address in <see cref="Packet"/>.</summary>
    public int DestinationAddressOffset => IsIPv6 ? 24 : 16;

    public ReadOnlySpan<byte> SourceAddress => Packet.Slice(SourceAddressOffset, AddressLength);

    public ReadOnlySpan<byte> DestinationAddress => Packet.Slice(DestinationAddressOffset, AddressLength);

    /// <summary>IPv4 TOS byte (DSCP and ECN), or the IPv6 traffic class.</summary>
    public byte TrafficClass => IsIPv6 ? (byte)((BinaryPrimitives.ReadUInt16BigEndian(Packet) >> 4) & 0xFF) : Packet[1];

    /// <summary>IPv4 TTL or IPv6 hop limit.</summary>
    public byte HopLimit => IsIPv6 ? Packet[7] : Packet[8];

    /// <summary>IPv4 total length field (0 for IPv6).</summary>
    public ushort TotalLength => IsIPv6 ? (ushort)0 : BinaryPrimitives.ReadUInt16BigEndian(Packet[2..]);

    /// <summary>IPv6 payload length field (0 for IPv4).</summary>
    public ushort PayloadLength => IsIPv6 ? BinaryPrimitives.ReadUInt16BigEndian(Packet[4..]) : (ushort)0;

    /// <summary>IPv4 identification (0 for IPv6).</summary>
    public ushort Identification => IsIPv6 ? (ushort)0 : BinaryPrimitives.ReadUInt16BigEndian(Packet[4..]);

    /// <summary>IPv4 flags (3 bits: reserved, DF, MF) (0 for IPv6).</summary>
    public byte Flags => IsIPv6 ? (byte)0 : (byte)(Packet[6] >> 5);

    public bool DontFragment => (Flags & 0b010) != 0;

    /// <summary>IPv4 fragment offset in 8-byte units (0 for IPv6).</summary>
    public ushort FragmentOffset => IsIPv6 ? (ushort)0 : (ushort)(BinaryPrimitives.ReadUInt16BigEndian(Packet[6..]) & 0x1FFF);

    /// <summary>IPv4 header checksum as on the wire (0 for IPv6).</summary>
    public ushort HeaderChecksum => IsIPv6 ? (ushort)0 : BinaryPrimitives.ReadUInt16BigEndian(Packet[10..]);

    /// <summary>IPv6 flow label (0 for IPv4).</summary>
    public uint FlowLabel => IsIPv6 ? BinaryPrimitives.ReadUInt32BigEndian(Packet) & 0xFFFFF : 0;

    /// <summary>IPv4 IHL in 32-bit words, or 0 for IPv6.</summary>
    public int Ihl => IsIPv6 ? 0 : Packet[0] & 0x0F;

    /// <summary>Parses an IP header and requires TCP behind it.</summary>
    public static WireError TryParse(ReadOnlySpan<byte> packet, out IpPacket ip) => TryParse(packet, out ip, out _);

    /// <summary>Parses an IP header and requires TCP behind it; on failure <paramref name="errorOffset"/> is where it went wrong.</summary>
    public static WireError TryParse(ReadOnlySpan<byte> packet, out IpPacket ip, out int errorOffset)
    {
        var error = TryParseAny(packet, out ip, out errorOffset);
        if (error == WireError.None && ip.Protocol != ProtocolTcp)
        {
            errorOffset = ip.IsIPv6 ? 6 : 9;
            ip = default;
            return WireError.NotTcp;
        }

        return error;
    }

    /// <summary>Parses an IP header whatever the transport protocol.</summary>
    public static WireError TryParseAny(ReadOnlySpan<byte> packet, out IpPacket ip, out int errorOffset)
    {
        ip = default;
        errorOffset = 0;
        if (packet.IsEmpty)
        {
            return WireError.Truncated;
        }

        return (packet[0] >> 4) switch
        {
            4 => TryParseV4(packet, out ip, out errorOffset),
            6 => TryParseV6(packet, out ip, out errorOffset),
            _ => WireError.BadIpVersion,
        };
    }

    /// <summary>Parses an IP header and requires TCP behind it; throws <see cref="WireException"/> on malformed input.</summary>
    public static IpPacket Parse(ReadOnlySpan<byte> packet)
    {
        var error = TryParse(packet, out var ip, out var offset);
        ThrowHelper.ThrowIfError(error, offset);
        return ip;
    }

    private static WireError TryParseV4(ReadOnlySpan<byte> packet, out IpPacket ip, out int errorOffset)
    {
        ip = default;
        errorOffset = 0;
        if (packet.Length < 20)
        {
            errorOffset = packet.Length;
            return WireError.Truncated;
        }

        var headerLength = (packet[0] & 0x0F) * 4;
        if (headerLength < 20)
        {
            return WireError.BadIhl;
        }

        if (headerLength > packet.Length)
        {
            errorOffset = packet.Length;
            return WireError.Truncated;
        }

        int totalLength = BinaryPrimitives.ReadUInt16BigEndian(packet[2..]);
        if (totalLength < headerLength)
        {
            errorOffset = 2;
            return WireError.BadTotalLength;
        }

        if (totalLength > packet.Length)
        {
            errorOffset = packet.Length;
            return WireError.Truncated;
        }

        // MF set or a non-zero offset: the TCP header may not be here whole.
        if ((BinaryPrimitives.ReadUInt16BigEndian(packet[6..]) & 0x3FFF) != 0)
        {
            errorOffset = 6;
            return WireError.Fragmented;
        }

        ip = new IpPacket(packet, 4, headerLength, totalLength, packet[9], 0);
        return WireError.None;
    }

    private static WireError TryParseV6(ReadOnlySpan<byte> packet, out IpPacket ip, out int errorOffset)
    {
        ip = default;
        errorOffset = 0;
        if (packet.Length < 40)
        {
            errorOffset = packet.Length;
            return WireError.Truncated;
        }

        var packetLength = 40 + BinaryPrimitives.ReadUInt16BigEndian(packet[4..]);
        if (packetLength > packet.Length)
        {
            errorOffset = packet.Length;
            return WireError.Truncated;
        }

        var next = packet[6];
        var offset = 40;
        var count = 0;
        while (IsExtensionHeader(next))
        {
            if (count == MaxExtensionHeaders)
            {
                errorOffset = offset;
                return WireError.ExtensionHeaderLoop;
            }

            if (offset + 8 > packetLength)
            {
                errorOffset = offset;
                return WireError.Truncated;
            }

            int length;
            if (next == 44)
            {
                // Fragment header, fixed 8 bytes (RFC 8200 section 4.5): offset or M set means a fragment.
                if ((BinaryPrimitives.ReadUInt16BigEndian(packet[(offset + 2)..]) & 0xFFF9) != 0)
                {
                    errorOffset = offset + 2;
                    return WireError.Fragmented;
                }

                length = 8;
            }
            else if (next == 51)
            {
                // AH counts its length in 4-byte units minus 2 (RFC 4302 section 2.2).
                length = (packet[offset + 1] + 2) * 4;
            }
            else
            {
                length = (packet[offset + 1] + 1) * 8;
            }

            if (offset + length > packetLength)
            {
                errorOffset = offset + 1;
                return WireError.Truncated;
            }

            next = packet[offset];
            offset += length;
            count++;
        }

        ip = new IpPacket(packet, 6, offset, packetLength, next, count);
        return WireError.None;
    }

    /// <summary>Hop-by-hop, routing, fragment, destination options, AH.</summary>
    private static bool IsExtensionHeader(byte next) => next is 0 or 43 or 44 or 60 or 51;
}
