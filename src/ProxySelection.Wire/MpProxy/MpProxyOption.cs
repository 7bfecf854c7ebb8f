namespace ProxySelection.Wire.MpProxy;

/// <summary>
/// One MP_PROXY option (spec §5), parsed or to be written. The form follows from <see cref="WireLength"/>:
/// 4 presence, 8 short (16-bit tag, no key id), 16 long (key id, flags, 64-bit tag).
/// </summary>
public readonly struct MpProxyOption : IEquatable<MpProxyOption>
{
    public const byte Kind = 30;
    public const byte Subtype = 0xF;
    public const byte CurrentVersion = 1;

    /// <summary>Identifies this experiment among other private uses of subtype 0xF (spec §5.3).</summary>
    public const byte ExperimentId = 0xA5;

    public const int PresenceLength = 4;
    public const int ShortLength = 8;
    public const int LongLength = 16;

    /// <summary>Flags byte (long form): the sender is at its connection limit and will not act as a last resort.</summary>
    public const byte AtCapacityBit = 0x80;

    private readonly byte _info;   // byte 4: P | kind | priority, as on the wire
    private readonly byte _flags;  // byte 7 of the long form, reserved bits kept so the tag verifies

    private MpProxyOption(byte wireLength, byte version, byte info, byte proxyId, byte keyId, byte flags, ulong tag)
    {
        WireLength = wireLength;
        Version = version;
        _info = info;
        ProxyId = proxyId;
        KeyId = keyId;
        _flags = flags;
        Tag = tag;
    }

    /// <summary>The 4-byte presence form (MP_JOIN SYN/ACK): no fields, no tag.</summary>
    public static MpProxyOption Presence() => new(PresenceLength, CurrentVersion, 0, 0, 0, 0, 0);

    /// <summary>The 8-byte short form (SYN/ACK, MP_JOIN SYN). The tag is filled by <see cref="MpProxyKeyRing.Sign"/>.</summary>
    public static MpProxyOption Short(MpProxyMessage message, byte priority, byte proxyId, ulong tag = 0)
    {
        if (tag > ushort.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(tag), tag, "the short form carries a 16-bit tag");
        }

        return new(ShortLength, CurrentVersion, Info(message, priority), proxyId, 0, 0, tag);
    }

    /// <summary>The 16-byte long form (MP_CAPABLE SYN). The key id and tag are filled by <see cref="MpProxyKeyRing.Sign"/>.</summary>
    public static MpProxyOption Long(
        MpProxyMessage message, byte priority, byte proxyId, bool atCapacity = false, byte keyId = 0, ulong tag = 0) =>
        new(LongLength, CurrentVersion, Info(message, priority), proxyId, keyId, atCapacity ? AtCapacityBit : (byte)0, tag);

    /// <summary>Builds an option from raw field values, unchecked, as <see cref="MpProxyCodec.TryRead"/> saw them.</summary>
    internal static MpProxyOption FromWire(byte wireLength, byte version, byte info, byte proxyId, byte keyId, byte flags, ulong tag) =>
        new(wireLength, version, info, proxyId, keyId, flags, tag);

    private static byte Info(MpProxyMessage message, byte priority)
    {
        if (message is < MpProxyMessage.Probe or > MpProxyMessage.Upgrade)
        {
            throw new ArgumentOutOfRangeException(nameof(message), message, "short and long forms carry kinds 1..5");
        }

        if (priority > 15)
        {
            throw new ArgumentOutOfRangeException(nameof(priority), priority, "priority is a 4-bit field (0..15)");
        }

        return (byte)(0x80 | ((byte)message << 4) | priority);
    }

    /// <summary>Total option length on the wire: 4, 8 or 16.</summary>
    public int WireLength { get; }

    public byte Version { get; }

    /// <summary>The P flag: set on everything a proxy sends. The presence form implies it.</summary>
    public bool ProxyFlag => WireLength == PresenceLength || (_info & 0x80) != 0;

    public MpProxyMessage Message => WireLength == PresenceLength ? MpProxyMessage.Presence : (MpProxyMessage)((_info >> 4) & 0x7);

    /// <summary>0..15, higher wins under the priority policy.</summary>
    public byte Priority => (byte)(_info & 0x0F);

    public byte ProxyId { get; }

    /// <summary>Long form only; the short form's tag is tried against the current and the previous key.</summary>
    public byte KeyId { get; }

    /// <summary>Raw flags byte of the long form (bit 7 <see cref="AtCapacity"/>, bits 0..6 reserved).</summary>
    public byte Flags => _flags;

    public bool AtCapacity => (_flags & AtCapacityBit) != 0;

    /// <summary>Tag length in bytes: 0 (presence), 2 (short), 8 (long).</summary>
    public int TagLength => WireLength switch
    {
        ShortLength => 2,
        LongLength => 8,
        _ => 0,
    };

    /// <summary>The truncated HMAC-SHA256 tag, right-aligned (the short form uses the low 16 bits).</summary>
    public ulong Tag { get; }

    internal byte InfoByte => _info;

    /// <summary>A copy with another tag (and key id, for the long form).</summary>
    public MpProxyOption WithTag(ulong tag, byte keyId)
    {
        if (WireLength == ShortLength && tag > ushort.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(tag), tag, "the short form carries a 16-bit tag");
        }

        return new((byte)WireLength, Version, _info, ProxyId, WireLength == LongLength ? keyId : (byte)0, _flags, WireLength == PresenceLength ? 0 : tag);
    }

    public bool Equals(MpProxyOption other) =>
        WireLength == other.WireLength && Version == other.Version && _info == other._info && ProxyId == other.ProxyId
        && KeyId == other.KeyId && _flags == other._flags && Tag == other.Tag;

    public override bool Equals(object? obj) => obj is MpProxyOption other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(WireLength, Version, _info, ProxyId, KeyId, _flags, Tag);

    public static bool operator ==(MpProxyOption left, MpProxyOption right) => left.Equals(right);

    public static bool operator !=(MpProxyOption left, MpProxyOption right) => !left.Equals(right);

    public override string ToString() => WireLength switch
    {
        PresenceLength => "MP_PROXY(presence)",
        ShortLength => $"MP_PROXY(short P={(ProxyFlag ? 1 : 0)} {Message} prio={Priority} id={ProxyId} tag={Tag:x4})",
        _ => $"MP_PROXY(long P={(ProxyFlag ? 1 : 0)} {Message} prio={Priority} id={ProxyId} key={KeyId} flags={_flags:x2} tag={Tag:x16})",
    };
}
