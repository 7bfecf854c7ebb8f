using System.Runtime.InteropServices;

namespace ProxySelection.Interception.Netlink;

/// <summary>One netlink message (struct nlmsghdr + payload) viewed in a receive buffer. Header fields are host order.</summary>
public readonly ref struct NetlinkMessage
{
    public NetlinkMessage(ushort type, ushort flags, uint sequence, uint portId, ReadOnlySpan<byte> payload)
    {
        Type = type;
        Flags = flags;
        Sequence = sequence;
        PortId = portId;
        Payload = payload;
    }

    public ushort Type { get; }

    public ushort Flags { get; }

    public uint Sequence { get; }

    public uint PortId { get; }

    /// <summary>The bytes after the 16-byte header, up to nlmsg_len.</summary>
    public ReadOnlySpan<byte> Payload { get; }
}

/// <summary>
/// Walks the netlink messages of one datagram (messages are 4-byte aligned). Malformed input stops the walk with
/// <see cref="Status"/> set; it never throws.
/// </summary>
public ref struct NetlinkMessageReader
{
    private ReadOnlySpan<byte> rest;

    public NetlinkMessageReader(ReadOnlySpan<byte> datagram)
    {
        rest = datagram;
        Status = NetlinkStatus.Ok;
    }

    /// <summary><see cref="NetlinkStatus.Ok"/> after a clean end; otherwise why the walk stopped.</summary>
    public NetlinkStatus Status { get; private set; }

    /// <summary>Bytes not yet read.</summary>
    public readonly int Remaining => rest.Length;

    public bool TryReadNext(out NetlinkMessage message)
    {
        message = default;
        if (rest.IsEmpty || Status != NetlinkStatus.Ok)
        {
            return false;
        }

        if (rest.Length < Netlink.HeaderLength)
        {
            Status = NetlinkStatus.Truncated;
            return false;
        }

        var length = MemoryMarshal.Read<uint>(rest);
        if (length < Netlink.HeaderLength || length > (uint)rest.Length)
        {
            Status = NetlinkStatus.BadMessageLength;
            return false;
        }

        message = new NetlinkMessage(
            MemoryMarshal.Read<ushort>(rest[4..]),
            MemoryMarshal.Read<ushort>(rest[6..]),
            MemoryMarshal.Read<uint>(rest[8..]),
            MemoryMarshal.Read<uint>(rest[12..]),
            rest[Netlink.HeaderLength..(int)length]);
        var next = Netlink.Align((int)length);
        rest = next >= rest.Length ? [] : rest[next..];
        return true;
    }
}

/// <summary>One netlink attribute (struct nlattr + payload). <see cref="Type"/> has the nested/byte-order flags removed.</summary>
public readonly ref struct NetlinkAttribute
{
    public NetlinkAttribute(ushort rawType, ReadOnlySpan<byte> payload)
    {
        RawType = rawType;
        Payload = payload;
    }

    public ushort RawType { get; }

    public ushort Type => (ushort)(RawType & Netlink.AttributeTypeMask);

    public bool IsNested => (RawType & Netlink.AttributeNested) != 0;

    public ReadOnlySpan<byte> Payload { get; }
}

/// <summary>Walks a run of netlink attributes (4-byte aligned). Malformed input stops the walk with <see cref="Status"/> set.</summary>
public ref struct NetlinkAttributeReader
{
    private ReadOnlySpan<byte> rest;

    public NetlinkAttributeReader(ReadOnlySpan<byte> attributes)
    {
        rest = attributes;
        Status = NetlinkStatus.Ok;
    }

    public NetlinkStatus Status { get; private set; }

    public bool TryReadNext(out NetlinkAttribute attribute)
    {
        attribute = default;
        if (rest.IsEmpty || Status != NetlinkStatus.Ok)
        {
            return false;
        }

        if (rest.Length < Netlink.AttributeHeaderLength)
        {
            Status = NetlinkStatus.Truncated;
            return false;
        }

        var length = MemoryMarshal.Read<ushort>(rest);
        if (length < Netlink.AttributeHeaderLength || length > rest.Length)
        {
            Status = NetlinkStatus.BadAttributeLength;
            return false;
        }

        attribute = new NetlinkAttribute(MemoryMarshal.Read<ushort>(rest[2..]), rest[Netlink.AttributeHeaderLength..length]);
        var next = Netlink.Align(length);
        rest = next >= rest.Length ? [] : rest[next..];
        return true;
    }
}
