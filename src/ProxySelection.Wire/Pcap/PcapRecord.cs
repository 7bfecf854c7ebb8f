namespace ProxySelection.Wire.Pcap;

/// <summary>One pcap record: a slice of the file it was read from, valid as long as that span is.</summary>
public readonly ref struct PcapRecord
{
    public PcapRecord(int number, long offset, uint seconds, uint nanoseconds, uint originalLength, ReadOnlySpan<byte> frame, PcapLinkType linkType)
    {
        Number = number;
        Offset = offset;
        Seconds = seconds;
        Nanoseconds = nanoseconds;
        OriginalLength = originalLength;
        Frame = frame;
        LinkType = linkType;
    }

    /// <summary>1-based frame number, as Wireshark counts.</summary>
    public int Number { get; }

    /// <summary>Byte offset of the record header in the file.</summary>
    public long Offset { get; }

    public uint Seconds { get; }

    /// <summary>Sub-second part in nanoseconds (microsecond files are scaled up).</summary>
    public uint Nanoseconds { get; }

    /// <summary>Length of the packet on the wire; larger than <see cref="Frame"/> when the capture was cut by the snapshot length.</summary>
    public uint OriginalLength { get; }

    /// <summary>The captured bytes, link-layer header included, frame check sequence excluded.</summary>
    public ReadOnlySpan<byte> Frame { get; }

    public PcapLinkType LinkType { get; }

    /// <summary>True when the snapshot length cut the packet short.</summary>
    public bool IsCut => (uint)Frame.Length < OriginalLength;

    /// <summary>The IP packet inside the frame (link-layer header and trailing padding removed).</summary>
    public PcapStatus TryGetIpPacket(out ReadOnlySpan<byte> ipPacket) => LinkLayer.TryGetIpPacket(LinkType, Frame, out ipPacket);
}
