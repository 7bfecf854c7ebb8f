using System.Buffers.Binary;

namespace ProxySelection.Lab;

/// <summary>One captured frame. <see cref="Data"/> starts at the link layer given by <see cref="LinkType"/>.</summary>
public sealed record PcapPacket(long TimestampMicroseconds, int LinkType, byte[] Data)
{
    /// <summary>Ethernet (DLT_EN10MB).</summary>
    public const int LinkTypeEthernet = 1;

    /// <summary>Raw IP (DLT_RAW as stored in files).</summary>
    public const int LinkTypeRaw = 101;

    /// <summary>Linux cooked capture v1 (tcpdump -i any, older).</summary>
    public const int LinkTypeLinuxSll = 113;

    /// <summary>Linux cooked capture v2 (tcpdump -i any).</summary>
    public const int LinkTypeLinuxSll2 = 276;

    /// <summary>The IPv4 or IPv6 packet inside the frame, or empty when the frame carries something else.</summary>
    public ReadOnlyMemory<byte> IpPacket
    {
        get
        {
            var (offset, etherType) = LinkType switch
            {
                LinkTypeEthernet when Data.Length >= 14 => (14, BinaryPrimitives.ReadUInt16BigEndian(Data.AsSpan(12))),
                LinkTypeLinuxSll when Data.Length >= 16 => (16, BinaryPrimitives.ReadUInt16BigEndian(Data.AsSpan(14))),
                LinkTypeLinuxSll2 when Data.Length >= 20 => (20, BinaryPrimitives.ReadUInt16BigEndian(Data.AsSpan(0))),
                LinkTypeRaw when Data.Length >= 1 => (0, (ushort)((Data[0] >> 4) == 6 ? 0x86DD : 0x0800)),
                _ => (0, (ushort)0),
            };
            return etherType is 0x0800 or 0x86DD ? Data.AsMemory(offset) : ReadOnlyMemory<byte>.Empty;
        }
    }
}

/// <summary>Reads classic libpcap files (both byte orders, micro- and nanosecond stamps). Not pcapng.</summary>
public static class PcapFile
{
    /// <summary>Reads every record; throws <see cref="LabException"/> on a file that is not classic pcap or is cut short
    /// inside the global header. A record cut short at the end (a capture stopped mid-write) ends the list.</summary>
    public static IReadOnlyList<PcapPacket> Read(string path) => Parse(File.ReadAllBytes(path));

    public static IReadOnlyList<PcapPacket> Parse(ReadOnlySpan<byte> file)
    {
        if (file.Length < 24)
        {
            throw new LabException("pcap file shorter than its 24-byte global header");
        }

        var magic = BinaryPrimitives.ReadUInt32LittleEndian(file);
        var (bigEndian, nanos) = magic switch
        {
            0xa1b2c3d4 => (false, false),
            0xa1b23c4d => (false, true),
            0xd4c3b2a1 => (true, false),
            0x4d3cb2a1 => (true, true),
            _ => throw new LabException($"not a classic pcap file (magic 0x{magic:x8})"),
        };

        uint U32(ReadOnlySpan<byte> s) => bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(s) : BinaryPrimitives.ReadUInt32LittleEndian(s);

        var linkType = (int)(U32(file[20..]) & 0x0FFF_FFFF);
        var packets = new List<PcapPacket>();
        var at = 24;
        while (file.Length - at >= 16)
        {
            var seconds = U32(file[at..]);
            var fraction = U32(file[(at + 4)..]);
            var captured = U32(file[(at + 8)..]);
            if (captured > file.Length - at - 16)
            {
                break;
            }

            var stamp = (seconds * 1_000_000L) + (nanos ? fraction / 1000 : fraction);
            packets.Add(new PcapPacket(stamp, linkType, file.Slice(at + 16, (int)captured).ToArray()));
            at += 16 + (int)captured;
        }

        return packets;
    }
}
