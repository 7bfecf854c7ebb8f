namespace ProxySelection.Wire.Pcap;

/// <summary>Outcome of reading a pcap file header, a record, or a record's link-layer header.</summary>
public enum PcapStatus
{
    Ok = 0,

    /// <summary>No more records: the file ended exactly at a record boundary.</summary>
    End,

    /// <summary>The file is shorter than the 24-byte global header.</summary>
    TruncatedFileHeader,

    /// <summary>The first four bytes are not a classic pcap magic number.</summary>
    BadMagic,

    /// <summary>The file is pcapng (section header block magic), which this reader does not parse.</summary>
    PcapNgNotSupported,

    /// <summary>The major version is not 2.</summary>
    UnsupportedVersion,

    /// <summary>The global header names a link type not in <see cref="PcapLinkType"/>.</summary>
    UnsupportedLinkType,

    /// <summary>The file ends inside a 16-byte record header.</summary>
    TruncatedRecordHeader,

    /// <summary>A record's captured length runs past the end of the file.</summary>
    TruncatedRecordData,

    /// <summary>A record's captured length is larger than its original length or than any sane snapshot length.</summary>
    BadRecordLength,

    /// <summary>A record's frame is shorter than its link-layer header.</summary>
    TruncatedLinkHeader,

    /// <summary>A record's frame carries something other than IPv4 or IPv6 (ARP, LLDP, ...).</summary>
    NotIp,
}

/// <summary>Human-readable reasons for <see cref="PcapStatus"/> values.</summary>
public static class PcapStatusText
{
    public static string Describe(PcapStatus status) => status switch
    {
        PcapStatus.Ok => "ok",
        PcapStatus.End => "end of file",
        PcapStatus.TruncatedFileHeader => "file is shorter than the 24-byte pcap header",
        PcapStatus.BadMagic => "not a pcap file (bad magic number)",
        PcapStatus.PcapNgNotSupported => "pcapng is not supported; convert with: editcap -F pcap in.pcapng out.pcap",
        PcapStatus.UnsupportedVersion => "unsupported pcap version (major version must be 2)",
        PcapStatus.UnsupportedLinkType => "unsupported link type (Ethernet, Linux cooked v1/v2 and raw IP are supported)",
        PcapStatus.TruncatedRecordHeader => "file ends inside a record header",
        PcapStatus.TruncatedRecordData => "record data runs past the end of the file",
        PcapStatus.BadRecordLength => "record captured length is larger than its original length or the limit",
        PcapStatus.TruncatedLinkHeader => "frame is shorter than its link-layer header",
        PcapStatus.NotIp => "frame does not carry IPv4 or IPv6",
        _ => "unknown pcap status",
    };
}
