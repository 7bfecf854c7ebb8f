using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;

namespace ProxySelection.Interception.Netlink;

/// <summary>
/// Writes netlink messages into a caller's buffer, several per buffer if wanted (one sendmsg, several requests).
/// Header fields in host order, attribute payloads as given. A buffer too small is a programming error:
/// <see cref="ArgumentException"/>.
/// </summary>
public ref struct NetlinkWriter
{
    private readonly Span<byte> buffer;
    private int messageStart;

    public NetlinkWriter(Span<byte> buffer)
    {
        this.buffer = buffer;
        messageStart = -1;
    }

    /// <summary>Bytes written so far (whole messages once <see cref="EndMessage"/> has run).</summary>
    public int Length { get; private set; }

    public void BeginMessage(ushort type, ushort flags, uint sequence, uint portId = 0)
    {
        if (messageStart >= 0)
        {
            ThrowInvalid("a message is already open");
        }

        Length = Netlink.Align(Length);
        var header = Reserve(Netlink.HeaderLength);
        MemoryMarshal.Write(header, 0u);
        MemoryMarshal.Write(header[4..], type);
        MemoryMarshal.Write(header[6..], flags);
        MemoryMarshal.Write(header[8..], sequence);
        MemoryMarshal.Write(header[12..], portId);
        messageStart = Length - Netlink.HeaderLength;
    }

    /// <summary>struct nfgenmsg: family, version, res_id (big-endian; the queue number for NFQUEUE).</summary>
    public void WriteNfgenHeader(byte family, ushort resourceId)
    {
        var h = Reserve(Nfq.NfgenHeaderLength);
        h[0] = family;
        h[1] = Nfq.NfnetlinkV0;
        BinaryPrimitives.WriteUInt16BigEndian(h[2..], resourceId);
    }

    /// <summary>struct genlmsghdr: command, version, two reserved bytes (generic netlink).</summary>
    public void WriteGenlHeader(byte command, byte version)
    {
        var h = Reserve(4);
        h[0] = command;
        h[1] = version;
        h[2] = 0;
        h[3] = 0;
    }

    public void AddAttribute(ushort type, scoped ReadOnlySpan<byte> payload)
    {
        if (payload.Length > ushort.MaxValue - Netlink.AttributeHeaderLength)
        {
            ThrowArgument("attribute payload longer than nla_len can carry");
        }

        var a = Reserve(Netlink.Align(Netlink.AttributeHeaderLength + payload.Length));
        MemoryMarshal.Write(a, (ushort)(Netlink.AttributeHeaderLength + payload.Length));
        MemoryMarshal.Write(a[2..], type);
        payload.CopyTo(a[Netlink.AttributeHeaderLength..]);
        a[(Netlink.AttributeHeaderLength + payload.Length)..].Clear();
    }

    public void AddAttributeUInt32BigEndian(ushort type, uint value)
    {
        Span<byte> v = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(v, value);
        AddAttribute(type, v);
    }

    /// <summary>Closes the open message: writes nlmsg_len. Returns the total bytes written.</summary>
    public int EndMessage()
    {
        if (messageStart < 0)
        {
            ThrowInvalid("no message is open");
        }

        MemoryMarshal.Write(buffer[messageStart..], (uint)(Length - messageStart));
        messageStart = -1;
        Length = Netlink.Align(Length);
        return Length;
    }

    private Span<byte> Reserve(int count)
    {
        if (buffer.Length - Length < count)
        {
            ThrowArgument($"netlink buffer of {buffer.Length} bytes too small");
        }

        var s = buffer.Slice(Length, count);
        Length += count;
        return s;
    }

    [DoesNotReturn]
    private static void ThrowArgument(string message) => throw new ArgumentException(message);

    [DoesNotReturn]
    private static void ThrowInvalid(string message) => throw new InvalidOperationException(message);
}
