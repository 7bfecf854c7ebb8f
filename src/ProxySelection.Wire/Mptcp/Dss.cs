using System.Buffers.Binary;

namespace ProxySelection.Wire;

/// <summary>DSS flags byte (RFC 8684 section 3.3); the three high bits are reserved and kept as sent.</summary>
[Flags]
public enum DssFlags : byte
{
    None = 0,
    /// <summary>A: data ACK present.</summary>
    DataAckPresent = 0x01,
    /// <summary>a: data ACK is 8 bytes.</summary>
    DataAck8 = 0x02,
    /// <summary>M: mapping (DSN, subflow sequence number, data-level length, checksum) present.</summary>
    MappingPresent = 0x04,
    /// <summary>m: DSN is 8 bytes.</summary>
    Dsn8 = 0x08,
    /// <summary>F: DATA_FIN.</summary>
    DataFin = 0x10,
}

/// <summary>Data Sequence Signal (subtype 0x2, RFC 8684 section 3.3).</summary>
public readonly record struct Dss : IMptcpSuboption
{
    private readonly byte _reservedNibble;

    private Dss(byte reservedNibble, DssFlags flags, ulong dataAck, ulong dataSequenceNumber, uint subflowSequenceNumber,
        ushort dataLevelLength, bool hasChecksum, ushort checksum)
    {
        _reservedNibble = (byte)(reservedNibble & 0x0F);
        Flags = flags;
        DataAck = dataAck;
        DataSequenceNumber = dataSequenceNumber;
        SubflowSequenceNumber = subflowSequenceNumber;
        DataLevelLength = dataLevelLength;
        HasChecksum = hasChecksum;
        Checksum = checksum;
    }

    /// <summary>
    /// A DSS. A 4-byte data ACK or DSN must fit 32 bits; the checksum needs a mapping; values of absent parts are
    /// ignored. Throws <see cref="WireException"/> (<see cref="WireError.BadArgument"/>) otherwise.
    /// </summary>
    public Dss(DssFlags flags, ulong dataAck = 0, ulong dataSequenceNumber = 0, uint subflowSequenceNumber = 0,
        ushort dataLevelLength = 0, bool hasChecksum = false, ushort checksum = 0)
    {
        var ack = (flags & DssFlags.DataAckPresent) != 0;
        var map = (flags & DssFlags.MappingPresent) != 0;
        if ((ack && (flags & DssFlags.DataAck8) == 0 && dataAck > uint.MaxValue)
            || (map && (flags & DssFlags.Dsn8) == 0 && dataSequenceNumber > uint.MaxValue)
            || (hasChecksum && !map))
        {
            ThrowHelper.ThrowWireException(WireError.BadArgument, 0);
        }

        Flags = flags;
        DataAck = ack ? dataAck : 0;
        DataSequenceNumber = map ? dataSequenceNumber : 0;
        SubflowSequenceNumber = map ? subflowSequenceNumber : 0;
        DataLevelLength = map ? dataLevelLength : (ushort)0;
        HasChecksum = hasChecksum;
        Checksum = hasChecksum ? checksum : (ushort)0;
    }

    public MptcpSubtype Subtype => MptcpSubtype.Dss;

    public int Length => ExpectedLength(Flags) + (HasChecksum ? 2 : 0);

    /// <summary>The flags byte as sent, reserved bits included.</summary>
    public DssFlags Flags { get; }

    /// <summary>Reserved bits of the subtype byte (low nibble) as sent.</summary>
    public byte Reserved => _reservedNibble;

    public bool HasDataAck => (Flags & DssFlags.DataAckPresent) != 0;

    public bool DataAckIs8Bytes => (Flags & DssFlags.DataAck8) != 0;

    public bool HasMapping => (Flags & DssFlags.MappingPresent) != 0;

    public bool DsnIs8Bytes => (Flags & DssFlags.Dsn8) != 0;

    public bool DataFin => (Flags & DssFlags.DataFin) != 0;

    /// <summary>Data ACK as on the wire (4 or 8 bytes).</summary>
    public ulong DataAck { get; }

    /// <summary>Data sequence number as on the wire (4 or 8 bytes).</summary>
    public ulong DataSequenceNumber { get; }

    /// <summary>Subflow sequence number, relative to the subflow's initial sequence number.</summary>
    public uint SubflowSequenceNumber { get; }

    public ushort DataLevelLength { get; }

    public bool HasChecksum { get; }

    public ushort Checksum { get; }

    /// <summary>An infinite mapping: mapping present with data-level length 0 (RFC 8684 section 3.7).</summary>
    public bool IsInfiniteMapping => HasMapping && DataLevelLength == 0;

    /// <summary>Option length for <paramref name="flags"/> without checksum.</summary>
    public static int ExpectedLength(DssFlags flags)
    {
        var length = 4;
        if ((flags & DssFlags.DataAckPresent) != 0)
        {
            length += (flags & DssFlags.DataAck8) != 0 ? 8 : 4;
        }

        if ((flags & DssFlags.MappingPresent) != 0)
        {
            length += ((flags & DssFlags.Dsn8) != 0 ? 8 : 4) + 4 + 2;
        }

        return length;
    }

    public static WireError TryParse(ReadOnlySpan<byte> option, out Dss value)
    {
        value = default;
        var error = MptcpCodec.CheckHeader(option, MptcpSubtype.Dss);
        if (error != WireError.None)
        {
            return error;
        }

        if (option.Length < 4)
        {
            return WireError.BadMptcpLength;
        }

        var flags = (DssFlags)option[3];
        var expected = ExpectedLength(flags);
        var map = (flags & DssFlags.MappingPresent) != 0;

        // The checksum is part of the mapping (RFC 8684 section 3.3.1); the kernel tolerates it without one, RFC does not.
        var hasChecksum = option.Length == expected + 2 && map;
        if (option.Length != expected && !hasChecksum)
        {
            return WireError.BadMptcpLength;
        }

        var position = 4;
        ulong dataAck = 0;
        if ((flags & DssFlags.DataAckPresent) != 0)
        {
            dataAck = ReadVariable(option, ref position, (flags & DssFlags.DataAck8) != 0);
        }

        ulong dsn = 0;
        uint ssn = 0;
        ushort dataLevelLength = 0;
        ushort checksum = 0;
        if (map)
        {
            dsn = ReadVariable(option, ref position, (flags & DssFlags.Dsn8) != 0);
            ssn = BinaryPrimitives.ReadUInt32BigEndian(option[position..]);
            dataLevelLength = BinaryPrimitives.ReadUInt16BigEndian(option[(position + 4)..]);
            if (hasChecksum)
            {
                checksum = BinaryPrimitives.ReadUInt16BigEndian(option[(position + 6)..]);
            }
        }

        value = new Dss((byte)(option[2] & 0x0F), flags, dataAck, dsn, ssn, dataLevelLength, hasChecksum, checksum);
        return WireError.None;
    }

    public WireError TryWrite(Span<byte> destination, out int written)
    {
        written = 0;
        var length = Length;
        if (destination.Length < length)
        {
            return WireError.BufferTooSmall;
        }

        MptcpCodec.WriteHeader(destination, length, Subtype, _reservedNibble);
        destination[3] = (byte)Flags;
        var position = 4;
        if (HasDataAck)
        {
            WriteVariable(destination, ref position, DataAckIs8Bytes, DataAck);
        }

        if (HasMapping)
        {
            WriteVariable(destination, ref position, DsnIs8Bytes, DataSequenceNumber);
            BinaryPrimitives.WriteUInt32BigEndian(destination[position..], SubflowSequenceNumber);
            BinaryPrimitives.WriteUInt16BigEndian(destination[(position + 4)..], DataLevelLength);
            if (HasChecksum)
            {
                BinaryPrimitives.WriteUInt16BigEndian(destination[(position + 6)..], Checksum);
            }
        }

        written = length;
        return WireError.None;
    }

    private static ulong ReadVariable(ReadOnlySpan<byte> option, ref int position, bool eightBytes)
    {
        ulong value = eightBytes
            ? BinaryPrimitives.ReadUInt64BigEndian(option[position..])
            : BinaryPrimitives.ReadUInt32BigEndian(option[position..]);
        position += eightBytes ? 8 : 4;
        return value;
    }

    private static void WriteVariable(Span<byte> destination, ref int position, bool eightBytes, ulong value)
    {
        if (eightBytes)
        {
            BinaryPrimitives.WriteUInt64BigEndian(destination[position..], value);
            position += 8;
        }
        else
        {
            BinaryPrimitives.WriteUInt32BigEndian(destination[position..], (uint)value);
            position += 4;
        }
    }
}
