namespace ProxySelection.Wire.Pcap;

/// <summary>
/// Reads a classic pcap file (either byte order, micro- or nanosecond timestamps) held in memory.
/// Nothing is allocated: records are slices of the file span. Malformed files yield a <see cref="PcapStatus"/>,
/// never an exception. For files read from a stream, see <see cref="PcapStreamReader"/>.
/// </summary>
public ref struct PcapReader
{
    public const int FileHeaderLength = PcapFileHeader.Length;
    public const int RecordHeaderLength = PcapFileHeader.RecordHeaderLength;
    public const int MaxSnapLength = PcapFileHeader.MaxSnapLength;

    private readonly ReadOnlySpan<byte> _file;
    private int _offset;
    private int _number;

    private PcapReader(ReadOnlySpan<byte> file, PcapFileHeader header)
    {
        _file = file;
        _offset = FileHeaderLength;
        Header = header;
    }

    public readonly PcapFileHeader Header { get; }

    public readonly bool BigEndian => Header.BigEndian;

    /// <summary>True when record timestamps carry nanoseconds (magic 0xA1B23C4D), false for microseconds.</summary>
    public readonly bool Nanosecond => Header.Nanosecond;

    public readonly PcapLinkType LinkType => Header.LinkType;

    public readonly uint SnapLength => Header.SnapLength;

    /// <summary>Bytes of frame check sequence at the end of every frame (the header's FCS field), stripped from <see cref="PcapRecord.Frame"/>.</summary>
    public readonly int FcsLength => Header.FcsLength;

    /// <summary>Byte offset of the next record header in the file.</summary>
    public readonly int Offset => _offset;

    /// <summary>Parses the global header. On failure <paramref name="reader"/> is default and must not be used.</summary>
    public static PcapStatus TryCreate(ReadOnlySpan<byte> file, out PcapReader reader)
    {
        reader = default;
        var status = PcapFileHeader.TryParse(file, out var header);
        if (status == PcapStatus.Ok)
        {
            reader = new PcapReader(file, header);
        }

        return status;
    }

    /// <summary>
    /// Reads the next record. Returns <see cref="PcapStatus.End"/> at a clean end of file; after any other
    /// non-<see cref="PcapStatus.Ok"/> status the file cannot be read further and every later call returns that status again.
    /// </summary>
    public PcapStatus ReadNext(out PcapRecord record)
    {
        record = default;
        var rest = _file[_offset..];
        if (rest.IsEmpty)
        {
            return PcapStatus.End;
        }

        if (rest.Length < RecordHeaderLength)
        {
            return PcapStatus.TruncatedRecordHeader;
        }

        var status = Header.TryParseRecordHeader(rest, out uint seconds, out uint nanoseconds, out int captured, out uint original);
        if (status != PcapStatus.Ok)
        {
            return status;
        }

        if (captured > rest.Length - RecordHeaderLength)
        {
            return PcapStatus.TruncatedRecordData;
        }

        var frame = Header.StripFcs(rest.Slice(RecordHeaderLength, captured), original);
        _number++;
        record = new PcapRecord(_number, _offset, seconds, nanoseconds, original, frame, LinkType);
        _offset += RecordHeaderLength + captured;
        return PcapStatus.Ok;
    }
}
