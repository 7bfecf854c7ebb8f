using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace ProxySelection.Negotiation;

/// <summary>
/// One transport endpoint (address bytes + port) as a value: the capability cache's key and one half of a
/// <see cref="FlowKey"/>. IPv4 is stored in its IPv4-mapped IPv6 form so both families share one layout and
/// equality and hashing never allocate.
/// </summary>
public readonly struct DestinationKey : IEquatable<DestinationKey>
{
    private readonly ulong _high;
    private readonly ulong _low;

    public DestinationKey(ReadOnlySpan<byte> address, ushort port)
    {
        if (address.Length == 4)
        {
            _high = 0;
            _low = 0x0000_FFFF_0000_0000UL | BinaryPrimitives.ReadUInt32BigEndian(address);
            IsIPv4 = true;
        }
        else if (address.Length == 16)
        {
            _high = BinaryPrimitives.ReadUInt64BigEndian(address);
            _low = BinaryPrimitives.ReadUInt64BigEndian(address[8..]);
        }
        else
        {
            throw new ArgumentException("An address is 4 (IPv4) or 16 (IPv6) bytes.", nameof(address));
        }

        Port = port;
    }

    private DestinationKey(ulong high, ulong low, ushort port, bool isIPv4)
    {
        _high = high;
        _low = low;
        Port = port;
        IsIPv4 = isIPv4;
    }

    public ushort Port { get; }

    public bool IsIPv4 { get; }

    /// <summary>Writes the address (4 or 16 bytes) into <paramref name="destination"/> and returns its length.</summary>
    public int WriteAddress(Span<byte> destination)
    {
        if (IsIPv4)
        {
            BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)_low);
            return 4;
        }

        BinaryPrimitives.WriteUInt64BigEndian(destination, _high);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], _low);
        return 16;
    }

    /// <summary>
    /// The address's network prefix, port 0: the first <paramref name="ipv4Bits"/> bits of an IPv4 address or
    /// <paramref name="ipv6Bits"/> of an IPv6 one (the probe rate limit's source prefix, spec §7.5.1).
    /// </summary>
    public DestinationKey ToPrefix(int ipv4Bits, int ipv6Bits)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ipv4Bits);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(ipv4Bits, 32);
        ArgumentOutOfRangeException.ThrowIfNegative(ipv6Bits);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(ipv6Bits, 128);
        if (IsIPv4)
        {
            ulong hostMask = ipv4Bits == 32 ? 0 : (1UL << (32 - ipv4Bits)) - 1;
            return new DestinationKey(0, _low & ~hostMask, 0, isIPv4: true);
        }

        ulong high = ipv6Bits >= 64 ? _high : ipv6Bits == 0 ? 0 : _high & ~((1UL << (64 - ipv6Bits)) - 1);
        ulong low = ipv6Bits <= 64 ? 0 : ipv6Bits == 128 ? _low : _low & ~((1UL << (128 - ipv6Bits)) - 1);
        return new DestinationKey(high, low, 0, isIPv4: false);
    }

    public static DestinationKey From(IPEndPoint endPoint)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        Span<byte> bytes = stackalloc byte[16];
        var address = endPoint.Address;
        if (address.AddressFamily == AddressFamily.InterNetworkV6 && address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        address.TryWriteBytes(bytes, out int written);
        return new DestinationKey(bytes[..written], (ushort)endPoint.Port);
    }

    public IPEndPoint ToEndPoint()
    {
        Span<byte> bytes = stackalloc byte[16];
        int length = WriteAddress(bytes);
        return new IPEndPoint(new IPAddress(bytes[..length]), Port);
    }

    public bool Equals(DestinationKey other) =>
        _high == other._high && _low == other._low && Port == other.Port && IsIPv4 == other.IsIPv4;

    public override bool Equals(object? obj) => obj is DestinationKey other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(_high, _low, Port);

    public static bool operator ==(DestinationKey left, DestinationKey right) => left.Equals(right);

    public static bool operator !=(DestinationKey left, DestinationKey right) => !left.Equals(right);

    public override string ToString() => ToEndPoint().ToString();
}

/// <summary>A TCP flow as seen in its SYN: the initiator's endpoint and the responder's endpoint.</summary>
public readonly record struct FlowKey(DestinationKey Initiator, DestinationKey Responder)
{
    /// <summary>The same flow seen from a SYN/ACK, whose source is the responder.</summary>
    public static FlowKey FromSynAck(DestinationKey source, DestinationKey destination) => new(destination, source);
}
