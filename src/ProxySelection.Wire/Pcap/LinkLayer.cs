using System.Buffers.Binary;

namespace ProxySelection.Wire.Pcap;

/// <summary>Finds the IP packet inside a link-layer frame.</summary>
public static class LinkLayer
{
    public const ushort EtherTypeIPv4 = 0x0800;
    public const ushort EtherTypeIPv6 = 0x86DD;
    public const int EthernetHeaderLength = 14;
    public const int LinuxCookedHeaderLength = 16;
    public const int LinuxCookedV2HeaderLength = 20;

    // 802.1Q, 802.1ad (QinQ) and the pre-standard 0x9100 QinQ tag.
    private const ushort EtherTypeVlan = 0x8100;
    private const ushort EtherTypeQinQ = 0x88A8;
    private const ushort EtherTypeQinQOld = 0x9100;

    /// <summary>Strips the link-layer header (and Ethernet padding after the IP packet) from <paramref name="frame"/>.</summary>
    public static PcapStatus TryGetIpPacket(PcapLinkType linkType, ReadOnlySpan<byte> frame, out ReadOnlySpan<byte> ipPacket)
    {
        ipPacket = default;
        ReadOnlySpan<byte> ip;
        switch (linkType)
        {
            case PcapLinkType.Ethernet:
                {
                    if (frame.Length < EthernetHeaderLength)
                    {
                        return PcapStatus.TruncatedLinkHeader;
                    }

                    int typeOffset = 12;
                    ushort etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[typeOffset..]);
                    while (etherType is EtherTypeVlan or EtherTypeQinQ or EtherTypeQinQOld)
                    {
                        typeOffset += 4;
                        if (frame.Length < typeOffset + 2)
                        {
                            return PcapStatus.TruncatedLinkHeader;
                        }

                        etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[typeOffset..]);
                    }

                    if (etherType is not (EtherTypeIPv4 or EtherTypeIPv6))
                    {
                        return PcapStatus.NotIp;
                    }

                    ip = frame[(typeOffset + 2)..];
                    break;
                }

            case PcapLinkType.LinuxCooked:
                if (frame.Length < LinuxCookedHeaderLength)
                {
                    return PcapStatus.TruncatedLinkHeader;
                }

                if (BinaryPrimitives.ReadUInt16BigEndian(frame[14..]) is not (EtherTypeIPv4 or EtherTypeIPv6))
                {
                    return PcapStatus.NotIp;
                }

                ip = frame[LinuxCookedHeaderLength..];
                break;

            case PcapLinkType.LinuxCookedV2:
                if (frame.Length < LinuxCookedV2HeaderLength)
                {
                    return PcapStatus.TruncatedLinkHeader;
                }

                if (BinaryPrimitives.ReadUInt16BigEndian(frame) is not (EtherTypeIPv4 or EtherTypeIPv6))
                {
                    return PcapStatus.NotIp;
                }

                ip = frame[LinuxCookedV2HeaderLength..];
                break;

            case PcapLinkType.Raw:
                if (frame.IsEmpty)
                {
                    return PcapStatus.TruncatedLinkHeader;
                }

                if ((frame[0] >> 4) is not (4 or 6))
                {
                    return PcapStatus.NotIp;
                }

                ip = frame;
                break;

            case PcapLinkType.RawIPv4:
            case PcapLinkType.RawIPv6:
                ip = frame;
                break;

            default:
                return PcapStatus.UnsupportedLinkType;
        }

        ipPacket = TrimToIpLength(ip);
        return PcapStatus.Ok;
    }

    /// <summary>
    /// Drops bytes after the IP packet (Ethernet pads frames to 60 bytes) when the IP length field is sane;
    /// otherwise leaves the span for the IP parser to judge.
    /// </summary>
    private static ReadOnlySpan<byte> TrimToIpLength(ReadOnlySpan<byte> ip)
    {
        if (ip.Length >= 20 && ip[0] >> 4 == 4)
        {
            int total = BinaryPrimitives.ReadUInt16BigEndian(ip[2..]);
            return total >= 20 && total < ip.Length ? ip[..total] : ip;
        }

        if (ip.Length >= 40 && ip[0] >> 4 == 6)
        {
            int payload = BinaryPrimitives.ReadUInt16BigEndian(ip[4..]);
            // Payload length 0 is a jumbogram (RFC 2675): the real length is in a hop-by-hop option.
            return payload != 0 && 40 + payload < ip.Length ? ip[..(40 + payload)] : ip;
        }

        return ip;
    }
}
