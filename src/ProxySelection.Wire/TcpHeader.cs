using System.Buffers.Binary;

namespace ProxySelection.Wire;

/// <summary>TCP header flag bits (the low 12 bits of bytes 12..13, RFC 9293 section 3.1; AE from RFC 9768).</summary>
[Flags]
public enum TcpFlags : ushort
{
    None = 0,
    Fin = 0x001,
    Syn = 0x002,
    Rst = 0x004,
    Psh = 0x008,
    Ack = 0x010,
    Urg = 0x020,
    Ece = 0x040,
    Cwr = 0x080,
    Ae = 0x100,
}

/// <summary>A parsed TCP header over the caller's bytes (the TCP segment: header, options, data).</summary>
public readonly ref struct TcpHeader
{
    public const int MinLength = 20;
    public const int MaxLength = 60;
    public const int MaxOptionsLength = 40;

    private TcpHeader(ReadOnlySpan<byte> segment, int headerLength)
    {
        Segment = segment;
        HeaderLength = headerLength;
    }

    /// <summary>The whole segment: header, options and data.</summary>
    public ReadOnlySpan<byte> Segment { get; }

    /// <summary>Data offset in bytes (20..60).</summary>
    public int HeaderLength { get; }

    public ushort SourcePort => BinaryPrimitives.ReadUInt16BigEndian(Segment);

    public ushort DestinationPort => BinaryPrimitives.ReadUInt16BigEndian(Segment[2..]);

    public uint SequenceNumber => BinaryPrimitives.ReadUInt32BigEndian(Segment[4..]);

    public uint AcknowledgmentNumber => BinaryPrimitives.ReadUInt32BigEndian(Segment[8..]);

    /// <summary>Data offset in 32-bit words (5..15).</summary>
    public int DataOffset => HeaderLength / 4;

    /// <summary>The 12 flag bits (including the three reserved bits above AE, kept as on the wire).</summary>
    public TcpFlags Flags => (TcpFlags)(BinaryPrimitives.ReadUInt16BigEndian(Segment[12..]) & 0x0FFF);

    public ushort Window => BinaryPrimitives.ReadUInt16BigEndian(Segment[14..]);

    public ushort Checksum => BinaryPrimitives.ReadUInt16BigEndian(Segment[16..]);

    public ushort UrgentPointer => BinaryPrimitives.ReadUInt16BigEndian(Segment[18..]);

    /// <summary>The option area (0..40 bytes), padding included.</summary>
    public ReadOnlySpan<byte> Options => Segment[MinLength..HeaderLength];

    /// <summary>The segment's data after the header.</summary>
    public ReadOnlySpan<byte> Payload => Segment[HeaderLength..];

    public bool Has(TcpFlags flag) => (Flags & flag) == flag;

    /// <summary>An enumerator over <see cref="Options"/>.</summary>
    public TcpOptionReader GetOptionReader() => new(Options);

    public static WireError TryParse(ReadOnlySpan<byte> segment, out TcpHeader tcp) => TryParse(segment, out tcp, out _);

    /// <summary>Parses the TCP header at the start of <paramref name="segment"/>; on failure <paramref name="errorOffset"/> is relative to it.</summary>
    public static WireError TryParse(ReadOnlySpan<byte> segment, out TcpHeader tcp, out int errorOffset)
    {
        tcp = default;
        errorOffset = 0;
        if (segment.Length < MinLength)
        {
            errorOffset = segment.Length;
            return WireError.Truncated;
        }

        var headerLength = (segment[12] >> 4) * 4;
        if (headerLength < MinLength || headerLength > segment.Length)
        {
            errorOffset = 12;
            return WireError.BadDataOffset;
        }

        tcp = new TcpHeader(segment, headerLength);
        return WireError.None;
    }

    public static TcpHeader Parse(ReadOnlySpan<byte> segment)
    {
        var error = TryParse(segment, out var tcp, out var offset);
        ThrowHelper.ThrowIfError(error, offset);
        return tcp;
    }
}

/// <summary>An IP packet carrying TCP, parsed down to the TCP header.</summary>
public readonly ref struct TcpPacket
{
    private TcpPacket(IpPacket ip, TcpHeader tcp)
    {
        Ip = ip;
        Tcp = tcp;
    }

    public IpPacket Ip { get; }

    public TcpHeader Tcp { get; }

    /// <summary>Offset of the TCP header in the packet.</summary>
    public int TcpOffset => Ip.HeaderLength;

    /// <summary>Offset of the TCP option area in the packet.</summary>
    public int OptionsOffset => Ip.HeaderLength + TcpHeader.MinLength;

    public static WireError TryParse(ReadOnlySpan<byte> packet, out TcpPacket parsed) => TryParse(packet, out parsed, out _);

    /// <summary>Parses IP then TCP; on failure <paramref name="errorOffset"/> is relative to the packet start.</summary>
    public static WireError TryParse(ReadOnlySpan<byte> packet, out TcpPacket parsed, out int errorOffset)
    {
        parsed = default;
        var error = IpPacket.TryParse(packet, out var ip, out errorOffset);
        if (error != WireError.None)
        {
            return error;
        }

        error = TcpHeader.TryParse(ip.Payload, out var tcp, out errorOffset);
        errorOffset += ip.HeaderLength;
        if (error != WireError.None)
        {
            return error;
        }

        errorOffset = 0;
        parsed = new TcpPacket(ip, tcp);
        return WireError.None;
    }

    public static TcpPacket Parse(ReadOnlySpan<byte> packet)
    {
        var error = TryParse(packet, out var parsed, out var offset);
        ThrowHelper.ThrowIfError(error, offset);
        return parsed;
    }
}
