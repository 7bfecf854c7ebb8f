using System.Buffers.Binary;

namespace ProxySelection.Wire.Pcap;

/// <summary>
/// Reads a classic pcap file (either byte order, micro- or nanosecond timestamps) held in memory.
/// Nothing is allocated: records are slices of the file span. Malformed files yield a <see cref="PcapStatus"/>,
/// never an exception.
/// </summary>
public ref struct PcapReader
{
    public const int FileHeaderLength = 24;
    public const int RecordHeaderLength = 16;

    /// <summary>libpcap's largest snapshot length; a record may use it even when the header's snaplen is smaller.</summary>
    public const int MaxSnapLength = 262144;

    private const uint MagicMicro = 0xA1B2C3D4;
    private const uint MagicNano = 0xA1B23C4D;
    private const uint MagicPcapNg = 0x0A0D0D0A;

    private readonly ReadOnlySpan<byte> _file;
    private int _offset;
    private int _number;

    private PcapReader(ReadOnlySpan<byte> file, bool bigEndian, bool nanosecond, PcapLinkType linkType, uint snapLength, int fcsLength)
    {
        _file = file;
        _offset = FileHeaderLength;
        BigEndian = bigEndian;
        Nanosecond = nanosecond;
        LinkType = linkType;
        SnapLength = snapLength;
        FcsLength = fcsLength;
    }

    public readonly bool BigEndian { get; }

    /// <summary>True when record timestamps carry nanoseconds (magic 0xA1B23C4D), false for microseconds.</summary>
    public readonly bool Nanosecond { get; }

    public readonly PcapLinkType LinkType { get; }

    public readonly uint SnapLength { get; }

    /// <summary>Bytes of frame check sequence at the end of every frame (the header's FCS field), stripped from <see cref="PcapRecord.Frame"/>.</summary>
    public readonly int FcsLength { get; }

    /// <summary>Byte offset of the next record header in the file.</summary>
    public readonly int Offset => _offset;

    /// <summary>Parses the global header. On failure <paramref name="reader"/> is default and must not be used.</summary>
    public static PcapStatus TryCreate(ReadOnlySpan<byte> file, out PcapReader reader)
    {
        reader = default;
        if (file.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(file) == MagicPcapNg)
        {
            return PcapStatus.PcapNgNotSupported;
        }

        if (file.Length < FileHeaderLength)
        {
            return PcapStatus.TruncatedFileHeader;
        }

        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(file);
        bool bigEndian;
        bool nano;
        if (magic == MagicMicro || magic == MagicNano)
        {
            bigEndian = false;
            nano = magic == MagicNano;
        }
        else if (BinaryPrimitives.ReverseEndianness(magic) is var swapped && (swapped == MagicMicro || swapped == MagicNano))
        {
            bigEndian = true;
            nano = swapped == MagicNano;
        }
        else
        {
            return PcapStatus.BadMagic;
        }

        if (Read16(file[4..], bigEndian) != 2)
        {
            return PcapStatus.UnsupportedVersion;
        }

        uint snapLength = Read32(file[16..], bigEndian);
        uint linkField = Read32(file[20..], bigEndian);
        // Bit 28 says the 3 bits above it give the FCS length in 16-bit words (draft-ietf-opsawg-pcap, LinkType field).
        int fcsLength = (linkField & 0x1000_0000) != 0 ? (int)((linkField >> 29) & 0x7) * 2 : 0;
        var linkType = (PcapLinkType)(linkField & 0xFFFF);
        if (!Enum.IsDefined(linkType))
        {
            return PcapStatus.UnsupportedLinkType;
        }

        reader = new PcapReader(file, bigEndian, nano, linkType, snapLength, fcsLength);
        return PcapStatus.Ok;
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

        uint seconds = Read32(rest, BigEndian);
        uint fraction = Read32(rest[4..], BigEndian);
        uint captured = Read32(rest[8..], BigEndian);
        uint original = Read32(rest[12..], BigEndian);
        if (captured > Math.Max(SnapLength, MaxSnapLength))
        {
            return PcapStatus.BadRecordLength;
        }

        if (captured > (uint)(rest.Length - RecordHeaderLength))
        {
            return PcapStatus.TruncatedRecordData;
        }

        var frame = rest.Slice(RecordHeaderLength, (int)captured);
        if (FcsLength > 0 && frame.Length >= FcsLength && captured == original)
        {
            frame = frame[..^FcsLength];
        }

        _number++;
        record = new PcapRecord(_number, _offset, seconds, Nanosecond ? fraction : fraction * 1000u, original, frame, LinkType);
        _offset += RecordHeaderLength + (int)captured;
        return PcapStatus.Ok;
    }

    private static ushort Read16(ReadOnlySpan<byte> s, bool bigEndian) =>
        bigEndian ? BinaryPrimitives.ReadUInt16BigEndian(s) : BinaryPrimitives.ReadUInt16LittleEndian(s);

    private static uint Read32(ReadOnlySpan<byte> s, bool bigEndian) =>
        bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(s) : BinaryPrimitives.ReadUInt32LittleEndian(s);
}
