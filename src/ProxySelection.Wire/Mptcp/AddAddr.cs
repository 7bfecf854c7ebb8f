using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;

namespace ProxySelection.Wire;

/// <summary>
/// ADD_ADDR (subtype 0x3, RFC 8684 section 3.4.1). E (echo) decides whether the truncated HMAC is present, as
/// the kernel does; then the length gives the family and whether a port follows: IPv4 8/10 (echo) or 16/18,
/// IPv6 20/22 (echo) or 28/30.
/// </summary>
public readonly record struct AddAddr : IMptcpSuboption
{
    private readonly byte _nibble;
    private readonly Bytes16 _address;

    private AddAddr(byte nibble, byte addressId, ReadOnlySpan<byte> address, bool hasPort, ushort port, ulong truncatedHmac)
    {
        _nibble = (byte)(nibble & 0x0F);
        AddressId = addressId;
        IsIPv6 = address.Length == 16;
        address.CopyTo(_address);
        HasPort = hasPort;
        Port = hasPort ? port : (ushort)0;
        TruncatedHmac = (_nibble & 0x01) == 0 ? truncatedHmac : 0;
    }

    public MptcpSubtype Subtype => MptcpSubtype.AddAddr;

    public int Length => 4 + AddressLength + (HasPort ? 2 : 0) + (HasHmac ? 8 : 0);

    /// <summary>E: this option echoes an ADD_ADDR received (no HMAC).</summary>
    public bool Echo => (_nibble & 0x01) != 0;

    /// <summary>The three reserved bits before E, as sent.</summary>
    public byte Reserved => (byte)(_nibble >> 1);

    public byte AddressId { get; }

    public bool IsIPv6 { get; }

    public int AddressLength => IsIPv6 ? 16 : 4;

    /// <summary>The address bytes (4 or 16), network order.</summary>
    [UnscopedRef]
    public ReadOnlySpan<byte> Address => ((ReadOnlySpan<byte>)_address)[..AddressLength];

    public bool HasPort { get; }

    public ushort Port { get; }

    public bool HasHmac => !Echo;

    /// <summary>Rightmost 64 bits of the HMAC (absent on echo).</summary>
    public ulong TruncatedHmac { get; }

    /// <summary>An announcement with its truncated HMAC; <paramref name="address"/> is 4 or 16 bytes.</summary>
    public static AddAddr Announce(byte addressId, ReadOnlySpan<byte> address, ulong truncatedHmac, ushort? port = null) =>
        Create(0, addressId, address, port, truncatedHmac);

    /// <summary>An echo (E set, no HMAC); <paramref name="address"/> is 4 or 16 bytes.</summary>
    public static AddAddr CreateEcho(byte addressId, ReadOnlySpan<byte> address, ushort? port = null) =>
        Create(1, addressId, address, port, 0);

    public static WireError TryParse(ReadOnlySpan<byte> option, out AddAddr value)
    {
        value = default;
        var error = MptcpCodec.CheckHeader(option, MptcpSubtype.AddAddr);
        if (error != WireError.None)
        {
            return error;
        }

        var nibble = (byte)(option[2] & 0x0F);
        var hmacLength = (nibble & 0x01) == 0 ? 8 : 0;
        int addressLength;
        bool hasPort;
        switch (option.Length - hmacLength)
        {
            case 8: addressLength = 4; hasPort = false; break;
            case 10: addressLength = 4; hasPort = true; break;
            case 20: addressLength = 16; hasPort = false; break;
            case 22: addressLength = 16; hasPort = true; break;
            default: return WireError.BadMptcpLength;
        }

        var position = 4 + addressLength;
        ushort port = hasPort ? BinaryPrimitives.ReadUInt16BigEndian(option[position..]) : (ushort)0;
        position += hasPort ? 2 : 0;
        ulong hmac = hmacLength != 0 ? BinaryPrimitives.ReadUInt64BigEndian(option[position..]) : 0;
        value = new AddAddr(nibble, option[3], option.Slice(4, addressLength), hasPort, port, hmac);
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

        MptcpCodec.WriteHeader(destination, length, Subtype, _nibble);
        destination[3] = AddressId;
        Address.CopyTo(destination[4..]);
        var position = 4 + AddressLength;
        if (HasPort)
        {
            BinaryPrimitives.WriteUInt16BigEndian(destination[position..], Port);
            position += 2;
        }

        if (HasHmac)
        {
            BinaryPrimitives.WriteUInt64BigEndian(destination[position..], TruncatedHmac);
        }

        written = length;
        return WireError.None;
    }

    private static AddAddr Create(byte nibble, byte addressId, ReadOnlySpan<byte> address, ushort? port, ulong hmac)
    {
        if (address.Length is not (4 or 16))
        {
            ThrowHelper.ThrowWireException(WireError.BadArgument, 0);
        }

        return new AddAddr(nibble, addressId, address, port.HasValue, port.GetValueOrDefault(), hmac);
    }
}
