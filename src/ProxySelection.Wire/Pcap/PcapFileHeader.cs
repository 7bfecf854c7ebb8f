using System.Buffers.Binary;

namespace ProxySelection.Wire.Pcap;

/// <summary>The 24-byte global header of a classic pcap file, and the rules for reading its 16-byte record headers.</summary>
public readonly record struct PcapFileHeader(bool BigEndian, bool Nanosecond, PcapLinkType LinkType, uint SnapLength, int FcsLength)
{
    public const int Length = 24;
    public const int RecordHeaderLength = 16;

    /// <summary>libpcap's largest snapshot length; a record may use it even when the header's snaplen is smaller.</summary>
    public const int MaxSnapLength = 262144;

    private const uint MagicMicro = 0xA1B2C3D4;
    private const uint MagicNano = 0xA1B23C4D;
    private const uint MagicPcapNg = 0x0A0D0D0A;

    /// <summary>Parses the global header at the start of <paramref name="file"/>.</summary>
    public static PcapStatus TryParse(ReadOnlySpan<byte> file, out PcapFileHeader header)
    {
        header = default;
        if (file.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(file) == MagicPcapNg)
        {
            return PcapStatus.PcapNgNotSupported;
        }

        if (file.Length < Length)
        {
            return PcapStatus.TruncatedFileHeader;
        }

        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(file);
        uint swapped = BinaryPrimitives.ReverseEndianness(magic);
        bool bigEndian;
        bool nano;
        if (magic is MagicMicro or MagicNano)
        {
            bigEndian = false;
            nano = magic == MagicNano;
        }
        else if (swapped is MagicMicro or MagicNano)
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

        header = new PcapFileHeader(bigEndian, nano, linkType, snapLength, fcsLength);
        return PcapStatus.Ok;
    }

    /// <summary>
    /// Reads a 16-byte record header: timestamp (sub-second part scaled to nanoseconds), captured and original length.
    /// <see cref="PcapStatus.BadRecordLength"/> when the captured length is beyond any sane snapshot length.
    /// </summary>
    public PcapStatus TryParseRecordHeader(ReadOnlySpan<byte> recordHeader, out uint seconds, out uint nanoseconds,
        out int capturedLength, out uint originalLength)
    {
        seconds = Read32(recordHeader, BigEndian);
        uint fraction = Read32(recordHeader[4..], BigEndian);
        uint captured = Read32(recordHeader[8..], BigEndian);
        originalLength = Read32(recordHeader[12..], BigEndian);
        nanoseconds = Nanosecond ? fraction : fraction * 1000u;
        capturedLength = 0;
        // A corrupted snap length may exceed int.MaxValue; no record can, whatever the header says.
        if (captured > Math.Max(SnapLength, MaxSnapLength) || captured > int.MaxValue)
        {
            return PcapStatus.BadRecordLength;
        }

        capturedLength = (int)captured;
        return PcapStatus.Ok;
    }

    /// <summary>The frame without its trailing frame check sequence (only when the capture kept the whole frame).</summary>
    public ReadOnlySpan<byte> StripFcs(ReadOnlySpan<byte> frame, uint originalLength) =>
        FcsLength > 0 && frame.Length >= FcsLength && (uint)frame.Length == originalLength ? frame[..^FcsLength] : frame;

    private static ushort Read16(ReadOnlySpan<byte> s, bool bigEndian) =>
        bigEndian ? BinaryPrimitives.ReadUInt16BigEndian(s) : BinaryPrimitives.ReadUInt16LittleEndian(s);

    private static uint Read32(ReadOnlySpan<byte> s, bool bigEndian) =>
        bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(s) : BinaryPrimitives.ReadUInt32LittleEndian(s);
}
