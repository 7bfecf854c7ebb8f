using System.Buffers.Binary;

namespace ProxySelection.Wire.Pcap;

/// <summary>
/// Writes a classic pcap file to a stream. The stream belongs to the caller unless <c>ownsStream</c> is set.
/// Record headers are built on the stack; nothing is allocated per packet.
/// </summary>
public sealed class PcapWriter : IDisposable
{
    private readonly Stream _stream;
    private readonly bool _ownsStream;

    public PcapWriter(Stream stream, PcapLinkType linkType, bool nanosecond = false, bool bigEndian = false,
        uint snapLength = PcapReader.MaxSnapLength, bool ownsStream = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        _stream = stream;
        _ownsStream = ownsStream;
        LinkType = linkType;
        Nanosecond = nanosecond;
        BigEndian = bigEndian;
        SnapLength = snapLength;

        Span<byte> header = stackalloc byte[PcapReader.FileHeaderLength];
        Write32(header, nanosecond ? 0xA1B23C4Du : 0xA1B2C3D4u);
        Write16(header[4..], 2);
        Write16(header[6..], 4);
        Write32(header[8..], 0);
        Write32(header[12..], 0);
        Write32(header[16..], snapLength);
        Write32(header[20..], (uint)linkType);
        _stream.Write(header);
    }

    public PcapLinkType LinkType { get; }

    public bool Nanosecond { get; }

    public bool BigEndian { get; }

    public uint SnapLength { get; }

    /// <summary>
    /// Writes one record holding <paramref name="frame"/> as given (link-layer header included). The sub-second part
    /// is given in nanoseconds and written as microseconds unless the file is nanosecond.
    /// </summary>
    public void WriteFrame(ReadOnlySpan<byte> frame, uint seconds, uint nanoseconds)
    {
        WriteRecordHeader(seconds, nanoseconds, frame.Length);
        _stream.Write(frame);
    }

    /// <summary>
    /// Writes one IP packet, wrapped in this file's link-layer header (Ethernet gets zero MAC addresses, Linux cooked
    /// headers say "sent by us").
    /// </summary>
    public void WriteIpPacket(ReadOnlySpan<byte> ipPacket, uint seconds = 0, uint nanoseconds = 0)
    {
        if (ipPacket.IsEmpty || (ipPacket[0] >> 4) is not (4 or 6))
        {
            throw new ArgumentException("not an IPv4 or IPv6 packet", nameof(ipPacket));
        }

        ushort etherType = ipPacket[0] >> 4 == 4 ? LinkLayer.EtherTypeIPv4 : LinkLayer.EtherTypeIPv6;
        Span<byte> link = stackalloc byte[LinkLayer.LinuxCookedV2HeaderLength];
        link.Clear();
        int linkLength;
        switch (LinkType)
        {
            case PcapLinkType.Ethernet:
                linkLength = LinkLayer.EthernetHeaderLength;
                BinaryPrimitives.WriteUInt16BigEndian(link[12..], etherType);
                break;
            case PcapLinkType.LinuxCooked:
                linkLength = LinkLayer.LinuxCookedHeaderLength;
                BinaryPrimitives.WriteUInt16BigEndian(link, 4); // packet type: sent by us
                BinaryPrimitives.WriteUInt16BigEndian(link[2..], 1); // ARPHRD_ETHER
                BinaryPrimitives.WriteUInt16BigEndian(link[14..], etherType);
                break;
            case PcapLinkType.LinuxCookedV2:
                linkLength = LinkLayer.LinuxCookedV2HeaderLength;
                BinaryPrimitives.WriteUInt16BigEndian(link, etherType);
                BinaryPrimitives.WriteUInt16BigEndian(link[8..], 1); // ARPHRD_ETHER
                link[10] = 4; // packet type: sent by us
                break;
            default:
                linkLength = 0;
                break;
        }

        WriteRecordHeader(seconds, nanoseconds, linkLength + ipPacket.Length);
        _stream.Write(link[..linkLength]);
        _stream.Write(ipPacket);
    }

    public void Flush() => _stream.Flush();

    public void Dispose()
    {
        _stream.Flush();
        if (_ownsStream)
        {
            _stream.Dispose();
        }
    }

    private void WriteRecordHeader(uint seconds, uint nanoseconds, int length)
    {
        if (nanoseconds >= 1_000_000_000)
        {
            throw new ArgumentOutOfRangeException(nameof(nanoseconds), nanoseconds, "must be below one second");
        }

        Span<byte> header = stackalloc byte[PcapReader.RecordHeaderLength];
        Write32(header, seconds);
        Write32(header[4..], Nanosecond ? nanoseconds : nanoseconds / 1000);
        Write32(header[8..], (uint)length);
        Write32(header[12..], (uint)length);
        _stream.Write(header);
    }

    private void Write16(Span<byte> s, ushort value)
    {
        if (BigEndian)
        {
            BinaryPrimitives.WriteUInt16BigEndian(s, value);
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(s, value);
        }
    }

    private void Write32(Span<byte> s, uint value)
    {
        if (BigEndian)
        {
            BinaryPrimitives.WriteUInt32BigEndian(s, value);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(s, value);
        }
    }
}
