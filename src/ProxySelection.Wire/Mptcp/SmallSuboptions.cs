using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;

namespace ProxySelection.Wire;

/// <summary>REMOVE_ADDR (subtype 0x4, RFC 8684 section 3.4.2): one or more address ids, length 3 + n.</summary>
public readonly record struct RemoveAddr : IMptcpSuboption
{
    /// <summary>Most ids one option can hold (40-byte option space minus 3).</summary>
    public const int MaxIds = 37;

    private readonly byte _nibble;
    private readonly Bytes37 _ids;

    private RemoveAddr(byte nibble, ReadOnlySpan<byte> ids)
    {
        _nibble = (byte)(nibble & 0x0F);
        Count = ids.Length;
        ids.CopyTo(_ids);
    }

    /// <summary>Removes <paramref name="addressIds"/> (1..37 ids).</summary>
    public RemoveAddr(ReadOnlySpan<byte> addressIds)
        : this(0, CheckIds(addressIds))
    {
    }

    public MptcpSubtype Subtype => MptcpSubtype.RemoveAddr;

    public int Length => 3 + Count;

    /// <summary>Reserved bits of the subtype byte, as sent.</summary>
    public byte Reserved => _nibble;

    public int Count { get; }

    [UnscopedRef]
    public ReadOnlySpan<byte> AddressIds => ((ReadOnlySpan<byte>)_ids)[..Count];

    public static WireError TryParse(ReadOnlySpan<byte> option, out RemoveAddr value)
    {
        value = default;
        var error = MptcpCodec.CheckHeader(option, MptcpSubtype.RemoveAddr);
        if (error != WireError.None)
        {
            return error;
        }

        if (option.Length < 4 || option.Length > 3 + MaxIds)
        {
            return WireError.BadMptcpLength;
        }

        value = new RemoveAddr((byte)(option[2] & 0x0F), option[3..]);
        return WireError.None;
    }

    public WireError TryWrite(Span<byte> destination, out int written)
    {
        written = 0;
        if (destination.Length < Length)
        {
            return WireError.BufferTooSmall;
        }

        MptcpCodec.WriteHeader(destination, Length, Subtype, _nibble);
        AddressIds.CopyTo(destination[3..]);
        written = Length;
        return WireError.None;
    }

    private static ReadOnlySpan<byte> CheckIds(ReadOnlySpan<byte> ids)
    {
        if (ids.IsEmpty || ids.Length > MaxIds)
        {
            ThrowHelper.ThrowWireException(WireError.BadArgument, 0);
        }

        return ids;
    }
}

/// <summary>MP_PRIO (subtype 0x5, RFC 8684 section 3.3.8): length 3, or 4 with an address id (RFC 6824 form).</summary>
public readonly record struct MpPrio : IMptcpSuboption
{
    private readonly byte _nibble;

    private MpPrio(byte nibble, bool hasAddressId, byte addressId)
    {
        _nibble = (byte)(nibble & 0x0F);
        HasAddressId = hasAddressId;
        AddressId = hasAddressId ? addressId : (byte)0;
    }

    public MpPrio(bool backup, byte? addressId = null)
        : this(backup ? (byte)1 : (byte)0, addressId.HasValue, addressId.GetValueOrDefault())
    {
    }

    public MptcpSubtype Subtype => MptcpSubtype.MpPrio;

    public int Length => HasAddressId ? 4 : 3;

    /// <summary>B: the sender wants the subflow used as backup.</summary>
    public bool Backup => (_nibble & 0x01) != 0;

    /// <summary>The three reserved bits before B, as sent.</summary>
    public byte Reserved => (byte)(_nibble >> 1);

    public bool HasAddressId { get; }

    public byte AddressId { get; }

    public static WireError TryParse(ReadOnlySpan<byte> option, out MpPrio value)
    {
        value = default;
        var error = MptcpCodec.CheckHeader(option, MptcpSubtype.MpPrio);
        if (error != WireError.None)
        {
            return error;
        }

        if (option.Length is not (3 or 4))
        {
            return WireError.BadMptcpLength;
        }

        value = new MpPrio((byte)(option[2] & 0x0F), option.Length == 4, option.Length == 4 ? option[3] : (byte)0);
        return WireError.None;
    }

    public WireError TryWrite(Span<byte> destination, out int written)
    {
        written = 0;
        if (destination.Length < Length)
        {
            return WireError.BufferTooSmall;
        }

        MptcpCodec.WriteHeader(destination, Length, Subtype, _nibble);
        if (HasAddressId)
        {
            destination[3] = AddressId;
        }

        written = Length;
        return WireError.None;
    }
}

