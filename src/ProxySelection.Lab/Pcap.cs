using ProxySelection.Wire.Pcap;

namespace ProxySelection.Lab;

/// <summary>One captured frame, copied out of the file. <see cref="Data"/> starts at the link layer given by
/// <see cref="LinkType"/> (a <see cref="PcapLinkType"/> value). Parsing is ProxySelection.Wire's pcap reader.</summary>
public sealed record PcapPacket(long TimestampMicroseconds, int LinkType, byte[] Data)
{
    /// <summary>Ethernet (DLT_EN10MB).</summary>
    public const int LinkTypeEthernet = (int)PcapLinkType.Ethernet;

    /// <summary>Raw IP (DLT_RAW as stored in files).</summary>
    public const int LinkTypeRaw = (int)PcapLinkType.Raw;

    /// <summary>Linux cooked capture v1 (tcpdump -i any, older).</summary>
    public const int LinkTypeLinuxSll = (int)PcapLinkType.LinuxCooked;

    /// <summary>Linux cooked capture v2 (tcpdump -i any).</summary>
    public const int LinkTypeLinuxSll2 = (int)PcapLinkType.LinuxCookedV2;

    /// <summary>The IPv4 or IPv6 packet inside the frame (link header and Ethernet padding removed, see
    /// <see cref="LinkLayer.TryGetIpPacket"/>), or empty when the frame carries something else.</summary>
    public ReadOnlyMemory<byte> IpPacket =>
        LinkLayer.TryGetIpPacket((PcapLinkType)LinkType, Data, out var ip) == PcapStatus.Ok && Data.AsSpan().Overlaps(ip, out int offset)
            ? Data.AsMemory(offset, ip.Length)
            : ReadOnlyMemory<byte>.Empty;
}

/// <summary>Reads classic pcap files into <see cref="PcapPacket"/> lists through <see cref="PcapReader"/>
/// (both byte orders, micro- and nanosecond stamps; not pcapng).</summary>
public static class PcapFile
{
    /// <summary>Reads every record; throws <see cref="LabException"/> on a file whose global header is unreadable
    /// (not classic pcap, cut short, unsupported link type). A record cut short at the end (a capture stopped
    /// mid-write) ends the list.</summary>
    public static IReadOnlyList<PcapPacket> Read(string path) => Parse(File.ReadAllBytes(path));

    /// <inheritdoc cref="Read"/>
    public static IReadOnlyList<PcapPacket> Parse(ReadOnlySpan<byte> file)
    {
        var status = PcapReader.TryCreate(file, out var reader);
        if (status != PcapStatus.Ok)
        {
            throw new LabException($"cannot read pcap: {PcapStatusText.Describe(status)}");
        }

        var packets = new List<PcapPacket>();
        while (reader.ReadNext(out var record) == PcapStatus.Ok)
        {
            var stamp = (record.Seconds * 1_000_000L) + (record.Nanoseconds / 1000);
            packets.Add(new PcapPacket(stamp, (int)record.LinkType, record.Frame.ToArray()));
        }

        return packets;
    }
}
