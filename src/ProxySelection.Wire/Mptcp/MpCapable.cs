using System.Buffers.Binary;

namespace ProxySelection.Wire;

/// <summary>MP_CAPABLE flags byte (RFC 8684 section 3.1): A..H from the most significant bit.</summary>
[Flags]
public enum MpCapableFlags : byte
{
    None = 0,
    /// <summary>H: HMAC-SHA256.</summary>
    HmacSha256 = 0x01,
    ReservedG = 0x02,
    ReservedF = 0x04,
    ReservedE = 0x08,
    ReservedD = 0x10,
    /// <summary>C: do not open subflows to the source address and port of this one.</summary>
    NoJoinToSourceAddress = 0x20,
    /// <summary>B: extensibility.</summary>
    Extensibility = 0x40,
    /// <summary>A: DSS checksum required.</summary>
    ChecksumRequired = 0x80,
}

/// <summary>MP_CAPABLE shapes, named by what they carry; the value is the option length.</summary>
public enum MpCapableForm : byte
{
    /// <summary>v1 SYN: no key.</summary>
    NoKey = 4,
    /// <summary>v1 SYN/ACK or v0 SYN and SYN/ACK: the sender's key.</summary>
    SenderKey = 12,
    /// <summary>Third ACK: both keys.</summary>
    BothKeys = 20,
    /// <summary>v1 first data: both keys and the data-level length.</summary>
    BothKeysDataLength = 22,
    /// <summary>v1 first data with checksum: both keys, data-level length and checksum.</summary>
    BothKeysDataLengthChecksum = 24,
}

/// <summary>MP_CAPABLE (subtype 0x0, RFC 8684 section 3.1; v0 from RFC 6824).</summary>
public readonly record struct MpCapable : IMptcpSuboption
{
    public MpCapable(MpCapableForm form, byte version, MpCapableFlags flags, ulong senderKey = 0, ulong receiverKey = 0,
        ushort dataLevelLength = 0, ushort checksum = 0)
    {
        if (form is not (MpCapableForm.NoKey or MpCapableForm.SenderKey or MpCapableForm.BothKeys
            or MpCapableForm.BothKeysDataLength or MpCapableForm.BothKeysDataLengthChecksum) || version > 0x0F)
        {
            ThrowHelper.ThrowWireException(WireError.BadArgument, 0);
        }

        Form = form;
        Version = version;
        Flags = flags;
        SenderKey = form >= MpCapableForm.SenderKey ? senderKey : 0;
        ReceiverKey = form >= MpCapableForm.BothKeys ? receiverKey : 0;
        DataLevelLength = form >= MpCapableForm.BothKeysDataLength ? dataLevelLength : (ushort)0;
        Checksum = form == MpCapableForm.BothKeysDataLengthChecksum ? checksum : (ushort)0;
    }

    public MptcpSubtype Subtype => MptcpSubtype.MpCapable;

    public int Length => (int)Form;

    public MpCapableForm Form { get; }

    /// <summary>0 (RFC 6824) or 1 (RFC 8684); any nibble is kept as sent.</summary>
    public byte Version { get; }

    public MpCapableFlags Flags { get; }

    public ulong SenderKey { get; }

    public ulong ReceiverKey { get; }

    public ushort DataLevelLength { get; }

    public ushort Checksum { get; }

    public bool HasSenderKey => Form >= MpCapableForm.SenderKey;

    public bool HasReceiverKey => Form >= MpCapableForm.BothKeys;

    public bool HasDataLevelLength => Form >= MpCapableForm.BothKeysDataLength;

    public bool HasChecksum => Form == MpCapableForm.BothKeysDataLengthChecksum;

    public static WireError TryParse(ReadOnlySpan<byte> option, out MpCapable value)
    {
        value = default;
        var error = MptcpCodec.CheckHeader(option, MptcpSubtype.MpCapable);
        if (error != WireError.None)
        {
            return error;
        }

        if (option.Length is not (4 or 12 or 20 or 22 or 24))
        {
            return WireError.BadMptcpLength;
        }

        var form = (MpCapableForm)option.Length;
        value = new MpCapable(
            form,
            (byte)(option[2] & 0x0F),
            (MpCapableFlags)option[3],
            form >= MpCapableForm.SenderKey ? BinaryPrimitives.ReadUInt64BigEndian(option[4..]) : 0,
            form >= MpCapableForm.BothKeys ? BinaryPrimitives.ReadUInt64BigEndian(option[12..]) : 0,
            form >= MpCapableForm.BothKeysDataLength ? BinaryPrimitives.ReadUInt16BigEndian(option[20..]) : (ushort)0,
            form == MpCapableForm.BothKeysDataLengthChecksum ? BinaryPrimitives.ReadUInt16BigEndian(option[22..]) : (ushort)0);
        return WireError.None;
    }

    public WireError TryWrite(Span<byte> destination, out int written)
    {
        written = 0;
        if (destination.Length < Length)
        {
            return WireError.BufferTooSmall;
        }

        MptcpCodec.WriteHeader(destination, Length, Subtype, Version);
        destination[3] = (byte)Flags;
        if (HasSenderKey)
        {
            BinaryPrimitives.WriteUInt64BigEndian(destination[4..], SenderKey);
        }

        if (HasReceiverKey)
        {
            BinaryPrimitives.WriteUInt64BigEndian(destination[12..], ReceiverKey);
        }

        if (HasDataLevelLength)
        {
            BinaryPrimitives.WriteUInt16BigEndian(destination[20..], DataLevelLength);
        }

        if (HasChecksum)
        {
            BinaryPrimitives.WriteUInt16BigEndian(destination[22..], Checksum);
        }

        written = Length;
        return WireError.None;
    }
}