/// <summary>MP_FAIL (subtype 0x6, RFC 8684 section 3.7): 12 bits reserved, 64-bit DSN; length 12.</summary>
public readonly record struct MpFail : IMptcpSuboption
{
    private MpFail(ushort reserved, ulong dataSequenceNumber)
    {
        Reserved = (ushort)(reserved & 0x0FFF);
        DataSequenceNumber = dataSequenceNumber;
    }

    public MpFail(ulong dataSequenceNumber)
        : this(0, dataSequenceNumber)
    {
    }

    public MptcpSubtype Subtype => MptcpSubtype.MpFail;

    public int Length => 12;

    /// <summary>The 12 reserved bits, as sent.</summary>
    public ushort Reserved { get; }

    public ulong DataSequenceNumber { get; }

    public static WireError TryParse(ReadOnlySpan<byte> option, out MpFail value)
    {
        var error = TryParseReserved12With64(option, MptcpSubtype.MpFail, out ushort reserved, out ulong dsn);
        value = error == WireError.None ? new MpFail(reserved, dsn) : default;
        return error;
    }

    public WireError TryWrite(Span<byte> destination, out int written) =>
        WriteReserved12With64(destination, Subtype, Reserved, DataSequenceNumber, out written);

    internal static ushort ReadReserved12(ReadOnlySpan<byte> option) => (ushort)(((option[2] & 0x0F) << 8) | option[3]);

    /// <summary>MP_FAIL and MP_FASTCLOSE share one layout: 12 reserved bits, then a 64-bit value; length 12.</summary>
    internal static WireError TryParseReserved12With64(ReadOnlySpan<byte> option, MptcpSubtype subtype, out ushort reserved, out ulong value)
    {
        reserved = 0;
        value = 0;
        var error = MptcpCodec.CheckHeader(option, subtype);
        if (error != WireError.None)
        {
            return error;
        }

        if (option.Length != 12)
        {
            return WireError.BadMptcpLength;
        }

        reserved = ReadReserved12(option);
        value = BinaryPrimitives.ReadUInt64BigEndian(option[4..]);
        return WireError.None;
    }

    internal static WireError WriteReserved12With64(Span<byte> destination, MptcpSubtype subtype, ushort reserved, ulong value, out int written)
    {
        written = 0;
        if (destination.Length < 12)
        {
            return WireError.BufferTooSmall;
        }

        MptcpCodec.WriteHeader(destination, 12, subtype, reserved >> 8);
        destination[3] = (byte)reserved;
        BinaryPrimitives.WriteUInt64BigEndian(destination[4..], value);
        written = 12;
        return WireError.None;
    }
}

/// <summary>MP_FASTCLOSE (subtype 0x7, RFC 8684 section 3.5): 12 bits reserved, receiver's key; length 12.</summary>
public readonly record struct MpFastClose : IMptcpSuboption
{
    private MpFastClose(ushort reserved, ulong receiverKey)
    {
        Reserved = (ushort)(reserved & 0x0FFF);
        ReceiverKey = receiverKey;
    }

    public MpFastClose(ulong receiverKey)
        : this(0, receiverKey)
    {
    }

    public MptcpSubtype Subtype => MptcpSubtype.MpFastClose;

    public int Length => 12;

    /// <summary>The 12 reserved bits, as sent.</summary>
    public ushort Reserved { get; }

    public ulong ReceiverKey { get; }

    public static WireError TryParse(ReadOnlySpan<byte> option, out MpFastClose value)
    {
        var error = MpFail.TryParseReserved12With64(option, MptcpSubtype.MpFastClose, out ushort reserved, out ulong key);
        value = error == WireError.None ? new MpFastClose(reserved, key) : default;
        return error;
    }

    public WireError TryWrite(Span<byte> destination, out int written) =>
        MpFail.WriteReserved12With64(destination, Subtype, Reserved, ReceiverKey, out written);
}

/// <summary>MP_TCPRST flags (RFC 8684 section 3.6): U V W T from the most significant bit of the nibble.</summary>
[Flags]
public enum MpTcpRstFlags : byte
{
    None = 0,
    /// <summary>T: the error is transient; the subflow may be retried.</summary>
    Transient = 0x1,
    ReservedW = 0x2,
    ReservedV = 0x4,
    ReservedU = 0x8,
}

/// <summary>MP_TCPRST reason codes (RFC 8684 section 3.6); other values are carried as they are.</summary>
public enum MpTcpRstReason : byte
{
    Unspecified = 0x00,
    MptcpSpecific = 0x01,
    LackOfResources = 0x02,
    AdministrativelyProhibited = 0x03,
    TooMuchOutstandingData = 0x04,
    UnacceptablePerformance = 0x05,
    MiddleboxInterference = 0x06,
}

/// <summary>MP_TCPRST (subtype 0x8, RFC 8684 section 3.6): flags and reason; length 4.</summary>
public readonly record struct MpTcpRst(MpTcpRstFlags Flags, MpTcpRstReason Reason) : IMptcpSuboption
{
    public MptcpSubtype Subtype => MptcpSubtype.MpTcpRst;

    public int Length => 4;

    public MpTcpRstFlags Flags { get; } = (MpTcpRstFlags)((byte)Flags & 0x0F);

    public static WireError TryParse(ReadOnlySpan<byte> option, out MpTcpRst value)
    {
        value = default;
        var error = MptcpCodec.CheckHeader(option, MptcpSubtype.MpTcpRst);
        if (error != WireError.None)
        {
            return error;
        }

        if (option.Length != 4)
        {
            return WireError.BadMptcpLength;
        }

        value = new MpTcpRst((MpTcpRstFlags)(option[2] & 0x0F), (MpTcpRstReason)option[3]);
        return WireError.None;
    }

    public WireError TryWrite(Span<byte> destination, out int written)
    {
        written = 0;
        if (destination.Length < Length)
        {
            return WireError.BufferTooSmall;
        }

        MptcpCodec.WriteHeader(destination, Length, Subtype, (byte)Flags);
        destination[3] = (byte)Reason;
        written = Length;
        return WireError.None;
    }
}

/// <summary>
/// MP_EXPERIMENTAL (subtype 0xF, RFC 8684 section 7.2), kept raw for the extension layer: the low nibble of the
/// subtype byte and the bytes after it (<see cref="DataOffset"/> .. option end). Length 3..40.
/// </summary>
public readonly record struct MpExperimental : IMptcpSuboption
{
    /// <summary>Where the experimental data starts in the option (after kind, length, subtype byte).</summary>
    public const int DataOffset = 3;

    private readonly Bytes37 _data;

    public MpExperimental(byte lowNibble, ReadOnlySpan<byte> data)
    {
        if (lowNibble > 0x0F || data.Length > MptcpCodec.MaxLength - DataOffset)
        {
            ThrowHelper.ThrowWireException(WireError.BadArgument, 0);
        }

        LowNibble = lowNibble;
        DataLength = data.Length;
        data.CopyTo(_data);
    }

    public MptcpSubtype Subtype => MptcpSubtype.MpExperimental;

    public int Length => DataOffset + DataLength;

    /// <summary>The low four bits of the subtype byte (free for the experiment).</summary>
    public byte LowNibble { get; }

    public int DataLength { get; }

    [UnscopedRef]
    public ReadOnlySpan<byte> Data => ((ReadOnlySpan<byte>)_data)[..DataLength];

    public static WireError TryParse(ReadOnlySpan<byte> option, out MpExperimental value)
    {
        value = default;
        var error = MptcpCodec.CheckHeader(option, MptcpSubtype.MpExperimental);
        if (error != WireError.None)
        {
            return error;
        }

        if (option.Length > MptcpCodec.MaxLength)
        {
            return WireError.BadMptcpLength;
        }

        value = new MpExperimental((byte)(option[2] & 0x0F), option[DataOffset..]);
        return WireError.None;
    }

    public WireError TryWrite(Span<byte> destination, out int written)
    {
        written = 0;
        if (destination.Length < Length)
        {
            return WireError.BufferTooSmall;
        }

        MptcpCodec.WriteHeader(destination, Length, Subtype, LowNibble);
        Data.CopyTo(destination[DataOffset..]);
        written = Length;
        return WireError.None;
    }
}
